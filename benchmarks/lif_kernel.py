"""One LIF layer's forward and backward, T steps: spikeport's kernel against the neurons it is
measured with, on the CPU or a GPU.

The neuron alone, apart from the layers around it, on the shapes of the training benchmarks' LIF
layers (the digits CNN's first, the 64/128/256 CNN's first, a DTA_SNN_18 stage's: [T, B, C, H,
W]), beta 0.5, threshold 1, the triangle surrogate, hard reset not detached:

- `spikeport`: `neuron.lif_spikes`, as training calls it: the fused C++ kernel on the CPU
  (train/lif_cpu.py), the Triton kernel on CUDA (train/lif_triton.py);
- `spikeport_torch_engine`: the torch engine they replace (`neuron._LIFMultiStep`, one autograd
  node, whole-slice torch operations per step), the fallback elsewhere;
- `snntorch_leaky`: snnTorch's `Leaky` stepped per timestep (train/reference.py's `SnnTorchLIF`);
- `spikingjelly_torch`: SpikingJelly 2.0's `LIFNode` in multi-step mode with our spike function:
  its pure-torch neuron, every step recorded by autograd;
- `spikingjelly_kernels`: the same with its own surrogate, so its `sj_lif` op (on CUDA its CUDA or
  Triton kernels, which SJ_LIF_CUDA_IMPLEMENTATION=cuda or triton picks when the process starts;
  on the CPU a torch loop with a hand-written backward), the threshold one float32 step up so that
  it fires where ours does (`reference.spikingjelly_lif`).

Each round runs every neuron once on a fresh leaf, in turn, with the same input and the same
gradient of the spikes, with glibc's heap kept as training keeps it
(`layers.keep_large_blocks_on_the_heap`); a call is timed by CUDA events on a GPU (after a synchronize), by the
process's CPU time with one torch thread, else by the wall clock. Reported: each neuron's median
milliseconds over the rounds and the median of the per-round ratios to spikeport's (above 1: ours
is faster), and, as a check that all compute one function, whether each neuron's spikes equal
spikeport's and the largest difference of its input gradient. Written to
benchmarks/results/lif_kernel.json (or --output) with the machine.

    python benchmarks/lif_kernel.py [--device cpu|cuda] [--rounds 30] [--note "..."] [--output PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from spikeport.io import write_json
from spikeport.train import layers, neuron
from spikeport.train.reference import SnnTorchLIF, spikingjelly_lif

from layer_share import step_clock  # benchmarks/ is the script's folder, so on sys.path
from train_step import machine

RESULTS = Path(__file__).parent / "results" / "lif_kernel.json"
BETA, THRESHOLD = 0.5, 1.0
SHAPES = {  # [T, B, C, H, W] of the training benchmarks' LIF layers
    "digits-cnn-lif1": (4, 32, 16, 8, 8),
    "cnn-64-128-256-lif1": (6, 32, 64, 32, 32),
    "dta-msresnet18-stage1": (6, 16, 128, 32, 32),
}


def neurons() -> dict[str, Callable[[Tensor], Tensor]]:
    """Each neuron as a function of x [T, ...] to its spikes, state reset on every call."""

    def snntorch_leaky(x: Tensor) -> Tensor:
        lif = SnnTorchLIF(BETA, THRESHOLD)
        return torch.stack([lif(x[t]) for t in range(x.shape[0])])

    found = {
        "spikeport": lambda x: neuron.lif_spikes(x, BETA, THRESHOLD),
        "spikeport_torch_engine": lambda x: neuron._LIFMultiStep.apply(x, BETA, THRESHOLD)[0],
        "snntorch_leaky": snntorch_leaky,
    }
    try:
        import spikingjelly  # noqa: F401
    except ImportError:
        print("note: spikingjelly is not installed (pip install -e .[dev]); its neurons are skipped")
        return found
    for name, kernels in (("spikingjelly_torch", False), ("spikingjelly_kernels", True)):
        found[name] = lambda x, kernels=kernels: spikingjelly_lif(BETA, THRESHOLD, kernels).to(x.device)(x)
    return found


def timed_call(f: Callable[[Tensor], Tensor], x: Tensor, grad: Tensor) -> tuple[float, Tensor, Tensor]:
    """Milliseconds of one forward and backward of f on a fresh leaf copy of x; the spikes and dL/dx."""
    leaf = x.detach().clone().requires_grad_()
    if x.is_cuda:
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        spikes = f(leaf)
        spikes.backward(grad)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end), spikes.detach(), leaf.grad
    clock = time.process_time if step_clock() == "CPU time" else time.perf_counter
    started = clock()
    spikes = f(leaf)
    spikes.backward(grad)
    return (clock() - started) * 1e3, spikes.detach(), leaf.grad


def measure(shape: tuple[int, ...], device: str, rounds: int) -> dict:
    """The module docstring's figures for one layer shape."""
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator) * 1.5).to(device)  # about a quarter of the neurons fire per step
    grad = torch.randn(shape, generator=generator).to(device)
    found = neurons()
    times: dict[str, list[float]] = {name: [] for name in found}
    first: dict[str, tuple[Tensor, Tensor]] = {}
    for round_ in range(rounds + 2):  # two rounds of warm-up: kernels compiled, memory pooled
        for name, f in found.items():
            ms, spikes, grad_x = timed_call(f, x, grad)
            first.setdefault(name, (spikes, grad_x))
            if round_ >= 2:
                times[name].append(ms)
    spikes, grad_x = first["spikeport"]
    return {
        "shape": list(shape),
        "neurons_per_step": int(x[0].numel()),
        "firing_rate": float(spikes.mean()),
        "median_ms": {name: statistics.median(t) for name, t in times.items()},
        "paired_ratio_to_spikeport": {name: statistics.median(a / b for a, b in zip(t, times["spikeport"])) for name, t in times.items() if name != "spikeport"},
        "spikes_equal_spikeport": {name: bool(torch.equal(s, spikes)) for name, (s, _) in first.items()},
        "max_abs_grad_difference": {name: float((g.double() - grad_x.double()).abs().max()) for name, (_, g) in first.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="how the machine was when measured")
    args = parser.parse_args()
    layers.keep_large_blocks_on_the_heap()  # as in training (the first layer call sets it): no page faults per call
    cases = {name: measure(SHAPES[name], args.device, args.rounds) for name in args.shapes}
    result = {
        "benchmark": "lif_kernel",
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "spikingjelly_cuda_implementation": os.environ.get("SJ_LIF_CUDA_IMPLEMENTATION", "auto") if args.device.startswith("cuda") else None,
        "clock": "CUDA events" if args.device.startswith("cuda") else step_clock(),
        "rounds": args.rounds,
        "note": args.note,
        "cases": cases,
        "machine": machine(),
    }
    write_json(args.output, result)
    print(f"{'layer':<24}{'neuron':<24}{'ms':>10}{'vs spikeport':>14}{'same spikes':>13}{'max grad diff':>15}")
    for name, case in cases.items():
        for engine, ms in case["median_ms"].items():
            ratio = case["paired_ratio_to_spikeport"].get(engine, 1.0)
            print(f"{name:<24}{engine:<24}{ms:>10.3f}{ratio:>13.2f}x{str(case['spikes_equal_spikeport'][engine]):>13}{case['max_abs_grad_difference'][engine]:>15.2e}")


if __name__ == "__main__":
    main()
