"""Training-step time: spikeport's multi-step engine vs snnTorch stepped one timestep at a time and
vs SpikingJelly's multi-step mode.

All run the same model with the same weights, batch and seed (cases below: the 3-stage spiking
CNN with 64/128/256 channels, 32x32 input, T=6, batch 32, and the digits CNN); the first baseline
is `train.reference.stepwise_snntorch`, i.e. snn.Leaky with the project's neuron settings, the
whole network called once per timestep; the second, `train.reference.spikingjelly_multistep`,
SpikingJelly 2.0's `LIFNode` in multi-step mode with the layers in `SeqToANNContainer` (on the
CPU its pure-torch neuron, on a GPU its CUDA or Triton kernels: its faster on each device,
train/reference.py), skipped with a note when spikingjelly is not installed. Batch norm runs in
eval mode in all so that they compute the same function, checked by equal first-step losses;
SpikingJelly's neurons stay in training mode, which its surrogate gradient needs (as in
dta_train_step.py). A step is forward + cross-entropy + backward + SGD update; the median over
the timed steps is reported, with the median of the per-round ratios (each round's steps ran
under the same load): each engine's speedup over the snnTorch loop, and spikeport's speedup over each baseline
(`spikeport_paired_cpu_speedup_over`, by CPU time; `spikeport_paired_speedup_over`, wall clock),
written to benchmarks/results/train_step.json with a description of the machine.

Peak memory of a training step, per engine, is measured in a fresh Python process per engine
(`peak_memory`), over 2 steps after a warm-up step: on the CPU the rise of the process's resident
set (its peak, VmHWM, reset through /proc/self/clear_refs just before the steps, minus VmRSS then,
with the warm-up's freed memory returned by malloc_trim; tracemalloc would not see torch's
allocations, which bypass Python's allocator); on CUDA `max_memory_allocated` over the same steps
minus what was allocated before them. Both count what a step adds to the model, its
optimizer state and its input: activations kept for the backward pass, gradients, scratch.

`spikeport_free_neuron` is the engine with a neuron that costs nothing (layer_share.py), timed
in the same rounds: its speedup over the loop is the ceiling of any neuron in this engine.
`--compile` adds `spikeport_compiled`: the engine's model under torch.compile (forward and
backward through inductor; the LIF as `neuron._lif_traceable`). Its compilation falls in the
first warm-up step, reported apart. Each case also carries the layer-share bound
(benchmarks/layer_share.py: the work every engine does alike, profiled on the engine and the
snnTorch copy in the same run, in rounds that pair each profile with unprofiled steps of the same
engine, by CPU time with one torch thread, by the wall clock with more), the engine's share of it
in each round, their median and its 95% interval, the free-neuron copy's (profiled in the same rounds: what a
neuron that costs nothing would leave), SpikingJelly's (its speedup over the median bound), and the
profiled step over the unprofiled one for both (`profiled_over_unprofiled`).

    python benchmarks/train_step.py [--steps N] [--warmup 3] [--cases NAME ...] [--compile] [--note "..."] [--output PATH]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from spikeport.io import write_json
from spikeport.train.models import spiking_cnn
from spikeport.train.reference import spikingjelly_multistep, stepwise_snntorch

RESULTS = Path(__file__).parent / "results" / "train_step.json"
BASELINES = ("snntorch_stepwise", "spikingjelly_multistep")


VECTOR_EXTENSIONS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def _caches() -> dict[str, str]:
    """Cache sizes per level of the first core (sysfs), e.g. {"L1d": "48K", "L2": "2048K"}."""
    found = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = (index / "level").read_text().strip()
            found[f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")] = (index / "size").read_text().strip()
        except OSError:
            continue
    return found


def threads_per_core(cpuinfo: dict[str, str]) -> int | None:
    """How many logical CPUs share a core (/proc/cpuinfo's `siblings` over `cpu cores`): 2 where
    SMT pairs them, and two threads on one core then share its vector units, so two torch threads
    gain less than on two cores."""
    try:
        return int(cpuinfo["siblings"]) // int(cpuinfo["cpu cores"])
    except (KeyError, ValueError, ZeroDivisionError):
        return None


def machine() -> dict:
    """What the figures depend on: the CPU model with the vector extensions and caches oneDNN and the
    LIF kernel's -march=native build pick their code by (a ratio may differ from one CPU to another),
    the threads, the load and the versions."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "cpu": info.get("model name", platform.processor()),
        "cpu_id": {"vendor": info.get("vendor_id"), "family": info.get("cpu family"), "model": info.get("model")},
        "vector_extensions": [name for name in VECTOR_EXTENSIONS if name in flags],
        "caches_per_core": _caches(),
        "cores": os.cpu_count(),
        "threads_per_core": threads_per_core(info),
        "load_average_1_5_15_min": [round(v, 2) for v in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "packages": _versions(sys.executable),
        "lava_environment": _lava_versions(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


PACKAGES = ("torch", "numpy", "snntorch", "spikingjelly", "nir", "onnxruntime", "lava-nc", "lava-dl")


def _versions(python: str) -> dict:
    """The versions of PACKAGES installed for `python` (without importing them)."""
    script = ("import importlib.metadata as m, json, platform\n"
              f"names = {PACKAGES!r}\n"
              "found = {'python': platform.python_version()}\n"
              "for n in names:\n"
              "    try: found[n] = m.version(n)\n"
              "    except m.PackageNotFoundError: pass\n"
              "print(json.dumps(found))")
    done = subprocess.run([python, "-E", "-s", "-c", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _lava_versions() -> dict | None:
    """The Lava worker environment's versions, when there is one (the Lava runs go through it)."""
    from spikeport.errors import UserError
    from spikeport.runtime.lava.sandbox import lava_python

    try:
        return _versions(str(lava_python()))
    except UserError:
        return None


def _proc_status_kib(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


def peak_memory_here(trainer: "Trainer", steps: int = 2) -> dict:
    """What a training step of this trainer adds to the process's memory at its peak (the most
    over `steps` steps), after one step that pays the one-time costs (oneDNN's kernels, the
    optimizer's momentum buffers, which are alike in all engines)."""
    trainer.step(timed=False)
    if trainer.x.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        for _ in range(steps):
            trainer.step(timed=False)
        return {"peak_bytes": torch.cuda.max_memory_allocated() - before, "method": "torch.cuda.max_memory_allocated() minus memory_allocated() before the steps, after one warm-up step, fresh process per engine"}
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # give the warm-up's freed memory back, so the steps' peak shows
    before = _proc_status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak resident set, to now
    for _ in range(steps):
        trainer.step(timed=False)
    return {"peak_bytes": (_proc_status_kib("VmHWM") - before) * 1024, "method": "peak resident set (VmHWM, reset just before the steps) minus VmRSS then, after one warm-up step and malloc_trim, fresh process per engine"}


def peak_memory(script: str, argv: list[str], engines: list[str]) -> dict:
    """Each engine's `peak_memory_here`, measured by `script` re-run in a fresh process per engine
    (a process's freed memory stays mapped, so engines measured in one process would see each
    other's peaks)."""
    result = {}
    for engine in engines:
        done = subprocess.run([sys.executable, script, *argv, "--peak-memory-of", engine], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the peak-memory run of {engine} failed:\n{done.stderr[-3000:]}")
        result[engine] = json.loads(done.stdout.strip().splitlines()[-1])
    method = {m.pop("method") for m in result.values()}.pop()
    peaks = {name: m["peak_bytes"] for name, m in result.items()}
    ratio = {name: peaks[name] / peaks["snntorch_stepwise"] for name in peaks if name != "snntorch_stepwise"}
    return {"method": method, "peak_bytes": peaks, "peak_MiB": {k: round(v / 2**20, 1) for k, v in peaks.items()}, "ratio_vs_snntorch_stepwise": ratio}


def compiled(model: nn.Module) -> nn.Module:
    """A copy of the engine's model (same weights) under torch.compile."""
    return torch.compile(copy.deepcopy(model))


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
        self.first_step_s: float | None = None  # under torch.compile, the compilation

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
            self.first_step_s = time.perf_counter() - started
        if timed:
            self.times.append(time.perf_counter() - started)
            self.cpu_times.append(time.process_time() - cpu_started)


# name: (input shape, channels, T, batch). The first is the goal case; the second is
# configs/digits-cnn.yaml, where per-operation overhead rather than convolution arithmetic dominates.
CASES = {
    "cnn-64-128-256-32x32-T6-B32": ((3, 32, 32), [64, 128, 256], 6, 32),
    "digits-cnn-16-32-8x8-T4-B32": ((1, 8, 8), [16, 32], 4, 32),
}
# Timed steps per engine unless --steps says otherwise: the digits CNN's 3 ms steps need many for
# a median that one interruption does not move (20 of them are 60 ms of the engine's time).
TIMED_STEPS = {"cnn-64-128-256-32x32-T6-B32": 20, "digits-cnn-16-32-8x8-T4-B32": 400}


def models(shape, channels, timesteps, batch, device, compile_engine: bool):
    """The engines with the same weights, and the batch."""
    torch.manual_seed(0)
    engine = spiking_cnn(shape, 10, channels=channels).to(device).eval()
    built = {"spikeport": engine, "snntorch_stepwise": stepwise_snntorch(engine)}  # a copy: same weights
    if importlib.util.find_spec("spikingjelly") is not None:
        from dta_train_step import batch_norm_eval  # benchmarks/ is on sys.path; it imports this module

        # the copy's neurons in training mode (LIFNode's surrogate gradient), its batch norms in eval mode as the engine's
        built["spikingjelly_multistep"] = batch_norm_eval(spikingjelly_multistep(engine).train())
    else:
        print("note: spikingjelly is not installed (pip install -e .[dev]); its baseline is skipped", file=sys.stderr)
    if compile_engine:
        built["spikeport_compiled"] = compiled(engine)
    x = torch.rand(timesteps, batch, *shape, device=device) * 2
    y = torch.randint(0, 10, (batch,), device=device)
    from layer_share import free_neuron_copy  # benchmarks/ is on sys.path; it imports this module

    built["spikeport_free_neuron"] = free_neuron_copy(engine, x)  # the engine with a neuron that costs nothing: the ceiling
    return built, x, y


def timed_steps(trainers: dict, steps: int, warmup: int) -> dict:
    """Step every engine `warmup + steps` times, alternating between them so that a change in
    machine load hits all alike; refuse engines whose first loss is not spikeport's (another function)."""
    for i in range(warmup + steps):
        for trainer in trainers.values():
            trainer.step(timed=i >= warmup)
    ours = trainers["spikeport"]
    for name, trainer in trainers.items():
        if abs(trainer.first_loss - ours.first_loss) > 1e-5:
            raise SystemExit(f"{name} computes another function: first-step loss {trainer.first_loss} vs {ours.first_loss}")
    return trainers


def paired_ratio(baseline: list[float], engine: list[float]) -> float:
    """The median over rounds of baseline time / engine time in the same round."""
    return statistics.median(b / e for b, e in zip(baseline, engine))


def run_case(shape, channels, timesteps, batch, steps, warmup, device, compile_engine) -> dict:
    built, x, y = models(shape, channels, timesteps, batch, device, compile_engine)
    trainers = timed_steps({name: Trainer(model, x, y) for name, model in built.items()}, steps, warmup)
    medians = {name: statistics.median(trainer.times) for name, trainer in trainers.items()}
    result = {
        "first_step_loss": {name: trainer.first_loss for name, trainer in trainers.items()},
        "median_step_s": medians,
        "speedup_vs_snntorch_stepwise": {name: medians["snntorch_stepwise"] / medians[name] for name in medians if name != "snntorch_stepwise"},
        # Each round's baseline step over the engine's step of the same round: on a shared machine
        # whose load drifts, this pairs steps that ran under the same load.
        "paired_speedup_median": {name: paired_ratio(trainers["snntorch_stepwise"].times, trainer.times) for name, trainer in trainers.items() if name != "snntorch_stepwise"},
        "median_step_cpu_s": {name: statistics.median(trainer.cpu_times) for name, trainer in trainers.items()},
        "paired_cpu_speedup_median": {name: paired_ratio(trainers["snntorch_stepwise"].cpu_times, trainer.cpu_times) for name, trainer in trainers.items() if name != "snntorch_stepwise"},
        # spikeport's speedup over each baseline (as dta_train_step.py's ratios: above 1, the engine is faster)
        "spikeport_paired_cpu_speedup_over": {name: paired_ratio(trainers[name].cpu_times, trainers["spikeport"].cpu_times) for name in BASELINES if name in trainers},
        "spikeport_paired_speedup_over": {name: paired_ratio(trainers[name].times, trainers["spikeport"].times) for name in BASELINES if name in trainers},
    }
    if compile_engine:
        result["compile_and_first_step_s"] = trainers["spikeport_compiled"].first_step_s
    from layer_share import bound_in_this_run, step_clock  # benchmarks/ is on sys.path; it imports this module

    by_cpu = step_clock() == "CPU time"
    speedups = result["paired_cpu_speedup_median" if by_cpu else "paired_speedup_median"]
    result["layer_share_bound"] = bound_in_this_run(built, x, y, speedups, result["median_step_cpu_s" if by_cpu else "median_step_s"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, help="timed steps per engine (default: TIMED_STEPS, per case)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also time the engine under torch.compile")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="how the machine was when measured (e.g. shared with other jobs)")
    parser.add_argument("--peak-memory-of", help=argparse.SUPPRESS)  # the child of `peak_memory`
    args = parser.parse_args()
    if args.peak_memory_of:
        (case,) = args.cases
        built, x, y = models(*CASES[case], args.device, args.peak_memory_of == "spikeport_compiled")
        print(json.dumps(peak_memory_here(Trainer(built[args.peak_memory_of], x, y))))
        return
    cases = {}
    for name in args.cases:
        cases[name] = run_case(*CASES[name], args.steps or TIMED_STEPS[name], args.warmup, args.device, args.compile)
        engines = [engine for engine in cases[name]["median_step_s"] if engine != "spikeport_free_neuron"]
        cases[name]["peak_memory"] = peak_memory(__file__, ["--device", args.device, "--cases", name], engines)
    result = {
        "benchmark": "train_step",
        "baseline": "snnTorch Leaky stepped per timestep in plain torch layers; SpikingJelly 2.0 multi-step LIFNode in SeqToANNContainer layers (train/reference.py)",
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else "none: no GPU was lent for this run, so there are no CUDA figures",
        "steps": {name: args.steps or TIMED_STEPS[name] for name in args.cases},
        "warmup": args.warmup,
        "note": args.note,
        "cases": cases,
        "machine": machine(),
    }
    write_json(args.output, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
