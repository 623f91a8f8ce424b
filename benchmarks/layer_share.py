"""How much of a training step is the layers' arithmetic, the same work in every engine: the bound
on what any engine can gain by a faster neuron or by folding time into the batch (Amdahl).

For the two benchmark networks (train_step.py's 64/128/256-channel CNN, dta_train_step.py's small
DTA MS-ResNet), each run by spikeport's engine and by the snnTorch per-timestep baseline with the
same weights and batch, torch.profiler sums the time of the convolution, batch-norm and pooling
operators (forward and backward) over a few training steps, against all operators' time. If the
baseline spends a share c of its step in them, an engine that computes the same layers can be at
most 1 / c times faster. Written to benchmarks/results/layer_share.json. The profiler times
operators by the wall clock: run it on an otherwise idle machine.

    python benchmarks/layer_share.py [--steps 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from spikeport.io import write_json
from spikeport.train.models import dta_msresnet, spiking_cnn
from spikeport.train.reference import stepwise_snntorch

from dta_train_step import SMALL, batch_norm_eval  # benchmarks/ is the script's folder, so on sys.path
from train_step import machine

RESULTS = Path(__file__).parent / "results" / "layer_share.json"
LAYER_OPERATORS = ("convolution", "batch_norm", "pool")  # aten operator names containing these


def layer_shares(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict:
    """Seconds per training step (the operators' sum), and the shares of the convolutions and of
    all the layers' arithmetic (convolution, batch norm, pooling)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x).mean(0), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: oneDNN builds its kernels
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    share = lambda *names: sum(e.self_cpu_time_total for e in events if any(n in e.key for n in names)) / total  # noqa: E731
    return {"s_per_step": total / steps / 1e6, "convolution_share": share("convolution"), "layer_share": share(*LAYER_OPERATORS)}


def bound_in_this_run(baseline: nn.Module, x: torch.Tensor, y: torch.Tensor, speedups: dict, steps: int = 2) -> dict:
    """The layer-share bound of the snnTorch copy, measured by the training benchmarks in the same
    run as their times, and what share of it each engine's measured speedup reaches. (It trains
    `baseline` for `steps + 1` steps: call it after the timing.)"""
    share = layer_shares(baseline, x, y, steps)
    bound = 1 / share["layer_share"]
    return {
        "snntorch_layer_share": share["layer_share"],
        "max_speedup_over_snntorch_with_the_same_layers": bound,
        "fraction_of_bound_reached": {name: speedup / bound for name, speedup in speedups.items()},
        "profiled_steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    cnn = spiking_cnn((3, 32, 32), 10, channels=[64, 128, 256]).eval()
    dta = batch_norm_eval(dta_msresnet((3, 32, 32), 10, 6, **SMALL))
    cases = {
        "cnn-64-128-256-32x32-T6-B32": (cnn, torch.rand(6, 32, 3, 32, 32) * 2, torch.randint(0, 10, (32,))),
        "dta-msresnet-small-32x32-T6-B16": (dta, torch.rand(6, 16, 3, 32, 32) * 2, torch.randint(0, 10, (16,))),
    }
    result = {"benchmark": "layer_share", "steps": args.steps, "cases": {}, "machine": machine()}
    for name, (engine, x, y) in cases.items():
        measured = {label: layer_shares(model, x, y, args.steps) for label, model in (("spikeport", engine), ("snntorch_stepwise", stepwise_snntorch(engine)))}
        measured["max_speedup_over_snntorch_with_the_same_layers"] = 1 / measured["snntorch_stepwise"]["layer_share"]
        result["cases"][name] = measured
    write_json(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
