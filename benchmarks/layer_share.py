"""How much of a training step is work that every engine does alike, the bound on what any engine
can gain by a faster neuron or by folding time into the batch (Amdahl).

For the two benchmark networks (train_step.py's 64/128/256-channel CNN, dta_train_step.py's small
DTA MS-ResNet), each run by spikeport's engine and by the snnTorch per-timestep baseline with the
same weights and batch, torch.profiler times every operator of training steps, forward and
backward, in rounds (`paired_bound`): in each round each engine runs one window of unprofiled
steps, timed by `step_clock()`, then 2 profiled steps thrown away (the first profiled steps carry
outliers: single operators several times their usual time), then as many active ones (`--steps`,
one by default; in the training benchmarks as many as fill PROFILED_S, at least one). Each operator's self time is put in its
step (its top-level caller, the profiler's `ProfilerStep#k`), and `profiled_window` sorts it into

- `layers`: the stateless layers' arithmetic, operators named convolution, batch_norm, pool,
  addmm or linear (and what they call), with their backward;
- `dta_block`: every operator inside the DTA block (train/dta.py, a `layers.TimeMixing` module:
  its convolutions, sigmoids, GELU, products and means), with their backward;
- `neuron`: every operator inside a LIF layer (the engine's `LIF`, snnTorch's `Leaky`), with
  their backward;
- `loss_and_optimizer`: the cross-entropy and the SGD update;
- `other`: the rest: layout copies, reshapes, stacking the timesteps, gradient accumulation.

A backward operator is put where the forward operator that recorded its autograd node was (the
profiler's sequence numbers). The first four are the same computation in every engine; only the
neuron's recurrence and the rest (the per-timestep dispatch, copies) can be removed. The work
fixed for every engine is `layers + dta_block + loss_and_optimizer`, each at the lower of the
two engines' profiled times in the round (the engine's folded convolutions, for one, are faster
than the loop's per-step ones: a cost of the loop's dispatch, so removable). If the baseline's
step takes t and the fixed work f, an engine can be at most t / f times faster: the bound. The
share of it an engine reaches is its speedup over the loop divided by the bound, which is f over
the engine's own step s: the part of its step that no engine can remove. t and s are the
unprofiled steps of the same round (the profiler's own cost per operator inflates a profiled step,
most for many small operators: on the digits CNN the loop's profiled step was 1.43 times its
unprofiled one on the Xeon), so f, t and s come from the same seconds of the machine, whose speed
drifts (the same digits step took 2.6 ms in one process and 4.0 ms in the next); the round's
bound t / f and share f / s are reported with their medians over the rounds, and the share's with
a 95% interval (`median_interval`, from the order statistics: no shape assumed), by which "the
engine reaches 90% of the bound" holds when the interval lies above 0.9. Each category's time
per step is the median over the active steps (robust to one slow step); the profiled total is the
sum of those medians, the operators' self time only (the Python between operators falls in no
category; `step_wall_ms`, the median wall-clock length of a profiled step, includes it). The
profiled total over the unprofiled step (`profiled_over_unprofiled`) shows how far the profiled
times are from the real ones in that case. The profiler's cost per operator also falls into the
operators' self times, a few microseconds each: on the digits CNN's 20-60 us operators, that is
the size of the gap being measured, and its rounds' shares spread from 0.70 to 1.08 in one run. Written to
benchmarks/results/layer_share.json, with each category per engine and the costliest operators of
`other`. The profiler times operators by the wall clock: on a loaded machine the waits for a core
fall into the operators that were running.

A second measure, by process CPU time, which load disturbs less than the profiler's wall-clock
operator times: `free_neuron_copy(engine, x)` is the engine with a neuron that costs nothing (each
LIF layer gives back the spikes the real one fired on that batch and passes the gradient through
untouched), so every other cost of the engine is kept. The training benchmarks alternate its steps
with the others'; the snnTorch copy's step over its step, paired per round, is the most any
neuron could gain this engine (`free_neuron_ceiling`), and the engine's speedup over the loop
divided by it, the share of that ceiling reached. The bound's rounds run the free-neuron copy too,
and its share of the bound (`free_neuron_share_of_bound`, f over its own step in the same round)
says how much of the bound any neuron could win back in an engine that calls these layers eagerly.

`--ops N` prints instead each case's N costliest operators (self CPU time per step, and calls,
with their category) for both engines side by side: the op-by-op comparison of the two.
`--components` times the DTA step's parts apart by process CPU time (each LIF layer in both
engines, the convolutions folded and per step, the DTA block in two layouts), which on a shared
machine, unlike the profiler's wall-clock operator times, does not count the waits for a core.

    python benchmarks/layer_share.py [--steps 1] [--rounds 25] [--ops N | --components]
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile, schedule

from spikeport.io import write_json
from spikeport.train.layers import TimeMixing
from spikeport.train.models import dta_msresnet, spiking_cnn
from spikeport.train.neuron import LIF, lif_spikes
from spikeport.train.reference import SnnTorchLIF, stepwise_snntorch

from dta_train_step import SMALL, batch_norm_eval  # benchmarks/ is the script's folder, so on sys.path
from train_step import machine

RESULTS = Path(__file__).parent / "results" / "layer_share.json"
LAYER_OPERATORS = ("convolution", "batch_norm", "pool", "addmm", "linear")  # aten operator names containing these
SCOPES = ((LIF, "neuron"), (SnnTorchLIF, "neuron"), (TimeMixing, "dta_block"))  # modules whose every operator is one category
FIXED = ("layers", "dta_block", "loss_and_optimizer")  # the same computation in every engine
SCOPE = "scope::"
STEP = "ProfilerStep"  # the profiler's record of each scheduled step (named ProfilerStep* in its events): every operator of a step is under it
CATEGORIES = ("layers", "dta_block", "neuron", "loss_and_optimizer", "other")
WARMUP = 2  # profiled steps thrown away before the active ones: the first profiled steps have outliers
ACTIVE = 5  # profiled steps of `--ops`
CYCLES = 25  # rounds of one window per engine (`paired_bound`): enough for a 95% interval of the median share (`median_interval`) a few hundredths wide
FREE = "spikeport_free_neuron"  # the engine with a neuron that costs nothing (`free_neuron_copy`)
PROFILED_S = 0.3  # in the training benchmarks, this much of each engine's step time is profiled per round, or one step


def _scoped(model: nn.Module) -> list:
    """Forward hooks that open a profiler scope named after its category around each module of SCOPES."""
    hooks = []
    for module in model.modules():
        name = next((n for kind, n in SCOPES if isinstance(module, kind)), None)
        if name is None:
            continue

        def enter(m, _inputs, name=name):
            m._profiler_scope = record_function(SCOPE + name)
            m._profiler_scope.__enter__()

        def leave(m, _inputs, _output):
            m._profiler_scope.__exit__(None, None, None)

        hooks += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    return hooks


def _categories(events) -> dict[int, str]:
    """The category of each profiler event, by id: the innermost scope around it; for a backward
    operator, the category of the forward operator whose autograd node it evaluates; else a layer
    operator among its callers; else `other`."""
    forward: dict[int, str] = {}  # sequence number -> category of the forward operator that recorded the node
    found = {}
    for event in sorted(events, key=lambda e: e.time_range.start):
        callers = [event]
        while callers[-1].cpu_parent is not None:
            callers.append(callers[-1].cpu_parent)
        backward = [c for c in callers if c.name.startswith("autograd::engine::evaluate_function")]
        scopes = [c.name[len(SCOPE):] for c in callers if c.name.startswith(SCOPE)]
        if scopes:
            category = scopes[0]
        elif backward and backward[-1].sequence_nr in forward:
            category = forward[backward[-1].sequence_nr]
        elif any(k in c.name for c in callers for k in LAYER_OPERATORS):
            category = "layers"
        else:
            category = "other"
        found[event.id] = category
        if event.sequence_nr >= 0 and not backward:
            # an operator without a node reads the next number too; the last to read it made the node
            forward[event.sequence_nr] = category
    return found


def _training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """The training benchmarks' step, with the loss and the optimizer in their profiler scope."""
    out = model(x)
    with record_function(SCOPE + "loss_and_optimizer"):
        loss = nn.functional.cross_entropy(out.mean(0), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    with record_function(SCOPE + "loss_and_optimizer"):
        optimizer.step()


def profiled_window(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int,
                    unprofiled: int = 0, warmup: int = WARMUP) -> dict:
    """Milliseconds per training step in each category (module docstring), from one window of
    `unprofiled` steps timed by `step_clock()` without the profiler, then `warmup` profiled steps
    that are thrown away and `steps` active ones. Each operator's self time is put in its step (its
    top-level caller, the profiler's `ProfilerStep#k`) and each category's time is the median over
    the active steps. Also the median of the unprofiled steps (`unprofiled_ms`, None without them),
    the median wall-clock length of a profiled step (operators and the Python between them), the
    costliest operators of `other` and the per-operator table for `--ops`."""
    clock = time.process_time if step_clock() == "CPU time" else time.perf_counter
    collected = []  # the profiler clears its events at the end of the cycle: keep them when the trace is ready
    unprofiled_ms = []
    hooks = []
    try:
        with profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=unprofiled, warmup=warmup, active=steps, repeat=1),
                     on_trace_ready=lambda p: collected.extend(p.events())) as prof:
            for i in range(unprofiled + warmup + steps):
                if i == unprofiled:  # the profiled steps begin: their scopes too
                    hooks = _scoped(model)
                started = clock()
                _training_step(model, optimizer, x, y)
                if i < unprofiled:
                    unprofiled_ms.append((clock() - started) * 1e3)
                prof.step()
    finally:
        for hook in hooks:
            hook.remove()
    category = _categories(collected)
    per_step: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)  # step -> category -> ms
    per_operator: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)  # (category, name) -> step -> ms
    calls: dict[tuple[str, str], int] = collections.Counter()
    step_ms: dict[str, float] = {}
    for event in collected:
        if event.name.startswith(STEP):
            step_ms[event.id] = (event.time_range.end - event.time_range.start) / 1e3
            continue
        top = event
        while top.cpu_parent is not None:
            top = top.cpu_parent
        if not top.name.startswith(STEP):
            continue
        ms = event.self_cpu_time_total / 1e3
        key = (category[event.id], event.name)
        per_step[top.id][category[event.id]] += ms
        per_operator[key][top.id] += ms
        calls[key] += 1
    active = sorted(step_ms)
    if len(active) != steps:
        raise RuntimeError(f"the profiler recorded {len(active)} steps, not {steps}")
    per_category = {c: statistics.median(per_step[s][c] for s in active) for c in CATEGORIES}
    operators = {key: (statistics.median(by_step[s] for s in active), calls[key] // steps) for key, by_step in per_operator.items()}
    other = sorted(((name, ms) for (c, name), (ms, _) in operators.items() if c == "other"), key=lambda o: -o[1])
    return {
        "ms_per_step": sum(per_category.values()),
        "ms_per_category": per_category,
        "unprofiled_ms": statistics.median(unprofiled_ms) if unprofiled_ms else None,
        "step_wall_ms": statistics.median(step_ms.values()),
        "operators_ms_per_active_step": [sum(per_step[s].values()) for s in active],
        "costliest_other_ms": dict(other[:5]),
        "operators": operators,
    }


def categorised_profile(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict:
    """One profiled window of `steps` active steps after one unprofiled step (oneDNN builds its
    kernels), with a fresh SGD optimizer: the profile of `--ops`."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    _training_step(model, optimizer, x, y)
    return profiled_window(model, optimizer, x, y, steps)


class _Replayed(torch.autograd.Function):
    """A neuron that costs nothing: it gives back recorded spikes, and the gradient untouched."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        return spikes

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def free_neuron_copy(engine: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy of the engine's model (same weights) whose LIF layers replay the spikes the real ones
    fire on x, at no cost (module docstring). Its layers then compute on the same values as the
    engine's; its first loss is the engine's."""
    import copy

    model = copy.deepcopy(engine)
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    fired = {}
    hooks = [m.register_forward_hook(lambda m, _i, out: fired.setdefault(m, out.detach())) for m in lifs]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    for m in lifs:
        m.forward = lambda v, spikes=fired[m]: _Replayed.apply(v, spikes)
    return model


def paired_bound(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, steps: dict[str, int], cycles: int = CYCLES,
                 baseline: str = "snntorch_stepwise") -> dict:
    """The bound of the module docstring, and the share of it spikeport's engine reaches, from
    `cycles` rounds in which each model of `steps` (the engine, the baseline and, when given, the
    engine with a free neuron) runs one `profiled_window` of `steps[name]` unprofiled steps, then
    as many profiled ones (at least one). A round's fixed work f, baseline step t
    and engine step s come from the same seconds of the machine, so a change in its speed between
    the timing and the profile (seen here: the same digits step 2.6 ms in one process, 4.0 ms in
    the next) moves all three alike: the round's bound is t / f and the engine's share of it f / s
    (its speedup t / s over the bound). The medians over the rounds are reported, with each
    round's share and the median share's 95% interval (`median_interval`). The free-neuron copy's share (`free_neuron_share_of_bound`) is what an engine
    that runs these layers eagerly, with a neuron that costs nothing, would reach: the part of the
    bound that the neuron stands between; what it misses is the layers' calls themselves (Python
    and dispatch between operators, views, layout copies)."""
    optimizers = {name: torch.optim.SGD(models[name].parameters(), lr=0.01, momentum=0.9) for name in steps}
    for name, optimizer in optimizers.items():  # oneDNN builds its kernels; the momentum buffers are made
        _training_step(models[name], optimizer, x, y)
    steps = {name: max(1, n) for name, n in steps.items()}
    rounds = [{name: profiled_window(models[name], optimizer, x, y, steps[name], steps[name]) for name, optimizer in optimizers.items()} for _ in range(cycles)]
    # over the two engines only: the free-neuron copy runs the engine's very layers, and a minimum
    # over more measurements of the same work would only pick the luckiest
    fixed = [{c: min(r[name]["ms_per_category"][c] for name in ("spikeport", baseline)) for c in FIXED} for r in rounds]
    bounds = [r[baseline]["unprofiled_ms"] / sum(f.values()) for r, f in zip(rounds, fixed)]
    shares = {name: [sum(f.values()) / r[name]["unprofiled_ms"] for r, f in zip(rounds, fixed)] for name in steps if name != baseline}
    free = {"free_neuron_share_of_bound_per_round": shares[FREE], "free_neuron_share_of_bound": statistics.median(shares[FREE]),
            "free_neuron_share_of_bound_95ci": median_interval(shares[FREE])} if FREE in shares else {}
    return {
        "fixed_work_ms_per_step": {c: statistics.median(f[c] for f in fixed) for c in FIXED},
        "baseline_ms_per_step": statistics.median(r[baseline]["unprofiled_ms"] for r in rounds),
        "max_speedup_over_snntorch_with_the_same_work": statistics.median(bounds),
        "spikeport_share_of_bound_per_round": shares["spikeport"],
        "spikeport_share_of_bound": statistics.median(shares["spikeport"]),
        "spikeport_share_of_bound_95ci": median_interval(shares["spikeport"]),
        **free,
        "rounds": cycles,
        "unprofiled_and_profiled_steps_per_round": steps,
        "profiler_warmup_steps": WARMUP,
        "clock": step_clock(),
        "profiles_ms_per_category": {
            name: {
                **{c: statistics.median(r[name]["ms_per_category"][c] for r in rounds) for c in CATEGORIES},
                "all": statistics.median(r[name]["ms_per_step"] for r in rounds),
                "unprofiled_step_ms": statistics.median(r[name]["unprofiled_ms"] for r in rounds),
                "profiled_over_unprofiled": statistics.median(r[name]["ms_per_step"] / r[name]["unprofiled_ms"] for r in rounds),
                "step_wall_ms": statistics.median(r[name]["step_wall_ms"] for r in rounds),
                "costliest_other": rounds[-1][name]["costliest_other_ms"],
            }
            for name in optimizers
        },
    }


def median_interval(values: list[float], level: float = 0.95) -> list[float] | None:
    """A distribution-free interval for the median of the population `values` were drawn from: the
    order statistics x(k) and x(n + 1 - k) (1-based) with the largest k for which the chance that
    the median falls outside, 2 P(Binomial(n, 1/2) < k), is at most 1 - level (25 values: x(8) and
    x(18), 95.7%). No shape is assumed: a round's share is a ratio of two timings, and a preempted
    step sends one round far off (0.56 among rounds of 0.8-1.0). None below 6 values, which no
    interval of order statistics covers at 95%."""
    x, n = sorted(values), len(values)
    outside = lambda k: 2 * sum(math.comb(n, i) for i in range(k)) / 2**n  # noqa: E731  P(median outside [x(k), x(n+1-k)])
    k = max((k for k in range(1, n // 2 + 1) if outside(k) <= 1 - level), default=None)
    return None if k is None else [x[k - 1], x[n - k]]


def step_clock() -> str:
    """The clock the training benchmarks' bound uses: with one torch thread a step's process CPU
    time, which does not count the waits for a core; with more, the wall clock, since CPU time then
    adds up the threads (busy-waiting included) while the profiled operator times stay wall-clock."""
    return "CPU time" if torch.get_num_threads() == 1 else "wall-clock time"


def bound_in_this_run(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, speedups: dict, step_s: dict[str, float]) -> dict:
    """The training benchmarks' bound (`paired_bound`) with their models, and the free-neuron
    ceiling from their timed rounds: `speedups` (by `step_clock()`) over the snnTorch loop, with
    `spikeport_free_neuron`'s among them. Each round profiles PROFILED_S of each engine's steps
    (`step_s`, their medians in the timed rounds), or one step where that is longer: five of the
    digits CNN's 3 ms steps would be at the mercy of one interruption, while five of the DTA
    network's 0.8 s steps per window spread a round over half a minute, in which the machine's
    speed moves. (It trains the models further: call it after the timing.)
    SpikingJelly's share is its speedup in the timed rounds over the median bound. On CUDA only
    the ceiling: the bound's profile times the CPU's operators, which there launch the kernels."""
    speedups = dict(speedups)
    ceiling = speedups.pop(FREE)
    free = {"free_neuron_ceiling": ceiling, "fraction_of_free_neuron_ceiling_reached": {name: speedup / ceiling for name, speedup in speedups.items()}}
    if x.is_cuda:
        return {"bound": "not measured on CUDA: the profiler's operator times on the CPU are then kernel launches, not the GPU's work", **free}
    result = paired_bound(models, x, y, {name: math.ceil(PROFILED_S / step_s[name]) for name in ("spikeport", FREE, "snntorch_stepwise")})
    limit = result["max_speedup_over_snntorch_with_the_same_work"]
    return {
        **result,
        "fraction_of_bound_reached": {"spikeport": result["spikeport_share_of_bound"],
                                      **{name: speedup / limit for name, speedup in speedups.items() if name != "spikeport"}},
        **free,
    }


def print_operators(models: dict, x: torch.Tensor, y: torch.Tensor, steps: int, top: int) -> None:
    """The `top` operators by self CPU time per training step, with their category, side by side
    for each model, then the categories."""
    profiles = {name: categorised_profile(m, x, y, steps) for name, m in models.items()}
    keys = sorted({k for p in profiles.values() for k in p["operators"]}, key=lambda k: -max(p["operators"].get(k, (0, 0))[0] for p in profiles.values()))
    print(f"{'category':<19}{'operator':<48}" + "".join(f"{name + ' ms':>24}{'calls':>7}" for name in profiles))
    for key in keys[:top]:
        print(f"{key[0]:<19}{key[1][:47]:<48}" + "".join(f"{p['operators'].get(key, (0, 0))[0]:>24.1f}{p['operators'].get(key, (0, 0))[1]:>7}" for p in profiles.values()))
    for c in (*FIXED, "neuron", "other"):
        print(f"{c:<67}" + "".join(f"{p['ms_per_category'][c]:>24.1f}{'':>7}" for p in profiles.values()))
    print(f"{'all operators':<67}" + "".join(f"{p['ms_per_step']:>24.1f}{'':>7}" for p in profiles.values()))


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
        ours, theirs = cpu_ms(lambda t: lif_spikes(t, 0.5, 1.0), same_strides(v)), cpu_ms(snntorch_loop, same_strides(v))
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
    parser.add_argument("--steps", type=int, help="unprofiled and active profiled steps per window (after %d thrown away); default 1, or %d with --ops" % (WARMUP, ACTIVE))
    parser.add_argument("--rounds", type=int, default=CYCLES, help="rounds of one profiled window per engine")
    parser.add_argument("--ops", type=int, metavar="N", help="print each case's N costliest operators for both engines instead")
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
        for name, (engine, x, y) in cases.items():
            print(name)
            print_operators({"spikeport": engine, "snntorch_stepwise": stepwise_snntorch(engine)}, x, y, args.steps or ACTIVE, args.ops)
        return
    result = {"benchmark": "layer_share", "cases": {}, "machine": machine()}
    for name, (engine, x, y) in cases.items():
        models = {"spikeport": engine, FREE: free_neuron_copy(engine, x), "snntorch_stepwise": stepwise_snntorch(engine)}
        result["cases"][name] = paired_bound(models, x, y, dict.fromkeys(models, args.steps or 1), args.rounds)
    write_json(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
