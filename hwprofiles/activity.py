"""What a deployed network does on given inputs: spikes and synaptic operations per layer.

The network runs in the reference runtime (runtime/reference.py), which shows every NIR node's
summed input and output. A *layer* is a synaptic node (Conv2d, Affine, Linear) with the neuron
node it feeds, or with none when it is the non-spiking read-out.

Synaptic operations follow NeuroBench's definitions (neurobench/metrics/workload/
synaptic_operations.py), so that the numbers can be compared with published ones, and a test
shows they equal NeuroBench's own counter on the same model:

- dense: every connection, used or not, for every call (padding excluded);
- effective: connections whose weight is nonzero and whose input is nonzero;
- an effective operation is an AC (accumulate) when the layer's inputs in that call are all 0, 1
  or -1 (spikes), else a MAC (a graded input: an image, pooled spikes).

Every figure is per sample, averaged over the samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np
import torch
import torch.nn.functional as F

from spikeport.hwprofiles.network import HostPartition, Layer, Network
from spikeport.runtime.reference import NEURONS, _pair
from spikeport.runtime.simulate import Target, netx_drive, read_nir, run_reference

SYNAPTIC = (nir.Conv2d, nir.Affine, nir.Linear)


@dataclass
class _Counts:
    """Running totals of one layer over all samples and timesteps."""

    dense: float = 0.0
    ac: float = 0.0
    mac: float = 0.0
    graded: bool = False
    spikes_per_step: np.ndarray | None = None


@dataclass
class _Synapse:
    """A synaptic node: its weights as 0/1 masks, and how to apply them."""

    node: nir.NIRNode
    neuron: str | None  # the neuron node it feeds (layer-style name), None for a read-out
    neuron_node: nir.NIRNode | None
    mask: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.mask = torch.as_tensor(np.asarray(self.node.weight) != 0, dtype=torch.float32)

    def connections(self, x: torch.Tensor) -> torch.Tensor:
        """For 0/1 inputs x [N, ...] and the 0/1 weight mask: the used connections per output."""
        if isinstance(self.node, nir.Conv2d):
            padding = self.node.padding if isinstance(self.node.padding, str) else _pair(self.node.padding)
            return F.conv2d(x, self.mask.to(x.device), None, _pair(self.node.stride), padding, _pair(self.node.dilation), self.node.groups)
        return x @ self.mask.to(x.device).T

    def dense_per_call(self, sample_shape: tuple[int, ...]) -> float:
        """Connections per sample and timestep, padding excluded: all-ones inputs and weights."""
        saved, self.mask = self.mask, torch.ones_like(self.mask)
        try:
            return float(self.connections(torch.ones(1, *sample_shape)).sum())
        finally:
            self.mask = saved


def _successors(graph: nir.NIRGraph, name: str) -> list[str]:
    return [dst for src, dst in graph.edges if src == name]


def _fan(node: nir.NIRNode, mask: torch.Tensor) -> tuple[int, int]:
    """Most nonzero synapses into one neuron, and out of one input neuron.

    For a convolution the fan-out is that of an input pixel away from the borders: each of its
    nonzero taps reaches one output per output channel, divided by the stride.
    """
    if isinstance(node, nir.Conv2d):
        fan_in = int(mask.flatten(1).sum(1).max())
        stride = np.prod(_pair(node.stride))
        fan_out = int(np.ceil(float(mask.transpose(0, 1).flatten(1).sum(1).max()) / stride))
        return fan_in, fan_out
    return int(mask.sum(1).max()), int(mask.sum(0).max())


def _layers_of(graph: nir.NIRGraph, prefix: str) -> dict[str, _Synapse]:
    synapses = {}
    for name, node in graph.nodes.items():
        if isinstance(node, SYNAPTIC):
            after = [s for s in _successors(graph, name) if isinstance(graph.nodes[s], NEURONS)]
            neuron = after[0] if after else None
            synapses[f"{prefix}{name}"] = _Synapse(node, neuron and f"{prefix}{neuron}", neuron and graph.nodes[neuron])
    return synapses


def _pipeline_delay(graph: nir.NIRGraph) -> int:
    """Synaptic stages on the longest path: Lava and Loihi take one timestep per stage."""
    depth: dict[str, int] = {}

    def visit(name: str) -> int:
        if name not in depth:
            sources = [src for src, dst in graph.edges if dst == name]
            here = 1 if isinstance(graph.nodes[name], SYNAPTIC) else 0
            depth[name] = here + max((visit(s) for s in sources), default=0)
        return depth[name]

    return max((visit(n) for n in graph.nodes), default=0)


def measure_netx(network, x: np.ndarray, device: torch.device, name: str) -> Network:
    """Activity of a lava-dl .net file run in Lava's fixed-point arithmetic (runtime/loihi_fixed.py),
    one window per sample as `spikeport simulate` runs it. Its input layer (neurons driven by bias,
    no synapses) is a layer with no weights and a graded drive; every later block reads the spikes
    of the one before, one step later, as Lava delivers them."""
    from spikeport.runtime.loihi_fixed import simulate_netx

    n, t = x.shape[:2]
    k = len(network.blocks) - 1
    records = simulate_netx(network, steps=t + k, reset_interval=t + k, device=device, record=("s",), **netx_drive(network, x))
    layers = []
    for i, (block, record) in enumerate(zip(network.blocks, records)):
        readout = block.neuron.du < 0  # netx's non-spiking read-out integrator
        per_step = record.s[:, i : i + t].flatten(2).sum(2).double().sum(0).cpu().numpy()
        neurons = int(np.prod(block.shape))
        common = dict(
            name=block.name,
            neuron_model=None if readout else "LIF",
            leak=not readout and block.neuron.dv > 0,
            neurons=neurons,
            output_shape=tuple(block.shape),
            spikes=0.0 if readout else float(per_step.sum() / n),
            spikes_per_step=[0.0] * t if readout else (per_step / n).tolist(),
            neuron_updates=float(neurons * t),
        )
        if block.kind == "input":
            layers.append(Layer(kind="dense", input_shape=tuple(block.shape), kernel_size=None, stride=None, in_channels=None,
                                out_channels=None, weights=0, nonzero_weights=0, weight_bits=0, fan_in=0, fan_out=0,
                                input_kind="graded", sops_dense=0.0, sops_effective_ac=0.0, sops_effective_mac=0.0, flops=0.0, **common))
            continue
        weight = torch.as_tensor(block.weight, dtype=torch.float32)
        mask = (weight != 0).float()
        if i:
            inputs = records[i - 1].s[:, i - 1 : i - 1 + t].float()  # what this block receives, one step later
        else:
            inputs = torch.as_tensor(x, dtype=torch.float32)
        flat = inputs.flatten(0, 1)
        if block.kind == "conv":
            conv = lambda v, w: F.conv2d(v, w, None, block.stride, block.padding, block.dilation, block.groups)  # noqa: E731
            effective = float(conv((flat != 0).float(), mask).sum())
            dense = float(conv(torch.ones_like(flat[:1]), torch.ones_like(mask)).sum()) * flat.shape[0]
            fan_in, fan_out = int(mask.flatten(1).sum(1).max()), int(np.ceil(float(mask.transpose(0, 1).flatten(1).sum(1).max()) / np.prod(block.stride)))
            geometry = dict(kind="conv", kernel_size=tuple(weight.shape[2:]), stride=tuple(block.stride), in_channels=int(weight.shape[1] * block.groups), out_channels=int(weight.shape[0]))
        else:
            flat = flat.flatten(1)
            effective = float(((flat != 0).float() @ mask.T).sum())
            dense = float(mask.numel()) * flat.shape[0]
            fan_in, fan_out = int(mask.sum(1).max()), int(mask.sum(0).max())
            geometry = dict(kind="dense", kernel_size=None, stride=None, in_channels=None, out_channels=None)
        graded = i == 0 and block.input_message_bits > 0
        layers.append(Layer(
            input_shape=tuple(inputs.shape[2:]), weights=int(weight.numel()), nonzero_weights=int(mask.sum()),
            weight_bits=int(block.num_weight_bits), fan_in=fan_in, fan_out=fan_out, input_kind="graded" if graded else "spike",
            sops_dense=dense / n, sops_effective_ac=0.0 if graded else effective / n, sops_effective_mac=effective / n if graded else 0.0,
            flops=dense / n, **geometry, **common,
        ))
    return Network(name=name, layers=layers, host=[], timesteps=t, dt=0.0, samples=n, pipeline_delay=k)


def measure(target: Target, inputs: dict[str, np.ndarray], device: torch.device, batch_size: int = 128, name: str = "network") -> Network:
    """Run `target` on `inputs` ([N, T, ...] by name) and count what every layer does."""
    if target.netx is not None:
        return measure_netx(target.netx, next(iter(inputs.values())), device, name)
    if target.manifest is None:
        graphs = {"": target.nir_graph}
        timesteps = next(iter(inputs.values())).shape[1]
        dt = float((target.nir_graph.metadata or {}).get("dt", target.dt or 0.0))
    else:
        graphs = {f"{p.name}.": read_nir(target.export_dir / p.file) for p in target.manifest.partitions if p.kind == "neuromorphic"}
        timesteps, dt = target.manifest.timesteps, target.manifest.dt
    synapses: dict[str, _Synapse] = {}
    for prefix, graph in graphs.items():
        synapses.update(_layers_of(graph, prefix))
    neurons = {s.neuron: layer for layer, s in synapses.items() if s.neuron}
    counts = {layer: _Counts() for layer in synapses}
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def observe(node: str, x: torch.Tensor, y: torch.Tensor) -> None:
        if node in synapses:
            c, s = counts[node], synapses[node]
            shapes[node] = (tuple(x.shape[2:]), tuple(y.shape[2:]))
            folded = x.flatten(0, 1)
            c.graded |= not bool(((folded == 0) | (folded.abs() == 1)).all())  # NeuroBench: 0, 1, -1 are spikes
            effective = float(s.connections((folded != 0).float()).sum())
            if c.graded:
                c.mac += effective
            else:
                c.ac += effective
            c.dense += s.dense_per_call(shapes[node][0]) * folded.shape[0]
        if node in neurons:
            per_step = y.flatten(2).sum(2).sum(1).double().cpu().numpy()
            c = counts[neurons[node]]
            c.spikes_per_step = per_step if c.spikes_per_step is None else c.spikes_per_step + per_step

    samples = next(iter(inputs.values())).shape[0]
    for start in range(0, samples, batch_size):
        run_reference(target, {k: v[start : start + batch_size] for k, v in inputs.items()}, device, observe)

    # A Loihi-quantized export holds 8-bit weight mantissas (export/loihi.py); otherwise the weights
    # are float, quantized to each chip's precision when deployed.
    weight_bits = 8 if target.manifest is not None and "loihi" in target.manifest.files else None
    layers = []
    for layer, s in synapses.items():
        c, node = counts[layer], s.node
        input_shape, output_shape = shapes[layer]
        fan_in, fan_out = _fan(node, s.mask)
        neuron = s.neuron_node
        per_step = c.spikes_per_step if c.spikes_per_step is not None else np.zeros(timesteps)
        weight = np.asarray(node.weight)
        conv = isinstance(node, nir.Conv2d)
        neuron_count = int(np.prod(output_shape))
        layers.append(
            Layer(
                name=layer,
                kind="conv" if conv else "dense",
                neuron_model=None if neuron is None else type(neuron).__name__,
                leak=isinstance(neuron, nir.LIF),
                neurons=neuron_count,
                input_shape=input_shape,
                output_shape=output_shape,
                kernel_size=tuple(weight.shape[2:]) if conv else None,
                stride=_pair(node.stride) if conv else None,
                in_channels=int(weight.shape[1] * node.groups) if conv else None,
                out_channels=int(weight.shape[0]) if conv else None,
                weights=int(weight.size),
                nonzero_weights=int(np.count_nonzero(weight)),
                weight_bits=weight_bits,
                fan_in=fan_in,
                fan_out=fan_out,
                input_kind="graded" if c.graded else "spike",
                spikes=float(per_step.sum() / samples),
                spikes_per_step=(per_step / samples).tolist(),
                sops_dense=c.dense / samples,
                sops_effective_ac=c.ac / samples,
                sops_effective_mac=c.mac / samples,
                flops=c.dense / samples,
                neuron_updates=float(neuron_count * timesteps),
            )
        )
    host = []
    if target.manifest is not None:
        host = [
            HostPartition(p.name, p.macs_per_sample, p.buffer_timesteps, p.causal) for p in target.manifest.partitions if p.kind == "host"
        ]
    return Network(
        name=name,
        layers=layers,
        host=host,
        timesteps=timesteps,
        dt=dt,
        samples=samples,
        pipeline_delay=max((_pipeline_delay(g) for g in graphs.values()), default=0),
    )
