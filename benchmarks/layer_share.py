"""How much of a training step is the layers' arithmetic, the same work in every engine: the bound
on what any engine can gain by a faster neuron or by folding time into the batch (Amdahl).

For the two benchmark networks (train_step.py's 64/128/256-channel CNN, dta_train_step.py's small
DTA MS-ResNet), each run by spikeport's engine and by the snnTorch per-timestep baseline with the
same weights and batch, torch.profiler sums the time of the convolution, batch-norm and pooling
operators (forward and backward) over a few training steps, against all operators' time. If the
baseline spends a share c of its step in them, an engine that computes the same layers can be at
most 1 / c times faster. Written to benchmarks/results/layer_share.json. The profiler times
operators by the wall clock: run it on an otherwise idle machine.

`--ops N` prints instead the DTA case's N costliest operators (self CPU time per step, and calls)
for both engines side by side: the op-by-op comparison of the two. `--components` times the DTA
step's parts apart by process CPU time (each LIF layer in both engines, the convolutions folded
and per step, the DTA block in two layouts), which on a shared machine, unlike the profiler's
wall-clock operator times, does not count the waits for a core.

    python benchmarks/layer_share.py [--steps 3] [--ops N | --components]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from spikeport.io import write_json
from spikeport.train.models import dta_msresnet, spiking_cnn
from spikeport.train.neuron import LIF, lif_multistep
from spikeport.train.reference import SnnTorchLIF, stepwise_snntorch

from dta_train_step import SMALL, batch_norm_eval  # benchmarks/ is the script's folder, so on sys.path
from train_step import machine

RESULTS = Path(__file__).parent / "results" / "layer_share.json"
LAYER_OPERATORS = ("convolution", "batch_norm", "pool")  # aten operator names containing these


def profile_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> list:
    """torch.profiler's per-operator averages over `steps` training steps, after a warm-up step."""
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
    return prof.key_averages()


def layer_shares(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict:
    """Seconds per training step (the operators' sum), and the shares of the convolutions and of
    all the layers' arithmetic (convolution, batch norm, pooling)."""
    events = profile_steps(model, x, y, steps)
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


def print_operators(models: dict, x: torch.Tensor, y: torch.Tensor, steps: int, top: int) -> None:
    """The `top` operators by self CPU time, per training step, side by side for each model."""
    per_model = {name: {e.key: (e.self_cpu_time_total / steps / 1e3, e.count // steps) for e in profile_steps(m, x, y, steps)} for name, m in models.items()}
    keys = sorted({k for ops in per_model.values() for k in ops}, key=lambda k: -max(ops.get(k, (0, 0))[0] for ops in per_model.values()))
    print(f"{'operator':<48}" + "".join(f"{name + ' ms':>24}{'calls':>7}" for name in per_model))
    for key in keys[:top]:
        print(f"{key[:47]:<48}" + "".join(f"{ops.get(key, (0, 0))[0]:>24.1f}{ops.get(key, (0, 0))[1]:>7}" for ops in per_model.values()))
    print(f"{'all operators':<48}" + "".join(f"{sum(v[0] for v in ops.values()):>24.1f}{'':>7}" for ops in per_model.values()))


def cpu_ms(f: Callable[[torch.Tensor], torch.Tensor], make: Callable[[], torch.Tensor], repeats: int = 5) -> float:
    """Median process CPU time of f's forward and backward pass (ones as the output's gradient),
    in ms, on a fresh leaf from `make` each time: on a shared machine the CPU time does not count
    the waits for a core, as the profiler's wall-clock times do."""
    times = []
    for _ in range(repeats):
        x = make().requires_grad_()
        started = time.process_time()
        out = f(x)
        out.backward(torch.ones_like(out))
        times.append(time.process_time() - started)
    return statistics.median(times) * 1e3


def print_components(dta: nn.Module, x: torch.Tensor) -> None:
    """The DTA step's parts timed apart by CPU time: each LIF layer on its real input (strides
    included) in the engine and as snnTorch's Leaky stepped, each convolution shape folded over T*B
    (channels-last and standard layout) and stepped per timestep, and the DTA block on a
    channels-last and a standard-layout input."""
    inputs = {}
    hooks = [m.register_forward_hook(lambda _m, i, _o, n=n: inputs.setdefault(n, i[0].detach())) for n, m in dta.named_modules() if isinstance(m, LIF)]
    dta(x)
    for hook in hooks:
        hook.remove()

    def snntorch_loop(v: torch.Tensor) -> torch.Tensor:
        lif = SnnTorchLIF(0.5, 1.0)
        return torch.stack([lif(v[t]) for t in range(v.shape[0])])

    same_strides = lambda v: lambda: torch.empty_strided(v.shape, v.stride()).copy_(v)  # noqa: E731
    totals = [0.0, 0.0]
    for name, v in inputs.items():
        ours, theirs = cpu_ms(lambda t: lif_multistep(t, 0.5, 1.0)[0], same_strides(v)), cpu_ms(snntorch_loop, same_strides(v))
        totals = [totals[0] + ours, totals[1] + theirs]
        print(f"LIF {name:<14} {str(tuple(v.shape)):<22} engine {ours:7.1f} ms   snnTorch Leaky stepped {theirs:7.1f} ms")
    print(f"LIF, all layers {'':<22} engine {totals[0]:7.1f} ms   snnTorch Leaky stepped {totals[1]:7.1f} ms")
    t, b = x.shape[:2]
    for cin, cout, hw, stride in ((32, 32, 32, 1), (32, 64, 32, 2), (64, 64, 16, 1), (64, 128, 16, 2), (128, 128, 8, 1)):
        conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        xs = torch.randn(t * b, cin, hw, hw)
        stepped = lambda v: torch.stack([conv(v[i * b:(i + 1) * b]) for i in range(t)])  # noqa: E731
        print(
            f"conv3x3 {cin}->{cout} {hw}x{hw} stride {stride}: folded channels-last {cpu_ms(conv, lambda: xs.contiguous(memory_format=torch.channels_last)):5.0f} ms,"
            f" folded standard {cpu_ms(conv, xs.clone):5.0f} ms, per step standard {cpu_ms(stepped, xs.clone):5.0f} ms"
        )
    block = dta.dta
    current = torch.randn(t * b, block.txa.conv_over_time.in_channels, 32, 32)
    spikes = (torch.rand(t, b, *current.shape[1:]) > 0.8).float()
    gate = lambda v: block(v, spikes)  # noqa: E731
    for _ in range(2):
        print(
            f"DTA block: channels-last input {cpu_ms(gate, lambda: current.contiguous(memory_format=torch.channels_last).unflatten(0, (t, b))):5.0f} ms,"
            f" standard input {cpu_ms(gate, lambda: current.clone().unflatten(0, (t, b))):5.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--ops", type=int, metavar="N", help="print the DTA case's N costliest operators for both engines instead")
    parser.add_argument("--components", action="store_true", help="print the DTA step's parts timed apart by CPU time instead")
    args = parser.parse_args()
    torch.manual_seed(0)
    cnn = spiking_cnn((3, 32, 32), 10, channels=[64, 128, 256]).eval()
    dta = batch_norm_eval(dta_msresnet((3, 32, 32), 10, 6, **SMALL))
    cases = {
        "cnn-64-128-256-32x32-T6-B32": (cnn, torch.rand(6, 32, 3, 32, 32) * 2, torch.randint(0, 10, (32,))),
        "dta-msresnet-small-32x32-T6-B16": (dta, torch.rand(6, 16, 3, 32, 32) * 2, torch.randint(0, 10, (16,))),
    }
    if args.components:
        print_components(dta, cases["dta-msresnet-small-32x32-T6-B16"][1])
        return
    if args.ops:
        dta_case = cases["dta-msresnet-small-32x32-T6-B16"]
        print_operators({"spikeport": dta, "snntorch_stepwise": stepwise_snntorch(dta)}, *dta_case[1:], args.steps, args.ops)
        return
    result = {"benchmark": "layer_share", "steps": args.steps, "cases": {}, "machine": machine()}
    for name, (engine, x, y) in cases.items():
        measured = {label: layer_shares(model, x, y, args.steps) for label, model in (("spikeport", engine), ("snntorch_stepwise", stepwise_snntorch(engine)))}
        measured["max_speedup_over_snntorch_with_the_same_layers"] = 1 / measured["snntorch_stepwise"]["layer_share"]
        result["cases"][name] = measured
    write_json(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
