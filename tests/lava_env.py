"""The Lava side of the tests that compare with Lava: Lava lives in its own environment (the
Lava worker's, runtime/lava/worker/requirements.txt), so what a test asks of Lava itself runs
there, in a process, and only arrays cross back (npz), as in spikeport's own worker.

    in_lava(source, **arrays) -> dict of arrays   # `source` fills the dict `result`
    patched_worker(monkeypatch, tmp_path, source)  # the worker, with `source` run first in it

Tests that use them are marked `lava` (tests/conftest.py skips them without a Lava environment).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import numpy as np

from spikeport.runtime.lava.sandbox import ENVIRONMENT_VARIABLE, lava_python

_PRELUDE = """
import sys
import numpy as np
with np.load(sys.argv[1], allow_pickle=False) as _stored:
    globals().update({_k: _stored[_k] for _k in _stored.files})
result = {}
"""
_EPILOGUE = """
np.savez(sys.argv[2], **{_k: np.asarray(_v) for _k, _v in result.items()})
"""


def in_lava(source: str, timeout_s: float = 300, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    """Run `source` in the Lava environment's Python with `arrays` as its globals; the arrays it
    puts in the dict `result`. A failure there fails the test with Lava's traceback."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="spikeport-test-lava-") as folder:
        inputs, outputs = Path(folder) / "in.npz", Path(folder) / "out.npz"
        np.savez(inputs, **arrays)
        script = _PRELUDE + textwrap.dedent(source) + _EPILOGUE
        # In a process group of its own, killed whole at the end: Lava forks a process per Lava
        # process, and one that raised makes Lava 0.10 hang, so a timeout must not orphan them.
        side = subprocess.Popen([str(lava_python()), "-E", "-s", "-c", script, str(inputs), str(outputs)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=folder, process_group=0)
        try:
            _, stderr = side.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the Lava side did not finish in {timeout_s:g} s") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(side.pid, signal.SIGKILL)
            side.wait()
        if side.returncode != 0:
            raise AssertionError(f"the Lava side failed (exit {side.returncode}):\n{stderr[-4000:]}")
        with np.load(outputs, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}


def patched_worker(monkeypatch, tmp_path: Path, source: str) -> Path:
    """Make spikeport start a Lava worker that first runs `source` (say, a Lava model patched to
    fail, or the worker's network.simulate replaced), through SPIKEPORT_LAVA_PYTHON; returns the
    wrapper. The worker is the real one (runtime/lava/worker/main.py) otherwise."""
    wrapper_main = tmp_path / "patched_worker.py"
    wrapper_main.write_text(
        "import os, runpy, sys\n"
        "worker, folder = sys.argv[-2], sys.argv[-1]\n"
        "sys.argv = [worker, folder]\n"
        "sys.path.insert(0, os.path.dirname(worker))\n"
        + textwrap.dedent(source) + "\n"
        "runpy.run_path(worker, run_name='__main__')\n"
    )
    wrapper = tmp_path / "lava-python"
    wrapper.write_text(f'#!/bin/sh\nexec "{lava_python()}" -E -s "{wrapper_main}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(wrapper))
    return wrapper


def python_without_lava(tmp_path: Path) -> Path:
    """A Python 3.10 environment without Lava (a venv of the Lava environment's base interpreter)."""
    base = subprocess.run([str(lava_python()), "-c", "import sys; print(sys._base_executable)"], capture_output=True, text=True, check=True)
    subprocess.run([base.stdout.strip(), "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    return tmp_path / "bare" / "bin" / "python"

