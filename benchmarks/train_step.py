"""Training-step time: spikeport's multi-step engine vs snnTorch stepped one timestep at a time.

Both run the same model with the same weights, batch and seed (cases below: the 3-stage spiking
CNN with 64/128/256 channels, 32x32 input, T=6, batch 32, and the digits CNN); the baseline is `train.reference.stepwise_snntorch`, i.e.
snn.Leaky with the project's neuron settings, the whole network called once per timestep. Batch
norm runs in eval mode in both so that they compute the same function, checked by equal first-step
losses. A step is forward + cross-entropy + backward + SGD update; the median over the timed steps
is reported and written to benchmarks/results/train_step.json with a description of the machine.

    python benchmarks/train_step.py [--steps 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from spikeport.io import write_json
from spikeport.train.models import spiking_cnn
from spikeport.train.reference import stepwise_snntorch

RESULTS = Path(__file__).parent / "results" / "train_step.json"


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


class Trainer:
    """One model with its own optimizer; `step()` runs one timed training step.

    It records wall-clock time and the process's CPU time: on a machine shared with other jobs the
    wall clock also counts the time the process waited for a core, the CPU time does not (with one
    torch thread it is the step's work; with more it adds up the threads, busy-waiting included).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        self.model, self.x, self.y = model, x, y
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.first_loss: float | None = None

    def step(self, timed: bool) -> None:
        started, cpu_started = time.perf_counter(), time.process_time()
        loss = nn.functional.cross_entropy(self.model(self.x).mean(0), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.x.is_cuda:
            torch.cuda.synchronize()
        if self.first_loss is None:
            self.first_loss = loss.item()
        if timed:
            self.times.append(time.perf_counter() - started)
            self.cpu_times.append(time.process_time() - cpu_started)


# name: (input shape, channels, T, batch). The first is the goal case; the second is
# configs/digits-cnn.yaml, where per-operation overhead rather than convolution arithmetic dominates.
CASES = {
    "cnn-64-128-256-32x32-T6-B32": ((3, 32, 32), [64, 128, 256], 6, 32),
    "digits-cnn-16-32-8x8-T4-B32": ((1, 8, 8), [16, 32], 4, 32),
}


def run_case(shape, channels, timesteps, batch, steps, warmup, device) -> dict:
    torch.manual_seed(0)
    engine = spiking_cnn(shape, 10, channels=channels).to(device).eval()
    baseline = stepwise_snntorch(engine)  # a copy: same weights
    x = torch.rand(timesteps, batch, *shape, device=device) * 2
    y = torch.randint(0, 10, (batch,), device=device)
    engine, baseline = Trainer(engine, x, y), Trainer(baseline, x, y)
    # Steps alternate between the two, so that a change in machine load hits both alike.
    for i in range(warmup + steps):
        engine.step(timed=i >= warmup)
        baseline.step(timed=i >= warmup)
    if abs(engine.first_loss - baseline.first_loss) > 1e-5:
        raise SystemExit(f"the two models differ: first-step loss {engine.first_loss} vs {baseline.first_loss}")
    engine_s, baseline_s = statistics.median(engine.times), statistics.median(baseline.times)
    return {
        "first_step_loss": {"spikeport": engine.first_loss, "snntorch_stepwise": baseline.first_loss},
        "median_step_s": {"spikeport": engine_s, "snntorch_stepwise": baseline_s},
        "speedup_vs_snntorch_stepwise": baseline_s / engine_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    result = {
        "benchmark": "train_step",
        "baseline": "snnTorch Leaky stepped per timestep in plain torch layers (train/reference.py)",
        "device": args.device,
        "steps": args.steps,
        "warmup": args.warmup,
        "cases": {name: run_case(*case, args.steps, args.warmup, args.device) for name, case in CASES.items()},
        "machine": machine(),
    }
    write_json(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
