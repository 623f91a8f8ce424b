"""What a bad-input case costs a user: `spikeport ARGS` in a real process, with its exit status, its
stderr, its CPU seconds, its wall seconds, its peak resident memory and the heavy libraries it
imported before it answered.

Used by tests/test_bad_inputs.py (each case in issue 19's budget, BUDGET_CPU_S and BUDGET_BYTES,
except the cases of NEEDS_TORCH, whose command imports torch before it can decide: torch's import
alone is over the budget) and tests/test_bounded_readers.py, and run as a script for the tables in
docs/reliability.md:

    OMP_NUM_THREADS=1 python tests/bad_inputs/measure.py [--only NAME ...] --out FILE.json

The command runs as the grandchild of the test, forked from a small launcher: Linux carries a
process's peak memory across fork and exec, so a child of the test process (torch loaded) would
report at least the test's own size. The launcher reports the command's getrusage (ru_maxrss, user
and system CPU time); CPU time is what the budget is asserted on, since the wall time of this
project's shared 2-core machine grows with whatever else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HEAVY = ("torch", "onnxruntime", "onnx", "h5py", "nir", "matplotlib", "scipy", "sklearn", "tonic", "librosa", "torchvision", "lava")

# issue 19's goal for a refusal, per case (tests/test_bad_inputs.py)
BUDGET_CPU_S = 5.0
BUDGET_BYTES = 500 * 10**6
HANG_S = 120  # wall seconds after which a command is taken as hung (a loaded machine is slow, not stuck)

NEEDS_TORCH: dict[str, tuple[str, ...]] = {
    # spikeport/cli.py `_checked_model` -> train/models.py build_model, whose module imports torch:
    # model options are checked against the builders' signatures (config.check_fits bounds the
    # sizes without torch first)
    "model options are checked against the model builders (train/models.py imports torch)": (
        "config-channels-wrong-type", "config-negative-channels", "config-unknown-model-key",
    ),
    # train/loop.py (torch, the data loaders) holds check_run_folder, the lock and the data roots
    "run folders, data roots and caches are checked in train/loop.py and train/datasets.py, which import torch": (
        "path-train-out-under-a-file", "path-train-out-dangling-symlink", "pt-torchscript-resume",
        "run-partial-with-a-foreign-file", "run-locked-by-another-training", "run-locked-by-another-training-resume",
        "run-resume-partial-other-config", "run-resume-empty-folder", "run-checkpoint-without-resume",
        "data-root-is-a-file", "data-root-dangling-symlink", "data-cache-truncated", "data-cache-random-bytes",
        "data-cache-missing-split", "data-cache-missing-images", "data-cache-split-out-of-range",
        "data-cache-fewer-labels", "data-cache-float-split", "path-data-build-into-a-file",
    ),
    # simulate/report RUN without --input: runtime/simulate.py load_inputs loads the test set
    # (torch, the data loaders) before the runner's checks of the model files
    "simulate RUN loads its test set (torch) before the ONNX file is opened, the netx file read and the manifest's files checked": (
        "onnx-truncated", "onnx-random", "manifest-missing-file", "manifest-absurd-timesteps", "netx-external-storage-report",
    ),
    # a NIR file that reads is run for one step on zeros (runtime/reference.py, torch) to check it
    "a NIR graph is checked by running one step of it in the reference runtime (torch)": (
        "nir-cycle", "nir-nan-weight", "nir-inf-weight", "nir-nan-threshold", "nir-negative-tau", "nir-nan-dt",
        "input-wrong-shape-bare-nir",
    ),
}
TORCH_CASES = {name: reason for reason, names in NEEDS_TORCH.items() for name in names}
LAUNCHER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
sys.exit(code)
"""

# `spikeport ARGS` as the installed script runs it (spikeport.cli.main), writing at exit which of
# HEAVY it had imported
COMMAND = """
import atexit, sys
report, heavy = sys.argv[1], {heavy!r}
atexit.register(lambda: open(report, "w").write(" ".join(m for m in heavy if m in sys.modules)))
sys.argv = ["spikeport", *sys.argv[2:]]
from spikeport.cli import main
main()
""".format(heavy=HEAVY)


@dataclass
class Measured:
    code: int
    stderr: str
    cpu_s: float  # user + system of the command
    wall_s: float
    peak_bytes: int  # the command's ru_maxrss
    imported: list[str]  # which of HEAVY it imported


def run_spikeport(args: list, cwd: Path, timeout: float = 120) -> Measured:
    """`spikeport ARGS` in `cwd`, measured; a command still running after `timeout` s is killed
    (with its process group) and raises TimeoutError."""
    with tempfile.TemporaryDirectory(prefix="spikeport-measure-") as scratch:
        usage_file, imports_file = Path(scratch) / "usage", Path(scratch) / "imports"
        command = [sys.executable, "-c", LAUNCHER, usage_file, sys.executable, "-c", COMMAND, imports_file, *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        started = time.monotonic()
        process = subprocess.Popen(list(map(str, command)), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise TimeoutError(f"spikeport {' '.join(map(str, args))}: still running after {timeout:.0f} s") from None
        wall = time.monotonic() - started
        peak_kib, cpu = usage_file.read_text().split()
        imported = imports_file.read_text().split() if imports_file.exists() else []
    return Measured(process.returncode, err.decode(), float(cpu), wall, int(peak_kib) * 1024, imported)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from bad_inputs.corpus import CASES
    from conftest import train_digits_run  # the run the tests damage, trained as they train it

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="case names (default: every case)")
    parser.add_argument("--run", type=Path, help="a trained and exported run to damage (default: train one, as tests/conftest.py does)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    run = args.run or train_digits_run(root)
    load = [round(x, 2) for x in os.getloadavg()]
    results = {}
    for case in CASES:
        if args.only and case.name not in args.only:
            continue
        ws = root / case.name
        ws.mkdir()
        measured = run_spikeport(case.build(ws, run), ws)
        results[case.name] = {**asdict(measured), "stderr": measured.stderr.strip()}
        print(f"{case.name:45s} exit {measured.code}  cpu {measured.cpu_s:5.2f} s  wall {measured.wall_s:5.2f} s  "
              f"{measured.peak_bytes / 2**20:6.0f} MiB  {' '.join(measured.imported)}", flush=True)
    args.out.write_text(json.dumps({
        "command": " ".join(["python", "tests/bad_inputs/measure.py", *sys.argv[1:]]),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "load_average_before": load,
                    "load_average_after": [round(x, 2) for x in os.getloadavg()], "OMP_NUM_THREADS": "1"},
        "cases": results,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
