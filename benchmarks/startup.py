"""Start-up time of the command line: how long a user waits for `--help` or for the one-line
refusal of a bad argument, against the baseline of starting Python itself (`python -c pass`).

Each command runs as a user runs it (the installed `spikeport` script, a fresh process each time,
output captured), `--runs` times alternated with the baseline, and the median is reported with
its ratio to the baseline's median. The goal (issue 20) is under GOAL_S seconds for each of these
commands: they need no torch, Lava, ONNX Runtime or matplotlib, which the commands import only
after their argument and file checks. The machine's load average is written beside the times,
since the machine may be shared, and so is each command's CPU time (user + system, from
getrusage of the children), which a loaded machine inflates far less than the wall time.

    python benchmarks/startup.py [--runs 7]   ->  benchmarks/results/startup.json
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spikeport.io import write_json

RESULTS = Path(__file__).parent / "results" / "startup.json"
GOAL_S = 1.5
SPIKEPORT = str(Path(sys.executable).parent / "spikeport")


def commands(scratch: Path) -> dict[str, tuple[list[str], int]]:
    """name -> (argv, the exit status it must end with): help, and bad arguments of each kind."""
    (scratch / "model.nir").write_bytes(b"\x89HDF\r\n")
    return {
        "spikeport --help": ([SPIKEPORT, "--help"], 0),
        "spikeport report --help": ([SPIKEPORT, "report", "--help"], 0),
        "spikeport --version": ([SPIKEPORT, "--version"], 0),
        "report: non-numeric --budget-ms": ([SPIKEPORT, "report", str(scratch), "--budget-ms", "abc"], 2),
        "report: mistyped profile name": ([SPIKEPORT, "report", str(scratch), "--profiles", "loihi9"], 2),
        "simulate: no such target": ([SPIKEPORT, "simulate", str(scratch / "nothing-here")], 2),
        "simulate: unknown backend": ([SPIKEPORT, "simulate", str(scratch), "--backend", "lava2"], 2),
        "train: a .nir instead of a config": ([SPIKEPORT, "train", str(scratch / "model.nir"), "--out", str(scratch / "run")], 2),
        "train: no such config": ([SPIKEPORT, "train", str(scratch / "missing.yaml"), "--out", str(scratch / "run")], 2),
        "export: no such run": ([SPIKEPORT, "export", str(scratch / "no-run")], 2),
        "data build: unknown dataset": ([SPIKEPORT, "data", "build", "cifar-1000", "--out", str(scratch / "data")], 2),
    }


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], status: int | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `argv`, checked to end with `status`."""
    cpu, started = _children_cpu_s(), time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    seconds, cpu = time.perf_counter() - started, _children_cpu_s() - cpu
    if status is not None and result.returncode != status:
        raise SystemExit(f"{' '.join(argv)}: exit {result.returncode}, expected {status}: {result.stderr.strip()}")
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    baseline_argv = [sys.executable, "-c", "pass"]
    with tempfile.TemporaryDirectory() as folder:
        cases = commands(Path(folder))
        for argv, status in cases.values():  # warm the file cache once, untimed
            timed(argv, status)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        baseline: list[tuple[float, float]] = []
        for _ in range(args.runs):
            baseline.append(timed(baseline_argv))
            for name, (argv, status) in cases.items():
                times[name].append(timed(argv, status))
    def median(runs: list[tuple[float, float]], i: int) -> float:
        return statistics.median(run[i] for run in runs)

    base = median(baseline, 0)
    results = {
        name: {"median_s": round(median(t, 0), 3), "ratio_to_baseline": round(median(t, 0) / base, 1),
               "under_goal": median(t, 0) < GOAL_S, "median_cpu_s": round(median(t, 1), 3), "runs_s": [round(x, 3) for x, _ in t]}
        for name, t in times.items()
    }
    write_json(RESULTS, {
        "what": "wall time of a fresh `spikeport` process until it exits (median of the runs), vs `python -c pass`",
        "goal_s": GOAL_S,
        "baseline": {"command": "python -c pass", "median_s": round(base, 3), "median_cpu_s": round(median(baseline, 1), 3),
                     "runs_s": [round(x, 3) for x, _ in baseline]},
        "commands": results,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_1min_before_after": [load_before, round(os.getloadavg()[0], 2)], "python": platform.python_version()},
        "command": f"python benchmarks/startup.py --runs {args.runs}",
    })
    width = max(map(len, results))
    print(f"{'python -c pass':<{width}}  {base:.3f} s")
    for name, r in results.items():
        print(f"{name:<{width}}  {r['median_s']:.3f} s  {r['ratio_to_baseline']:>5.1f}x baseline  cpu {r['median_cpu_s']:.3f} s  "
              f"{'ok' if r['under_goal'] else 'OVER GOAL'}")
    print(f"-> {RESULTS}")

if __name__ == "__main__":
    main()
