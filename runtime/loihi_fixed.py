"""The reference runtime's `loihi` mode: a lava-dl netx network in Lava's fixed-point arithmetic, batched in torch.

`simulate_netx(network, ...)` runs a network that export/netx_read.py `read_netx` read (the
integers Lava runs after netx's own processing) for a batch of samples at once, on CPU or CUDA,
and returns every layer's current u, voltage v and spikes at every step. It copies lava-nc 0.10.0
/ lava-dl 0.6.0 exactly (tests/test_runtime_loihi.py compares it with lava-dl's own reference
outputs and with Lava's `Loihi2SimCfg(select_tag="fixed_pt")`):

What Lava computes per step t (lava.proc.lif.models.AbstractPyLifModelFixed, dense/conv models),
in the integer widths Lava's numpy code uses (int32 wraps and int16 bias_mant emulated here):

    a_i[t]   = synapse_i(s_{i-1}[t-1])               one step of delay per synapse (a_buff)
    u[t]     = wrap24(trunc(u[t-1] * (4096 - du - 1) / 4096) + (a_i[t] << 6))
    v[t]     = clip(trunc(v[t-1] * (4096 - dv) / 4096) + u[t] + (bias_mant << bias_exp), +-(2**23 - 1))
    s[t]     = v[t] > vth << 6;   v[t] = 0 where s[t]

where wrap24 is Lava's (asymmetric, single) wrap: x - 2**24 if x > 2**23, x + 2**24 if x <= -2**23.
LIF neurons send 0/1 spikes (netx cannot load a file that gives messageBits, so the reader
refuses one: export/netx_read.py).

Sigma-delta (netx's 'SDNN') blocks send graded messages, int32 values, one step later to the next
synapse like spikes; their neurons are Lava's fixed-point Delta / SigmaDelta / Sigma (class
_SigmaDelta), and a graded dense sum wraps in int32 before its exponent shift. lava-dl's PilotNet
SDNN reproduces its ground truth bit for bit (tests/test_netx_sdnn.py).

Records are aligned to Lava's steps: index k of the time axis is Lava's time_step k + 1, the value
a probe (or a RingBuffer sink, or `var.get()` after k + 1 steps) shows. Shapes are torch's
(C, H, W) or (N,); `lava_order` turns a record into Lava's (X, Y, Z) = (W, H, C) order. With
`aligned=True` (one sample per window), block i is run and recorded only on its steps i .. i+T-1,
the ones that carry the sample, so index j is the sample's timestep j in every block.

How it is fast. A netx network is a chain, so the simulation goes block by block: a block's spikes
at every step are known before the next block runs, whose synapse then takes many steps in one
batched convolution or matrix product; only the neuron's recurrence loops over steps. Where the
bounds of the weights and inputs show that no int32 or 24-bit wrap can happen, a layer's neurons
run in int32 and skip the wraps (exact: the wraps would change nothing); decays by a power of two
(beta 0.5) are shifts. Aligned windows skip the pipeline's fill, which no later step can see.

Sums are computed as float32 (float64 where a row's sum of |weights| times the largest input
reaches 2**24) and are exact integers; TF32 is switched off on CUDA while they run. int32 wraps
follow numpy's types in Lava: a binary dense sum accumulates in int64 and is wrapped after the
exponent shift (the int32 channel), a graded one (input_message_bits > 0: external input, or a
sigma-delta block's messages) is wrapped before it (both compared with Lava's Dense model by a test); conv sums
that exceed int32 are refused (Lava's float-to-int32 conversion is undefined there). The bounds
of graded inputs are their own largest values, known block by block.

Limits: records of more than 4 * MAX_ELEMENTS values are refused (record fewer layers or states).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from spikeport.errors import UserError
from spikeport.export.lower import topological_order
from spikeport.export.netx_read import (DECAY_UNITY, MAX_ELEMENTS, NETX_BIAS_EXP, SDNN_SPIKE_EXP, SDNN_STATE_EXP, Block, NetxNetwork,
                                        Neuron)

DECAY_SHIFT = 12  # DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = 6
VTH_SHIFT = 6
UV_MAX = 1 << 23  # u and v are 24-bit
CHUNK_ELEMENTS = 1 << 24  # a synapse computes at most this many outputs in one call (memory bound)


@dataclass
class LayerRecord:
    """One block's states per step: [B, T, *shape]; None where not recorded."""

    name: str
    kind: str
    u: Tensor | None  # int32 (a sigma-delta block: its sigma)
    v: Tensor | None  # int32 (a sigma-delta block: its activation)
    s: Tensor | None  # uint8 spikes (0/1); a sigma-delta block's graded messages, int32


# ----------------------------------------------------------------------------------------------- simulating

_OFF32, _MASK32 = 1 << 31, (1 << 32) - 1


def _wrap32(x: Tensor) -> Tensor:
    """int64 holding what Lava's int32 numpy arithmetic leaves (two's-complement wrap)."""
    return ((x + _OFF32) & _MASK32) - _OFF32


def _wrap16(x: Tensor) -> Tensor:
    return ((x + (1 << 15)) & ((1 << 16) - 1)) - (1 << 15)


def _bias_drive(mant: Tensor, exp: int) -> tuple[Tensor, int, int]:
    """Lava's int16 bias_mant shifted by bias_exp in int32, as (values, scale, bound): the bias is
    values * scale, and |bias| <= bound.

    Where the values' type or range shows that neither the int16 nor the int32 wrap can change
    anything, the mantissa is kept as it is with scale 2**bias_exp, so that the neuron adds it
    scaled in one pass (the input layer's per-step drive is large, and converting and shifting it
    would cost about as much as the neurons themselves). Otherwise the wrapped int64 values, scale 1.
    """
    if mant.numel() == 0:
        return mant, 1, 0
    if mant.dtype in (torch.int8, torch.uint8, torch.int16):
        lo, hi = -(1 << 15), (1 << 15) - 1  # holds nothing int16 would wrap
    else:
        lo, hi = (int(x) for x in torch.aminmax(mant))
        if lo < -(1 << 15) or hi >= 1 << 15:
            mant = _wrap16(mant)
            lo, hi = (int(x) for x in torch.aminmax(mant))
    if exp < 0:
        return mant.to(torch.int32) >> -exp, 1, max(-lo, hi) >> -exp
    bound = max(-lo, hi) << exp
    if bound < 1 << 31:
        return mant, 1 << exp, bound
    return _wrap32(mant.to(torch.int64) << exp), 1, 1 << 31


def _as_int_tensor(x, device, name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    if t.is_floating_point():
        if not torch.all(t == torch.round(t)):
            raise UserError(f"{name}: holds non-integer values")
        return t.to(device=device, dtype=torch.int64)
    # integers keep their type (an int16 drive needs no int16 wrap); bool and unsigned become int64
    keep = t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64)
    return t.to(device=device, dtype=t.dtype if keep else torch.int64)


class _Synapse:
    """One block's synapse on a device: a_buff-free function spikes [B, *in] -> activation [B, *shape] (int64)."""

    def __init__(self, block: Block, device: torch.device, input_max: int = 1):
        self.block = block
        w = torch.as_tensor(block.weight, dtype=torch.int64)
        rows = int(w.abs().sum(dim=tuple(range(1, w.ndim))).max()) if w.numel() else 0
        bound = (
            rows * input_max
        )  # the largest |weighted sum| of inputs bounded by input_max
        if bound >= 2**53:
            raise UserError(
                f"{block.name}: weighted sums up to {bound} are beyond what this runtime computes exactly (2**53)"
            )
        self.check_int32 = block.kind == "conv" and bound >= 2**31  # checked on the sums themselves
        # every partial sum of integer inputs times integer weights is an integer: float32 is exact below 2**24
        self.dtype = torch.float32 if bound < 2**24 else torch.float64
        self.bound = bound
        shifted = bound << block.weight_exp if block.weight_exp > 0 else bound >> -block.weight_exp
        self.narrow = bound < 1 << 31 and shifted < 1 << 31  # dense: no int32 wrap can happen
        self.weight = w.to(device=device, dtype=self.dtype)
        if block.kind == "dense":
            self.weight = self.weight.t().contiguous()

    def __call__(self, s: Tensor) -> Tensor:
        """int32 where the sums cannot leave int32's range, else int64 holding Lava's int32 values."""
        b = self.block
        x = s.to(self.dtype)
        # The float sums are exact integers (see __init__), so converting them truncates nothing. The
        # wraps below are skipped where the bound on |sum| shows they cannot change a value.
        if b.kind == "dense":
            if b.flatten:
                x = x.reshape(x.shape[0], -1)
            with _exact_matmul():
                a = (x @ self.weight).to(torch.int32 if self.narrow else torch.int64)
            # graded: weights.dot(s_in) in int32; binary: numpy's sum accumulates in int64
            if b.input_message_bits > 0 and not self.narrow:
                a = _wrap32(a)
            a = a << b.weight_exp if b.weight_exp > 0 else a >> -b.weight_exp
            return a if self.narrow else _wrap32(a)  # a_out's int32 channel
        with _exact_matmul():
            a = F.conv2d(
                x,
                self.weight,
                stride=b.stride,
                padding=b.padding,
                dilation=b.dilation,
                groups=b.groups,
            )
        if self.check_int32 and a.numel() and float(a.abs().max()) >= 2**31:
            raise UserError(f"{b.name}: conv sums reach {float(a.abs().max()):.0f}, beyond int32, where Lava's float-to-int32 conversion is undefined")
        a = a.to(torch.int32)
        if self.bound < 1 << 23:
            return a
        # lava.proc.conv.utils.signed_clamp(x, bits=24)
        return ((a + (1 << 23)) & ((1 << 24) - 1)) - (1 << 23)


@contextlib.contextmanager
def _exact_matmul():
    """No TF32 on CUDA: the integer sums must be exact."""
    if not torch.cuda.is_available():
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled, allow_tf32=False
        ):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def simulate_netx(
    network: NetxNetwork,
    bias=None,
    spikes=None,
    steps: int | None = None,
    reset_interval: int | None = None,
    reset_offset: int = 0,
    device: str | torch.device = "cpu",
    record: Iterable[str] | dict[int, Iterable[str]] = ("u", "v", "s"),
    layers: Sequence[int] | None = None,
    aligned: bool = False,
    a_in=None,
) -> list[LayerRecord]:
    """Run `network` for `steps` Lava steps on a batch; returns one LayerRecord per block (or per index in `layers`).

    bias: the input layer's bias_mant, (C, H, W) order: [B, *shape] (the same every step) or
        [B, T, *shape] (per step, as `bias_mant.set(...)` between runs of one step would); ints.
    spikes: input spikes of a network whose first block is a synapse: [B, T, *input_shape], where
        index k is what the first synapse receives at Lava step k + 1 (a RingBuffer source's
        data[..., k]); non-zero is a spike unless the input is graded (input_message_bits > 0).
    a_in: the input of a sigma-delta input layer (netx's Delta): [B, T, *shape] int32 values, index
        k what its a_in receives at step k + 1 (a RingBuffer source connected to
        `net.in_layer.neuron.a_in`, as lava-dl's PilotNet SDNN test drives it).
    reset_interval, reset_offset: as netx.hdf5.Network's.
    record: any of "u", "v", "s", for every block in `layers`; or {block index: states}, to record
        different states of different blocks (those blocks only, in that order; no `layers` then).
    aligned: one sample per window of `steps` steps (as reset_interval=steps), and each block only
        on the steps that carry the sample: block i from its reset at step i on, for steps - K
        steps (K: the blocks after the first). Its records are [B, steps - K, ...], index j being
        step i + j, the sample's timestep j; a per-step input needs only those steps - K steps. The steps it skips, before a block's reset, hold
        only the pipeline's fill and cannot reach any later step: this is exact, and costs what
        steps - K dense passes cost. With sigma-delta blocks (which never reset and whose bias acts
        from step 1) every block runs all steps from a fresh state and the records are the same
        steps i + 1 .. i + steps - K.

    Records of a sigma-delta block: s the graded messages it sends (int32), u its sigma (a Delta:
    its scaled input), v its activation (class _SigmaDelta).
    """
    if isinstance(record, dict):
        if layers is not None:
            raise UserError("layers: give the blocks as the keys of record, not both")
        wanted = {int(i): set(states) for i, states in record.items()}
    else:
        wanted = {int(i): set(record) for i in (range(len(network.blocks)) if layers is None else layers)}
    for states in wanted.values():
        if not states <= {"u", "v", "s"}:
            raise UserError(f"record: {sorted(states - {'u', 'v', 's'})} not among u, v, s")
    if reset_interval is not None and (
        int(reset_interval) != reset_interval or reset_interval < 1
    ):
        raise UserError(f"reset_interval: {reset_interval!r} is not a positive integer")
    device = torch.device(device)
    blocks = network.blocks
    if network.input_shape is None:
        raise UserError(f"{network.path}: its input shape is not read yet; read it with read_netx(path, input_shape=(C, H, W))")
    first = blocks[0]
    if aligned and (reset_interval is not None or reset_offset != 0):
        raise UserError("aligned: one window per sample of `steps` steps; pass no reset_interval or reset_offset")

    sdnn = any(b.neuron.sigma_delta for b in blocks)
    drive, per_step = None, False
    ext, ext_steps = None, None
    if first.kind == "input" and first.neuron.model == "Delta":
        if bias is not None or spikes is not None:
            raise UserError(f"{network.path}: its input layer {first.name} is sigma-delta, driven through its a_in; pass a_in=, not bias= or spikes=")
        if a_in is None:
            raise UserError(f"{network.path}: the sigma-delta input layer {first.name} is driven through its a_in; pass a_in=[B, T, *{list(first.shape)}]")
        ext = _as_int_tensor(a_in, device, "a_in")
        if ext.ndim != len(first.shape) + 2 or tuple(ext.shape[2:]) != first.shape:
            raise UserError(f"a_in: shape {tuple(ext.shape)}; expected [B, T, *{list(first.shape)}]")
        if ext.numel() and max(-int(ext.min()), int(ext.max())) >= 2**31:
            raise UserError("a_in: values beyond int32, which is what Lava's RingBuffer sends into the input layer")
        batch, ext_steps = ext.shape[0], ext.shape[1]
    elif a_in is not None:
        raise UserError(f"{network.path}: a_in= drives a sigma-delta input layer only; its first block {first.name} takes "
                        + ("bias=" if first.kind == "input" else "spikes="))
    elif first.kind == "input":
        if spikes is not None:
            raise UserError(
                f"{network.path}: starts with an input layer, driven by its bias; pass bias=, not spikes="
            )
        shape = first.shape
        if bias is None:
            raise UserError(
                f"{network.path}: the input layer {first.name} is driven by its bias; pass bias=[B, *{list(shape)}]"
            )
        drive = _as_int_tensor(bias, device, "bias")
        if tuple(drive.shape[1:]) == shape:
            per_step = False
        elif drive.ndim == len(shape) + 2 and tuple(drive.shape[2:]) == shape:
            per_step = True
        else:
            raise UserError(
                f"bias: shape {tuple(drive.shape)}; expected [B, *{list(shape)}] or [B, T, *{list(shape)}]"
            )
        batch = drive.shape[0]
        if per_step:
            ext_steps = drive.shape[1]
    else:
        if bias is not None:
            raise UserError(
                f"{network.path}: has no input layer to take a bias; pass spikes="
            )
        if spikes is None:
            raise UserError(
                f"{network.path}: starts with synaptic layer {first.name}; pass spikes=[B, T, *{list(network.input_shape)}]"
            )
        ext = _as_int_tensor(spikes, device, "spikes")
        if tuple(ext.shape[2:]) != tuple(network.input_shape):
            raise UserError(
                f"spikes: shape {tuple(ext.shape)}; expected [B, T, *{list(network.input_shape)}]"
            )
        if first.input_message_bits == 0:
            ext = (ext != 0).to(torch.int64)
        batch, ext_steps = ext.shape[0], ext.shape[1]
    if steps is None:
        if ext_steps is None:
            raise UserError("steps: required when the input is the same every step")
        steps = ext_steps
    if int(steps) != steps or steps < 1:
        raise UserError(f"steps: {steps!r} is not a positive integer")
    steps = int(steps)
    if aligned and steps <= len(blocks) - 1:
        raise UserError(f"steps: a window of {steps} steps holds no timestep of a sample after {len(blocks) - 1} synaptic stages")
    length = steps - (len(blocks) - 1)  # aligned: the steps each block computes
    needed = length if aligned else steps  # aligned reads the input only on the sample's own steps
    if ext_steps is not None and ext_steps < needed:
        raise UserError(f"input has {ext_steps} steps; {needed} needed")
    drive_scale, drive_bound = 1, 0
    if drive is not None:
        drive, drive_scale, drive_bound = _bias_drive(drive[:, :length] if aligned and per_step else drive, first.neuron.bias_exp)
    chosen = list(wanted)
    if any(not 0 <= i < len(blocks) for i in chosen):
        raise UserError(f"layers: {chosen} are not all block indices 0..{len(blocks) - 1}")
    values = batch * steps * sum(math.prod(blocks[i].shape) * len(wanted[i]) for i in chosen)
    if values > 4 * MAX_ELEMENTS:
        raise UserError(
            f"records of {batch} samples x {steps} steps of the chosen layers' states are {values} values, more than "
            f"{4 * MAX_ELEMENTS}; record fewer layers or states, or split the batch"
        )

    window = None  # aligned on a network with sigma-delta blocks: every block from step 1, records sliced
    if aligned and sdnn:
        # A sigma-delta neuron never resets (netx ignores reset_interval for it) and its bias drives
        # it from step 1, so no step of a block can be skipped: all blocks run from a fresh state
        # for all steps (the LIF blocks reset at the window's start as aligned ones do), and block
        # i's records are its steps i + 1 .. i + steps - K, as the aligned ones are.
        window, aligned, reset_interval = length, False, steps
        if per_step and drive.shape[1] < steps:  # the unread steps after the sample's own
            drive = torch.cat([drive, drive[:, -1:].expand(-1, steps - drive.shape[1], *drive.shape[2:])], dim=1)
    offsets = None
    if reset_interval is not None:
        offsets = [(reset_offset + 1 + i) % reset_interval for i in range(len(blocks))]
    # Block by block: the network is a chain, so block i's output at every step is known before
    # block i + 1 runs; its synapse then sees many steps in one batched call (a chunk of steps at a
    # time, to bound memory) and only the neuron's recurrence loops over steps. Each synapse's
    # bounds come from the values it reads (0/1 spikes, or graded messages), known by then.
    last = max(chosen, default=-1)  # blocks after the last recorded one need not run
    source, source_first = ext, 0  # what the next synapse reads [B, steps, ...], the step of index 0
    out: dict[int, dict[str, Tensor]] = {}
    for i, b in enumerate(blocks[: last + 1]):
        first_step = i if aligned else 0  # aligned: the block's reset step, where its sample begins
        n = length if aligned else steps
        synapse = None if b.kind == "input" else _Synapse(b, device, _input_bound(source))
        graded_out = b.neuron.sigma_delta
        if graded_out:
            neuron, state = _SigmaDelta(b.neuron, device), {}
        else:
            lif = _lif_for(b, synapse, drive_bound)
            u = torch.zeros((batch, *b.shape), dtype=lif.dtype, device=device)
            v = u.clone()
            bias_term, bias_scale = None, 1
            if b.kind == "input":
                bias_scale = drive_scale
            elif b.neuron.bias_mant is not None:
                bm = torch.as_tensor(np.array(b.neuron.bias_mant, dtype=np.int64), device=device)
                shift = b.neuron.bias_exp
                bias_term = (_wrap32(_wrap16(bm) << shift) if shift >= 0 else _wrap16(bm) >> -shift).to(lif.dtype)
        spikes_out = torch.empty((batch, n, *b.shape), dtype=torch.int32 if graded_out else torch.uint8, device=device)
        rec = {k: torch.empty((batch, n, *b.shape), dtype=torch.int32, device=device) for k in wanted.get(i, set()) - {"s"}}
        chunk = max(1, CHUNK_ELEMENTS // max(1, batch * math.prod(b.shape)))
        for j0 in range(0, n, chunk):
            c = min(chunk, n - j0)
            if b.kind == "input":  # a LIF input layer has none (its bias drives it); a Delta reads a_in
                a = _steps(ext, first_step + j0, c) if graded_out else None
            else:  # Lava's a_buff: the synapse's output at step k is of what was sent at step k - 1
                x = _steps(source, first_step + j0 - 1 - source_first, c)
                a = synapse(x.flatten(0, 1)).unflatten(0, (batch, c))
                if not graded_out:
                    a = a.to(lif.dtype)
            for j in range(j0, j0 + c):
                t = first_step + j + 1  # Lava's time_step
                if graded_out:
                    s, u, v = neuron(state, a[:, j - j0])
                else:
                    if offsets is not None and t % reset_interval == offsets[i]:
                        u, v = torch.zeros_like(u), torch.zeros_like(v)
                    if b.kind == "input":
                        bias_term = drive[:, first_step + j] if per_step else drive
                    u, v, s = lif(u, v, None if a is None else a[:, j - j0], bias_term, bias_scale)
                spikes_out[:, j] = s
                if "u" in rec:
                    rec["u"][:, j] = u
                if "v" in rec:
                    rec["v"][:, j] = v
        if i in wanted:
            out[i] = {**rec, **({"s": spikes_out} if "s" in wanted[i] else {})}
            if window is not None:
                out[i] = {k: r[:, i : i + window] for k, r in out[i].items()}
        source, source_first = spikes_out, first_step
    return [
        LayerRecord(blocks[i].name, blocks[i].kind, out[i].get("u"), out[i].get("v"), out[i].get("s"))
        for i in chosen
    ]


def _input_bound(source: Tensor | None) -> int:
    """The largest |value| a synapse reads (at least 1): 1 for spikes, the graded messages' own."""
    if source is None or source.numel() == 0 or source.dtype in (torch.uint8, torch.bool):
        return 1
    lo, hi = torch.aminmax(source)
    return max(1, -int(lo), int(hi))


def _lif_for(b: Block, synapse: "_Synapse | None", drive_bound: int) -> "_Lif":
    """Block b's LIF step, with the bounds that decide which wraps it needs: of its synapse's output
    and bias (an input layer: of the bias drive)."""
    if b.kind == "input":
        return _Lif(b.neuron, 0, drive_bound)
    a_bound = synapse.bound
    if b.kind == "conv":
        a_bound = min(a_bound, 1 << 23)  # signed_clamp to 24 bits
    elif a_bound >= 2**31:
        a_bound = math.inf  # the int32 sum may wrap
    elif b.weight_exp > 0:
        a_bound = a_bound << b.weight_exp if a_bound << b.weight_exp < 2**31 else math.inf
    else:
        a_bound = (a_bound >> -b.weight_exp) + 1
    bias_bound = 0
    if b.neuron.bias_mant is not None and np.size(b.neuron.bias_mant):
        mant = ((np.asarray(b.neuron.bias_mant, dtype=np.int64) + (1 << 15)) & 0xFFFF) - (1 << 15)  # int16
        bias_bound = int(np.abs(mant).max()) << max(b.neuron.bias_exp, 0)
    return _Lif(b.neuron, a_bound, bias_bound)


_INT32_MIN = -(1 << 31)
SDNN_SCALE = SDNN_SPIKE_EXP + SDNN_STATE_EXP  # Lava's fixed-point Delta/SigmaDelta scale vth, bias (and Delta its input) by 2**12


class _SigmaDelta:
    """One step of Lava's fixed-point sigma-delta processes as netx builds them (lava.proc.sdn.models:
    PyDeltaModelFixed for an input layer, PySigmaDeltaModelFixed, PySigmaModelFixed for a
    `sigma_output` read-out), in int64 tensors holding the int32 values numpy computes there:

        Delta       act = a_in << 12              (the input layer: a_in is what the source sends)
        SigmaDelta  sigma += a_in;  act = relu(sigma + (bias << 12))
        both        delta = act - act_prev + residue
                    s = delta where |delta| >= vth << 12 (numpy's int32 |.|: |-2**31| < 0), else 0
                    residue = delta - s;  send s >> 6 (state_exp)
        Sigma       sigma += a_in;  send sigma

    Every sum wraps as int32 does; the wrap is modular, so only the values that a ReLU, a
    comparison or a shift reads need it. netx's SigmaDelta has cum_error off and ReLU on.
    """

    def __init__(self, n: Neuron, device: torch.device):
        self.model = n.model
        self.vth = int(_wrap32(torch.tensor(n.vth << SDNN_SCALE)))
        self.bias = None
        if n.bias_mant is not None:  # netx: bias.astype(int32) * 2**12 in int32
            mant = torch.as_tensor(np.array(n.bias_mant, dtype=np.int64), device=device)
            self.bias = _wrap32(_wrap32(mant) << SDNN_SCALE)

    def __call__(self, state: dict[str, Tensor], a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step on a [B, *shape] (int); updates `state`; returns (sent, sigma, act)."""
        a = a.to(torch.int64)
        zero = torch.zeros_like(a)
        if self.model == "Delta":
            sigma = act = _wrap32(a << SDNN_SCALE)
        else:
            sigma = _wrap32(state.get("sigma", zero) + a)
            if self.model == "Sigma":
                state["sigma"] = sigma
                return sigma, sigma, sigma
            act = _wrap32(sigma + self.bias) if self.bias is not None else sigma
            act = act.clamp_min(0)
        delta = _wrap32(act - state.get("act", zero) + state.get("residue", zero))
        fire = (delta.abs() >= self.vth) & (delta != _INT32_MIN)
        sent = torch.where(fire, delta, zero)
        state.update(sigma=sigma, act=act, residue=delta - sent)
        return sent >> SDNN_STATE_EXP, sigma, act


def _steps(source: Tensor, first: int, count: int) -> Tensor:
    """source[:, first : first + count], with zeros for indices before 0 (no spike sent yet) or past its end."""
    lead = max(0, -first)
    part = source[:, max(first, 0) : first + count]
    missing = count - lead - part.shape[1]
    if lead == 0 and missing == 0:
        return part
    zeros = lambda k: torch.zeros((source.shape[0], k, *source.shape[2:]), dtype=source.dtype, device=source.device)
    return torch.cat([zeros(lead), part, zeros(missing)], dim=1)


class _Lif:
    """One LIF layer's step (AbstractPyLifModelFixed.subthr_dynamics, then PyLifModelBitAcc's spike and reset).

    The int32 wraps and the 24-bit current wrap are skipped where bounds from the weights prove that
    they cannot apply (they are exact no-ops there); a layer that needs none of them runs in int32
    (`dtype`), the others in int64 holding Lava's int32 values, so the common layers cost a few
    narrow tensor ops.
    """

    def __init__(self, n: Neuron, a_bound: float, bias_bound: int):
        self.keep_u = DECAY_UNITY - (n.du + 1)
        self.keep_v = DECAY_UNITY - n.dv
        self.vth = n.vth << VTH_SHIFT
        a64 = a_bound * (1 << ACT_SHIFT)
        self.wrap_in = not a64 < 2**31 - 2**25  # a << 6 and decayed + a stay in int32
        if self.keep_u <= 0:
            u_bound = a64
        elif self.keep_u < DECAY_UNITY:
            u_bound = a64 * DECAY_UNITY / (DECAY_UNITY - self.keep_u) + 1
        else:
            u_bound = math.inf
        self.wrap_u = not u_bound < UV_MAX - 1
        u_bound = min(u_bound, 2**31) if not self.wrap_u else 2**31
        self.wrap_v = not UV_MAX + u_bound + bias_bound < 2**31
        self.dtype = torch.int64 if self.wrap_in or self.wrap_u or self.wrap_v else torch.int32

    @staticmethod
    def _decay(x: Tensor, keep: int) -> Tensor | None:
        """x * keep / 4096 truncated toward zero, Lava's decay; None for keep 0.

        keep = 2**k (beta 0.5 gives 2048): a division by 2**(12 - k), truncated toward zero by
        adding 2**(12 - k) - 1 to negative values before the arithmetic shift. Otherwise in
        float64, where it is exact: |x| < 2**32 and keep has at most 13 bits, so the product has
        at most 45 significant bits (< 53), dividing by 4096 only moves the exponent, and
        converting back truncates toward zero. Both are several times faster than torch's
        integer division.
        """
        if keep == 0:
            return None
        if keep == DECAY_UNITY:
            return x
        if keep & (keep - 1) == 0:
            shift = DECAY_SHIFT - keep.bit_length() + 1
            bits = 8 * x.element_size() - 1
            return (x + ((x >> bits) & ((1 << shift) - 1))) >> shift
        return (x.to(torch.float64) * (keep / DECAY_UNITY)).to(x.dtype)

    def __call__(
        self, u: Tensor, v: Tensor, a_in: Tensor | None, bias: Tensor | None, bias_scale: int = 1
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One step from u, v (not modified); the bias term is bias * bias_scale."""
        current = self._decay(u, self.keep_u)
        if a_in is not None:
            a = a_in << ACT_SHIFT
            if self.wrap_in:
                a = _wrap32(a)
            current = a if current is None else current + a
            if self.wrap_in:
                current = _wrap32(current)
        silent = current is None  # the input layer: no synapse, so u stays 0 and adds nothing
        if silent:
            current = u
        elif self.wrap_u:
            wrapped = torch.where(current > UV_MAX, current - 2 * UV_MAX, current)
            current = _wrap32(
                torch.where(wrapped <= -UV_MAX, current + 2 * UV_MAX, wrapped)
            )
        u = current
        volt = self._decay(v, self.keep_v)  # v itself (keep 4096), None (keep 0) or a new tensor
        if volt is None:
            volt = u.clone()
        elif volt is v:
            volt = v.clone() if silent else v + u
        elif not silent:
            volt += u
        if bias is not None:
            volt.add_(bias, alpha=bias_scale)
        return self._fire(u, volt)

    def _fire(self, u: Tensor, volt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Wrap and clip the new voltage (a tensor of its own), spike above threshold, reset to 0."""
        if self.wrap_v:
            volt = _wrap32(volt)
        volt = volt.clamp_(-UV_MAX + 1, UV_MAX - 1)
        spikes = volt > self.vth
        v = volt.masked_fill_(spikes, 0)
        return u, v, spikes


def lava_order(x: Tensor | np.ndarray, time_last: bool = True):
    """A record [B, T, C, H, W] / [B, T, N] (or [T, ...] / [...] without batch) in Lava's order.

    Reverses the neuron axes ((C, H, W) -> (X, Y, Z) = (W, H, C)) and, with time_last, moves T last,
    as Lava's RingBuffer sinks and lava-dl's references hold them: [B, W, H, C, T].
    """
    a = x.cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if a.ndim < 3:
        raise UserError(f"lava_order: expected [B, T, ...], got shape {a.shape}")
    spatial = list(range(a.ndim - 1, 1, -1))
    order = [0, *spatial, 1] if time_last else [0, 1, *spatial]
    return np.ascontiguousarray(a.transpose(order))


def from_lava_order(x: np.ndarray) -> np.ndarray:
    """An array in Lava's (X, Y, Z) order, e.g. a bias_mant, in torch's (C, H, W) order."""
    a = np.asarray(x)
    return np.ascontiguousarray(a.transpose(tuple(reversed(range(a.ndim)))))


# ----------------------------------------------------------------------------------------------- exports as graphs
#
# An export that is not one plain chain (residual sums, several partitions, host partitions in
# between) has no model.net: its integers are loihi.json's on the partitions' graphs as deployed
# (export/loihi.py), and `simulate_export` runs them the way spikeport's Lava graph does in
# fixed_pt (runtime/lava/), bit for bit, batched and aligned: every layer on the
# timesteps of the sample only (Lava delays the shorter paths into a neuron with DelayDense, so a
# neuron sums the currents of one input timestep, and resets when the sample's first timestep
# reaches it, which is what computing each sample's T steps from zero is). Synapses are the
# Dense / Conv arithmetic above (`_Synapse`: Dense takes 8-bit even weights 2m with exponent
# e - 1, Conv the integers themselves); an identity shortcut multiplies by its one integer; the
# first layer reading a model input is its host-computed current (export.loihi.host_current);
# host partitions run their ONNX files on the payloads of lava/worker/payload.py from_payload and
# send its to_payload, as the Lava host process does, with the same view of time: output
# timestep t comes from a run on the input timesteps 0..t + buffer, later ones zero, in one thread
# as there. The emulator runs the ONNX file on all samples in one batch where Lava's process runs
# one sample at a time; ONNX Runtime's CPU kernels give each sample the same floats either way
# (the payloads, rounded from them, are compared in tests/test_lava_dta.py and in the benchmark).


@dataclass
class ExportRecord:
    """What `simulate_export` gives: the model output [B, T, ...] (float64), every neuron layer's
    spikes [B, T, *shape] by "partition.layer", and every boundary tensor's values as the partition
    reading it receives them (payload integers, or spikes) by tensor name."""

    output: np.ndarray
    spikes: dict[str, Tensor]
    tensors: dict[str, Tensor]


def simulate_export(manifest, export_dir, graphs: dict, loihi, inputs: dict[str, np.ndarray], device: str | torch.device = "cpu") -> ExportRecord:
    """Every partition of an export in Lava's fixed-point arithmetic (section comment above).

    graphs: each neuromorphic partition's NIR graph as exported (model.nir files), by name;
    loihi: the export's loihi.json (export.loihi.read_loihi_json); inputs: [B, T, *shape] per
    model input."""
    from spikeport.runtime.lava.worker.payload import from_payload, to_payload
    from spikeport.export.lower import deploy

    device = torch.device(device)
    boundaries = {b.tensor: b for b in loihi.boundaries}
    final = [t.name for t in manifest.outputs]
    values: dict[str, Tensor] = {}  # tensor -> what travels: ints (payloads, currents) or 0/1 spikes, [B, T, *shape]
    floats: dict[str, np.ndarray] = {}  # host outputs no chip reads (the model output), float32
    model_inputs = {t.name for t in manifest.inputs}
    spikes: dict[str, Tensor] = {}
    output = None
    biases: dict[str, np.ndarray] = {}
    for p in manifest.partitions:
        if p.kind == "host":
            frames = {}
            for t in p.inputs:
                ints = values[t.name].cpu().numpy()
                frames[t.name] = from_payload(ints, boundaries[t.name], biases.get(t.name, 0.0)) if t.name in boundaries else ints.astype(np.float32)
            outs = _run_host(os.path.join(export_dir, p.file), frames, [t.name for t in p.outputs], p.buffer_timesteps)
            for t, y in zip(p.outputs, outs):
                if t.name in boundaries:
                    values[t.name] = torch.as_tensor(to_payload(y, boundaries[t.name]), device=device)
                else:
                    floats[t.name] = y
            continue
        handoff = [t.name for t in p.outputs] != final
        graph = deploy(graphs[p.name], handoff)
        layers = [layer for layer in loihi.layers if layer.partition == p.name]
        drives, raw = {}, {}
        for t in p.inputs:
            if t.name in model_inputs:
                if not any(l.on_host and (t.name, l.synapse) in graph.edges for l in layers):
                    raise UserError(f"partition {p.name}: no first layer on the host reads the model input {t.name}")
                raw[t.name] = inputs[t.name]
            else:
                drives[t.name] = values[t.name]
        result = _simulate_partition(graph, layers, drives, raw, device, handoff)
        spikes.update({f"{p.name}.{name}": s for name, s in result.spikes.items()})
        for t in p.outputs:
            node = "output" if len(p.outputs) == 1 else f"output_{t.name}"
            values[t.name] = result.outputs[node]
            if node in result.biases:
                biases[t.name] = result.biases[node]
        if result.readout is not None and [t.name for t in p.outputs] == final:
            v, scale = result.readout
            output = np.diff(v.cpu().numpy().astype(np.float64), axis=1, prepend=0.0) / (64 * scale)
    (model_output,) = final
    if output is None:  # a host partition's result, or a chip's spikes (a foreign graph ending in a neuron layer)
        output = (floats[model_output] if model_output in floats else values[model_output].cpu().numpy()).astype(np.float64)
    return ExportRecord(output=output, spikes=spikes, tensors=values)


def _run_host(path: str, frames: dict[str, np.ndarray], outputs: list[str], buffer: int) -> list[np.ndarray]:
    """A host partition's ONNX file on [B, T, *shape] frames as Lava's host process runs it: output
    timestep t from the input timesteps 0..t + buffer (later ones zero); [B, T, *shape] per output."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # as the Lava host process: the same sums
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feeds = {name: np.ascontiguousarray(np.swapaxes(x, 0, 1), dtype=np.float32) for name, x in frames.items()}  # [T, B, ...]
    steps = next(iter(feeds.values())).shape[0]
    results = None
    cache = {}
    for t in range(steps):
        seen = min(steps, t + buffer + 1)
        if seen not in cache:
            masked = {name: np.concatenate([x[:seen], np.zeros_like(x[seen:])]) for name, x in feeds.items()}
            cache[seen] = session.run(outputs, masked)
        ys = cache[seen]
        if results is None:
            results = [np.empty_like(y) for y in ys]
        for r, y in zip(results, ys):
            r[t] = y[t]
    return [np.swapaxes(r, 0, 1) for r in results]


@dataclass
class _PartitionResult:
    spikes: dict[str, Tensor]  # neuron -> [B, T, *shape] uint8
    outputs: dict[str, Tensor]  # Output node -> what it hands on (spikes, or a synaptic layer's current without bias)
    biases: dict[str, np.ndarray]  # Output node handing on a current -> the bias left to the host (float, NIR's order)
    readout: tuple[Tensor, float] | None  # the read-out's voltage [B, T, *shape] and its scale


def _simulate_partition(graph, layers: list, drives: dict[str, Tensor], raw: dict[str, np.ndarray], device: torch.device,
                        handoff: bool) -> _PartitionResult:
    """One neuromorphic partition, deployed, on its inputs' values [B, T, ...]: ints or 0/1 spikes
    from other partitions (`drives`), the model's inputs (`raw`, read by first layers on the host)."""
    import nir

    from spikeport.export.loihi import IDENTITY, _origin, host_current, integers, neuron_bias

    nodes = graph.nodes
    sources = {name: [a for a, b in graph.edges if b == name] for name in nodes}
    by_synapse = {layer.synapse: layer for layer in layers}
    by_neuron: dict[str, list] = {}
    for layer in layers:
        by_neuron.setdefault(layer.neuron or layer.synapse, []).append(layer)
    values: dict[str, Tensor] = dict(drives)  # node -> its value: inputs, spikes, currents (ints), [B, T, *shape]
    graded = {name for name in drives if drives[name].dtype != torch.uint8}
    batch, steps = next(iter([*drives.values(), *raw.values()])).shape[:2]
    spikes, readout = {}, None
    order = topological_order(nodes, graph.edges)

    def current(synapse: str) -> Tensor:
        layer = by_synapse[synapse]
        if layer.on_host:
            return torch.as_tensor(host_current(graph, layer, raw[_origin(graph, sources[synapse][0])]), device=device).to(torch.int64)
        if layer.kind == IDENTITY:
            source = synapse[: -len(f"_to_{layer.neuron}")]
            w_int, _ = integers(graph, layer)
            return values[source].to(torch.int64) * int(w_int[0])
        node = nodes[synapse]
        source = _origin(graph, sources[synapse][0])
        x = values[source]
        w_int, _ = integers(graph, layer)
        bits = 24 if source in graded else 0
        if isinstance(node, nir.Conv2d):
            block = Block(synapse, "conv", tuple(layer.shape), Neuron(0, 0, 0, None), input_shape=tuple(x.shape[2:]), weight=w_int,
                          stride=_pair(node.stride), padding=_pair(node.padding), dilation=_pair(node.dilation), groups=int(node.groups),
                          input_message_bits=bits)
        else:
            block = Block(synapse, "dense", tuple(layer.shape), Neuron(0, 0, 0, None), input_shape=(math.prod(x.shape[2:]),),
                          weight=(w_int >> layer.weight_exp) << 1, weight_exp=layer.weight_exp - 1, flatten=x.ndim > 3, input_message_bits=bits)
        input_max = int(x.abs().max()) if bits and x.numel() else 1
        syn = _Synapse(block, device, max(1, input_max))
        return syn(x.flatten(0, 1)).unflatten(0, (batch, steps)).to(torch.int64)

    for name in order:
        node = nodes[name]
        if isinstance(node, nir.Input):
            continue
        if isinstance(node, nir.Flatten):
            values[name] = values[_origin(graph, name)]
            continue
        if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
            layer = by_synapse[name]
            values[name] = current(name)
            graded.add(name)
            continue
        if isinstance(node, (nir.LIF, nir.IF)):
            feeding = by_neuron[name]
            a = sum(current(l.synapse) if l.kind == IDENTITY else values[l.synapse] for l in feeding)
            bias = np.zeros(feeding[0].shape, np.int64) if feeding[0].on_host else neuron_bias(graph, feeding)
            spikes[name], _ = _run_lif(feeding[0], a, bias, device, record_v=False)
            values[name] = spikes[name]
            continue
    outputs, biases = {}, {}
    for name, node in nodes.items():
        if not isinstance(node, nir.Output):
            continue
        producer = _origin(graph, sources[name][0])
        layer = by_synapse.get(producer)
        if layer is not None and layer.neuron is None and not handoff:  # the read-out integrator
            w_int, bias_mant = integers(graph, layer)
            shape = tuple(layer.shape)
            spread = np.broadcast_to(bias_mant.reshape(-1, *([1] * (len(shape) - 1))), shape).copy()
            _, v = _run_lif(layer, values[producer], spread, device, record_v=True)
            readout = (v, layer.scale)
        outputs[name] = values[producer]
        if layer is not None and not layer.on_host and layer.neuron is None:
            b = getattr(nodes[producer], "bias", None)
            if b is not None:
                biases[name] = np.broadcast_to(np.asarray(b).reshape(-1, *([1] * (len(layer.shape) - 1))), tuple(layer.shape)).copy()
    return _PartitionResult(spikes, outputs, biases, readout)


def _run_lif(layer, a: Tensor, bias_mant: np.ndarray, device: torch.device, record_v: bool) -> tuple[Tensor, Tensor | None]:
    """One LIF layer (LIFReset from the sample's first timestep) over the T steps of `a` [B, T, *shape]."""
    neuron = Neuron(du=layer.du, dv=layer.dv, vth=layer.vth, bias_mant=bias_mant)
    a_bound = int(a.abs().max()) if a.numel() else 0
    bm = torch.as_tensor(bias_mant, dtype=torch.int64, device=device)
    lif = _Lif(neuron, a_bound, int(_wrap16(bm).abs().max()) << NETX_BIAS_EXP if bm.numel() else 0)
    bias_term = _wrap32(_wrap16(bm) << NETX_BIAS_EXP).to(lif.dtype)
    batch, steps = a.shape[:2]
    u = torch.zeros((batch, *a.shape[2:]), dtype=lif.dtype, device=device)
    v = u.clone()
    spikes = torch.empty(a.shape, dtype=torch.uint8, device=device)
    volts = torch.empty(a.shape, dtype=torch.int32, device=device) if record_v else None
    a = a.to(lif.dtype) if lif.dtype == torch.int64 or a_bound < 2**31 else a
    for t in range(steps):
        u, v, s = lif(u, v, a[:, t], bias_term)
        spikes[:, t] = s
        if record_v:
            volts[:, t] = v
    return spikes, volts


def _pair(value) -> tuple[int, int]:
    flat = np.broadcast_to(np.asarray(value, dtype=int).ravel(), (2,))
    return int(flat[0]), int(flat[1])


def hold_last(x: np.ndarray, k: int) -> np.ndarray:
    """x [N, T, ...] with its last step repeated k more times: [N, T + k, ...]."""
    return np.concatenate([x, np.repeat(x[:, -1:], k, axis=1)], axis=1)


def netx_drive(network: NetxNetwork, x: np.ndarray) -> dict[str, np.ndarray]:
    """simulate_netx's drive for samples x [N, T, ...], padded to windows of T + K steps: the input
    layer's bias (held at the last frame: those steps are never read), a sigma-delta input layer's
    a_in (integers, as Lava's RingBuffer sends them), or the first synapse's spikes. Both backends
    drive a .net file with it (Lava's worker: "bias", "a_in", or "inp" for the spikes)."""
    k = len(network.blocks) - 1
    if network.has_input_layer and network.blocks[0].neuron.sigma_delta:
        return {"a_in": hold_last(x, k)}
    if network.has_input_layer:
        return {"bias": hold_last(x, k).round().astype(np.int64)}
    first = network.blocks[0]
    if first.input_message_bits == 0 and not np.isin(x, (0, 1)).all():  # netx would take any non-zero value as a spike
        raise UserError(f"{network.path}: its first block {first.name} reads spikes, 0 or 1 (netx's input_message_bits 0); the input holds "
                        "other values")
    return {"spikes": np.concatenate([x, np.zeros((x.shape[0], k, *x.shape[2:]), x.dtype)], axis=1)}
