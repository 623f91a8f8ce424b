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
