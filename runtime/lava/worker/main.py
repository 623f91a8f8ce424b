"""The Lava worker's entry point: `python main.py REQUEST_FOLDER`, run by the Lava environment's
interpreter in a process group of its own (runtime/lava/sandbox.py starts it and kills the group).

It reads the request (exchange.py), runs it (network.py), writes the result, and reports how the
run ended in status.json. A failure becomes one line in the status, not a traceback: the core
turns it into spikeport's error message. The checks of the environment come first, before Lava
is imported, so a wrong interpreter or a missing Lava is named as such. lava-dl's netx is only
looked for there (importing it, torch included, takes seconds); a netx run imports it, and a netx
that is there but fails to import is named as such too.

Lava 0.10 hangs when a process model raises: the model tells its runtime service and waits for
its ports to close, while the service waits for the replies of the other models, which wait for
data from the failed one. So each phase of every PyLoihiProcessModel (the processes Lava forks
from here inherit the patch) reports its exception in the status itself; the core, which watches
for it, then kills the run at once instead of waiting for the timeout.
"""

import functools
import importlib
import importlib.util
import os
import signal
import sys
import threading
import time
from pathlib import Path

import exchange
import group

LAVA_PYTHON = (3, 10)  # lava-nc 0.10 supports Python 3.10 only
PARENT_POLL_S = 0.2  # how often the worker looks whether spikeport is still there
NETX = "lava.lib.dl.netx"  # lava-dl's netx, which reads netx files (network.simulate_netx)


def main(folder: Path) -> int:
    threading.Thread(target=_end_with_spikeport, args=(os.getppid(),), daemon=True).start()
    if sys.version_info[:2] != LAVA_PYTHON:
        return _fail(folder, f"the Lava environment's Python is {sys.version.split()[0]}; Lava 0.10 needs Python 3.10")
    try:
        import numpy  # noqa: F401
        import lava.magma.core.model.py.model  # noqa: F401 - the worker needs it anyway (0.15 s)
        _find(NETX)  # found, not imported: importing netx takes 2.3-3.4 s, and only a netx run needs it
    except ImportError as e:
        return _fail(folder, f"the Lava environment ({sys.executable}) lacks Lava: {_describe(e)}")
    _report_model_errors(folder)
    import network

    try:
        request = exchange.read_request(folder)
        if request["run"] == "network":
            recordings = network.simulate(request["stages"], request["drives"], request["fixed_pt"])
            result = {f"{i}/{name}": array for i, stage in enumerate(recordings) for name, array in stage.items()}
        else:
            try:
                importlib.import_module(NETX)
            except ImportError as e:  # there, but broken (say, a library of torch's missing)
                return _fail(folder, f"the Lava environment ({sys.executable}) cannot import {NETX}: {_describe(e)}")
            spikes, voltage = network.simulate_netx(request["path"], request["drive"], request["window"])
            result = {**{f"spikes/{i}": s for i, s in enumerate(spikes)}, "voltage": voltage}
        exchange.write_result(folder, result)
    except BaseException as e:  # noqa: BLE001 - every failure is reported, in one line
        return _fail(folder, _describe(e))
    exchange.write_status(folder, ok=True)
    return 0


def _end_with_spikeport(parent: int) -> None:
    """SIGKILL to spikeport reaches no handler, so its sandbox cannot stop this run. The worker
    (which leads the run's process group) sees its parent change, then releases the shared memory
    the group maps and kills the group, itself included: no Lava process outlives spikeport."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    group.release(group.group_segments(os.getpgrp()))
    os.killpg(0, signal.SIGKILL)


def _find(module: str) -> None:
    """Raise ModuleNotFoundError, as `import module` would, unless `module` is installed; imports
    only its parent packages."""
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)


def _fail(folder: Path, error: str) -> int:
    exchange.write_status(folder, ok=False, error=error)
    return 1


def _describe(e: BaseException) -> str:
    """The exception in one line: its type and message."""
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"


def _report_model_errors(folder: Path) -> None:
    """Make every Lava process model report its exception in the status (module docstring)."""
    from lava.magma.core.model.py.model import PyLoihiProcessModel

    def reporting(phase):
        @functools.wraps(phase)
        def run_phase(model):
            try:
                return phase(model)
            except Exception as e:
                exchange.write_status(folder, ok=False, error=f"{type(model).__name__} failed in step {model.time_step}: {_describe(e)}")
                raise

        return run_phase

    for phase in ("_spike", "_pre_mgmt", "_lrn", "_post_mgmt", "_host"):
        setattr(PyLoihiProcessModel, phase, reporting(getattr(PyLoihiProcessModel, phase)))


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
