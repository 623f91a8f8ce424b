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
        (lambda c: c["train"].update(lrr=0.1), "unknown key 'train.lrr' (allowed: epochs, optimizer, lr"),
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
