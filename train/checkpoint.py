"""Checkpoints: tensors and plain config data only, so `torch.load(weights_only=True)` reads them.

A checkpoint holds everything to continue training exactly (model, optimizer, schedule, AMP
scaler, epochs done, the metrics so far) and everything to rebuild the model (the resolved config).
It never holds pickled Python objects, so loading one cannot run code.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from spikeport.config import Config, config_from_dict
from spikeport.errors import UserError
from spikeport.io import atomic_open

FORMAT = "spikeport-checkpoint-1"


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_open(path, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by `save_checkpoint`; refuse anything else in one line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint there")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise UserError(f"{path}: not a readable checkpoint (not a torch zip archive)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).splitlines()[0] if "weights_only" not in str(e) else "it holds Python objects, not only tensors and plain data"
        raise UserError(f"{path}: refused to load: {reason}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise UserError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not a spikeport checkpoint (expected format {FORMAT})")
    return state


def checkpoint_config(state: dict, path: str | Path) -> Config:
    return config_from_dict(state["config"], source=f"{path} (config)")


def load_weights(model: nn.Module, state: dict, path: str | Path) -> None:
    """Load the checkpoint's weights into `model`, naming the mismatch if they are another model's."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        detail = " ".join(str(e).split("\n\t")[1:2]).strip() or "parameter names or shapes differ"
        raise UserError(f"{path}: the checkpoint holds another model's weights ({detail})") from None
