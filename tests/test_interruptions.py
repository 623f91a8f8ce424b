"""SIGKILL during `train`, `export` and `report`, of a real `python -m spikeport.cli` process.

train: killed mid-run (after its first checkpoint, while later epochs run), `--resume` ends with
the weights and metrics of a run that was never interrupted. export and report: killed at the
worst moment, when every file is written into the temporary folder and only the rename is left:
the previous artifact is untouched, nothing under the final name is half-written, and a rerun
succeeds. (Lava's own processes on failure and timeout: tests/test_runtime_lava.py.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from spikeport.train.checkpoint import load_checkpoint

# Runs the CLI with one function replaced by one that first calls it (or not), then says so
# through a file and waits to be killed: a deterministic place for the SIGKILL.
STALLED_CLI = """
import sys, time, pathlib, importlib
module, name, when, signal_file = sys.argv[1:5]
owner = importlib.import_module(module)
real = getattr(owner, name)
def stall(*args, **kwargs):
    result = real(*args, **kwargs) if when == "after" else None
    pathlib.Path(signal_file).touch()
    time.sleep(600)
setattr(owner, name, stall)
sys.argv = ["spikeport", *sys.argv[5:]]
from spikeport.cli import main
main()
"""


def env() -> dict:
    """This process's environment, with torch's thread count: the same float sums as a run in here."""
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}


def spikeport(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spikeport.cli", *map(str, args)], env=env(), stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"exited with {process.returncode} before the kill: {process.stderr.read()}"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def kill(process: subprocess.Popen) -> None:
    assert process.poll() is None, "it finished before the kill"
    process.send_signal(signal.SIGKILL)
    assert process.wait(30) == -signal.SIGKILL
    process.stderr.close()


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("sim", "report"))
    return run


def test_train_killed_mid_run_resumes_to_the_weights_of_an_uninterrupted_run(cli, tiny_config, write_config, tmp_path):
    tiny_config["data"]["timesteps"] = 4
    tiny_config["train"]["epochs"] = 4
    config = write_config(tiny_config)
    cut = spikeport("train", config, "--out", tmp_path / "cut", "--device", "cpu")
    checkpoint = tmp_path / "cut" / "checkpoint.pt"
    wait_for(checkpoint.exists, cut)  # epoch 1 is saved: epoch 2 is running
    kill(cut)
    assert load_checkpoint(checkpoint)["epochs_done"] < 4

    for args in (["--out", tmp_path / "cut", "--resume"], ["--out", tmp_path / "whole"]):
        code, _, err = cli("train", config, "--device", "cpu", *args)
        assert code == 0, err
    a, b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt"), load_checkpoint(checkpoint)
    assert a["epochs_done"] == b["epochs_done"] == 4
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    lines = lambda run: [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert lines(tmp_path / "whole") == lines(tmp_path / "cut")


@pytest.mark.parametrize(
    "command, stall, final",
    [
        (["export"], ("spikeport.io", "_swap", "before"), "export"),
        (["report", "--samples", "8", "--profiles", "loihi2"], ("spikeport.io", "_swap", "before"), "report"),
    ],
    ids=["export", "report"],
)
def test_killed_before_the_rename_leaves_the_old_artifact_and_a_rerun_succeeds(cli, trained_run, tmp_path, command, stall, final):
    run = run_copy(trained_run, tmp_path)
    code, _, err = cli(command[0], run, *command[1:])  # the artifact a killed rerun must not damage
    assert code == 0, err
    before = snapshot(run / final)
    stalled = tmp_path / "stalled"
    process = subprocess.Popen(
        [sys.executable, "-c", STALLED_CLI, *stall, stalled, command[0], run, *command[1:]], env=env(), stderr=subprocess.PIPE, text=True
    )
    wait_for(stalled.exists, process)
    leftovers = [p for p in run.iterdir() if p.name.startswith(f".{final}")]
    assert leftovers and snapshot(leftovers[0]), "the new artifact was being written in a temporary folder"
    kill(process)

    assert snapshot(run / final) == before
    code, _, err = cli(command[0], run, *command[1:])
    assert code == 0, err
    assert set(snapshot(run / final)) == set(before)
