"""Run configuration: a YAML file read into plain dataclasses.

A config has three sections. `data` and `train` are fixed dataclasses below; `model` is a plain
dict whose `name` picks a builder in train/models.py and whose other keys are that builder's
keyword arguments (checked there). The resolved config — every default filled in — is saved as
`config.yaml` in the run folder and in the checkpoint, so a run can always be rebuilt.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from spikeport.errors import UserError
from spikeport.readers import load_yaml

OPTIMIZERS = ("sgd", "adamw")
BATCH_AUGMENTS = ("none", "cutmix", "mixup")


@dataclass
class DataConfig:
    name: str = "digits"
    root: str = "data"  # where datasets are built or found
    timesteps: int = 4
    batch_size: int = 64
    options: dict = field(default_factory=dict)  # generator settings of a built-in dataset (av-digits)


@dataclass
class TrainConfig:
    epochs: int = 10
    optimizer: str = "adamw"  # sgd | adamw; cosine learning-rate schedule over all epochs
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    seed: int = 0
    amp: bool = True  # mixed precision, used on CUDA only
    # none | cutmix (DTA's CIFAR recipe: Beta(1, 1) boxes, one coin per epoch with p 0.5)
    #      | mixup (DTA's DVS recipe: Beta(0.5, 0.5), p 0.5 per batch, trained on the dominant label)
    batch_augment: str = "none"


@dataclass
class Config:
    model: dict = field(default_factory=lambda: {"name": "spiking-cnn"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_type(source: str, key: str, value, annotation: str):
    if annotation == "float" and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    expected = {"int": int, "float": (int, float), "str": str, "bool": bool, "dict": dict}[annotation]
    if isinstance(value, bool) and annotation != "bool" or not isinstance(value, expected):
        raise UserError(f"{source}: {key} must be {annotation}, got {value!r}")
    if annotation == "float":
        return finite(f"{source}: {key}", value)
    if annotation == "int":
        _int64(f"{source}: {key}", value)
    return value


def _int64(name: str, value: int) -> None:
    if not -(2**63) <= value < 2**63:
        raise UserError(f"{name} must fit in 64 bits, got an integer of {value.bit_length()} bits")


def finite(name: str, value: int | float) -> float:
    """`value` as a float, or a UserError naming `name` when it is NaN, infinite or too large to
    be one (a YAML `.nan`, `1e999`, a 400-digit integer): no numeric field, option or CLI value
    of spikeport means anything there, and NaN passes every `<=` check after it."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise UserError(f"{name} must be a finite number, got {value if isinstance(value, float) else 'a number too large for a float'}")
    return number


def check_number(name: str, value: int | float | None, low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False) -> None:
    """The one numeric check of configs, model options and CLI options: `value` (None: not given)
    must be finite and lie within `low` and `high` (excluded with low_open / high_open)."""
    if value is None:
        return
    number = finite(name, value)
    if low is not None and (number <= low if low_open else number < low):
        raise UserError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value}")
    if high is not None and (number >= high if high_open else number > high):
        raise UserError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value}")


def _finite_everywhere(source: str, key: str, value) -> None:
    """Every number in a free-form section (model options, dataset options), at any depth: floats
    finite, integers within int64 (what torch and numpy hold)."""
    if isinstance(value, float):
        finite(f"{source}: {key}", value)
    elif isinstance(value, int) and not isinstance(value, bool):
        _int64(f"{source}: {key}", value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _finite_everywhere(source, f"{key}.{k if str(k).isprintable() else repr(k)}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite_everywhere(source, f"{key}[{i}]", v)


def _section(source: str, name: str, cls, values) -> object:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise UserError(f"{source}: section '{name}' must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in fields:
            raise UserError(f"{source}: unknown key {f'{name}.{key}'!r} (allowed: {', '.join(fields)})")
    return cls(**{k: _check_type(source, f"{name}.{k}", v, hints[k].__name__) for k, v in values.items()})


def _validate(source: str, config: Config) -> None:
    positive = {
        "data.timesteps": config.data.timesteps,
        "data.batch_size": config.data.batch_size,
        "train.epochs": config.train.epochs,
        "train.lr": config.train.lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"{source}: {key} must be positive, got {value}")
    if config.train.weight_decay < 0:
        raise UserError(f"{source}: train.weight_decay must be >= 0, got {config.train.weight_decay}")
    check_number(f"{source}: train.momentum", config.train.momentum, 0, 1, high_open=True)
    if not 0 <= config.train.seed < 2**32:
        raise UserError(f"{source}: train.seed must be in [0, 2^32), got {config.train.seed}")
    _finite_everywhere(source, "model", config.model)
    _finite_everywhere(source, "data.options", config.data.options)
    if config.train.batch_augment not in BATCH_AUGMENTS:
        raise UserError(f"{source}: train.batch_augment must be one of {', '.join(BATCH_AUGMENTS)}, got {config.train.batch_augment!r}")
    if config.train.optimizer not in OPTIMIZERS:
        raise UserError(f"{source}: train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.train.optimizer!r}")
    if not isinstance(config.model.get("name"), str):
        raise UserError(f"{source}: model.name is required (a string)")


def config_from_dict(data: dict, source: str = "config") -> Config:
    """Check a parsed config mapping and fill in the defaults."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping with sections model, data, train")
    known = ("model", "data", "train")
    for key in data:
        if key not in known:
            raise UserError(f"{source}: unknown key {key!r} (allowed: {', '.join(known)})")
    model = data.get("model") or {}
    if not isinstance(model, dict):
        raise UserError(f"{source}: section 'model' must be a mapping")
    config = Config(
        model=dict(model),
        data=_section(source, "data", DataConfig, data.get("data")),
        train=_section(source, "train", TrainConfig, data.get("train")),
    )
    _validate(source, config)
    return config


def read_yaml(path: str | Path) -> object:
    """Parse a YAML file, bounded (spikeport/readers.py): a missing file, a syntax error or a
    document that would expand without bound is a one-line UserError."""
    return load_yaml(path)


def load_config(path: str | Path) -> Config:
    return config_from_dict(read_yaml(path), source=str(path))
