"""model.net: a lowered NIR chain and its Loihi integers as a lava-dl netx HDF5 network (read back,
as lava-dl's own files are, by export/netx_read.py).

The layout is the one lava-dl's own networks use and `lava.lib.dl.netx.hdf5.Network` reads
(compare ../shared/peer-tests/lava-dl/pilotnet_lif/network.net):

    layer/0          type [b'input'], shape [C, H, W], neuron/      the host layer's LIF
    layer/i (conv)   type [b'conv'], shape, inChannels, outChannels, kernelSize [kh, kw],
                     stride, padding, dilation (each [y, x]), groups,
                     weight (out, in, kh, kw) float32 holding integers, bias, neuron/
    layer/i          type [b'flatten'], shape [1, 1, N]
    layer/i (dense)  type [b'dense'], shape [N], inFeatures, outFeatures, weight (out, in), bias, neuron/
    neuron/          type b'LOIHI', iDecay = du + 1, vDecay = dv, vThMant = vth, refDelay 1

Weights and biases are the integers of `export.loihi.integers` (netx casts them with astype(int)
and derives its own weight exponent, reproducing them exactly). Layer 0 is the LIF of the first
layer, which runs on the host (export/loihi.py): it has no synapse and no bias in the file; the
runner sets its bias_mant to `export.loihi.input_bias` of each input frame. The read-out is a dense
layer with a non-spiking integrator neuron (dv = 0, vth at its maximum): its voltage is the
time-summed logits. netx takes its weights in torch's (out, in, kh, kw) layout and flips them
itself; Lava shapes are (x, y, channel), so netx reverses every shape and [y, x] pair it reads.

Running it: Lava adds one step of delay per synaptic layer and every neuron adds its bias from the
first step, so a runner loads the file with `hdf5.Network(net_config=path, reset_interval=T + K)`
(K layers after the input layer) and runs each sample for T + K steps: netx resets layer k at step
k + 1 of every window, when the sample's first timestep reaches it, so layer k holds timesteps
0..T-1 at steps k+1..k+T and the read-out's voltage at the last step is the sum over the T steps.
"""

from __future__ import annotations

import os

import h5py
import nir
import numpy as np

from spikeport.errors import UserError
from spikeport.export.loihi import LoihiLayer, LoihiModel, chain_layers, integers
from spikeport.io import atomic_open


def write_netx(graph: nir.NIRGraph, model: LoihiModel, path: str | os.PathLike) -> None:
    """Write the netx network of `graph` (lowered) quantized as `model`, atomically."""
    pairs = chain_layers(graph)  # refuses anything but a plain chain
    if [(layer.synapse, layer.neuron) for layer in model.layers] != pairs:
        raise UserError(
            f"loihi model: layers {[layer.synapse for layer in model.layers]} "
            f"do not match the graph's chain {[s for s, _ in pairs]}"
        )
    flattens = _flattens_before(graph)
    with atomic_open(path, "w+b") as f, h5py.File(f, "w") as h5:
        layers = h5.create_group("layer")
        index = 0
        for layer in model.layers:
            if layer.synapse in flattens and not layer.on_host:  # the host flattens its own input
                _write_flatten(layers.create_group(str(index)), flattens[layer.synapse])
                index += 1
            group = layers.create_group(str(index))
            if layer.on_host:
                _write_input(group, layer)
            else:
                _write_synapse(group, graph, layer)
            index += 1


def _write_input(group: h5py.Group, layer: LoihiLayer) -> None:
    group.create_dataset("type", data=np.array([b"input"], dtype="S10"))
    group.create_dataset("shape", data=np.array(layer.shape, dtype=np.int64))
    _write_neuron(group.create_group("neuron"), layer)


def _write_synapse(group: h5py.Group, graph: nir.NIRGraph, layer: LoihiLayer) -> None:
    node = graph.nodes[layer.synapse]
    weight, bias = integers(graph, layer)
    group.create_dataset("shape", data=np.array(layer.shape, dtype=np.int64))
    if isinstance(node, nir.Conv2d):
        group.create_dataset("type", data=np.array([b"conv"], dtype="S10"))
        group.create_dataset("inChannels", data=np.int64(weight.shape[1] * node.groups))
        group.create_dataset("outChannels", data=np.int64(weight.shape[0]))
        group.create_dataset("kernelSize", data=np.array(weight.shape[2:], dtype=np.int64))
        for key in ("stride", "padding", "dilation"):
            group.create_dataset(key, data=np.broadcast_to(np.asarray(getattr(node, key), dtype=np.int64), (2,)).copy())
        group.create_dataset("groups", data=np.int64(node.groups))
    else:
        group.create_dataset("type", data=np.array([b"dense"], dtype="S10"))
        group.create_dataset("inFeatures", data=np.int64(weight.shape[1]))
        group.create_dataset("outFeatures", data=np.int64(weight.shape[0]))
    group.create_dataset("weight", data=weight.astype(np.float32))
    group.create_dataset("bias", data=bias.astype(np.float32))
    _write_neuron(group.create_group("neuron"), layer)


def _write_neuron(group: h5py.Group, layer: LoihiLayer) -> None:
    group.create_dataset("type", data="LOIHI", dtype=h5py.string_dtype("ascii"))
    group.create_dataset("iDecay", data=np.int64(layer.du + 1))
    group.create_dataset("vDecay", data=np.int64(layer.dv))
    group.create_dataset("vThMant", data=np.int64(layer.vth))
    group.create_dataset("refDelay", data=np.int64(1))


def _write_flatten(group: h5py.Group, size: int) -> None:
    group.create_dataset("type", data=np.array([b"flatten"], dtype="S10"))
    group.create_dataset("shape", data=np.array([1, 1, size], dtype=np.int64))


def _flattens_before(graph: nir.NIRGraph) -> dict[str, int]:
    """{synaptic node: flattened size} for each synaptic node that reads a nir.Flatten."""
    return {
        b: int(np.prod(graph.nodes[a].output_type["output"])) for a, b in graph.edges if isinstance(graph.nodes[a], nir.Flatten)
    }
