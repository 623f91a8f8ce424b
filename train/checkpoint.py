"""Checkpoints: tensors and plain config data only, read through a gate before torch sees them.

A checkpoint holds everything to continue training exactly (model, optimizer, schedule, AMP
scaler, epochs done, the metrics so far) and everything to rebuild the model (the resolved config).
It never holds pickled Python objects, so loading one cannot run code.

`torch.load(weights_only=True)` alone is not a safe reader: up to torch 2.5 it hands a TorchScript
archive to `torch.jit.load`, which runs the archive's code (CVE-2025-32434). So `check_archive`
reads the zip directory and the pickle's opcodes itself, with the standard library only, and
refuses anything that is not a plain tensor checkpoint before torch reads a byte of it: members
other than those `torch.save` writes, pickle opcodes that build arbitrary objects, and globals
other than the few that rebuild tensors. torch's restricted unpickler then runs as a second wall.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from spikeport.config import Config, config_from_dict
from spikeport.errors import UserError
from spikeport.io import atomic_open

if TYPE_CHECKING:
    from torch import nn

FORMAT = "spikeport-checkpoint-1"


def save_checkpoint(path: Path, state: dict) -> None:
    import torch

    with atomic_open(path, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)


# What torch.save writes into its zip archive, under one top-level folder. A TorchScript archive
# adds code/ and constants.pkl; anything outside this list is refused.
_MEMBERS = re.compile(r"data\.pkl|byteorder|version|\.format_version|\.storage_alignment|\.data/version|\.data/serialization_id|data/\d+")
# The only globals a checkpoint of tensors and plain data needs: state dicts and tensor storages.
_STORAGES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
_GLOBALS = frozenset(
    {"collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter"}
    | {f"torch {kind}Storage" for kind in _STORAGES}
)
# Opcodes that build objects of a class named in the pickle without REDUCE; a tensor pickle has none.
_OBJECT_OPCODES = frozenset({"INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "PERSID"})
_STRING_OPCODES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})
_MAX_PICKLE_BYTES = 64 * 2**20  # the pickle holds structure only; tensor data lives in data/N


def check_archive(path: Path) -> None:
    """Refuse `path` unless it is a plain tensor checkpoint as torch.save writes one.

    Reads only the zip directory and the pickle's opcodes (never executes the pickle), so it holds
    on every torch version, also those whose `weights_only` loader runs TorchScript archives.
    """

    def refuse(reason: str) -> UserError:
        return UserError(f"{path}: refused to load: {reason}")

    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise UserError(f"{path}: not a readable checkpoint (not a torch zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            folders = {m.filename.partition("/")[0] for m in members}
            if len(folders) != 1:
                raise refuse(f"not a tensor checkpoint (members in {len(folders)} top-level folders)")
            (folder,) = folders
            for member in members:
                name = member.filename.partition("/")[2]
                if not _MEMBERS.fullmatch(name):
                    kind = " (a TorchScript archive, whose code torch would run)" if name == "constants.pkl" or name.startswith("code/") else ""
                    raise refuse(f"not a plain tensor checkpoint: it holds {name!r}{kind}")
                if member.compress_type != zipfile.ZIP_STORED:
                    raise refuse(f"not written by torch.save ({name!r} is compressed)")
            try:
                pickled = archive.getinfo(f"{folder}/data.pkl")
            except KeyError:
                raise refuse("not a tensor checkpoint (no data.pkl)") from None
            if pickled.file_size > _MAX_PICKLE_BYTES:
                raise refuse(f"data.pkl is {pickled.file_size} bytes, more than a checkpoint's structure takes")
            _check_pickle(archive.read(pickled), refuse)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _check_pickle(data: bytes, refuse) -> None:
    """Walk the pickle's opcodes; every class or function it names must be in `_GLOBALS`."""
    strings: list[str] = []  # the strings pushed most recently, for STACK_GLOBAL
    try:
        for opcode, arg, _ in pickletools.genops(data):
            name = opcode.name
            if name in _OBJECT_OPCODES:
                raise refuse(f"it holds Python objects, not only tensors and plain data (opcode {name})")
            if name in ("GLOBAL", "STACK_GLOBAL"):
                if name == "STACK_GLOBAL":
                    if len(strings) < 2:
                        raise refuse("it holds Python objects, not only tensors and plain data (a computed global)")
                    arg = f"{strings[-2]} {strings[-1]}"
                if arg not in _GLOBALS:
                    raise refuse(f"it holds Python objects, not only tensors and plain data ({arg.replace(' ', '.')})")
            if name in _STRING_OPCODES:
                strings = [*strings[-1:], arg]
            elif name not in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                strings = []
    except ValueError as e:  # pickletools on a damaged stream
        raise refuse(f"its pickle is damaged ({e})") from None


def check_checkpoint(path: Path) -> None:
    """The checks that need no torch: the file is there and passes the gate. Commands run them
    before they import torch, so that a wrong path is answered at once."""
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint there")
    check_archive(path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by `save_checkpoint`; refuse anything else in one line."""
    path = Path(path)
    check_checkpoint(path)
    import torch  # after the gate: torch reads only what passed it

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
