"""The long fuzzing campaign: every reader property of tests/fuzzing/readers.py with many examples.

    OMP_NUM_THREADS=1 .venv/bin/python tests/fuzzing/campaign.py --examples 5000 --out benchmarks/results/fuzz_campaign.json

Writes, per reader, how many inputs were executed, how long it took, and each failure hypothesis
found (its exception and the shrunk input's size); docs/reliability.md records a run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `fuzzing.readers`
from fuzzing.readers import properties, seed_files  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[2])


def campaign(reader: str, strategy, prop, examples: int) -> dict:
    executions = 0

    def counted(content: bytes) -> None:
        nonlocal executions
        executions += 1
        prop(content)

    test = settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))(given(strategy)(counted))
    started = time.perf_counter()
    failures = []
    try:
        test()
    except Exception as e:  # noqa: BLE001 - any failure of the property is the finding to record
        for error in getattr(e, "exceptions", [e]):  # hypothesis raises a group when it found several
            frames = traceback.extract_tb(error.__traceback__)
            where = next((f for f in reversed(frames) if f.filename.startswith(ROOT) and "/.venv/" not in f.filename), frames[-1])
            failures.append({"exception": f"{type(error).__name__}: {_first_line(error)}", "raised_at": f"{where.filename}:{where.lineno}"})
    seconds = round(time.perf_counter() - started, 1)
    return {"reader": reader, "examples": examples, "executions": executions, "seconds": seconds, "failures": failures}


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0][:300] if str(e) else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="hypothesis max_examples per reader")
    parser.add_argument("--readers", nargs="*", default=["nir", "netx", "manifest", "profile", "config", "npz"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fuzz_campaign.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        readers = properties(seed_files(Path(tmp)))
    results = []
    for name in args.readers:
        result = campaign(name, *readers[name], args.examples)
        print(f"{name}: {result['executions']} executions in {result['seconds']} s, failures: {result['failures']}", flush=True)
        results.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
