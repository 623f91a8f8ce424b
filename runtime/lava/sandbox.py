"""Run the Lava worker: find the Lava environment, hand it a request folder, and make sure that
nothing of the run outlives the call.

    run_worker(request, timeout_s) -> the worker's result arrays, by name

Lava needs Python 3.10, lava-nc 0.10 and lava-dl 0.6, which pin torch 2.3.1 and numpy 1, so it
lives in an environment of its own (worker/requirements.txt; `make lava-env` builds .venv-lava).
Its interpreter is, in this order: the environment variable SPIKEPORT_LAVA_PYTHON; the key
`lava_python` of ~/.config/spikeport/settings.yaml (or $XDG_CONFIG_HOME/spikeport/settings.yaml);
.venv-lava/bin/python beside spikeport's source (a checkout, or an editable install).

Only files cross (worker/exchange.py): the request's JSON and npz, the result's npz and the
status. The worker starts as `python -E -s worker/main.py FOLDER`: -E and -s keep the core's
PYTHONPATH and user site out of it, so nothing of this environment leaks into the other one.

Lifetime. Lava starts one OS process per Lava process; the worker leads a process group of its
own. This process waits for the status file, the worker's death or `timeout_s`, whichever comes
first, then kills the group and reaps its members (it is their subreaper meanwhile), so no process
of the run outlives the call, not even as a zombie. SIGTERM and SIGHUP to spikeport stop the run
the same way before they end spikeport (Ctrl-C raises KeyboardInterrupt, which does too); SIGKILL,
which spikeport cannot see, the worker notices itself and ends its group (worker/main.py). A status
with an error becomes a UserError that names it (the model, the step, the exception); a worker
that died without one becomes a WorkerCrashed with the tail of what it printed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from spikeport.errors import UserError, WorkerCrashed
from spikeport.progress import stage
from spikeport.runtime.lava.worker import exchange
from spikeport.runtime.lava.worker.group import group_segments, release

ENVIRONMENT_VARIABLE = "SPIKEPORT_LAVA_PYTHON"
SETTINGS_KEY = "lava_python"
WORKER = Path(__file__).parent / "worker" / "main.py"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # runtime/lava/ -> a checkout's root (site-packages/spikeport when installed)
CHECKOUT_ENVIRONMENT = SOURCE_ROOT / ".venv-lava" if (SOURCE_ROOT / "pyproject.toml").is_file() else None
REQUIREMENTS = Path(__file__).parent / "worker" / "requirements.txt"
SETUP_HINT = (f"create it with `make lava-env` in spikeport's checkout, or with `python3.10 -m venv ENV && ENV/bin/pip install -r "
              f"{REQUIREMENTS}` and set SPIKEPORT_LAVA_PYTHON=ENV/bin/python")
KILL_GRACE_S = 10  # to kill and reap a run's processes; they go in milliseconds
POLL_S = 0.02  # how often the status file is looked for
STDERR_TAIL_LINES = 8  # of a crashed worker's output, shown in its error
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # end spikeport, and so its Lava run (Ctrl-C raises KeyboardInterrupt)
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37


def settings_file() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "spikeport" / "settings.yaml"


def lava_python() -> Path:
    """The Lava environment's interpreter (module docstring), or a UserError saying how to make one."""
    if os.environ.get(ENVIRONMENT_VARIABLE):
        python, origin = Path(os.environ[ENVIRONMENT_VARIABLE]), ENVIRONMENT_VARIABLE
    elif (configured := _configured()) is not None:
        python, origin = configured, f"{SETTINGS_KEY} in {settings_file()}"
    elif CHECKOUT_ENVIRONMENT is not None:
        python, origin = CHECKOUT_ENVIRONMENT / "bin" / "python", None
    else:
        raise UserError(f"Lava is not set up: {ENVIRONMENT_VARIABLE} is not set and {settings_file()} names no {SETTINGS_KEY}; {SETUP_HINT}")
    if not os.access(python, os.X_OK) or python.is_dir():
        where = f"{origin} names {python}, which is not an executable" if origin else f"no Lava environment ({python} does not exist)"
        raise UserError(f"Lava is not set up: {where}; {SETUP_HINT}")
    return python


def _configured() -> Path | None:
    path = settings_file()
    if not path.is_file():
        return None
    try:
        settings = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"{path}: not readable as YAML ({' '.join(str(e).split())})") from None
    if not isinstance(settings, dict) or not isinstance(settings.get(SETTINGS_KEY, ""), str):
        raise UserError(f"{path}: {SETTINGS_KEY} must be a path to a python executable")
    return Path(settings[SETTINGS_KEY]).expanduser() if settings.get(SETTINGS_KEY) else None


def run_worker(request: dict, timeout_s: float) -> dict[str, np.ndarray]:
    """Run `request` (worker/main.py says what it holds) in the Lava worker; its result arrays.

    Raises UserError for an error the run reported or a timeout, WorkerCrashed for a worker that
    died without a word; in every case the Lava processes are gone when it returns.
    """
    python = lava_python()
    with tempfile.TemporaryDirectory(prefix="spikeport-lava-") as folder:
        folder = Path(folder)
        exchange.write_request(folder, request)
        log = folder / "worker.log"
        with _ended_by_signals(), stage("Lava session (Loihi2SimCfg, CPU, in the Lava worker)"), _subreaper(), open(log, "wb") as output:
            worker = subprocess.Popen([str(python), "-E", "-s", str(WORKER), str(folder)], stdin=subprocess.DEVNULL, stdout=output,
                                      stderr=subprocess.STDOUT, process_group=0, close_fds=True)
            status = None
            try:
                status = _wait(worker, folder, timeout_s)
            finally:
                with _signals_blocked():  # a second signal must not cut the clean-up short
                    _stop(worker, grace_s=5 if isinstance(status, dict) and status["ok"] else 0)
            _raise_unless_ok(status, timeout_s, python, worker.returncode, log)  # in the block: the stage's line only for a run that worked
        return exchange.read_result(folder)


def _raise_unless_ok(status: dict | str | None, timeout_s: float, python: Path, exit_code: int, log: Path) -> None:
    if status is None:
        raise UserError(f"Lava run failed: timed out after {timeout_s:g} s; the Lava processes were killed")
    if status == "died":
        raise WorkerCrashed(f"Lava run failed: the Lava worker ({python}) died with exit code {exit_code}{_tail(log)}")
    if not status["ok"]:
        hint = f"; {SETUP_HINT}" if status["error"].startswith("the Lava environment") else ""
        raise UserError(f"Lava run failed: {status['error']}{hint}")


def _wait(worker: subprocess.Popen, folder: Path, timeout_s: float) -> dict | str | None:
    """The run's status once it has one; "died" for a worker that exited without; None at the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = exchange.read_status(folder)
        if status is not None:
            return status
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=POLL_S)
            return exchange.read_status(folder) or "died"
    return None


def _tail(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-STDERR_TAIL_LINES:]
    return ("; its last output: " + " | ".join(" ".join(line.split()) for line in lines)) if lines else "; it printed nothing"


class _Ended(BaseException):
    """SIGTERM or SIGHUP reached spikeport during a Lava run (raised by `_ended_by_signals`)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _ended_by_signals():
    """While the block runs, SIGTERM and SIGHUP raise `_Ended`, so the block's `finally` stops the
    Lava processes; the signal is then delivered again to the handler there was before (by default
    it ends spikeport, as it would have). A signal that was ignored (nohup) stays ignored; outside
    the main thread, where Python takes no signals, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def end(signum, frame):
        raise _Ended(signum)

    previous = {s: signal.getsignal(s) for s in ENDING_SIGNALS if signal.getsignal(s) != signal.SIG_IGN}
    restore = lambda: [signal.signal(s, h if h is not None else signal.SIG_DFL) for s, h in previous.items()]  # noqa: E731
    for s in previous:
        signal.signal(s, end)
    try:
        yield
    except _Ended as e:
        restore()
        signal.raise_signal(e.signum)
        raise SystemExit(128 + e.signum) from None  # the previous handler returned: end anyway
    finally:
        restore()


@contextlib.contextmanager
def _signals_blocked():
    """Hold SIGTERM and SIGHUP back for the block (main thread): they arrive when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, ENDING_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, ENDING_SIGNALS)


@contextlib.contextmanager
def _subreaper():
    """Make this process the subreaper of its descendants while the block runs, then restore."""
    libc = ctypes.CDLL(None, use_errno=True)
    before = ctypes.c_int(0)
    libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(before), 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, before.value, 0, 0, 0)


def _stop(worker: subprocess.Popen, grace_s: float) -> None:
    """Give the worker `grace_s` to exit by itself, then kill its process group (Lava's processes),
    reap every member and release the shared memory they held.

    The group is killed with killpg until it has no member left: one signal reaches every member
    at once, including a process forked at that moment, which a list of processes taken before
    the kill would miss (under load Lava may still be forking its runtime when a timeout strikes).
    Killed members are reaped here, as their subreaper (see `_subreaper`).

    The segments of Lava's channels (worker/group.py) are not unlinked by a killed run, nor by the
    worker's resource tracker, a member of the group, killed with it. The group is stopped
    (SIGSTOP) first, so the segments its members map can be listed from /proc; after the kill they
    are unlinked.
    """
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGSTOP)
    segments = group_segments(worker.pid)
    worker.kill()
    worker.wait()
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            break  # no member left, not even a zombie
        _reap_group(worker.pid)
        time.sleep(0.01)
    release(segments)


def _reap_group(group: int) -> None:
    """Collect the exit status of every dead member of `group` that is our child by now."""
    while True:
        try:
            pid, _ = os.waitpid(-group, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
