"""Two training processes (torchrun, gloo on CPU) end where one process does, on the same global batches."""

import subprocess
import sys

import pytest
import torch
import yaml

from spikeport.train.checkpoint import load_checkpoint


def test_two_processes_match_one(tmp_path, cli):
    config = {
        "model": {"name": "spiking-cnn", "channels": [4, 8], "batch_norm": False},
        "data": {"name": "digits", "root": str(tmp_path / "data"), "timesteps": 2, "batch_size": 64},
        "train": {"epochs": 2, "optimizer": "sgd", "lr": 0.1, "seed": 5},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    spikeport = [sys.executable, "-m", "spikeport.cli", "train", str(path), "--device", "cpu"]
    code, _, err = cli("train", path, "--device", "cpu", "--out", tmp_path / "one")  # the one process: this one
    assert code == 0, err
    two = subprocess.run([*spikeport, "--out", str(tmp_path / "two"), "--nproc", "2"], capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]

    a, b = load_checkpoint(tmp_path / "one" / "checkpoint.pt"), load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, atol=2e-5, rtol=1e-4, msg=name)
    for m1, m2 in zip(a["metrics"], b["metrics"]):
        assert m1["train_loss"] == pytest.approx(m2["train_loss"], rel=1e-4)
        assert m1["test_acc"] == pytest.approx(m2["test_acc"], abs=1 / 450)
    # Only the first process writes: one metrics line per epoch, nothing else in the folder.
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint.pt", "config.yaml", "metrics.jsonl"]
