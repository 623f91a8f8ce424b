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
from spikeport.readers import load_yaml, memory_budget

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")
BATCH_AUGMENTS = ("none", "cutmix", "mixup")
HUGE_STRIDE = 2**62  # a stride or pool at least this large leaves one position of any input


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
    optimizer: str = "adamw"  # sgd | adamw
    # cosine: CosineAnnealingLR over all epochs (DTA's recipe); step: StepLR(step_size, 0.1) (OGM-GE's)
    schedule: str = "cosine"
    step_size: int = 70
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
    if config.train.schedule not in SCHEDULES:
        raise UserError(f"{source}: train.schedule must be one of {', '.join(SCHEDULES)}, got {config.train.schedule!r}")
    if config.train.step_size < 1:
        raise UserError(f"{source}: train.step_size must be positive, got {config.train.step_size}")
    if config.train.optimizer not in OPTIMIZERS:
        raise UserError(f"{source}: train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.train.optimizer!r}")
    if not isinstance(config.model.get("name"), str):
        raise UserError(f"{source}: model.name is required (a string)")
    check_fits(source, config)


def check_fits(source: str, config: Config) -> None:
    """Refuse a config whose training batch the machine cannot hold, from the config alone: no
    torch, so that an absurd T, batch, input or channel count answers in a fraction of a second
    instead of after torch's import (seconds, and more memory than the refusal is meant to save).

    The input batch [T, B, *input] (float32) must fit in `readers.memory_budget`, and so must a
    lower bound of the model: the convolutions its options name (`_convolutions`), 16 bytes per
    weight (weights, gradients, two AdamW moments) and 8 per value they output over the batch (the
    value and its gradient). Options left to their defaults are not counted, so the bound never
    exceeds what the model really takes; train.models.check_fits counts the built model exactly
    on torch's meta device afterwards."""
    from spikeport.train.dataset_specs import spec

    try:
        dataset = spec(config.data.name)
    except UserError as e:
        raise UserError(f"{source}: data.name: {e}") from None
    shapes = list(dataset.input_shape.values()) if isinstance(dataset.input_shape, dict) else [dataset.input_shape]
    steps, batch, budget = config.data.timesteps, config.data.batch_size, memory_budget()
    values = steps * batch * sum(math.prod(s) for s in shapes)
    if 4 * values > budget:
        raise UserError(f"{source}: data: a batch of {batch} samples over {steps} timesteps is {4 * values / 2**30:.1f} GiB of input alone, "
                        f"more than the {budget / 2**30:.1f} GiB free; refused")
    convolutions = _convolutions(config.model, shapes)
    weights = sum(n * c_in * c_out * k * k for c_in, c_out, k, _, n in convolutions)
    outputs = steps * batch * sum(n * c_out * area for _, c_out, _, area, n in convolutions)
    need = 16 * weights + 8 * outputs
    if need > budget:
        raise UserError(
            f"{source}: model: needs at least {need / 2**30:.1f} GiB ({weights:,} parameters and {outputs:,} activation values for a batch of "
            f"{batch} over {steps} timesteps, counted from its options), more than the {budget / 2**30:.1f} GiB free; refused "
            "(fewer channels, timesteps or a smaller batch)"
        )


def _convolutions(model: dict, shapes: list[tuple[int, ...]]) -> list[tuple[int, int, int, int, int]]:
    """(in channels, out channels, kernel size, output positions, how many) of the convolutions the model
    options surely build (train/models.py), for one input image; output positions are counted with
    every stride and pool at least as large as the model's, so never more than there are. Options
    that are absent or not positive integers add nothing (the builder reports them)."""
    def count(value) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None

    def counts(value) -> list[int] | None:
        numbers = [count(v) for v in value] if isinstance(value, list) else [None]
        return None if None in numbers else numbers

    def area(shape: tuple[int, ...], stride: int) -> int:
        return math.prod(max(1, side // stride) for side in shape[1:])

    name, convolutions = model.get("name"), []
    if name == "spiking-cnn" and counts(model.get("channels")):  # conv k x k (same padding), then a pool per stage
        kernel, pool = count(model.get("kernel_size")) or 1, count(model.get("pool"))
        (shape,) = shapes[:1]
        channels, stride = shape[0], 1
        for out in counts(model["channels"]):
            convolutions.append((channels, out, kernel, area(shape, stride), 1))
            channels, stride = out, min(stride * pool, HUGE_STRIDE) if pool else HUGE_STRIDE
    elif name == "dta-msresnet":  # stem conv (stride <= 2), then [channels, blocks, stride] stages of two 3x3 convs per block
        (shape,) = shapes[:1]
        channels, stride = shape[0], 2
        if count(model.get("stem_channels")):
            convolutions.append((channels, model["stem_channels"], 3, area(shape, stride), 1))
            channels = model["stem_channels"]
        stages = model.get("stages")
        plan = [counts(stage) for stage in stages] if isinstance(stages, list) else []
        if plan and all(stage and len(stage) == 3 for stage in plan):
            for out, blocks, stage_stride in plan:
                stride = min(stride * stage_stride, HUGE_STRIDE)
                convolutions += [(channels, out, 3, area(shape, stride), 1), (out, out, 3, area(shape, stride), 2 * blocks - 1)]
                channels = out
    elif name == "taaf-resnet" and counts(model.get("widths")):  # per input: 7x7/2 stem and 3x3/2 max pool, then stages of blocks
        widths, blocks = counts(model["widths"]), count(model.get("blocks")) or 1
        for shape in shapes:
            channels, stride = shape[0], 4
            convolutions.append((channels, widths[0], 7, area(shape, stride), 1))
            channels = widths[0]
            for i, out in enumerate(widths):
                stride = min(stride * (2 if i else 1), HUGE_STRIDE)
                convolutions += [(channels, out, 3, area(shape, stride), 1), (out, out, 3, area(shape, stride), 2 * blocks - 1)]
                channels = out
    return convolutions


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
