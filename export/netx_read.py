"""A lava-dl netx HDF5 network (`.net`, as lava-dl's SLAYER and spikeport's export/netx.py write
it) read as the integers Lava runs after netx's own processing, into plain dataclasses.

    read_netx(path) -> NetxNetwork         blocks of integers, one per Lava block
    read_netx(path, input_shape=(C, H, W)) a file with no input layer whose first block is a conv

This is the reader beside export/netx.py's writer; runtime/loihi_fixed.py runs what it reads in
Lava's fixed-point arithmetic. It copies lava-nc 0.10.0 / lava-dl 0.6.0 exactly
(tests/test_runtime_loihi.py compares it with netx's own loading in the Lava environment).

What netx makes of a file (lava.lib.dl.netx.hdf5, blocks/process.py, utils.py):

- `weight`, `bias` are read as `float.astype(int)` (truncation toward zero).
- dense: `utils.optimize_weight_bits` rescales the integer weights by 2**scale_bits and derives
  `num_weight_bits` and `weight_exponent = -scale_bits`; Lava's Dense model then clips the
  weights to 8 bits by sign mode (`weightutils.clip_weights`) and drops the lowest
  `8 - num_weight_bits + mixed` bits (`truncate_weights`, an arithmetic shift), and after the
  weighted sum shifts it by `weight_exp` (`>>` floors). A 1-D weight is reshaped (outFeatures, -1).
- conv: no weight optimisation and no weight exponent: the kernel is used as is (netx flips it
  and scipy convolves, i.e. torch's cross-correlation) and the sum is wrapped to signed 24 bits.
- flatten: the next dense layer reads the previous layer's (C, H, W) output flattened in C order.
- neuron ('LOIHI' or 'CUBA'): du = iDecay - 1, dv = vDecay, vth = vThMant, bias_exp = 6 for every
  layer, bias_mant = the layer's bias (per channel for conv). A layer without a `neuron` group is
  netx's non-spiking integrator: iDecay 0, vDecay 4096, vThMant 1 << 17 (du = -1: u integrates).
- the `input` layer is a LIF without synapse; netx gives it no bias (its `bias`/`weight` fields
  are an unused "transform"), so it is driven by setting its bias_mant (`bias=` here).
- reset_interval R (netx's LIFReset): layer i (0 = first block) zeroes u and v at the start of
  every step t (1-based, as Lava's time_step) with t % R == (reset_offset + 1 + i) % R.

Limits: files are refused (UserError, naming the file and the group/field) when a dataset or a
declared shape has more than MAX_ELEMENTS = 10**8 elements, before anything is allocated; when a
layer type or neuron type is one Lava's fixed-point netx blocks do not run as read here (pool,
convT, dense_rec, delays, complex, RF ...); or when a field is missing, non-finite or outside what
Lava represents.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from spikeport.errors import UserError
from spikeport.readers import check_hdf5

MAX_ELEMENTS = (
    10**8
)  # per dataset and per declared layer shape; a larger file is refused before reading
DECAY_UNITY = 1 << 12  # Lava's decays are fractions of 4096
NETX_BIAS_EXP = 6
READOUT_NEURON = {
    "type": "CUBA",
    "iDecay": 0,
    "vDecay": 4096,
    "vThMant": 1 << 17,
}  # netx's default, 1 << 18 - 1
NEURON_TYPES = ("LOIHI", "CUBA", "SDNN")
RUNS = ("input", "conv", "dense", "flatten")
SDNN_MESSAGE_BITS = 16  # netx's default for SDNN neurons: their messages are graded
SDNN_STATE_EXP = 6  # netx: state_exp of every Delta/SigmaDelta
SDNN_SPIKE_EXP = 6  # netx.hdf5.Network(spike_exp=6), its default
SDNN_MODELS = ("Delta", "SigmaDelta", "Sigma")


@dataclass
class Neuron:
    """A layer's neurons as netx configures them (integers exactly as Lava holds them).

    model "LIF" (netx's 'LOIHI'/'CUBA'), or for netx's 'SDNN' the Lava process netx makes of it:
    "Delta" (an input layer), "Sigma" (a layer with `sigma_output`), "SigmaDelta" (the others).
    A sigma-delta neuron uses vth (vThMant) and bias_mant (netx's `bias`), both of which Lava's
    processes scale by 2**(spike_exp + state_exp); du, dv and bias_exp are LIF's.
    """

    du: int  # iDecay - 1 (-1 for netx's read-out integrator: the current never decays)
    dv: int  # vDecay
    vth: int  # vThMant, compared after << 6
    bias_mant: (
        np.ndarray | None
    )  # int64 in the layer's shape (C, H, W) / (N,); None: 0 (the input layer's is set per run)
    bias_exp: int = NETX_BIAS_EXP
    message_bits: int = 0  # what the neurons send: 0 spikes (LIF), else graded messages of this many bits (SDNN: 16)
    model: str = "LIF"

    @property
    def sigma_delta(self) -> bool:
        return self.model in SDNN_MODELS


@dataclass
class Block:
    """One netx block: an input layer (neurons only) or a synapse (dense/conv) and the neurons it feeds."""

    name: str  # the HDF5 group, e.g. "layer/3"
    kind: str  # "input", "dense" or "conv"
    shape: tuple[int, ...]  # output (C, H, W) or (N,)
    neuron: Neuron
    input_shape: tuple[int, ...] | None = (
        None  # what the synapse reads: (C, H, W) or (N,)
    )
    weight: np.ndarray | None = (
        None  # int64 as Lava runs it: dense [out, in] after optimisation, clip and truncation; conv [out, in/groups, kh, kw]
    )
    weight_exp: int = (
        0  # dense: the weighted sum is shifted by this (<< if > 0, else >>)
    )
    num_weight_bits: int = 8  # dense: informational (already applied to `weight`)
    stride: tuple[int, int] = (1, 1)  # conv, torch order (H, W)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    flatten: bool = False  # dense reads its input flattened from (C, H, W)
    input_message_bits: int = (
        0  # > 0: graded input (matters only for external input to the first block)
    )


@dataclass
class NetxNetwork:
    path: str
    blocks: list[Block]
    input_shape: tuple[int, ...] | None  # what the first block reads: its own shape for an input layer, else the external
    # input's shape; None (and no blocks) where the file leaves it to the input (read_netx's defer_input_shape)

    @property
    def has_input_layer(self) -> bool:
        return bool(self.blocks) and self.blocks[0].kind == "input"



def read_netx(path: str | os.PathLike, input_shape: Sequence[int] | None = None, defer_input_shape: bool = False,
              input_message_bits: int = 0) -> NetxNetwork:
    """The netx HDF5 file at `path` as the integers Lava runs; UserError for what cannot be run.

    `input_shape` ((C, H, W) or (N,)) is what netx.hdf5.Network's `input_shape` is (in torch's
    order here): the shape of the external input of a file without an input layer, as lava-dl's
    SLAYER exports are (they start with a dense or conv block). A file that needs it and lacks it
    (a conv first) is refused naming the layer, or with `defer_input_shape` returned with no
    blocks and input_shape None, for the caller to read again once the input is known (`spikeport
    simulate` takes it from --input); a file that declares its own must agree with `input_shape`.
    `input_message_bits` is netx's too: > 0, the first synapse of a file without an input layer
    reads graded values (else spikes: any non-zero value is one).
    Links and storage outside the file are refused before any data is read (readers.check_hdf5)."""
    check_hdf5(path, "netx HDF5")
    if input_shape is not None:
        given = tuple(int(d) for d in input_shape)
        if not 1 <= len(given) <= 3 or min(given) < 1 or math.prod(given) > MAX_ELEMENTS:
            raise UserError(f"{path}: input shape {list(given)} is not 1 to 3 positive sizes of at most {MAX_ELEMENTS} neurons")
        input_shape = given
    if int(input_message_bits) != input_message_bits or not 0 <= input_message_bits <= 32:
        raise UserError(f"input_message_bits: {input_message_bits!r} is not an integer in 0..32")
    try:
        network = _read_netx(str(path), input_shape, defer_input_shape)
    except (OSError, RuntimeError, KeyError) as e:  # h5py on a damaged file: bad object headers, links past the end
        raise UserError(f"{path}: not a readable netx HDF5 file ({e})") from None
    if input_message_bits and network.blocks:
        if network.has_input_layer:
            raise UserError(f"{path}: layer/0 is an input layer, whose neurons decide what the next block reads; input_message_bits "
                            "is for a file without one")
        network.blocks[0].input_message_bits = int(input_message_bits)
    return network


def _read_netx(path: str, given: tuple[int, ...] | None, defer: bool) -> NetxNetwork:
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable netx HDF5 file ({e})") from None
    with f:
        reader = _Reader(path)
        if "layer" not in f or not isinstance(f["layer"], h5py.Group):
            raise UserError(f"{path}: no group 'layer'; not a netx network")
        layers = f["layer"]
        keys = list(layers.keys())
        if not all(k.isdigit() for k in keys) or sorted(int(k) for k in keys) != list(
            range(len(keys))
        ):
            raise UserError(
                f"{path}: layer: groups {keys[:5]} are not 0..{len(keys) - 1}"
            )
        if not keys:
            raise UserError(f"{path}: layer: no layers")
        blocks: list[Block] = []
        input_shape: tuple[int, ...] | None = given
        flatten_next = False
        for i in range(len(keys)):
            name = f"layer/{i}"
            group = layers[str(i)]
            if not isinstance(group, h5py.Group):
                raise UserError(f"{path}: {name}: not a group")
            kind = reader.string(group, "type", name)
            prev_shape = blocks[-1].shape if blocks else input_shape
            if kind == "input":
                if blocks:
                    raise UserError(
                        f"{path}: {name}/type: an input layer after other layers; netx chains them only first"
                    )
                shape = reader.shape(group, name)
                if given is not None and given != shape:
                    raise UserError(f"{path}: {name}/shape: the input layer takes {list(shape)}; the input given has shape {list(given)}")
                if "neuron" in group:
                    neuron = reader.neuron(
                        group["neuron"], f"{name}/neuron", shape, bias=None, input=True
                    )
                    blocks.append(Block(name, "input", shape, neuron))
                input_shape = shape
            elif kind == "flatten":
                flatten_next = True
            elif kind == "conv":
                if prev_shape is None and defer:
                    return NetxNetwork(path=path, blocks=[], input_shape=None)
                if prev_shape is None:
                    raise UserError(
                        f"{path}: {name}: a conv layer with no input layer before it; its input shape (C, H, W) comes from the "
                        "input (spikeport simulate --input FILE.npz, or read_netx(path, input_shape=...))"
                    )
                blocks.append(reader.conv(group, name, prev_shape))
                flatten_next = False
            elif kind == "dense":
                if prev_shape is None:
                    prev_shape = (_dense_in_features(reader, group, name),)
                    input_shape = prev_shape
                if len(prev_shape) != 1 and not flatten_next:
                    raise UserError(
                        f"{path}: {name}: a dense layer reads {prev_shape} with no flatten layer before it; netx cannot connect it"
                    )
                blocks.append(
                    reader.dense(group, name, prev_shape, flatten=len(prev_shape) != 1)
                )
                flatten_next = False
            else:
                raise UserError(
                    f"{path}: {name}/type: {kind!r} layers are not supported (this runtime runs {', '.join(RUNS)})"
                )
        if not blocks:
            raise UserError(f"{path}: layer: no layer with a neuron or synapse")
        if input_shape is None:
            input_shape = blocks[0].input_shape
        for a, b in itertools.pairwise(blocks):
            b.input_message_bits = a.neuron.message_bits
    return NetxNetwork(path=path, blocks=blocks, input_shape=tuple(input_shape))


def _dense_in_features(reader: _Reader, group: h5py.Group, name: str) -> int:
    if "inFeatures" in group:
        return reader.int(group, "inFeatures", name, 1, MAX_ELEMENTS)
    ds = reader.dataset(group, "weight", name)
    if ds.ndim != 2:
        raise UserError(
            f"{reader.path}: {name}: a first dense layer needs inFeatures or a 2-D weight"
        )
    return int(ds.shape[1])


class _Reader:
    def __init__(self, path: str):
        self.path = path

    def fail(self, where: str, what: str) -> UserError:
        return UserError(f"{self.path}: {where}: {what}")

    def dataset(self, group: h5py.Group, key: str, where: str) -> h5py.Dataset:
        if key not in group:
            raise self.fail(f"{where}/{key}", "missing")
        ds = group[key]
        if not isinstance(ds, h5py.Dataset):
            raise self.fail(f"{where}/{key}", "not a dataset")
        if ds.size is None or ds.size > MAX_ELEMENTS:
            raise self.fail(
                f"{where}/{key}",
                f"{ds.shape} has more than {MAX_ELEMENTS} elements; refused",
            )
        return ds

    def array(self, group: h5py.Group, key: str, where: str) -> np.ndarray:
        ds = self.dataset(group, key, where)
        try:
            value = np.asarray(ds[()])
        except (OSError, TypeError, ValueError) as e:
            raise self.fail(f"{where}/{key}", f"cannot be read ({e})") from None
        if value.dtype.kind not in "iufb":
            raise self.fail(f"{where}/{key}", f"dtype {value.dtype} is not numeric")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise self.fail(f"{where}/{key}", "holds NaN or infinity")
        return value

    def integers(
        self, group: h5py.Group, key: str, where: str, bound: int = 2**31 - 1
    ) -> np.ndarray:
        """netx's `.astype(int)` of a weight/bias: truncation toward zero; refuses values Lava's int32 cannot hold."""
        value = self.array(group, key, where)
        if value.size and np.abs(value.astype(np.float64)).max() > bound:
            raise self.fail(
                f"{where}/{key}",
                f"values up to {np.abs(value.astype(np.float64)).max():g}; beyond {bound}",
            )
        return value.astype(np.int64)

    def int(self, group: h5py.Group, key: str, where: str, low: int, high: int) -> int:
        value = self.array(group, key, where)
        if value.size != 1:
            raise self.fail(
                f"{where}/{key}", f"expected one number, got shape {value.shape}"
            )
        number = value.reshape(-1)[0].item()  # a Python number: numpy 2 would print np.int64(5000) in the message
        if number != int(number) or not low <= int(number) <= high:
            raise self.fail(
                f"{where}/{key}", f"{number!r} is not an integer in {low}..{high}"
            )
        return int(number)

    def pair(
        self, group: h5py.Group, key: str, where: str, default: int, low: int, high: int
    ) -> tuple[int, int]:
        """A 2-vector in the file's (H, W) order (netx reverses it into Lava's (X, Y)); a scalar means both."""
        if key not in group:
            return (default, default)
        value = self.array(group, key, where).reshape(-1)
        if value.size == 1:
            value = np.repeat(value, 2)
        if (
            value.size != 2
            or np.any(value != np.round(value))
            or value.min() < low
            or value.max() > high
        ):
            raise self.fail(
                f"{where}/{key}",
                f"{value.tolist()} is not 1 or 2 integers in {low}..{high}",
            )
        return (int(value[0]), int(value[1]))

    def string(self, group: h5py.Group, key: str, where: str) -> str:
        ds = self.dataset(group, key, where)
        try:
            value = ds[()]
        except (OSError, TypeError, ValueError) as e:
            raise self.fail(f"{where}/{key}", f"cannot be read ({e})") from None
        if isinstance(value, np.ndarray):
            if value.size != 1:
                raise self.fail(
                    f"{where}/{key}", f"expected one string, got shape {value.shape}"
                )
            value = value.reshape(-1)[0]
        if isinstance(value, (bytes, np.bytes_)):
            try:
                return value.decode("ascii")
            except UnicodeDecodeError:
                raise self.fail(f"{where}/{key}", "not ASCII") from None
        if isinstance(value, str):
            return value
        raise self.fail(f"{where}/{key}", f"not a string ({type(value).__name__})")

    def shape(self, group: h5py.Group, where: str) -> tuple[int, ...]:
        value = self.array(group, "shape", where).reshape(-1)
        if (
            value.size not in (1, 2, 3)
            or np.any(value != np.round(value))
            or value.min() < 1
        ):
            raise self.fail(
                f"{where}/shape", f"{value.tolist()} is not 1 to 3 positive integers"
            )
        shape = tuple(int(x) for x in value)
        if math.prod(shape) > MAX_ELEMENTS:
            raise self.fail(
                f"{where}/shape",
                f"{list(shape)} declares more than {MAX_ELEMENTS} neurons; refused",
            )
        return shape

    def neuron(
        self, group, where: str, shape: tuple[int, ...], bias: np.ndarray | None, input: bool = False
    ) -> Neuron:
        if isinstance(group, h5py.Group) and self.string(group, "type", where) == "SDNN":
            return self.sigma_delta(group, where, shape, bias, input)
        if isinstance(group, dict):  # netx's default read-out
            config = group
            kind = config["type"]
        else:
            if not isinstance(group, h5py.Group):
                raise self.fail(where, "not a group")
            kind = self.string(group, "type", where)
            if kind not in NEURON_TYPES:
                raise self.fail(
                    f"{where}/type",
                    f"neuron type {kind!r} is not supported (this runtime runs {', '.join(NEURON_TYPES)})",
                )
            config = {
                "iDecay": self.int(group, "iDecay", where, 0, DECAY_UNITY),
                "vDecay": self.int(group, "vDecay", where, 0, DECAY_UNITY),
                "vThMant": self.int(group, "vThMant", where, 0, 1 << 17),
            }
            self.no_message_bits(group, where)
            if "delay" in group:
                raise self.fail(f"{where}/delay", "axonal delays are not supported")
        bias_mant = None
        if bias is not None:
            bias_mant = _broadcast_bias(bias, shape, self, where.rsplit("/", 1)[0])
        return Neuron(
            du=int(config["iDecay"]) - 1,
            dv=int(config["vDecay"]),
            vth=int(config["vThMant"]),
            bias_mant=bias_mant,
            message_bits=int(config.get("messageBits", 0)),
        )

    def sigma_delta(self, group: h5py.Group, where: str, shape: tuple[int, ...], bias: np.ndarray | None, input: bool) -> Neuron:
        """netx's get_neuron_params for 'SDNN': Delta for an input layer, Sigma with `sigma_output`,
        else SigmaDelta (its activation is ReLU whatever `activation` says: netx does not read it,
        nor cum_error; reset_interval does not apply to them)."""
        if "delay" in group:
            raise self.fail(f"{where}/delay", "axonal delays are not supported")
        model = "Delta" if input else "Sigma" if "sigma_output" in group else "SigmaDelta"
        vth = 0
        if model != "Sigma":  # vThMant << (spike_exp + state_exp) is Lava's int32 threshold
            vth = self.int(group, "vThMant", where, 0, (2**31 - 1) >> (SDNN_SPIKE_EXP + SDNN_STATE_EXP))
        self.no_message_bits(group, where)
        bias_mant = None
        if bias is not None:
            if model == "Sigma":
                raise self.fail(f"{where.rsplit('/', 1)[0]}/bias", "a sigma_output neuron (netx's Sigma) takes no bias; netx fails on it")
            bias_mant = _broadcast_bias(bias, shape, self, where.rsplit("/", 1)[0])
        return Neuron(du=0, dv=0, vth=vth, bias_mant=bias_mant, bias_exp=0, message_bits=SDNN_MESSAGE_BITS, model=model)

    def no_message_bits(self, group: h5py.Group, where: str) -> None:
        """netx 0.6 reads `messageBits` as a group (a NetDict) and Lava's run of the network fails
        (tests/test_netx_sdnn.py shows it), so Lava runs no file that has it: refused.
        Without it a LIF sends 0/1 spikes and an SDNN neuron 16-bit graded messages."""
        if "messageBits" in group:
            raise self.fail(f"{where}/messageBits", "lava-dl's netx cannot load a file with this field (Lava would not run it); "
                            "without it LIF neurons send spikes and SDNN neurons graded messages")

    def conv(self, group: h5py.Group, name: str, input_shape: tuple[int, ...]) -> Block:
        if len(input_shape) != 3:
            raise self.fail(
                name, f"a conv layer reads {input_shape}; it needs (C, H, W)"
            )
        shape = self.shape(group, name)
        if len(shape) != 3:
            raise self.fail(
                f"{name}/shape", f"{list(shape)}; a conv layer's shape is (C, H, W)"
            )
        if "neuron" not in group:
            raise self.fail(
                f"{name}/neuron", "missing (netx needs a neuron for a conv layer)"
            )
        weight = self.integers(group, "weight", name)
        if weight.ndim == 5 and weight.shape[-1] == 1:
            weight = weight[..., 0]
        if weight.ndim != 4:
            raise self.fail(
                f"{name}/weight",
                f"shape {weight.shape}; a conv kernel is (out, in/groups, kh, kw)",
            )
        groups = self.int(group, "groups", name, 1, 1 << 16) if "groups" in group else 1
        stride = self.pair(group, "stride", name, 1, 1, 1 << 16)
        padding = self.pair(group, "padding", name, 0, 0, 1 << 16)
        dilation = self.pair(group, "dilation", name, 1, 1, 1 << 16)
        c_in = input_shape[0]
        if (
            c_in % groups
            or weight.shape[0] % groups
            or weight.shape[1] * groups != c_in
        ):
            raise self.fail(
                f"{name}/weight",
                f"shape {weight.shape} with groups {groups} does not read {c_in} input channels",
            )
        out = [shape[0]]
        for k in range(2):
            size = (
                input_shape[1 + k]
                + 2 * padding[k]
                - dilation[k] * (weight.shape[2 + k] - 1)
                - 1
            ) // stride[k] + 1
            out.append(size)
        if out[0] != weight.shape[0] or tuple(out) != shape:
            raise self.fail(
                f"{name}/shape",
                f"{list(shape)}, but the kernel {weight.shape[:2]} on input {list(input_shape)} gives {out}",
            )
        bias = self.integers(group, "bias", name) if "bias" in group else None
        neuron = self.neuron(group["neuron"], f"{name}/neuron", shape, bias)
        return Block(
            name,
            "conv",
            shape,
            neuron,
            input_shape=tuple(input_shape),
            weight=weight,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
        )

    def dense(
        self, group: h5py.Group, name: str, input_shape: tuple[int, ...], flatten: bool
    ) -> Block:
        for key in ("weight_rec", "weight/imag", "delay"):
            if key in group:
                raise self.fail(
                    f"{name}/{key}",
                    "recurrent, complex and delayed dense layers are not supported",
                )
        size = math.prod(self.shape(group, name))
        weight = self.integers(group, "weight", name)
        if weight.ndim == 1:
            if weight.size % size:
                raise self.fail(
                    f"{name}/weight",
                    f"{weight.size} values do not reshape to ({size}, -1)",
                )
            weight = weight.reshape(size, -1)
        if weight.ndim != 2 or weight.shape[0] != size:
            raise self.fail(
                f"{name}/weight", f"shape {weight.shape}; expected ({size}, inputs)"
            )
        n_in = math.prod(input_shape)
        if weight.shape[1] != n_in:
            raise self.fail(
                f"{name}/weight",
                f"shape {weight.shape} reads {weight.shape[1]} inputs; the layer before gives {n_in}",
            )
        weight, num_weight_bits, weight_exp = netx_dense_weights(
            weight, self, f"{name}/weight"
        )
        bias = self.integers(group, "bias", name) if "bias" in group else None
        neuron = self.neuron(
            group["neuron"] if "neuron" in group else dict(READOUT_NEURON),
            f"{name}/neuron",
            (size,),
            bias,
        )
        return Block(
            name,
            "dense",
            (size,),
            neuron,
            input_shape=(n_in,),
            weight=weight,
            weight_exp=weight_exp,
            num_weight_bits=num_weight_bits,
            flatten=flatten,
        )


def _broadcast_bias(
    bias: np.ndarray, shape: tuple[int, ...], reader: _Reader, where: str
) -> np.ndarray:
    """netx's bias_mant: per neuron (dense), or per channel (conv); then Lava's int16 storage of bias_mant."""
    if len(shape) == 1:
        try:
            full = np.broadcast_to(
                bias.reshape(-1) if bias.size == shape[0] else bias, shape
            )
        except ValueError:
            raise reader.fail(
                f"{where}/bias",
                f"shape {bias.shape} does not fit {list(shape)} neurons",
            ) from None
    elif bias.ndim == 1 and bias.shape[0] == shape[0]:
        full = np.broadcast_to(bias.reshape(-1, *([1] * (len(shape) - 1))), shape)
    else:
        raise reader.fail(
            f"{where}/bias",
            f"shape {bias.shape}; expected one per channel ({shape[0]})",
        )
    return np.ascontiguousarray(full, dtype=np.int64)


def netx_dense_weights(
    weight: np.ndarray, reader: _Reader | None = None, where: str = "weight"
) -> tuple[np.ndarray, int, int]:
    """(weights as Lava's Dense model runs them, num_weight_bits, weight_exp) of netx integer weights.

    lava.lib.dl.netx.utils.optimize_weight_bits, then lava.proc.dense.models' clip_weights and
    truncate_weights with the sign mode determined from the optimised weights.
    """

    def fail(what):
        return reader.fail(where, what) if reader else UserError(f"{where}: {what}")

    weight = np.asarray(weight, dtype=np.int64)
    max_w, min_w = weight.max(), weight.min()
    if max_w > 254 and min_w < 0:
        weight = np.clip(weight, -256, 254)
        max_w = weight.max()
    if min_w < -256 and max_w > 0:
        weight = np.clip(weight, -256, 254)
        min_w = weight.min()
    if max_w < 0:
        is_signed, scale = 0, -256 / min_w
    elif min_w >= 0:
        if max_w == 0:
            raise fail(
                "all weights are 0; netx cannot optimise their bits (it fails on log2(inf))"
            )
        is_signed, scale = 0, 255 / max_w
    else:
        is_signed, scale = (
            1,
            min(127 / max_w if max_w > 0 else math.inf, -128 / min_w),
        )  # netx: 127 / 0 = inf
    scale_bits = int(np.floor(np.log2(scale))) + is_signed
    if scale_bits < 0:
        raise fail(
            f"weights {min_w}..{max_w} exceed what netx's optimize_weight_bits can shift (negative scale bits)"
        )
    n = 8
    while n > 0 and np.sum(np.abs(weight / 2**n - np.round(weight / 2**n))) != 0:
        n -= 1
    n -= is_signed
    num_weight_bits = 8 - scale_bits - n
    weight_exp = -scale_bits
    weight = (weight.astype(np.int32) << scale_bits).astype(np.int64)
    return (
        lava_dense_weights(weight, num_weight_bits),
        int(num_weight_bits),
        int(weight_exp),
    )


def lava_dense_weights(weight: np.ndarray, num_weight_bits: int = 8) -> np.ndarray:
    """Lava's fixed-point Dense model's weights: clip_weights(num_bits=8) and truncate_weights by sign mode."""
    w = np.asarray(weight).astype(np.int32).astype(np.int64)
    if w.min() >= 0:
        mode = "excitatory"
    elif w.max() <= 0:
        mode = "inhibitory"
    else:
        mode = "mixed"
    mixed = int(mode == "mixed")
    if mode == "inhibitory":
        w = -w
    w = np.clip(w, -(2**8) * mixed, 2**8 - 1)
    k = 8 - num_weight_bits + mixed
    if k < 0:
        raise UserError(
            f"num_weight_bits {num_weight_bits}: more than 8 bits (Lava shifts by a negative count)"
        )
    w = (w >> k) << k
    if mode == "inhibitory":
        w = -w
    return w


def dense_block(
    weight: np.ndarray,
    *,
    du: int,
    dv: int,
    vth: int,
    bias: np.ndarray | None = None,
    bias_exp: int = NETX_BIAS_EXP,
    num_weight_bits: int = 8,
    weight_exp: int = 0,
    name: str = "dense",
) -> NetxNetwork:
    """A lone `lava.lib.dl.netx.blocks.process.Dense` block (weights passed as is, no netx optimisation), fed by external spikes."""
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise UserError(f"{name}: weight shape {weight.shape}; expected (out, in)")
    if not (-1 <= du < DECAY_UNITY and 0 <= dv <= DECAY_UNITY and 0 <= vth <= 1 << 17):
        raise UserError(
            f"{name}: du {du}, dv {dv}, vth {vth}; Lava's LIF takes du -1..4095, dv 0..4096, vth 0..2**17"
        )
    size = weight.shape[0]
    bias_mant = (
        None
        if bias is None
        else np.broadcast_to(np.asarray(bias, dtype=np.int64), (size,)).copy()
    )
    block = Block(
        name,
        "dense",
        (size,),
        Neuron(du=du, dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp),
        input_shape=(weight.shape[1],),
        weight=lava_dense_weights(weight, num_weight_bits),
        weight_exp=weight_exp,
        num_weight_bits=num_weight_bits,
    )
    return NetxNetwork(path=name, blocks=[block], input_shape=(weight.shape[1],))
