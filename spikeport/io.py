"""File helpers: atomic writes (every artifact appears whole or not at all) and checked reads.

Each writer writes to a temporary file in the destination folder and renames it into place, so a
killed process never leaves a half-written file that looks complete, and an older file of the same
name stays intact until the new one is ready. `check_creatable` refuses an output folder that
cannot be made before the work that would fill it starts; `read_text` turns an unreadable input
file into one line naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from spikeport.errors import UserError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it to `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_creatable(folder: str | os.PathLike) -> None:
    """Refuse, before any work, an output folder that cannot be created: its nearest existing
    ancestor must be a writable folder (not a regular file, not read-only)."""
    folder = Path(folder)
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    if not existing.is_dir():
        raise UserError(f"{existing}: not a folder, so {folder} cannot be created")
    if not os.access(existing, os.W_OK):
        raise UserError(f"{existing}: not writable, so {folder} cannot be written")


def read_text(path: str | os.PathLike) -> str:
    """A text file's contents; a missing, unreadable or binary file is a one-line UserError naming it."""
    path = Path(path)
    try:
        return path.read_text()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
