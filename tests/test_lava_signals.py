"""SIGTERM, SIGHUP or SIGKILL to `spikeport simulate --backend lava` (a real process) ends every Lava
process and releases their shared memory (issue 19). SIGKILL reaches no handler of spikeport's: the
worker sees its parent gone and ends its own group. Lava runs in the Lava worker, a separate interpreter
leading a process group of its own (runtime/lava/sandbox.py), and Lava forks its processes from it,
so a signal to spikeport alone reaches none of them; without the sandbox's handling they would
outlive spikeport, orphaned, with their /dev/shm segments. Ctrl-C to the terminal's group is KeyboardInterrupt, handled as any error.

Only this run's processes and segments are looked at (the group Lava runs in, the segments its
members map), so other programs on the machine do not disturb the check."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from spikeport.runtime.lava.sandbox import WORKER

pytestmark = pytest.mark.lava


def members(group: int) -> list[int]:
    found = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == group:
                found.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return found


def groups_below(process: psutil.Process) -> set[int]:
    """The process groups of `process`'s descendants other than its own; one that ends between
    the listing and the look-up (a short-lived child) is skipped, not an error."""
    groups = set()
    for child in process.children(recursive=True):
        try:
            groups.add(os.getpgid(child.pid))
        except ProcessLookupError:
            pass
    return groups - {os.getpgid(process.pid)}


def end_all(process: subprocess.Popen) -> None:
    """Kill `process` and every descendant still up, and reap it, so that a failed check here
    leaves nothing running for the tests after it (which assert that no process is left)."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        descendants = []  # it has ended: its children, if any, were handed to init
    for p in descendants:
        try:
            p.kill()
        except psutil.Error:
            pass
    process.kill()
    process.wait(30)


def cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []  # gone meanwhile


def mapped_segments(group: int) -> set[Path]:
    """The /dev/shm segments the members of `group` map, by name."""
    found = set()
    for pid in members(group):
        try:
            lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
        except OSError:
            continue
        found |= {Path(line.split()[-1]) for line in lines if "/dev/shm/" in line and not line.endswith("(deleted)")}
    return found


@pytest.mark.parametrize("ending", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=["SIGTERM", "SIGHUP", "SIGKILL"])
def test_a_signal_to_spikeport_ends_every_lava_process_and_frees_its_shared_memory(trained_run, tmp_path, ending):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("sim", "report"))
    process = subprocess.Popen(
        [sys.executable, "-m", "spikeport.cli", "simulate", run, "--backend", "lava", "--samples", "300"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: ending == signal.SIGKILL or signal.signal(ending, signal.SIG_DFL),  # as from a terminal, even under nohup
    )
    spikeport = psutil.Process(process.pid)
    try:
        deadline = time.monotonic() + 180
        group, segments = None, set()
        while not segments:  # Lava is running: its processes are up and their channels mapped
            assert process.poll() is None, f"exited with {process.returncode} before the signal"
            assert time.monotonic() < deadline, "Lava did not start"
            groups = groups_below(spikeport)
            if groups:
                (group,) = groups
                segments = mapped_segments(group)
            time.sleep(0.05)
        # the worker (the Lava environment's Python running worker/main.py) leads the group, and with
        # the channels mapped at least one fork of it (Lava forks its runtime's processes) is up beside
        # it: a signal that reached the worker alone would leave that one behind. (How many more are
        # started by then varies with the machine's load.)
        worker = cmdline(group)
        assert str(WORKER) in worker and str(sys.executable) not in worker
        assert [pid for pid in members(group) if pid != group and cmdline(pid) == worker]

        process.send_signal(ending)
        assert process.wait(60) == -ending, "spikeport ends by the signal, as it would have without Lava"
        deadline = time.monotonic() + 10  # SIGKILL: the worker notices within its poll (worker/main.py), then ends its group
        while members(group) and time.monotonic() < deadline:  # killed ones may still be reaped by init
            time.sleep(0.05)
        assert members(group) == [], "no Lava process outlives spikeport"
        assert [s for s in segments if s.exists()] == [], "no shared-memory segment of the run is left"
    except BaseException:
        end_all(process)
        raise
    assert not (run / "sim").exists()
