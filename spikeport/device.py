"""Which torch device a command runs on: `--device auto | cpu | cuda`, checked in one place for
training, simulation and reports."""

from __future__ import annotations

import torch

from spikeport.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device: must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)
