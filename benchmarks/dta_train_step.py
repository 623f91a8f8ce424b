"""Training-step time of the DTA MS-ResNet: spikeport's engine vs snnTorch stepped per timestep
and vs SpikingJelly's multi-step mode.

All three run the same network with the same weights, batch and seed (train/reference.py builds
the copies; tests/test_dta_reference.py proves their logits and gradients equal the engine's):

- spikeport: `dta_msresnet`, time folded into the batch, the LIF recurrence in one autograd node;
- snnTorch: plain torch layers and `snn.Leaky`, the encoder, residual stages and head called once
  per timestep, the DTA block (which mixes timesteps) once on the stacked sequence;
- SpikingJelly 2.0: `layer.SeqToANNContainer` and `neuron.LIFNode` in multi-step mode, which
  folds time into the batch as we do, with its faster neuron on each device
  (`train.reference.spikingjelly_multistep`): on the CPU its pure-torch neuron, every timestep
  recorded by autograd; on a GPU its `sj_lif` op, its CUDA or Triton kernels
  (SJ_LIF_CUDA_IMPLEMENTATION=cuda or triton picks; benchmarks/cuda_rows.sh times both); skipped
  with a note when it is not installed (docs/environments.md).

The default network is a shrunk MS-ResNet18 of the same topology that takes a fraction of a
second per step on 2 CPU cores (stem 32, stages 32x1, 64x1/2, 128x1/2, 32x32 input, T=6,
batch 16); `--full` is DTA_SNN_18 itself (stem 64, stages 128x3, 256x3/2, 512x2/2), for a GPU.
Batch norm is in eval mode in all three (the stepped copy would normalise B samples per step, the
others T*B); the neurons stay in training mode, which SpikingJelly's LIFNode needs for its
surrogate gradient. A step is forward + cross-entropy on the mean logits + backward + SGD update;
steps alternate between the models so that a change in machine load hits all alike, and the
first-step losses must agree to 1e-5. Written to benchmarks/results/dta_train_step.json with a
description of the machine: the median wall-clock time over the timed steps and its ratio to the
engine's (baseline / spikeport: above 1 means the engine is faster), the median of the per-round
ratios, and the median CPU time of the process per step, which on a shared machine does not count
the waits for a core (run with OMP_NUM_THREADS=1 to make it the step's work). Each model's peak
memory per step is measured in a fresh process per model, as train_step.py describes
(`peak_memory`); `spikeport_free_neuron`, the engine with a neuron that costs nothing
(layer_share.py), is timed in the same rounds as the ceiling of any neuron in this engine; `--compile` adds the engine under torch.compile, as there. The layer-share bound
(benchmarks/layer_share.py: the work every engine does alike, the DTA block included) is profiled
on the engine, the free-neuron copy and the snnTorch copy in the same run, in rounds that pair
each profile with unprofiled steps of the same model, with the share of it that the engine and
the free-neuron copy reach in each round, the median and its 95% interval.

    OMP_NUM_THREADS=1 python benchmarks/dta_train_step.py [--steps 10] [--warmup 2] [--full] [--batch 16] [--compile] [--note "..."]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
from pathlib import Path

import torch
from torch import nn

from spikeport.io import write_json
from spikeport.train.models import dta_msresnet
from spikeport.train.reference import spikingjelly_multistep, stepwise_snntorch

from train_step import Trainer, compiled, machine, peak_memory, peak_memory_here, timed_steps  # benchmarks/ is the script's folder, so on sys.path

RESULTS = Path(__file__).parent / "results" / "dta_train_step.json"
SMALL = {"stem_channels": 32, "stages": [[32, 1, 1], [64, 1, 2], [128, 1, 2]]}
FULL = {"depth": 18}  # the builder's defaults: stem 64, stages 128x3, 256x3/2, 512x2/2


def batch_norm_eval(model: nn.Module) -> nn.Module:
    """Batch norm in eval mode, everything else in training mode (SpikingJelly's LIFNode needs it)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def models(config: dict, timesteps: int, batch: int, device: str, compile_engine: bool):
    """The models with the same weights, and the batch."""
    torch.manual_seed(0)
    engine = batch_norm_eval(dta_msresnet((3, 32, 32), 10, timesteps, **config).to(device))
    built = {"spikeport": engine, "snntorch_stepwise": stepwise_snntorch(engine)}
    if importlib.util.find_spec("spikingjelly") is not None:
        built["spikingjelly_multistep"] = spikingjelly_multistep(engine)
    else:
        print("note: spikingjelly is not installed (pip install -e .[dev]); its baseline is skipped")
    if compile_engine:
        built["spikeport_compiled"] = compiled(engine)
    x = torch.rand(timesteps, batch, 3, 32, 32, device=device) * 2
    y = torch.randint(0, 10, (batch,), device=device)
    from layer_share import free_neuron_copy  # benchmarks/ is on sys.path; it imports this module

    built["spikeport_free_neuron"] = free_neuron_copy(engine, x)  # the engine with a neuron that costs nothing: the ceiling
    return built, x, y


def run(config: dict, timesteps: int, batch: int, steps: int, warmup: int, device: str, compile_engine: bool) -> dict:
    built, x, y = models(config, timesteps, batch, device, compile_engine)
    engine = built["spikeport"]
    trainers = timed_steps({name: Trainer(model, x, y) for name, model in built.items()}, steps, warmup)
    ours = trainers["spikeport"]
    medians = {name: statistics.median(trainer.times) for name, trainer in trainers.items()}
    cpu_medians = {name: statistics.median(trainer.cpu_times) for name, trainer in trainers.items()}
    baselines = [name for name in trainers if name != "spikeport"]
    from layer_share import bound_in_this_run, step_clock  # benchmarks/ is on sys.path; it imports this module

    by_cpu = step_clock() == "CPU time"
    clock = "cpu_times" if by_cpu else "times"
    paired = {name: statistics.median(b / o for b, o in zip(getattr(trainers["snntorch_stepwise"], clock), getattr(trainer, clock))) for name, trainer in trainers.items() if name.startswith("spikeport")}
    return {
        "layer_share_bound": bound_in_this_run(built, x, y, paired, cpu_medians if by_cpu else medians),
        "first_step_loss": {name: trainer.first_loss for name, trainer in trainers.items()},
        "median_step_s": medians,
        "ratio_vs_spikeport": {name: medians[name] / medians["spikeport"] for name in baselines},
        # Each round's baseline step over the engine's step of the same round: on a shared machine
        # whose load drifts, this pairs steps that ran under the same load.
        "paired_ratio_median": {
            name: statistics.median(b / o for b, o in zip(trainers[name].times, ours.times)) for name in baselines
        },
        "median_step_cpu_s": cpu_medians,
        "cpu_ratio_vs_spikeport": {name: cpu_medians[name] / cpu_medians["spikeport"] for name in baselines},
        "paired_cpu_ratio_median": {
            name: statistics.median(b / o for b, o in zip(trainers[name].cpu_times, ours.cpu_times)) for name in baselines
        },
        "parameters": sum(p.numel() for p in engine.parameters()),
        **({"compile_and_first_step_s": trainers["spikeport_compiled"].first_step_s} if compile_engine else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--full", action="store_true", help="DTA_SNN_18 itself instead of the shrunk network")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--compile", action="store_true", help="also time the engine under torch.compile")
    parser.add_argument("--note", default="", help="how the machine was when measured (e.g. shared with other jobs)")
    parser.add_argument("--peak-memory-of", help=argparse.SUPPRESS)  # the child of `peak_memory`
    args = parser.parse_args()
    config = FULL if args.full else SMALL
    if args.peak_memory_of:
        built, x, y = models(config, args.timesteps, args.batch, args.device, args.peak_memory_of == "spikeport_compiled")
        print(json.dumps(peak_memory_here(Trainer(built[args.peak_memory_of], x, y))))
        return
    timed = run(config, args.timesteps, args.batch, args.steps, args.warmup, args.device, args.compile)
    shape = ["--timesteps", str(args.timesteps), "--batch", str(args.batch), "--device", args.device, *(["--full"] if args.full else [])]
    result = {
        "benchmark": "dta_train_step",
        "model": {"name": "dta-msresnet", **config, "input_shape": [3, 32, 32], "num_classes": 10},
        "timesteps": args.timesteps,
        "batch": args.batch,
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else "none: no GPU was lent for this run, so there are no CUDA figures",
        "steps": args.steps,
        "warmup": args.warmup,
        "note": args.note,
        **timed,
        "peak_memory": peak_memory(__file__, shape, [name for name in timed["median_step_s"] if name != "spikeport_free_neuron"]),
        "machine": machine(),
    }
    write_json(args.output, result)
    print(f"{'model':<24}{'wall s/step':>12}{'ratio':>8}{'paired':>8}{'CPU s/step':>12}{'ratio':>8}")
    for name, seconds in result["median_step_s"].items():
        ratio, paired = result["ratio_vs_spikeport"].get(name, 1.0), result["paired_ratio_median"].get(name, 1.0)
        cpu, cpu_ratio = result["median_step_cpu_s"][name], result["cpu_ratio_vs_spikeport"].get(name, 1.0)
        print(f"{name:<24}{seconds:>12.3f}{ratio:>7.2f}x{paired:>7.2f}x{cpu:>12.3f}{cpu_ratio:>7.2f}x")
    print("peak memory per step, MiB:", result["peak_memory"]["peak_MiB"])


if __name__ == "__main__":
    main()
