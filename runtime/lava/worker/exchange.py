"""The files that cross the worker boundary, and nothing else crosses it.

A request is a folder. The core writes `request.json` (what to run: plain JSON in which every
array is a reference {"array": key}) and `arrays.npz` (those arrays), then starts the worker on
the folder. The worker writes `result.npz` (its recordings, by name) and, last, `status.json`:
{"ok": true}, or {"ok": false, "error": "one line"}. Whichever process of the run reports first
wins (a Lava process model that raised, or the worker itself), and the file appears whole or not
at all, so the core may read it as soon as it exists. No pickle anywhere: npz is read with
allow_pickle=False, JSON is data.

The standard library and numpy only: the core (runtime/lava/sandbox.py) and the worker (main.py)
import it. numpy is imported by the functions that move arrays, so that a worker in an environment
without it can still report that in its status.
"""

from __future__ import annotations  # the annotations name np, imported where arrays move

import json
import os
from pathlib import Path

REQUEST = "request.json"
ARRAYS = "arrays.npz"
RESULT = "result.npz"
STATUS = "status.json"


def write_request(folder: Path, request: dict) -> None:
    """`request` (dicts, lists, numbers, strings and numpy arrays) as request.json + arrays.npz."""
    import numpy as np

    arrays: dict[str, np.ndarray] = {}

    def encode(value):
        if isinstance(value, np.ndarray):
            key = f"a{len(arrays)}"
            arrays[key] = value
            return {"array": key}
        if isinstance(value, dict):
            return {str(k): encode(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value

    text = json.dumps(encode(request))
    np.savez(Path(folder) / ARRAYS, **arrays)
    (Path(folder) / REQUEST).write_text(text)


def read_request(folder: Path) -> dict:
    """What write_request wrote, with the arrays back in place."""
    import numpy as np

    with np.load(Path(folder) / ARRAYS, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}

    def decode(value):
        if isinstance(value, dict):
            return arrays[value["array"]] if set(value) == {"array"} else {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return decode(json.loads((Path(folder) / REQUEST).read_text()))


def write_result(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """The worker's recordings, by name; written before the status that announces them."""
    import numpy as np

    partial = Path(folder) / f".{RESULT}.partial.npz"
    np.savez(partial, **arrays)
    os.replace(partial, Path(folder) / RESULT)


def read_result(folder: Path) -> dict[str, np.ndarray]:
    import numpy as np

    with np.load(Path(folder) / RESULT, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}


def write_status(folder: Path, ok: bool, error: str = "") -> bool:
    """Report how the run ended, unless a process of the run already did; True if this one did.

    The status is written to a file of its own, then linked into place: a link fails when the name
    exists, so the first report stays, and a reader never sees half of one.
    """
    own = Path(folder) / f".status.{os.getpid()}"
    own.write_text(json.dumps({"ok": True} if ok else {"ok": False, "error": error}))
    try:
        os.link(own, Path(folder) / STATUS)
        return True
    except FileExistsError:
        return False
    finally:
        own.unlink()


def read_status(folder: Path) -> dict | None:
    """The run's status, or None while it has none."""
    try:
        return json.loads((Path(folder) / STATUS).read_text())
    except FileNotFoundError:
        return None
