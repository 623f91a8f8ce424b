"""The command line: commands, exit codes, and one-line errors for bad input."""

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from spikeport.errors import UserError
from spikeport.train.checkpoint import load_checkpoint, load_weights
from spikeport.train.models import spiking_cnn


def assert_user_error(result, *fragments):
    code, out, err = result
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spikeport: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_train_then_inspect(cli, tiny_config, write_config, tmp_path):
    config = write_config(tiny_config)
    code, _, err = cli("train", config, "--out", tmp_path / "run", "--epochs", "1", "--device", "cpu")
    assert code == 0, err
    assert "1 epochs, test accuracy" in err
    assert (tmp_path / "run" / "checkpoint.pt").is_file()

    code, out, _ = cli("inspect", config, "--json")
    summary = json.loads(out)
    assert summary["input_shape"] == [1, 8, 8] and summary["timesteps"] == 2
    model = spiking_cnn((1, 8, 8), 10, channels=[4, 8])
    assert summary["total_params"] == sum(p.numel() for p in model.parameters())
    assert summary["modules"] == {"conv1": 36, "bn1": 8, "conv2": 288, "bn2": 16, "fc": 8 * 2 * 2 * 10 + 10}


def test_data_commands(cli, tmp_path):
    code, _, err = cli("data", "list")
    assert code == 0 and "digits" in err and "event-digits" in err
    code, _, err = cli("data", "build", "digits", "--out", tmp_path / "d")
    assert code == 0 and any((tmp_path / "d").rglob("*.npz"))
    assert_user_error(cli("data", "build", "cifar-1000", "--out", tmp_path / "d"), "cifar-1000")


@pytest.mark.parametrize(
    "section, change, fragments",
    [
        ("model", {"name": "resnet-9000"}, ["model.name", "resnet-9000", "spiking-cnn"]),
        ("model", {"name": "spiking-cnn", "chanels": [4]}, ["model.chanels", "allowed: channels"]),
        ("data", {"name": "imagenet-42"}, ["imagenet-42"]),
        ("train", {"epochs": -3}, ["train.epochs must be positive"]),
    ],
)
def test_train_bad_config(cli, tiny_config, write_config, tmp_path, section, change, fragments):
    tiny_config[section] = change
    assert_user_error(cli("train", write_config(tiny_config), "--out", tmp_path / "run"), *fragments)
    assert not (tmp_path / "run").exists()


def test_bad_yaml_and_missing_files(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: spiking-cnn\n")
    assert_user_error(cli("train", bad, "--out", tmp_path / "run"), "bad.yaml", "line 2")
    assert_user_error(cli("inspect", tmp_path / "missing.yaml"), "missing.yaml", "cannot read")


def test_resume_without_checkpoint(cli, tiny_config, write_config, tmp_path):
    assert_user_error(cli("train", write_config(tiny_config), "--out", tmp_path / "run", "--resume"), "--resume", "no checkpoint")


def test_checkpoint_of_another_model(tiny_config, tmp_path):
    from spikeport.config import config_from_dict
    from spikeport.train import loop

    loop.train(config_from_dict({**tiny_config, "train": {"epochs": 1}}), tmp_path / "run", device="cpu")
    path = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(UserError, match=r"checkpoint.pt: the checkpoint holds another model's weights \(.*conv1.weight"):
        load_weights(spiking_cnn((1, 8, 8), 10, channels=[6, 8]), load_checkpoint(path), path)


def test_corrupt_and_hostile_checkpoints(tmp_path):
    truncated = tmp_path / "truncated.pt"
    torch.save({"a": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(UserError, match="truncated.pt: not a readable checkpoint"):
        load_checkpoint(truncated)

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    hostile = tmp_path / "hostile.pt"
    torch.save({"format": "spikeport-checkpoint-1", "model": Exploit()}, hostile, pickle_module=pickle)
    with pytest.raises(UserError, match="hostile.pt: refused to load"):
        load_checkpoint(hostile)
    assert not marker.exists()

    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(UserError, match="plain.pt: not a spikeport checkpoint"):
        load_checkpoint(plain)


def test_console_script_user_error_has_no_traceback(tmp_path):
    """The installed `spikeport` script, as a user runs it: exit 2, one line, no traceback."""
    bad = tmp_path / "c.yaml"
    bad.write_text("train: {epochs: 1}\nmodel: {name: spiking-cnn}\ndata: {name: nope}\n")
    spikeport = os.path.join(os.path.dirname(sys.executable), "spikeport")
    result = subprocess.run([spikeport, "train", str(bad), "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "nope" in result.stderr
    verbose = subprocess.run([spikeport, "--verbose", "train", str(bad), "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
