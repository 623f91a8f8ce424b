"""Shared fixtures: a tiny config and an in-process CLI runner that goes through `spikeport.cli.main`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

SHARED = Path(__file__).resolve().parents[2] / "shared"


def needs_shared(subpath: str) -> Path:
    """The path under ../shared, or skip (fail on CI, where ../shared must be there)."""
    path = SHARED / subpath
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing on CI")
        pytest.skip(f"{path} not found (a user's clone has no ../shared)")
    return path


@pytest.hookimpl(wrapper=True)  # around pytest-xdist's own, which reads the groups
def pytest_collection_modifyitems(config, items):
    """`make test` runs the tests in two processes (pytest-xdist, --dist loadgroup): every test
    marked `lava` goes to one of them, so no two Lava runs overlap. Their processes share the
    machine's /dev/shm, where the tests look for segments a run left behind, and a timeout test
    waits for its run's processes, which a second run would slow. pytest-xdist marks a group in
    the test's node id; where it could not (pytest-dev/pytest-xdist#1386: with pytest 9.2 it
    silently does not), the run stops here rather than run Lava tests side by side."""
    lava = [item for item in items if item.get_closest_marker("lava")]
    for item in lava:
        item.add_marker(pytest.mark.xdist_group("lava"))
    result = yield
    if getattr(config.option, "loadgroup", False) and not all(item.nodeid.endswith("@lava") for item in lava):
        message = "pytest-xdist did not group the Lava tests (pytest-dev/pytest-xdist#1386): install a pytest it supports (pyproject.toml, [dev])"
        print(message, file=sys.__stderr__)  # a worker's own error reaches the terminal as the controller's INTERNALERROR only
        raise pytest.UsageError(message)
    return result


def pytest_runtest_setup(item):
    """Tests marked `lava` run Lava through the worker: skip them where there is no Lava
    environment (a user who never built .venv-lava), fail on CI, where `make test` builds it."""
    if item.get_closest_marker("lava"):
        from spikeport.errors import UserError
        from spikeport.runtime.lava.sandbox import lava_python

        try:
            lava_python()
        except UserError as e:
            if os.environ.get("CI") == "true":
                pytest.fail(f"no Lava environment on CI: {e}")
            pytest.skip(str(e))


@pytest.fixture
def tiny_config(tmp_path) -> dict:
    """digits-cnn, shrunk so that an epoch takes well under a second."""
    return {
        "model": {"name": "spiking-cnn", "channels": [4, 8]},
        "data": {"name": "digits", "root": str(tmp_path / "data"), "timesteps": 2, "batch_size": 64},
        "train": {"epochs": 3, "optimizer": "adamw", "lr": 0.01, "seed": 3},
    }


@pytest.fixture
def write_config(tmp_path):
    def write(config: dict, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return path

    return write


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `spikeport ARGS...` in this process; return (exit code, stdout, stderr)."""
    from spikeport.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["spikeport", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def train_digits_run(root: Path) -> Path:
    """ROOT/run: a digits-cnn (8/16 channels, T=4) trained for 2 epochs and exported (RUN/export)."""
    from spikeport.config import config_from_dict
    from spikeport.export.exporter import export
    from spikeport.train import loop

    config = config_from_dict(
        {
            "model": {"name": "spiking-cnn", "channels": [8, 16]},
            "data": {"name": "digits", "root": str(root / "data"), "timesteps": 4, "batch_size": 64},
            "train": {"epochs": 2, "lr": 0.01, "seed": 1},
        }
    )
    loop.train(config, root / "run", device="cpu")
    export(root / "run")
    return root / "run"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A digits-cnn (8/16 channels, T=4) trained for 2 epochs and exported: RUN/export exists."""
    return train_digits_run(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def slayer_net(tmp_path_factory) -> Path:
    """lava-dl SLAYER's own export_hdf5 of a CUBA conv -> conv -> flatten -> dense network (no input
    layer; test_runtime_loihi._SLAYER_NETWORK), written once in the Lava environment and only read
    by the tests that use it. Its weights come from torch.manual_seed(0); the spikes (2 samples of
    12 steps of 2x8x8, default_rng(3), as those tests draw them) only give the neurons their shapes."""
    import numpy as np

    from lava_env import in_lava
    from test_runtime_loihi import _SLAYER_NETWORK

    x = (np.random.default_rng(3).random((2, 12, 2, 8, 8)) < 0.4).astype(np.float32)
    path = tmp_path_factory.mktemp("slayer") / "slayer.net"
    in_lava(_SLAYER_NETWORK, path=np.array(str(path)), spikes=x)
    return path


def closest_to_threshold(lif, current, step: int) -> float:
    """How close a LIF layer's membrane before the reset, h = beta u[t-1] + x[t], came to its
    threshold at `step`, over the layer's neurons, for one sample's input current [T, ...]: a
    neuron that close can fire in one runtime and not in another whose currents differ in the last
    bits (a tie)."""
    import torch

    from spikeport.train.neuron import lif_multistep

    with torch.no_grad():
        _, after_reset = lif_multistep(current, lif.beta, lif.threshold)
    before = after_reset[step - 1] * lif.beta if step else torch.zeros_like(current[0])
    return float((before + current[step] - lif.threshold).abs().min())


def load_trained_model(run: Path):
    """The torch model of a run folder, in eval mode."""
    from spikeport.train.checkpoint import checkpoint_config, load_checkpoint, load_weights
    from spikeport.train.loop import model_for

    state = load_checkpoint(run / "checkpoint.pt")
    model = model_for(checkpoint_config(state, run))
    load_weights(model, state, run)
    return model.eval()


@pytest.fixture
def interrupt_after_first_epoch(monkeypatch):
    """Make `loop.train` stop right after its first checkpoint, as if the process were stopped
    there (KeyboardInterrupt); call the returned function to let training run normally again."""
    from spikeport.train import loop

    real_save = loop.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    return lambda: monkeypatch.setattr(loop, "save_checkpoint", real_save)
