"""A Lava run that raises, seen from the command line: `spikeport simulate --backend lava` returns
promptly with exit 2 and one line, writes nothing, and leaves no process or shared memory behind.
(run_lava's own failure, crash and timeout tests: tests/test_lava_worker.py; a model hung inside a
Lava process: tests/test_runtime_lava.py.)"""

from __future__ import annotations

import shutil
import time

import psutil
import pytest

from lava_env import patched_worker
from spikeport.runtime.lava.worker.group import SHARED_MEMORY

pytestmark = pytest.mark.lava


def test_a_failing_lava_run_is_one_line_and_leaves_no_process(cli, trained_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("sim", "report"))

    patched_worker(monkeypatch, tmp_path, """
        import lava.proc.lif.models as lif_models
        def failing_run_spk(self):
            raise ValueError("provoked failure")
        lif_models.PyLifResetModelFloat.run_spk = failing_run_spk  # Lava's processes fork from the worker: they inherit this
    """)
    before = {p.name for p in SHARED_MEMORY.glob("psm_*")}
    start = time.time()
    code, _, err = cli("simulate", run, "--backend", "lava", "--samples", "2")
    assert time.time() - start < 60
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "failed in step 1: ValueError: provoked failure" in lines[0], err
    assert not (run / "sim").exists()
    assert psutil.Process().children(recursive=True) == []
    assert {p.name for p in SHARED_MEMORY.glob("psm_*")} <= before
