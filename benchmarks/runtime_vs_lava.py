"""Samples per second: the reference runtime's loihi mode (batched torch) vs Lava fixed_pt.

Both run the same exported digits CNN (model.net, loaded unchanged by lava-dl netx in Lava) on the
same test samples; spikes of every layer and the read-out must be equal on the samples Lava ran,
checked in this run. The second baseline is the cost bound the emulator is held to: the same
layers in float (the reference runtime's float mode: T dense forward passes plus the neurons).
Writes benchmarks/results/runtime_vs_lava.json.

    python benchmarks/runtime_vs_lava.py [--run runs/readme-dc] [--lava-samples 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from spikeport.config import load_config
from spikeport.export.exporter import export
from spikeport.io import write_json
from spikeport.runtime.simulate import load_inputs, resolve_target, run_netx_in_lava, run_reference, run_reference_loihi
from spikeport.train.loop import train

from train_step import machine  # the same machine description as the other benchmark (same folder)

RESULTS = Path(__file__).parent / "results" / "runtime_vs_lava.json"


def ensure_run(run: Path) -> None:
    """Train and export configs/digits-cnn.yaml into `run` unless it is there already."""
    if not (run / "export" / "model.net").is_file():
        if not (run / "checkpoint.pt").is_file():
            train(load_config("configs/digits-cnn.yaml"), run)
        export(run)


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/readme-dc"))
    parser.add_argument("--lava-samples", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    ensure_run(args.run)
    target = resolve_target(args.run)
    inputs, _ = load_inputs(target, None, None)
    samples = next(iter(inputs.values())).shape[0]
    device = torch.device(args.device)
    few = {k: v[: args.lava_samples] for k, v in inputs.items()}

    lava_s, lava = timed(lambda: run_netx_in_lava(target, few, device), 1)
    reference_s, _ = timed(lambda: run_reference_loihi(target, inputs, device), 3)
    float_s, _ = timed(lambda: run_reference(target, inputs, device), 3)
    check = run_reference_loihi(target, few, device)
    equal = bool(np.array_equal(check.output, lava.output)) and all(np.array_equal(check.spikes[k], lava.spikes[k]) for k in check.spikes)
    if not equal:
        raise SystemExit("reference-loihi and Lava fixed_pt differ: the speed comparison is void")

    result = {
        "benchmark": "runtime_vs_lava",
        "network": f"{args.run} (digits CNN, model.net), T={target.manifest.timesteps}",
        "lava_timing": "one Lava session for all its samples, start-up and compile included, one step per run call",
        "device": args.device,
        "equal_on_lava_samples": equal,
        "lava_samples": args.lava_samples,
        "reference_samples": samples,
        "samples_per_s": {
            "reference_loihi": samples / reference_s,
            "lava_fixed_pt": args.lava_samples / lava_s,
            "reference_float_bound": samples / float_s,
        },
        "speedup_vs_lava": (samples / reference_s) / (args.lava_samples / lava_s),
        "cost_vs_float_bound": reference_s / float_s,
        "machine": machine(),
    }
    write_json(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
