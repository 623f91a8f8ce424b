"""Config files: defaults, type checks and one-line errors that name the field."""

import pytest

from spikeport.config import config_from_dict, load_config
from spikeport.errors import UserError


def test_defaults_are_filled_in(tiny_config):
    config = config_from_dict(tiny_config)
    assert config.train.momentum == 0.9
    assert config.data.timesteps == 2
    assert config.to_dict()["model"] == {"name": "spiking-cnn", "channels": [4, 8]}


def test_the_shipped_config_loads():
    config = load_config("configs/digits-cnn.yaml")
    assert config.data.name == "digits" and config.model["name"] == "spiking-cnn"


def test_yaml_float_without_dot_is_accepted(tiny_config):
    tiny_config["train"]["lr"] = "1e-3"  # what PyYAML makes of `lr: 1e-3`
    assert config_from_dict(tiny_config).train.lr == 0.001


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["train"].update(lrr=0.1), "unknown key 'train.lrr' (allowed: epochs, optimizer, "),
        (lambda c: c.update(trainer={}), "unknown key 'trainer' (allowed: model, data, train)"),
        (lambda c: c["train"].update(epochs="many"), "train.epochs must be int, got 'many'"),
        (lambda c: c["train"].update(epochs=True), "train.epochs must be int, got True"),
        (lambda c: c["data"].update(timesteps=0), "data.timesteps must be positive, got 0"),
        (lambda c: c["train"].update(lr=-1.0), "train.lr must be positive"),
        (lambda c: c["train"].update(optimizer="adam"), "train.optimizer must be one of sgd, adamw, got 'adam'"),
        (lambda c: c.update(data=[1, 2]), "section 'data' must be a mapping"),
        (lambda c: c["model"].pop("name"), "model.name is required"),
    ],
)
def test_bad_configs_name_the_field(tiny_config, change, message):
    change(tiny_config)
    with pytest.raises(UserError, match=None) as e:
        config_from_dict(tiny_config, source="my.yaml")
    assert str(e.value).startswith("my.yaml: ")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_yaml_gives_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name: spiking-cnn\ntrain:\n  lr: [0.1\n  epochs: 2\n")
    with pytest.raises(UserError, match=r"bad.yaml: invalid YAML at line 5"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="nope.yaml: cannot read"):
        load_config(tmp_path / "nope.yaml")


# --- sizes the machine cannot hold, refused before torch (config.check_fits) ------------------------

SHIPPED = sorted(__import__("pathlib").Path("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_the_size_bound_is_at_most_what_the_built_model_takes(path):
    """The torch-free lower bound (config._convolutions) against the model built on torch's meta
    device, for every shipped config: never more weights than its parameters, never more output
    values than its leaf modules give for a batch, so a config that fits is never refused by it."""
    import math

    import torch

    from spikeport.config import _convolutions
    from spikeport.train.dataset_specs import spec
    from spikeport.train.models import _activation_values, build_model

    config = load_config(path)
    dataset = spec(config.data.name)
    shapes = list(dataset.input_shape.values()) if isinstance(dataset.input_shape, dict) else [dataset.input_shape]
    convolutions = _convolutions(config.model, shapes)
    steps = min(config.data.timesteps, 2)
    with torch.device("meta"):
        model = build_model(config.model, dataset.input_shape, dataset.num_classes, steps)
        parameters = sum(p.numel() for p in model.parameters())
        activations = _activation_values(model, shapes, steps, 1)
    weights = sum(n * c_in * c_out * k * k for c_in, c_out, k, _, n in convolutions)
    outputs = steps * sum(n * c_out * area for _, c_out, _, area, n in convolutions)
    assert weights <= parameters and outputs <= activations, (weights, parameters, outputs, activations)
    if "channels" in config.model or "widths" in config.model or "stages" in config.model:
        assert convolutions and weights > parameters / 20, "the bound should count most of the model"  # not vacuous
    assert math.prod(shapes[0]) > 0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["data"].update(timesteps=10**9), "data: a batch of 64 samples over 1000000000 timesteps is 15258.8 GiB of input alone"),
        (lambda c: c["data"].update(batch_size=10**10), "a batch of 10000000000 samples"),
        (lambda c: c["model"].update(channels=[10**6, 10**6]), "model: needs at least"),
        (lambda c: c["model"].update(channels=[64, 64]) or c["data"].update(timesteps=10**5), "activation values for a batch of 64 over 100000 timesteps"),
        (lambda c: c.update(model={"name": "dta-msresnet", "stages": [[10**5, 2, 1]]}), "model: needs at least"),
        (lambda c: c.update(model={"name": "dta-msresnet", "stem_channels": 8, "stages": [[8, 10**12, 1]]}), "model: needs at least"),
        (lambda c: c.update(model={"name": "taaf-resnet", "widths": [10**5, 10**5]}) or c["data"].update(name="av-digits"), "model: needs at least"),
        (lambda c: c["data"].update(name="imagenet-42"), "data.name: unknown dataset 'imagenet-42'"),
    ],
)
def test_sizes_the_machine_cannot_hold_are_refused_without_torch(tiny_config, change, message, monkeypatch):
    """Refused on a machine with 8 GiB to spare; in a fresh process (this machine's memory), the
    check imports no torch whether it refuses or not."""
    import subprocess
    import sys

    monkeypatch.setattr("spikeport.config.memory_budget", lambda: 8 * 2**30)
    change(tiny_config)
    with pytest.raises(UserError) as e:
        config_from_dict(tiny_config, source="my.yaml")
    assert str(e.value).startswith("my.yaml: ") and message in str(e.value) and "\n" not in str(e.value)
    check = f"import sys; from spikeport.config import config_from_dict\ntry: config_from_dict({tiny_config!r})\nexcept Exception: pass\nprint('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_a_huge_stride_or_block_count_is_counted_without_looping(tiny_config):
    """Counts of 10^12 blocks or strides of 2^60 are multiplied, not iterated."""
    import time

    tiny_config["model"] = {"name": "spiking-cnn", "channels": [1] * 20000, "pool": 2**60}
    started = time.process_time()
    config_from_dict(tiny_config)
    assert time.process_time() - started < 2
