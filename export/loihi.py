"""Loihi fixed point: an exported network as the integers Lava's `bit_accurate_loihi` models take.

`quantize` takes a plain chain (which netx's model.net also holds); `quantize_partitions` any
export, residual sums, several partitions and host boundaries (the section "graphs" below gives its
rules). Both use the arithmetic and the per-layer rules that follow.

What Lava computes (lava.proc.lif.models.PyLifModelBitAcc, lava.proc.dense/conv models), per step:

    a[t]  = sum_j w_int[i, j] * s_j[t-1]                  synapse (one step of pipeline delay)
    u[t]  = u[t-1] * (4096 - (du + 1)) >> 12  +  a[t] << 6
    v[t]  = v[t-1] * (4096 - dv) >> 12  +  u[t]  +  bias_mant << 6
    spike = v[t] > vth << 6;  v[t] = 0 where it spikes

(>> 12 truncates toward zero; netx fixes bias_exp = 6, so the bias is in the units of w_int.)
Our neuron is u[t] = beta u[t-1] + x[t] with spike u > theta and reset to zero (ARCHITECTURE.md,
"Semantics"), so Lava's current must be this step's input, du = 4095 (decay (du + 1) / 4096 = 1),
Lava's voltage is our membrane, dv = round(4096 (1 - beta)), and one scale s (integer units per
float unit) is shared by a layer's weights, bias and the threshold of the LIF they feed:
w_int ~ w s (below), bias_mant = round(b s), vth = round(theta s). A NIR LIF's input gain
dt r / tau (1 for our exporter) is folded into w and b.

Weights: an 8-bit signed mantissa m in [-128, 127] and a per-layer exponent e, w_int = m * 2**e.
Lava's 8-bit mixed-sign weights are the even numbers -256..254 (Dense with num_weight_bits=8
drops the lowest bit), so Lava's Dense takes weights=2m, weight_exp=e-1; netx stores w_int itself
and derives its own num_weight_bits/weight_exponent from it (netx.utils.optimize_weight_bits),
reproducing w_int exactly for any integers in [-256, 254]. Lava's Conv process model applies no
weight exponent at all. So the exponents both can run are e = 0 and e = 1.

Scale choice: m = round(w * base) with base = min(127 / max w, 128 / -min w), so no weight is
clipped and every layer uses its full 8 bits; the weight error (at most max|w| / 254) is the same
for any e. The threshold, rounded to 1/s, is represented better the larger s = base * 2**e, so e
is the largest exponent (1, then 0) for which vth fits its 17 bits and the bias its 13 bits. The
read-out has no threshold, so it takes e = 0, which halves its integrated voltage (see below).

The first layer: our models take graded input (images), and a Loihi synapse takes spikes. The
first synaptic layer (a Conv2d/Affine reading the nir.Input) runs on the host in float, and its
output current conv(x) + b, in the units of the LIF it feeds, drives that LIF as its bias
(`input_bias`). This is what netx supports directly: its `input` layer is a LIF neuron with no
synapse, driven by bias_mant (as lava-dl's own tinynet and PilotNet examples are), and it is exact
for direct-encoded input (the same frame every step). The host layer's scale is the largest with
vth in 17 bits and the largest possible current, for inputs bounded by |x| <= input_bound, in the
13 bits of bias_mant.

The read-out (an Affine feeding nir.Output) becomes a non-spiking integrator: du = 4095, dv = 0,
vth at its 17-bit maximum, so after T steps its voltage is 64 s * sum_t (W s[t] + b), the
time-summed logits. Lava clips v to 24 bits, so a runner checks |v| < 2**23 (the digits CNN
reaches about 2**21 at T = 4).

Integer weights are not stored in loihi.json: `integers(graph, layer)` recomputes them exactly from
the lowered graph and the layer's scale and exponent (np.round of the float64 product of the
float32 weight and the stored scale), and model.net stores them for Lava.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from spikeport.errors import UserError
from spikeport.export.neuron_constants import neuron_constants
from spikeport.export.nir_graph import check_resets_to_zero
from spikeport.io import write_json

FORMAT = "spikeport-loihi"
VERSION = 2
DU_INSTANT = 4095  # with Lava's ds_offset of 1: the current decays by 4096/4096, i.e. is this step's input
DECAY_MAX = 4095  # du and dv are 12-bit unsigned
VTH_MAX = 2**17 - 1  # vth is 17-bit unsigned (shifted left by 6 in the model)
BIAS_MAX = 2**12 - 1  # bias_mant is 13-bit signed
BIAS_EXP = 6  # what netx sets: bias_mant << 6, the units of the synaptic input (act_shift 6)
MANTISSA_MIN, MANTISSA_MAX = -128, 127
WEIGHT_EXPS = (1, 0)  # what both netx files and Lava's Conv model can run, best first (see module)
READOUT_EXP = 0  # the read-out has no threshold to represent: the smaller exponent halves its voltage


@dataclass
class QuantError:
    """How far the integers are from the float model, in float units (the model's own weights).

    Weight fields are None for the host layer, whose weights stay float; `current_max_abs` is the
    rounding of its output current to 1/scale, None for the others.
    """

    weight_max_abs: float | None
    weight_mean_abs: float | None
    weight_clipped_fraction: float | None
    bias_max_abs: float
    threshold_abs: float | None
    beta_abs: float | None
    current_max_abs: float | None


@dataclass
class LoihiLayer:
    """One synaptic layer and the neuron layer it feeds, as Lava's Dense/Conv + LIF take them."""

    synapse: str  # NIR node of the Conv2d/Affine/Linear
    neuron: str | None  # NIR node of the LIF/IF it feeds; None for the non-spiking read-out
    kind: str  # "conv" or "dense"
    on_host: bool  # the first layer: computed on the host, its current fed as the neuron's bias
    scale: float  # integer units per float unit: w_int = m * 2**weight_exp ~ w * scale
    weight_exp: int  # 0 or 1 (see the module); 0 for the host layer, whose weights stay float
    du: int
    dv: int
    vth: int
    bias_exp: int
    shape: list[int]  # the neuron layer's shape (C, H, W) or (N,)
    errors: QuantError
    partition: str = ""  # the neuromorphic partition (graphs of several partitions; "" for a chain)
    input_scale: float = 1.0  # integer units per float unit of what the synapse reads: 1 for spikes, a payload's scale
    weight_zeroed_fraction: float = 0.0  # nonzero float weights whose integer is 0


@dataclass
class LoihiBoundary:
    """A tensor between partitions as the chip exchanges it: spikes (1 bit) or a graded payload of
    `payload_bits` signed bits holding round(value * scale)."""

    tensor: str
    kind: str  # "spike" or "graded"
    direction: str  # "to_chip" (a host partition sends it) or "to_host" (a neuromorphic partition sends it)
    payload_bits: int  # 1 for spikes; netx's num_message_bits for a graded payload
    scale: float  # integer units per float unit (1 for spikes)
    layer: str | None  # to_host graded: the "partition.synapse" whose current it is; None otherwise
    host_layer: bool  # to_host: the current of a first layer computed on the host (its bias included)
    max_abs: float | None  # the largest |value| on the calibration samples
    saturated_fraction: float | None  # of the calibration values, those beyond the payload's range


@dataclass
class LoihiModel:
    layers: list[LoihiLayer]
    input_bound: float  # |input| <= input_bound, for which the host layer's current fits bias_mant
    dt: float
    boundaries: list[LoihiBoundary] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what is usable but lossy, one line each, naming the layer


def quantize(graph: nir.NIRGraph, input_bound: float = 1.0) -> LoihiModel:
    """The Loihi fixed-point parameters of a lowered NIR chain (pools folded, see export.lower)."""
    if not input_bound > 0:
        raise UserError(f"input_bound: must be positive, got {input_bound!r}")
    check_resets_to_zero(graph, "Loihi fixed-point")
    layers = []
    for i, (synapse, neuron) in enumerate(chain_layers(graph)):
        weight, bias = _float_weights(graph, synapse, neuron)
        if i == 0:
            layers.append(_host_layer(graph, synapse, neuron, weight, bias, input_bound))
        else:
            layers.append(_chip_layer(graph, synapse, neuron, weight, bias))
    return LoihiModel(layers=layers, input_bound=float(input_bound), dt=float(graph.metadata["dt"]))


def chain_layers(graph: nir.NIRGraph) -> list[tuple[str, str | None]]:
    """(synaptic node, neuron node or None for the read-out) along graph's chain; refuses anything else."""
    inputs = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise UserError(f"graph: {len(inputs)} inputs ({', '.join(inputs)}); the Loihi export takes a chain with one input")
    order, name = [], inputs[0]
    while True:
        order.append(name)
        nexts = [b for a, b in graph.edges if a == name]
        if not nexts:
            break
        if len(nexts) > 1 or len([a for a, b in graph.edges if b == nexts[0]]) > 1:
            raise UserError(
                f"{name} ({type(graph.nodes[name]).__name__}): branches or joins at {', '.join(nexts)}; "
                "the Loihi export takes a plain chain"
            )
        name = nexts[0]
    layers, pending = [], None
    for name in order[1:]:
        node = graph.nodes[name]
        if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
            if pending is not None:
                raise UserError(
                    f"{name} ({type(node).__name__}): follows synaptic layer {pending} with no neuron between; "
                    "Lava cannot chain two synapses"
                )
            pending = name
        elif isinstance(node, (nir.LIF, nir.IF)):
            if pending is None:
                raise UserError(
                    f"{name} ({type(node).__name__}): a neuron layer with no synaptic layer before it; Lava cannot run it"
                )
            layers.append((pending, name))
            pending = None
        elif isinstance(node, nir.Output):
            if pending is None or not isinstance(graph.nodes[pending], (nir.Affine, nir.Linear)):
                raise UserError(
                    f"{name} (Output): reads {order[order.index(name) - 1]}; "
                    "the Loihi export needs an Affine read-out before the output"
                )
            layers.append((pending, None))
        elif isinstance(node, nir.Flatten) and pending is None:
            continue
        else:
            raise UserError(
                f"{name} ({type(node).__name__}): Lava cannot run it here; a chain is Conv2d/Affine -> LIF/IF, "
                "Flatten between layers, an Affine read-out (fold pools first with export.lower.fold_avgpool)"
            )
    if len(layers) < 2:
        raise UserError(f"graph: {len(layers)} layer(s); the Loihi export needs a host layer and at least a read-out after it")
    return layers


def integers(graph: nir.NIRGraph, layer: LoihiLayer) -> tuple[np.ndarray, np.ndarray]:
    """(w_int, bias_mant) of a chip layer: the integers Lava runs, recomputed from the lowered graph.

    w_int = clip(round(w * scale / 2**e), -128, 127) * 2**e in the NIR weight layout (int64);
    bias_mant = round(b * scale), zeros without a bias.
    """
    if layer.on_host:
        raise UserError(f"{layer.synapse}: the host layer has no integer weights (its current is input_bias)")
    weight, bias = _float_weights(graph, layer.synapse, layer.neuron, layer.kind)
    return _integers(weight, bias, layer.scale / layer.input_scale, layer.weight_exp)


def _integers(weight: np.ndarray, bias: np.ndarray, scale: float, exp: int) -> tuple[np.ndarray, np.ndarray]:
    mantissa = np.clip(np.round(weight.astype(np.float64) * scale / 2**exp), MANTISSA_MIN, MANTISSA_MAX)
    return mantissa.astype(np.int64) << exp, np.round(bias.astype(np.float64) * scale).astype(np.int64)


def input_bias(graph: nir.NIRGraph, model: LoihiModel, x: np.ndarray) -> np.ndarray:
    """bias_mant for input frames x [..., *input shape]: [..., *host layer output shape], int16 as
    Lava holds it (the values are 13-bit).

    The host layer's current conv(x) + b in the units of the LIF it feeds, clipped to 13 bits;
    any leading axes (samples, timesteps) are computed in one batch on the CPU, in float32 as the
    float model, ONNX Runtime and a host processor compute that layer (torch's float64 convolution
    has no fast kernel: it cost 4x the whole float model here).
    """
    return _host_layer_current(graph, model.layers[0], x).clamp_(-BIAS_MAX - 1, BIAS_MAX).to(torch.int16).numpy()


def _host_layer_current(graph: nir.NIRGraph, host: LoihiLayer, x: np.ndarray) -> Tensor:
    """round(current * scale) of a first layer (float32, rounded, not yet saturated)."""
    weight, bias = _float_weights(graph, host.synapse, host.neuron)
    node = graph.nodes[host.synapse]
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    weight, bias = torch.from_numpy(weight.astype(np.float32)), torch.from_numpy(bias.astype(np.float32))
    if isinstance(node, nir.Conv2d):
        frames = x.reshape(-1, *x.shape[-3:])
        current = _conv2d(frames, weight, node, bias)
        current = current.reshape(*x.shape[:-3], *current.shape[1:])
    else:
        (graph_input,) = [n for n in graph.nodes.values() if isinstance(n, nir.Input)]
        lead = x.shape[: x.ndim - len(graph_input.input_type["input"])]
        current = x.reshape(*lead, -1) @ weight.T + bias
    # in place: on a test set's frames these arrays are large, and fresh ones cost page faults
    return current.mul_(host.scale).round_()


def write_loihi_json(model: LoihiModel, path: str | os.PathLike) -> None:
    """loihi.json: the parameters and quantization errors per layer (written atomically)."""
    data = {
        "format": FORMAT,
        "version": VERSION,
        "dt": model.dt,
        "input_bound": model.input_bound,
        "integer_weights": "not stored here: recomputed exactly by spikeport.export.loihi.integers(graph, layer) from "
        "each partition's graph as deployed (export.lower.deploy); a plain chain's are also in model.net",
        "warnings": model.warnings,
        "boundaries": [dataclasses.asdict(b) for b in model.boundaries],
        "layers": [dataclasses.asdict(layer) for layer in model.layers],
    }
    write_json(path, data)


def read_loihi_json(path: str | os.PathLike) -> LoihiModel:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read a loihi.json: {e}") from None
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise UserError(
            f"{path}: format {data.get('format')!r} version {data.get('version')!r}; expected {FORMAT!r} version {VERSION}"
        )
    try:
        layers = [LoihiLayer(**{**layer, "errors": QuantError(**layer["errors"])}) for layer in data["layers"]]
        boundaries = [LoihiBoundary(**b) for b in data.get("boundaries", [])]
        model = LoihiModel(layers=layers, input_bound=data["input_bound"], dt=data["dt"], boundaries=boundaries,
                           warnings=list(data.get("warnings", [])))
    except (KeyError, TypeError) as e:
        raise UserError(f"{path}: malformed layer entry: {e}") from None
    scales = {}
    for layer in model.layers:
        if layer.neuron is not None:
            key = (layer.partition, layer.neuron)
            if scales.setdefault(key, layer.scale) != layer.scale:
                raise UserError(f"{path}: {layer.neuron}: its synaptic layers have scales {scales[key]:.6g} and {layer.scale:.6g}; "
                                "inputs summed into one neuron must share its scale")
    return model


def _float_weights(graph: nir.NIRGraph, synapse: str, neuron: str | None, kind: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The synaptic layer's weight and bias with the neuron's input gain dt r / tau folded in (an
    identity shortcut: one weight 1, no bias)."""
    if kind == IDENTITY:
        gain = 1.0 if neuron is None else _neuron_constants(graph, neuron)[1]
        return np.full(1, gain, dtype=np.float32), np.zeros(1, dtype=np.float32)
    node = graph.nodes[synapse]
    bias = getattr(node, "bias", None)
    bias = np.zeros(node.weight.shape[0], dtype=node.weight.dtype) if bias is None else np.asarray(bias)
    gain = 1.0 if neuron is None else _neuron_constants(graph, neuron)[1]
    return node.weight * gain, bias * gain


def _neuron_constants(graph: nir.NIRGraph, name: str) -> tuple[float, float, float]:
    """(beta, input gain, threshold) of a LIF/IF layer (export/neuron_constants.py decodes them);
    refuses what Lava's LIF cannot run."""
    node = graph.nodes[name]
    dt = graph.metadata.get("dt")
    if not dt:
        raise UserError(f"graph: metadata has no dt; the decay of {name} cannot be computed without it")
    c = neuron_constants(node, dt, name)
    if c.kind == "CubaLIF":
        raise UserError(f"{name} (CubaLIF): its synaptic current filter (tau_syn) has no place in the Loihi fixed-point export, "
                        "whose current holds one step's input; export it with --quantize none")
    if c.kind == "LIF" and np.any(np.asarray(node.v_leak) != 0):
        raise UserError(f"{name} (LIF): v_leak {np.unique(node.v_leak)[:3]}; Lava's LIF leaks towards 0 only")
    if node.v_reset is not None and np.any(np.asarray(node.v_reset) != 0):
        raise UserError(f"{name} ({type(node).__name__}): v_reset {np.unique(node.v_reset)[:3]}; Lava's LIF resets to 0")
    values = {"beta": c.beta, "input gain dt*r/tau": c.gain, "v_threshold": c.v_threshold}
    for what, value in values.items():
        if np.ptp(value) > 1e-9 * max(1.0, np.abs(value).max()):
            raise UserError(
                f"{name} ({type(node).__name__}): {what} varies across the layer ({value.min()} .. {value.max()}); "
                "Lava's LIF has one per layer"
            )
    return float(c.beta.flat[0]), float(c.gain.flat[0]), float(c.v_threshold.flat[0])


def _neuron_fields(graph: nir.NIRGraph, name: str) -> tuple[float, float, int]:
    """(beta, theta, dv) of a neuron layer; refuses a decay or threshold Lava cannot represent."""
    beta, _, theta = _neuron_constants(graph, name)
    dv = round(4096 * (1 - beta))
    if not 0 <= dv <= DECAY_MAX:
        raise UserError(f"{name}: beta {beta:.6g} needs dv = round(4096 * (1 - beta)) = {dv}; Lava's dv is 0..{DECAY_MAX}")
    if not theta > 0:
        raise UserError(f"{name}: v_threshold {theta}; Lava's threshold vth must be positive")
    return beta, theta, dv


def _chip_layer(graph: nir.NIRGraph, synapse: str, neuron: str | None, weight: np.ndarray, bias: np.ndarray) -> LoihiLayer:
    wmax, wmin = float(weight.max()), float(weight.min())
    if wmax <= 0 and wmin >= 0:
        raise UserError(f"{synapse}: all weights are zero; there is nothing to scale")
    base = min(MANTISSA_MAX / wmax if wmax > 0 else np.inf, MANTISSA_MIN / wmin if wmin < 0 else np.inf)
    beta, theta, dv = _neuron_fields(graph, neuron) if neuron else (1.0, None, 0)
    chosen = None
    for exp in WEIGHT_EXPS if neuron else (READOUT_EXP,):
        scale = base * 2**exp
        vth = VTH_MAX if theta is None else round(theta * scale)
        if vth <= VTH_MAX and np.abs(np.round(bias * scale)).max(initial=0) <= BIAS_MAX:
            chosen = exp, scale, vth
            break
    if chosen is None:
        scale = base * 2 ** WEIGHT_EXPS[-1]
        if theta is not None and round(theta * scale) > VTH_MAX:
            raise UserError(
                f"{neuron}: v_threshold {theta} is {theta / max(wmax, -wmin):.4g} x the largest weight of {synapse}; "
                f"vth = {round(theta * scale)} exceeds Lava's {VTH_MAX}"
            )
        raise UserError(
            f"{synapse}: bias up to {np.abs(bias).max():.4g} is {np.abs(bias).max() / max(wmax, -wmin):.4g} x the largest weight; "
            f"bias_mant {int(np.abs(np.round(bias * scale)).max())} exceeds Lava's {BIAS_MAX}"
        )
    exp, scale, vth = chosen
    if theta is not None and vth < 1:
        raise UserError(f"{neuron}: v_threshold {theta} rounds to vth 0 at scale {scale:.4g}; Lava cannot represent it")
    w_int, bias_mant = _integers(weight, bias, scale, exp)
    raw = np.round(weight.astype(np.float64) * scale / 2**exp)
    weight_error = np.abs(w_int / scale - weight)
    errors = QuantError(
        weight_max_abs=float(weight_error.max()),
        weight_mean_abs=float(weight_error.mean()),
        weight_clipped_fraction=float(np.mean((raw < MANTISSA_MIN) | (raw > MANTISSA_MAX))),
        bias_max_abs=float(np.abs(bias_mant / scale - bias).max(initial=0)),
        threshold_abs=None if theta is None else abs(vth / scale - theta),
        beta_abs=None if neuron is None else abs((1 - dv / 4096) - beta),
        current_max_abs=None,
    )
    return LoihiLayer(
        synapse=synapse,
        neuron=neuron,
        kind=_kind(graph, synapse),
        on_host=False,
        scale=float(scale),
        weight_exp=exp,
        du=DU_INSTANT,
        dv=dv,
        vth=int(vth),
        bias_exp=BIAS_EXP,
        shape=_shape(graph, synapse),
        errors=errors,
    )


def _host_layer(
    graph: nir.NIRGraph, synapse: str, neuron: str | None, weight: np.ndarray, bias: np.ndarray, input_bound: float
) -> LoihiLayer:
    if neuron is None:
        raise UserError(f"{synapse}: the first layer is the read-out; the Loihi export needs a spiking layer on the chip")
    beta, theta, dv = _neuron_fields(graph, neuron)
    per_output = np.abs(weight.astype(np.float64)).reshape(weight.shape[0], -1).sum(1)
    largest = float((np.abs(bias) + input_bound * per_output).max())  # a bound on |conv(x) + b| for |x| <= input_bound
    scale = min(BIAS_MAX / largest if largest > 0 else np.inf, VTH_MAX / theta)
    vth = round(theta * scale)
    if vth < 1:
        raise UserError(
            f"{neuron}: v_threshold {theta} is {theta / largest:.3g} x the largest input current of {synapse}; "
            "it rounds to vth 0 when that current fits bias_mant's 13 bits"
        )
    return LoihiLayer(
        synapse=synapse,
        neuron=neuron,
        kind=_kind(graph, synapse),
        on_host=True,
        scale=float(scale),
        weight_exp=0,
        du=DU_INSTANT,
        dv=dv,
        vth=int(vth),
        bias_exp=BIAS_EXP,
        shape=_shape(graph, synapse),
        errors=QuantError(
            weight_max_abs=None,
            weight_mean_abs=None,
            weight_clipped_fraction=None,
            bias_max_abs=0.0,
            threshold_abs=abs(vth / scale - theta),
            beta_abs=abs((1 - dv / 4096) - beta),
            current_max_abs=0.5 / scale,
        ),
    )


def _kind(graph: nir.NIRGraph, synapse: str) -> str:
    return "conv" if isinstance(graph.nodes[synapse], nir.Conv2d) else "dense"


def _shape(graph: nir.NIRGraph, synapse: str) -> list[int]:
    return [int(n) for n in graph.nodes[synapse].output_type["output"]]


def _conv2d(x: Tensor, weight: Tensor, node: nir.Conv2d, bias: Tensor | None = None) -> Tensor:
    """NIR Conv2d of frames x [N, C, H, W] (torch's cross-correlation)."""
    return F.conv2d(
        x,
        weight,
        bias,
        stride=tuple(np.atleast_1d(node.stride)),
        padding=tuple(np.atleast_1d(node.padding)),
        dilation=tuple(np.atleast_1d(node.dilation)),
        groups=node.groups,
    )


# ----------------------------------------------------------------------------------------------- graphs
#
# Any exported neuromorphic partition, as deployed (export.lower.deploy: pools folded, synapses
# composed), with several partitions and host boundaries between them. The rules:
#
# - Spikes are 1-bit messages (input scale 1). A graded tensor a host partition sends to the chip
#   is a payload of PAYLOAD_BITS signed bits, round(x * s_p): s_p = 1 when the calibration values
#   are all integers that fit (a max pool of spikes, exact), else (2**(bits-1) - 1) / max |x|.
# - A neuron layer N sums the currents of its synaptic layers j (a membrane shortcut: several; an
#   input or neuron layer added straight in is an identity synapse of weight 1). They must share
#   N's scale S (integer units of N's voltage per float unit), so each synapse's weights are
#   quantized at S / s_in_j, and S is the largest scale every input allows:
#       S = min(2 * base_j * s_in_j over j,  VTH_MAX / theta,  BIAS_MAX / max |bias|,
#               CURRENT_MAX / (HEADROOM * the largest calibrated current of N))
#   with base_j = min(127 / max w_j, 128 / -min w_j). So nothing is clipped: the input with the
#   largest weights (relative to its payload) gets the full 8-bit mantissa, the others fewer bits.
#   Each synapse takes the exponent e_j = 0 when its integers fit the 8-bit mantissa, else 1.
#   Where an input's weights all round to 0 at that shared scale, the scales cannot be reconciled
#   and the export is refused naming both; where more than ZEROED_WARN of them do, it warns.
# - A first layer reading a model input (images) runs on the host as in a chain (input_bias).
# - A synaptic layer's current handed to a host partition (a pool's Dense, a first layer's current)
#   is a graded payload in that layer's units: CURRENT_BITS bits (HOST_LAYER_BITS for a first
#   layer's, which saturates at CURRENT_MAX, what its LIF's a_in takes). A first layer's scale is
#   the largest with vth in 17 bits and HEADROOM x its calibrated current in CURRENT_MAX (a chain
#   feeds it through netx's 13-bit bias_mant instead: `quantize`). More than SATURATION_LIMIT of the
#   calibration values beyond the payload's range is refused; fewer, but some, is a warning.

IDENTITY = "identity"  # LoihiLayer.kind of an identity shortcut (an input or neuron layer added straight into a neuron)
HOST_LAYER = "host"
PAYLOAD_BITS = 8
CURRENT_BITS = 24  # Lava's widest graded message
HOST_LAYER_BITS = 18  # a first layer's current saturates at CURRENT_MAX (host_current)
UV_MAX = 2**23  # Lava clips the voltage v to 24 bits
CURRENT_MAX = 2**17 - 1  # |a_in| of a LIF: a << 6 must stay in Lava's 24-bit current u
HEADROOM = 2.0
ZEROED_WARN = 0.5
SATURATION_LIMIT = 0.01


@dataclass
class Calibration:
    """The float model on calibration samples: each boundary tensor's values and each neuron
    layer's largest |summed input current| ("partition.neuron"), which the scales leave room for."""

    tensors: dict[str, np.ndarray]
    currents: dict[str, float] = field(default_factory=dict)


@dataclass
class PartitionSpec:
    """What the quantizer needs of a manifest partition: its name, kind and boundary tensors."""

    name: str
    kind: str  # "neuromorphic" or "host"
    inputs: list[tuple[str, str]]  # (tensor, "spike" | "graded")
    outputs: list[tuple[str, str]]


def quantize_partitions(
    partitions: list[PartitionSpec], graphs: dict[str, nir.NIRGraph], model_inputs: list[str], model_outputs: list[str],
    calibration: Calibration, input_bound: float = 1.0, payload_bits: int = PAYLOAD_BITS, dt: float | None = None,
) -> LoihiModel:
    """The Loihi integers of every neuromorphic partition of an export (rules above).

    `graphs` holds each neuromorphic partition's graph as exported (model.nir); it is deployed here
    as the Lava runner deploys it. Raises UserError naming the layer where a model cannot be
    quantized; lossy but usable results are listed in `warnings`."""
    if not 2 <= payload_bits <= CURRENT_BITS:
        raise UserError(f"payload_bits: {payload_bits}; a graded payload has 2..{CURRENT_BITS} bits")
    if not input_bound > 0:
        raise UserError(f"input_bound: must be positive, got {input_bound!r}")
    for graph in graphs.values():
        check_resets_to_zero(graph, "Loihi fixed-point")
    layers: list[LoihiLayer] = []
    boundaries: list[LoihiBoundary] = []
    warnings: list[str] = []
    scales: dict[str, float] = {}  # tensor -> input scale on the chip (to_chip), or None for a model input
    pending: dict[str, float] = {}  # graded tensor from a host -> the largest scale its payload allows, until its reader sets it
    currents: dict[str, tuple[str, float, bool]] = {}  # tensor handed to a host -> (producing layer, its scale, host layer)
    final = [t for t in model_outputs]
    for p in partitions:
        if p.kind == "host":
            for tensor, kind in p.inputs:
                if tensor in model_inputs:
                    raise UserError(f"partition {p.name}: reads the model input {tensor} on the host; the Loihi export needs the chip to read it")
                if kind == "spike":
                    boundaries.append(LoihiBoundary(tensor, kind, "to_host", 1, 1.0, None, False, None, None))
                    continue
                if tensor not in currents:
                    raise UserError(f"partition {p.name}: reads {tensor}, which no neuromorphic partition sends as a current")
                layer, scale, host_layer = currents[tensor]
                bits = HOST_LAYER_BITS if host_layer else CURRENT_BITS
                boundaries.append(_boundary(tensor, "to_host", bits, scale, calibration, warnings, layer, host_layer))
            for tensor, kind in p.outputs:
                if tensor in model_outputs:  # the host's result: no chip reads it
                    continue
                if kind == "spike":
                    scales[tensor] = 1.0
                    boundaries.append(LoihiBoundary(tensor, kind, "to_chip", 1, 1.0, None, False, None, None))
                    continue
                values = _calibration_values(calibration, tensor)
                bound = 2 ** (payload_bits - 1) - 1
                biggest = float(np.abs(values).max(initial=0.0))
                if not np.isfinite(biggest) or biggest == 0:
                    raise UserError(f"{tensor} ({p.name} -> chip): calibration values up to {biggest}; a payload scale needs a finite, nonzero range")
                if bool(np.all(values == np.round(values))) and biggest <= bound:
                    scales[tensor] = 1.0  # integers (a max pool of spikes): exact at scale 1
                    boundaries.append(_boundary(tensor, "to_chip", payload_bits, 1.0, calibration, warnings, None, False))
                else:
                    pending[tensor] = bound / biggest  # the most the payload holds; set by its readers (_payload_scale)
            continue
        handoff = [t for t, _ in p.outputs] != final
        graph = _deploy(graphs[p.name], handoff)
        for tensor, _ in p.inputs:
            if tensor in pending:
                scales[tensor] = _payload_scale(graph, tensor, pending.pop(tensor), calibration)
                boundaries.append(_boundary(tensor, "to_chip", payload_bits, scales[tensor], calibration, warnings, None, False))
        made = _quantize_partition(p, graph, model_inputs, scales, calibration, input_bound, warnings, final)
        layers += made
        by_synapse = {layer.synapse: layer for layer in made}
        for tensor, kind in p.outputs:
            if kind == "spike":
                continue
            node = f"output_{tensor}" if len(p.outputs) > 1 else "output"
            (producer,) = [a for a, b in graph.edges if b == node] or [None]
            producer = _origin(graph, producer) if producer else None
            if producer not in by_synapse:
                raise UserError(f"{p.name}: hands on {tensor}, the value of {producer}; a chip hands on spikes or a synaptic layer's current")
            layer = by_synapse[producer]
            currents[tensor] = (f"{p.name}.{producer}", layer.scale, layer.on_host)
    return LoihiModel(layers=layers, input_bound=float(input_bound), dt=float(dt if dt is not None else next(iter(graphs.values())).metadata["dt"]),
                      boundaries=boundaries, warnings=warnings)


def _deploy(graph: nir.NIRGraph, handoff: bool) -> nir.NIRGraph:
    from spikeport.export.lower import deploy

    return deploy(graph, handoff)


def _calibration_values(calibration: Calibration, tensor: str) -> np.ndarray:
    if tensor not in calibration.tensors:
        raise UserError(f"{tensor}: no calibration values; the quantizer needs the float model's values of every boundary tensor")
    return np.asarray(calibration.tensors[tensor], dtype=np.float64)


def _boundary(tensor: str, direction: str, bits: int, scale: float, calibration: Calibration, warnings: list[str],
              layer: str | None, host_layer: bool) -> LoihiBoundary:
    """A graded boundary with its calibration's saturation; refused beyond SATURATION_LIMIT, a warning below."""
    values = _calibration_values(calibration, tensor)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    ints = np.round(values * scale)
    saturated = float(np.mean((ints < low) | (ints > high))) if ints.size else 0.0
    where = f"{tensor} ({direction.replace('_', ' ')}, {bits}-bit payload at scale {scale:.6g})"
    if saturated > SATURATION_LIMIT:
        raise UserError(f"{where}: {100 * saturated:.2f}% of the calibration values overflow the payload "
                        f"(|value| up to {np.abs(values).max():.4g}, at most {high / scale:.4g} fits); the limit is {100 * SATURATION_LIMIT:g}%")
    if saturated > 0:
        warnings.append(f"{where}: {100 * saturated:.3f}% of the calibration values saturate the payload")
    return LoihiBoundary(tensor, "graded", direction, bits, float(scale), layer, host_layer, float(np.abs(values).max(initial=0.0)), saturated)


def _origin(graph: nir.NIRGraph, name: str) -> str:
    """The node whose value `name` carries: through Flatten nodes, which only reshape."""
    while isinstance(graph.nodes[name], nir.Flatten):
        (name,) = [a for a, b in graph.edges if b == name]
    return name


def _quantize_partition(p: PartitionSpec, graph: nir.NIRGraph, model_inputs: list[str], scales: dict[str, float],
                        calibration: Calibration, input_bound: float, warnings: list[str], final: list[str]) -> list[LoihiLayer]:
    nodes = graph.nodes
    sources = {name: [a for a, b in graph.edges if b == name] for name in nodes}
    consumers = {name: [b for a, b in graph.edges if a == name] for name in nodes}
    kinds = dict(p.inputs)
    input_scale = {}
    for name, node in nodes.items():
        if isinstance(node, nir.Input):
            if name in model_inputs:
                input_scale[name] = None  # graded images: the layer reading them runs on the host
            elif kinds.get(name) == "spike":
                input_scale[name] = 1.0
            elif name in scales:
                input_scale[name] = scales[name]
            else:
                raise UserError(f"{p.name}: input {name} comes from no partition the quantizer has seen")
    layers: list[LoihiLayer] = []
    synapse_source = {}
    for name, node in nodes.items():
        if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
            (read,) = sources[name]
            synapse_source[name] = _origin(graph, read)
    for name, node in nodes.items():
        if not isinstance(node, (nir.LIF, nir.IF)):
            continue
        feeds = _feeds(graph, name, synapse_source, input_scale)
        host = [f for f in feeds if f[3] in input_scale and input_scale[f[3]] is None and f[1] != IDENTITY]
        if host:
            if len(feeds) != 1:
                raise UserError(f"{name}: sums {', '.join(f[0] for f in feeds)}, one of which reads the model input {host[0][3]} and runs on "
                                "the host; the Loihi export needs a first layer's neuron to read that layer only")
            synapse = host[0][0]
            weight, bias = _float_weights(graph, synapse, name)
            layer = dataclasses.replace(_host_layer(graph, synapse, name, weight, bias, input_bound), partition=p.name)
            current = calibration.currents.get(f"{p.name}.{name}")
            if current:  # its current enters a_in directly (17 bits), not bias_mant (13): the calibrated range sets the scale
                _, theta, _ = _neuron_fields(graph, name)
                scale = min(VTH_MAX / theta, CURRENT_MAX / (HEADROOM * current))
                vth = round(theta * scale)
                layer = dataclasses.replace(layer, scale=float(scale), vth=int(vth), errors=dataclasses.replace(
                    layer.errors, threshold_abs=abs(vth / scale - theta), current_max_abs=0.5 / scale))
            layers.append(layer)
            continue
        if any(f[2] is None for f in feeds):
            raise UserError(f"{name}: reads the model input directly; the Loihi export needs a synaptic layer between")
        layers += _summing_layers(graph, p.name, name, feeds, calibration.currents.get(f"{p.name}.{name}"), warnings)
    for name, node in nodes.items():
        if not isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
            continue
        if any(isinstance(nodes[c], (nir.LIF, nir.IF)) for c in consumers[name]):
            continue
        source = synapse_source[name]
        s_in = input_scale.get(source, 1.0)
        if s_in is None:  # a first layer whose current goes straight to a host partition: computed on the host too
            layers.append(_handoff_host_layer(graph, p, name, calibration, input_bound))
            continue
        readout_max = None
        outputs = [t for t, _ in p.outputs]
        if outputs == final and len(outputs) == 1 and outputs[0] in calibration.tensors:  # the model's read-out
            logits = np.asarray(calibration.tensors[outputs[0]], dtype=np.float64)  # [T, B, ...]
            readout_max = float(np.abs(np.cumsum(logits, axis=0)).max(initial=0.0))
        layers.append(_single_layer(graph, p.name, name, s_in, readout_max))
    return layers


def _feeds(graph: nir.NIRGraph, neuron: str, synapse_source: dict[str, str], input_scale: dict) -> list[tuple]:
    """What neuron layer `neuron` sums: (synapse, kind, input scale, source) each; an input or neuron
    layer read directly is an identity synapse named `<source>_to_<neuron>` (as the Lava runner names it)."""
    feeds = []
    for read in [a for a, b in graph.edges if b == neuron]:
        origin = _origin(graph, read)
        if origin in synapse_source:
            source = synapse_source[origin]
            feeds.append((origin, _kind(graph, origin), input_scale.get(source, 1.0), source))
        else:
            feeds.append((f"{origin}_to_{neuron}", IDENTITY, input_scale.get(origin, 1.0), origin))
    return feeds


def _payload_scale(graph: nir.NIRGraph, tensor: str, largest: float, calibration: Calibration) -> float:
    """The scale of a graded payload the chip reads, x -> round(x * s_p): a synapse j reading it into
    neuron N computes w_int p ~ (w S/s_p)(x s_p), whose rounding errors are about
    |x| s_p / (2 S) + |w| / (2 s_p), smallest at s_p = sqrt(S |w| / |x|), S the scale N's other
    inputs allow, |w| and |x| mean magnitudes (the calibration's). The smallest such s_p over its
    readers, at most `largest` (what the payload's bits hold), rounded to a power of two: then a
    value the float model holds exactly (1.0, a saturated gate) is an exact payload, and where it
    meets a threshold through an identity shortcut (integer weight, integer scale) it meets it
    exactly too, instead of rounding across it. Identity shortcuts are exact at any s_p."""
    values = np.abs(_calibration_values(calibration, tensor))
    mean_x = float(values[values > 0].mean()) if np.any(values > 0) else 1.0
    synapse_source = {n: _origin(graph, [a for a, b in graph.edges if b == n][0])
                      for n, node in graph.nodes.items() if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear))}
    best = [largest]
    for neuron, node in graph.nodes.items():
        if not isinstance(node, (nir.LIF, nir.IF)):
            continue
        feeds = _feeds(graph, neuron, synapse_source, {})
        readers = [f for f in feeds if f[3] == tensor and f[1] != IDENTITY]
        others = [f for f in feeds if f[3] != tensor]
        if not readers or not others:
            continue
        _, theta, _ = _neuron_fields(graph, neuron)
        limit = min([2 * _base(_float_weights(graph, f[0], neuron, f[1])[0]) for f in others] + [VTH_MAX / theta])
        for synapse, kind, _, _ in readers:
            w = np.abs(_float_weights(graph, synapse, neuron, kind)[0])
            mean_w = float(w[w > 0].mean()) if np.any(w > 0) else 1.0
            best.append(float(np.sqrt(limit * mean_w / mean_x)))
    ceiling = 2.0 ** np.floor(np.log2(largest))
    return float(min(ceiling, 2.0 ** np.round(np.log2(min(best)))))


def _base(weight: np.ndarray) -> float:
    wmax, wmin = float(weight.max()), float(weight.min())
    return min(MANTISSA_MAX / wmax if wmax > 0 else np.inf, MANTISSA_MIN / wmin if wmin < 0 else np.inf)


def _summing_layers(graph: nir.NIRGraph, partition: str, neuron: str, feeds: list, current: float | None,
                    warnings: list[str]) -> list[LoihiLayer]:
    """The layers feeding one neuron, at the scale they share (rules above)."""
    beta, theta, dv = _neuron_fields(graph, neuron)
    weights = {synapse: _float_weights(graph, synapse, neuron, kind) for synapse, kind, _, _ in feeds}
    shape = _neuron_shape(graph, neuron)
    bias_total = sum(_spread_bias(graph, synapse, kind, b, shape) for (synapse, kind, _, _), (_, b) in zip(feeds, weights.values()))
    limits = {}
    for synapse, kind, s_in, _ in feeds:
        w = weights[synapse][0]
        if not np.any(w != 0):
            raise UserError(f"{synapse}: all weights are zero; there is nothing to scale")
        limits[f"the 8-bit weights of {synapse}"] = 2 * _base(w) * s_in
    limits[f"the threshold of {neuron} (vth at most {VTH_MAX})"] = VTH_MAX / theta
    biggest_bias = float(np.abs(bias_total).max(initial=0.0))
    if biggest_bias > 0:
        limits[f"the bias of {neuron} (bias_mant at most {BIAS_MAX})"] = BIAS_MAX / biggest_bias
    if current:
        limits[f"the current of {neuron} (|a| up to {current:.4g} in float units, at most {CURRENT_MAX} / {HEADROOM:g})"] = CURRENT_MAX / (HEADROOM * current)
    reason, scale = min(limits.items(), key=lambda item: item[1])
    vth = round(theta * scale)
    if vth < 1:
        raise UserError(f"{neuron}: v_threshold {theta} rounds to vth 0 at the scale {scale:.4g} that {reason} allows")
    bias_mant = np.round(bias_total.astype(np.float64) * scale)
    layers = []
    for i, (synapse, kind, s_in, _) in enumerate(feeds):
        weight, _ = weights[synapse]
        w_scale = scale / s_in
        raw = np.round(weight.astype(np.float64) * w_scale)
        exp = 0 if raw.min() >= MANTISSA_MIN and raw.max() <= MANTISSA_MAX else 1
        w_int, _ = _integers(weight, np.zeros(1), w_scale, exp)
        nonzero = weight != 0
        zeroed = float(np.mean(w_int[nonzero] == 0)) if nonzero.any() else 0.0
        if not np.any(w_int != 0):
            raise UserError(f"{synapse} -> {neuron}: its weights (up to {np.abs(weight).max():.4g}) all round to 0 at the scale {scale:.4g} "
                            f"that {reason} sets; the inputs summed into {neuron} cannot share one scale")
        if zeroed > ZEROED_WARN:
            warnings.append(f"{synapse} -> {neuron}: {100 * zeroed:.0f}% of its nonzero weights round to 0 at the scale {scale:.4g} that {reason} sets")
        error = np.abs(w_int / w_scale - weight)
        raw_e = np.round(weight.astype(np.float64) * w_scale / 2**exp)
        layers.append(LoihiLayer(
            synapse=synapse, neuron=neuron, kind=kind, on_host=False, scale=float(scale), weight_exp=exp, du=DU_INSTANT, dv=dv, vth=int(vth),
            bias_exp=BIAS_EXP, shape=list(shape),
            errors=QuantError(
                weight_max_abs=float(error.max()), weight_mean_abs=float(error.mean()),
                weight_clipped_fraction=float(np.mean((raw_e < MANTISSA_MIN) | (raw_e > MANTISSA_MAX))),
                bias_max_abs=float(np.abs(bias_mant / scale - bias_total).max(initial=0)) if i == 0 else 0.0,
                threshold_abs=abs(vth / scale - theta), beta_abs=abs((1 - dv / 4096) - beta), current_max_abs=None,
            ),
            partition=partition, input_scale=float(s_in), weight_zeroed_fraction=zeroed,
        ))
    return layers


def _single_layer(graph: nir.NIRGraph, partition: str, synapse: str, s_in: float, readout_max: float | None = None) -> LoihiLayer:
    """A synaptic layer feeding no neuron: the model's read-out (an integrator, as in a chain) or a
    current handed to a host partition; its scale is its own, base * s_in, all 8 bits; a read-out's
    at most what keeps HEADROOM x the calibration's largest running sum of logits (`readout_max`)
    inside Lava's 24-bit voltage, 64 S sum_t logits < 2**23."""
    weight, bias = _float_weights(graph, synapse, None)
    if not np.any(weight != 0):
        raise UserError(f"{synapse}: all weights are zero; there is nothing to scale")
    scale = _base(weight) * s_in
    if readout_max:
        scale = min(scale, (UV_MAX - 1) / (64 * HEADROOM * readout_max))
    w_int, bias_mant = _integers(weight, bias, scale / s_in, READOUT_EXP)
    error = np.abs(w_int / (scale / s_in) - weight)
    return LoihiLayer(
        synapse=synapse, neuron=None, kind=_kind(graph, synapse), on_host=False, scale=float(scale), weight_exp=READOUT_EXP,
        du=DU_INSTANT, dv=0, vth=VTH_MAX, bias_exp=BIAS_EXP, shape=_shape(graph, synapse),
        errors=QuantError(weight_max_abs=float(error.max()), weight_mean_abs=float(error.mean()), weight_clipped_fraction=0.0,
                          bias_max_abs=float(np.abs(bias_mant / scale - bias).max(initial=0)), threshold_abs=None, beta_abs=None, current_max_abs=None),
        partition=partition, input_scale=float(s_in),
    )


def _handoff_host_layer(graph: nir.NIRGraph, p: PartitionSpec, synapse: str, calibration: Calibration, input_bound: float) -> LoihiLayer:
    """A first layer reading the model input whose current is handed to a host partition (a gate's
    input): computed on the host like any first layer, in units whose calibrated range (or, without
    calibration, the bound for |input| <= input_bound) fills HOST_LAYER_BITS with HEADROOM."""
    weight, bias = _float_weights(graph, synapse, None)
    outputs = [b[len("output_"):] if b.startswith("output_") else p.outputs[0][0] for a, b in graph.edges if a == synapse]
    values = [np.abs(calibration.tensors[t]).max(initial=0.0) for t in outputs if t in calibration.tensors]
    per_output = np.abs(weight.astype(np.float64)).reshape(weight.shape[0], -1).sum(1)
    largest = float(max(values)) if values else float((np.abs(bias) + input_bound * per_output).max())
    scale = CURRENT_MAX / (HEADROOM * largest) if largest > 0 else 1.0
    return LoihiLayer(
        synapse=synapse, neuron=None, kind=_kind(graph, synapse), on_host=True, scale=float(scale), weight_exp=0, du=DU_INSTANT, dv=0,
        vth=VTH_MAX, bias_exp=BIAS_EXP, shape=_shape(graph, synapse),
        errors=QuantError(None, None, None, 0.0, None, None, 0.5 / scale), partition=p.name,
    )


def _neuron_shape(graph: nir.NIRGraph, neuron: str) -> tuple[int, ...]:
    node = graph.nodes[neuron]
    return tuple(int(n) for n in np.asarray(node.output_type["output"]).ravel())


def _spread_bias(graph: nir.NIRGraph, synapse: str, kind: str, bias: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A synaptic layer's bias over the neuron's map (per channel for a convolution)."""
    bias = np.asarray(bias, dtype=np.float64)
    if kind == IDENTITY:
        return np.zeros(shape)
    if isinstance(graph.nodes[synapse], nir.Conv2d):
        bias = bias.reshape(-1, *([1] * (len(shape) - 1)))
    return np.broadcast_to(bias, shape).copy()


def host_current(graph: nir.NIRGraph, layer: LoihiLayer, x: np.ndarray) -> np.ndarray:
    """A first layer's current for input frames x [..., *input shape], as input_bias computes it but
    saturated to CURRENT_MAX (int32): in a graph it enters its LIF's a_in (u = a << 6, 24 bits),
    not netx's 13-bit bias_mant."""
    return _host_layer_current(graph, layer, x).clamp_(-CURRENT_MAX - 1, CURRENT_MAX).to(torch.int32).numpy()


def neuron_bias(graph: nir.NIRGraph, layers: list[LoihiLayer]) -> np.ndarray:
    """bias_mant of one neuron layer (NIR's order, int64): its synaptic layers' biases summed at its scale."""
    first = layers[0]
    shape = _neuron_shape(graph, first.neuron)
    total = sum(_spread_bias(graph, l.synapse, l.kind, _float_weights(graph, l.synapse, l.neuron, l.kind)[1], shape) for l in layers)
    return np.round(np.asarray(total, dtype=np.float64) * first.scale).astype(np.int64)
