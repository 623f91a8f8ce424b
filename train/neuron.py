"""The spiking neuron, as a pure multi-step function plus a thin nn.Module.

One neuron model is used for training and deployment alike (ARCHITECTURE.md, "Semantics"; the
DTA code's LIFSpike):

    u[t] = beta * u[t-1] + x[t]          leaky integration, u[-1] = 0
    s[t] = H(u[t] - threshold)           spike when the membrane is strictly above threshold
    u[t] = u[t] * (1 - s[t])             hard reset to zero, immediately, and not detached

The spike's derivative is replaced by a triangle surrogate of width gamma = 1:

    dS/du = max(0, gamma - |u - threshold|) / gamma**2

`lif_multistep` runs the whole [T, ...] sequence in one autograd node: the forward keeps only
the pre-reset membrane, and the backward runs the recurrence in reverse by hand. Compared with
letting autograd record every timestep (what stepping snnTorch's `Leaky` does) this saves the
per-step graph bookkeeping, and it lets every layer without state run on all T*B samples at once.
`tests/test_neuron.py` proves spikes, membranes and gradients equal snnTorch's `Leaky` stepped
in a loop. On CUDA the same function runs as two fused Triton kernels (train/lif_triton.py),
picked by `_engine`. A LIF layer passes on its spikes only, through `lif_spikes`: in CPU training
they come from a fused C++ kernel (train/lif_cpu.py) that writes no membranes at all. Both fused
paths compute the same floats (tests/test_lif_triton.py, tests/test_lif_cpu.py).

`beta` and `threshold` are plain floats, one per layer: the deployment targets have one decay
per core, so a learnable or per-neuron value could not be exported.

Models that users bring from snnTorch (export/from_snntorch.py) may use snnTorch's other reset
rules, so `LIF` also takes `reset` ("zero", "subtract", "none") and `reset_delay`, computed by
`lif_steps` exactly as snnTorch's `Leaky` computes them. With `reset_delay` the reset of a spike
at step t is applied at step t+1, to the membrane snnTorch returns:

    r[t] = H(m[t-1] - threshold)
    subtract: m[t] = beta * m[t-1] + x[t] - threshold * r[t]
    zero:     m[t] = beta * ((1 - r[t]) * m[t-1]) + x[t]
    s[t] = H(m[t] - threshold)

and without it snnTorch resets at once (m[t] -= (s[t] - r[t]) * threshold, or * m[t] for zero).

Those rules run as plain torch operations (autograd records them); only the deployment's own rule
(zero, immediately) has the fused multi-step function.

snnTorch's current-based and recurrent neurons (`Synaptic`, `RLeaky`, `RSynaptic`) are `CubaLIF`
and `RecurrentLIF`, subclasses of `LIF` for the beta, threshold and reset rule they share, computed
by `snntorch_steps` as snnTorch computes them. No Loihi target runs them (export/nir_graph.py
`check_resets_to_zero` refuses their NIR nodes).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import Tensor, nn

SURROGATE_WIDTH = 1.0
RESETS = ("zero", "subtract", "none")


def heaviside(v: Tensor) -> Tensor:
    """Spike where `v` (membrane minus threshold) is strictly positive."""
    return (v > 0).to(v.dtype)


def triangle_surrogate(v: Tensor, width: float = SURROGATE_WIDTH, in_place: bool = False) -> Tensor:
    """d spike / d v of the triangle surrogate, at `v` = membrane minus threshold (written over `v`
    with `in_place`)."""
    sg = (v.abs_() if in_place else v.abs()).neg_().add_(width).clamp_(min=0.0)
    return sg if width == 1.0 else sg.div_(width**2)  # x / 1 is x: divide only where it changes a value


class _LIFMultiStep(torch.autograd.Function):
    """The LIF recurrence over the leading time axis, with a hand-written backward pass.

    Both passes work one timestep at a time on [B, ...] slices, with a handful of whole-slice
    operations each, written into preallocated outputs and scratch slices: a slice stays in the
    processor's cache between operations, where computing an intermediate for all T at once would
    stream T times more data through memory, and no slice is allocated per step (a fresh slice of
    a few MB is fresh pages from the kernel, page faults and zeroing included: allocating five per
    step made the backward 15% slower, docs/train.md).
    """

    @staticmethod
    def forward(ctx, x: Tensor, beta: float, threshold: float):
        pre_reset = torch.empty_like(x)  # h[t] = beta * u[t-1] + x[t]; empty_like keeps x's layout
        spikes = torch.empty_like(x)
        mem = torch.empty_like(x)  # u[t], after the reset
        u = torch.zeros_like(x[0])
        for t in range(x.shape[0]):
            # beta * u, then + x[t]: two roundings, as snnTorch, ONNX and Lava's float model do
            # (torch.add(..., alpha=beta) may fuse them into one and round differently).
            h = torch.mul(u, beta, out=pre_reset[t]).add_(x[t])
            s = torch.gt(h, threshold, out=spikes[t])
            u = torch.addcmul(h, h, s, value=-1.0, out=mem[t])  # h - h * s: exactly 0 or h
        ctx.save_for_backward(pre_reset, spikes)
        ctx.beta, ctx.threshold = beta, threshold
        ctx.set_materialize_grads(False)
        return spikes, mem

    @staticmethod
    def backward(ctx, grad_spikes: Tensor | None, grad_mem: Tensor | None):
        pre_reset, spikes = ctx.saved_tensors
        grad_x = torch.empty_like(pre_reset)
        grad_u = torch.zeros_like(pre_reset[0])  # dL/du[t]: from mem[t] and from h[t+1] = beta u[t] + ...
        sg, through_spike = torch.empty_like(grad_u), torch.empty_like(grad_u)  # scratch, reused every step
        for t in reversed(range(pre_reset.shape[0])):
            h, s = pre_reset[t], spikes[t]
            if grad_mem is not None:
                grad_u.add_(grad_mem[t])
            # s = H(h - threshold), u = h (1 - s), so with the surrogate sg = ds/dh:
            # dL/dh = dL/ds sg + dL/du ((1 - s) - h sg) = sg (dL/ds - dL/du h) + dL/du - dL/du s.
            triangle_surrogate(torch.sub(h, ctx.threshold, out=sg), in_place=True)
            torch.mul(grad_u, h, out=through_spike).neg_()
            if grad_spikes is not None:
                through_spike.add_(grad_spikes[t])
            g = torch.addcmul(grad_u, through_spike, sg, out=grad_x[t])
            g.addcmul_(grad_u, s, value=-1.0)
            torch.mul(g, ctx.beta, out=grad_u)
        return grad_x, None, None


def _slices_in_memory(x: Tensor) -> bool:
    """True when x [T, ...] is T consecutive dense slices (time outermost, no gaps or overlaps
    inside a slice), so that a kernel may index it flat."""
    if x.dim() == 0 or x.numel() == 0:
        return False
    dims = sorted((x.stride(d), x.shape[d]) for d in range(1, x.dim()) if x.shape[d] > 1)
    span = 1
    for stride, size in dims:
        if stride != span:
            return False
        span *= size
    return x.shape[0] == 1 or x.stride(0) == span


def _like(reference: Tensor, grad: Tensor | None) -> Tensor | None:
    """grad with reference's strides (autograd may hand a gradient in another layout)."""
    if grad is None or grad.stride() == reference.stride():
        return grad
    return torch.empty_like(reference).copy_(grad)


FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # what the Triton kernels compute in


@functools.cache
def _fused_kernel() -> type[torch.autograd.Function] | None:
    """lif_triton's autograd Function, or None where triton does not import (it ships with torch's
    Linux wheels only). Imported on first use: importing triton takes about a second."""
    try:
        from spikeport.train.lif_triton import LIFMultiStepTriton
    except ImportError:
        return None
    return LIFMultiStepTriton


class TriangleSpike(torch.autograd.Function):
    """H(v) forward, the triangle surrogate backward, as a spike function of plain operations: the
    spike of `_lif_traceable`, and the `spike_grad` that makes snnTorch's Leaky (and SpikingJelly's
    surrogate) train as this engine does (train/reference.py)."""

    @staticmethod
    def forward(ctx, v: Tensor) -> Tensor:
        ctx.save_for_backward(v)
        return heaviside(v)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (v,) = ctx.saved_tensors
        return grad * triangle_surrogate(v)


def _lif_traceable(x: Tensor, beta: float, threshold: float) -> tuple[Tensor, Tensor]:
    """The recurrence as plain differentiable operations, for torch.compile: dynamo cannot trace
    `_LIFMultiStep` (its out= writes), and here inductor fuses the unrolled T steps, forward and
    backward, into a few kernels itself. Same function and gradient; autograd sums the gradient
    terms in another order, so they may differ from the engine's in the last bits."""
    u, spikes, mems = None, [], []
    for t in range(x.shape[0]):
        h = x[t] if u is None else u * beta + x[t]
        s = TriangleSpike.apply(h - threshold)
        u = h - h * s
        spikes.append(s)
        mems.append(u)
    return torch.stack(spikes), torch.stack(mems)


# Where the fused CPU kernel is used: in training (autograd records the neuron), at every size. It
# is faster at every size (a 4 x 32 x 16 x 8 x 8 layer: 0.20 against 0.70 ms forward and backward;
# the digits CNN's whole step 0.785x, docs/train.md). Its build takes 25 s of CPU (28 s wall on an idle
# machine) once per machine, then cached: the first training run on a machine pays it. Inference
# (an export's calibration, without gradients) keeps the torch engine and never starts the build.
FUSED_CPU_FROM = 1


@functools.cache
def _fused_cpu_kernel() -> Callable[[Tensor, float, float], Tensor] | None:
    """lif_cpu's spike function, or None where its kernel cannot be built (no C++ compiler)."""
    from spikeport.train import lif_cpu

    return lif_cpu.lif_spikes_cpu if lif_cpu.kernel_ops() is not None else None


def _engine(x: Tensor) -> Callable[[Tensor, float, float], tuple[Tensor, Tensor]]:
    """The one place that picks the implementation of `lif_multistep`: under torch.compile the
    traceable loop; the fused Triton kernels (train/lif_triton.py) for CUDA tensors when triton
    imports; the torch engine above everywhere else (and under a TorchScript trace, which
    export/onnx.py handles). The Triton kernels compute the torch engine's floats
    (tests/test_lif_triton.py)."""
    if torch.compiler.is_compiling():
        return _lif_traceable
    if x.is_cuda and x.dtype in FUSED_DTYPES:
        fused = _fused_kernel()
        if fused is not None:
            return fused.apply
    return _LIFMultiStep.apply


def _cpu_training(x: Tensor) -> bool:
    """A float32 CPU tensor that autograd records (a training step, not an export's trace or
    compilation, nor an inference without gradients), of at least FUSED_CPU_FROM elements."""
    return (torch.is_grad_enabled() and x.requires_grad and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
            and x.device.type == "cpu" and x.dtype == torch.float32 and x.numel() >= FUSED_CPU_FROM)


def lif_multistep(x: Tensor, beta: float, threshold: float) -> tuple[Tensor, Tensor]:
    """Run the LIF neuron over x of shape [T, ...]; return (spikes, membrane after reset)."""
    return _engine(x)(x, float(beta), float(threshold))


def lif_spikes(x: Tensor, beta: float, threshold: float) -> Tensor:
    """The spikes of `lif_multistep`, all that a LIF layer passes on. In CPU training they come from
    the fused C++ kernel when it builds (the same floats, tests/test_lif_cpu.py), which writes
    neither the membranes nor h: its forward crosses memory twice per step instead of four times."""
    if _cpu_training(x):
        fused = _fused_cpu_kernel()
        if fused is not None:
            return fused(x, float(beta), float(threshold))
    return lif_multistep(x, beta, threshold)[0]


def lif_steps(x: Tensor, beta: float, threshold: float, reset: str = "zero", reset_delay: bool = False) -> tuple[Tensor, Tensor]:
    """Any of snnTorch's reset rules over x of shape [T, ...]; return (spikes, membrane).

    The membrane is what snnTorch's `Leaky` returns each step: after an immediate reset, or before
    the delayed one. Each operation is snnTorch's, in its order, so the rounding is the same.
    """
    spikes, mems = [], []
    m = None  # no state before the first step: its membrane is x[0] (beta * 0 + x is x exactly), and
    for t in range(x.shape[0]):  # no zeros shaped like x, whose shape an ONNX trace would freeze
        if m is None:
            m, r = x[t], 0.0
        else:
            r = heaviside(m - threshold)  # the reset owed by the previous step (always 0 for an immediate zero reset)
            if reset == "zero":
                m = beta * ((1 - r) * m) + x[t]
            elif reset == "subtract":
                m = (beta * m + x[t]) - r * threshold
            else:
                m = beta * m + x[t]
        s = heaviside(m - threshold)
        if not reset_delay:  # reset now; snnTorch takes back the delayed reset it applied above
            owed = s - r
            m = m - owed * m if reset == "zero" else m - owed * threshold if reset == "subtract" else m
        spikes.append(s)
        mems.append(m)
    return torch.stack(spikes), torch.stack(mems)


class LIF(nn.Module):
    """A layer of LIF neurons over [T, B, ...] input; returns the spikes."""

    def __init__(self, beta: float = 0.5, threshold: float = 1.0, reset: str = "zero", reset_delay: bool = False):
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        self.beta = float(beta)
        self.threshold = float(threshold)
        self.reset = reset
        # A delayed zero reset fires exactly the spikes of an immediate one (the membrane it zeroes a
        # step late is replaced by that step's input either way), so only subtraction keeps the delay.
        self.reset_delay = bool(reset_delay) and reset == "subtract"

    @property
    def resets_to_zero_at_once(self) -> bool:
        """The deployment's own rule, the only one Loihi's LIF and netx compute."""
        return self.reset == "zero" and not self.reset_delay

    def forward(self, x: Tensor) -> Tensor:
        if self.resets_to_zero_at_once:
            return lif_spikes(x, self.beta, self.threshold)
        return lif_steps(x, self.beta, self.threshold, self.reset, self.reset_delay)[0]

    def extra_repr(self) -> str:
        rule = "" if self.resets_to_zero_at_once else f", reset={self.reset}, reset_delay={self.reset_delay}"
        return f"beta={self.beta}, threshold={self.threshold}{rule}"


def snntorch_steps(
    x: Tensor, beta: float, threshold: float, reset: str = "subtract", reset_delay: bool = True,
    alpha: float | None = None, recurrent: nn.Module | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """snnTorch's `Synaptic` (`alpha` given), `RLeaky` (`recurrent` given) and `RSynaptic` (both)
    over x of shape [T, ...]; return (spikes, synaptic current, membrane), each as snnTorch returns
    it per step. Their rules differ from `Leaky`'s (`lif_steps`) in where the reset owed by the
    previous spike falls, r[t] = H(m[t-1] - threshold):

        i[t] = alpha i[t-1] + x[t] (+ recurrent(s[t-1]))          Synaptic, RSynaptic
        m[t] = beta m[t-1] + i[t]          or  beta m[t-1] + x[t] (+ recurrent(s[t-1]))
        subtract: m[t] -= threshold r[t];  zero: m[t] -= m[t] r[t] (the whole new membrane, its
        input included, so a delayed zero reset fires other spikes than an immediate one)
        s[t] = H(m[t] - threshold)

    and without `reset_delay` the reset is taken at once as in `lif_steps`. The recurrent input
    reads the previous step's spikes, zeros at the first step (so a Linear adds its bias then).
    Each operation is snnTorch's, in its order, so the rounding is the same.
    """
    s = i = m = torch.zeros_like(x[0])
    spikes, currents, mems = [], [], []
    for t in range(x.shape[0]):
        r = heaviside(m - threshold)
        if alpha is not None:
            i = alpha * i + x[t]
            i = i if recurrent is None else i + recurrent(s)
            m = beta * m + i
        else:
            m = beta * m + x[t]
            m = m if recurrent is None else m + recurrent(s)
        if reset == "subtract":
            m = m - r * threshold
        elif reset == "zero":
            m = m - m * r
        s = heaviside(m - threshold)
        if not reset_delay:  # reset now, taking back the delayed reset applied above
            owed = s - r
            m = m - owed * m if reset == "zero" else m - owed * threshold if reset == "subtract" else m
        spikes.append(s)
        currents.append(i)
        mems.append(m)
    return torch.stack(spikes), torch.stack(currents), torch.stack(mems)


class CubaLIF(LIF):
    """snnTorch's `Synaptic` (and with `recurrent`, `RSynaptic`) over [T, B, ...]: a current-based
    LIF, whose input is first filtered by the synaptic decay `alpha` (NIR's CubaLIF). `recurrent`
    maps the previous step's spikes [B, ...] to a current added to the input. A subclass of LIF
    for what it shares (beta, threshold, the reset rule); no Loihi target computes it."""

    def __init__(self, alpha: float, beta: float, threshold: float = 1.0, reset: str = "subtract", reset_delay: bool = True,
                 recurrent: nn.Module | None = None):
        super().__init__(beta, threshold, reset)
        self.alpha = float(alpha)
        self.reset_delay = bool(reset_delay) and reset != "none"  # a delayed zero reset differs here (snntorch_steps)
        self.recurrent = recurrent

    def forward(self, x: Tensor) -> Tensor:
        return snntorch_steps(x, self.beta, self.threshold, self.reset, self.reset_delay, self.alpha, self.recurrent)[0]

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, threshold={self.threshold}, reset={self.reset}, reset_delay={self.reset_delay}"


class RecurrentLIF(LIF):
    """snnTorch's `RLeaky` over [T, B, ...]: a LIF whose previous step's spikes, through
    `recurrent` (a Linear or Conv2d over one step's [B, ...]), add to its input."""

    def __init__(self, beta: float, recurrent: nn.Module, threshold: float = 1.0, reset: str = "subtract", reset_delay: bool = True):
        super().__init__(beta, threshold, reset)
        self.reset_delay = bool(reset_delay) and reset != "none"  # a delayed zero reset differs here (snntorch_steps)
        self.recurrent = recurrent

    def forward(self, x: Tensor) -> Tensor:
        return snntorch_steps(x, self.beta, self.threshold, self.reset, self.reset_delay, None, self.recurrent)[0]
