"""What a deployed network does on given inputs: spikes and synaptic operations per layer.

A *layer* is a synaptic node (Conv2d, Affine, Linear) with the neuron node it feeds, or with none
when it is the non-spiking read-out. Each layer is described twice, because the chip and the model
differ where an average pool sits between two layers:

- as deployed (its geometry, fan-in/out, destinations, and whether it reads spikes): the graph the
  export wrote as what the chip runs (export/deployed.nir: average pools folded into the next
  synaptic layer, synapses composed; export/lower.py), or, for a bare .nir file or an export written
  before deployed files, the graph after `lower`, which folds the average pools. A pool is then no
  layer at all, and the layer after it reads spikes. Fit checks this view; a layer the lowering
  composed into others (a projection shortcut reading a sum of currents) keeps its exported geometry.
- as the model computes it (its operations): pooled spikes are graded values, so those operations
  are MACs, exactly as NeuroBench counts them on the torch model.

Where the spikes come from (ACTIVITY): the reference runtime in float, which shows every NIR
node's summed input and output while the exported graph runs; or Lava's Loihi fixed-point
arithmetic (on the export's model.net for a plain chain, on loihi.json's integers for any other
export), run by the reference runtime or by Lava itself, which give every neuron layer's spikes
(and what each neuromorphic partition receives from a host), from which each layer's input is
rebuilt; a layer reading a sum of currents (a projection shortcut) gets the sum of the synaptic
layers it reads, applied to their own rebuilt inputs.

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

import math
from dataclasses import dataclass, field

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spikeport.errors import UserError
from spikeport.export.lower import fold_avgpool, read_deployed
from spikeport.activity import HostPartition, Layer, Measured, Network, fingerprint, inputs_fingerprint, write_activity
from spikeport.runtime.reference import NEURONS, _module, _pair
from spikeport.runtime.simulate import Target, fixed_point_spikes, netx_drive, read_nir, run_reference

SYNAPTIC = (nir.Conv2d, nir.Affine, nir.Linear)


@dataclass
class _Counts:
    """Running totals of one layer over all samples and timesteps."""

    dense: float = 0.0
    ac: float = 0.0
    mac: float = 0.0
    graded: bool = False
    deployed_graded: bool = False  # the layer's input on a chip, after lowering, is not all spikes
    deployed_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    spikes_per_step: np.ndarray | None = None


@dataclass
class _Synapse:
    """A synaptic node as exported (`node`: its weights as 0/1 masks, and how to apply them, for
    counting operations as the model computes them) and as deployed (`deployed`, after lowering)."""

    node: nir.NIRNode
    deployed: nir.NIRNode
    neuron: str | None  # the neuron node it feeds (layer-style name), None for a read-out
    neuron_node: nir.NIRNode | None
    source: str | None  # the neuron layer or input it reads (through Flatten, pools); None: several
    route: list[nn.Module]  # the exported nodes between `source` and this layer, in order
    deployed_from: str  # the exported node whose input is this layer's input as deployed
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


def _upstream(graph: nir.NIRGraph, name: str, skip) -> str | None:
    """The node `name` reads, passing over nodes for which skip(node) holds; None if it reads several."""
    node = name
    while True:
        sources = [src for src, dst in graph.edges if dst == node]
        if len(sources) != 1:
            return None
        node = sources[0]
        if not skip(graph.nodes[node]):
            return node


def _routing(node: nir.NIRNode) -> bool:
    """Nodes between a neuron layer and the synaptic layer it sends to (Flatten, SumPool2d, ...)."""
    return not isinstance(node, (*SYNAPTIC, *NEURONS, nir.Input))


def lower(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, str]:
    """The graph as a chip runs it, and what was done to it: average pools folded into the next
    synaptic layer (export/lower.py), as the Lava runner and the Loihi export do, so that a pool
    is no layer of its own and the layer after it reads spikes. A pool that cannot be folded
    (overlapping, padded) stays, and the reason is returned for the report."""
    pools = [name for name, node in graph.nodes.items() if isinstance(node, nir.AvgPool2d)]
    if not pools:
        return graph, "as exported (no average pool to fold)"
    try:
        return fold_avgpool(graph), f"average pools {', '.join(pools)} folded into the next synaptic layer (export/lower.py)"
    except UserError as e:
        return graph, f"as exported, pools not folded: {e}"


def lowering(exported: nir.NIRGraph, deployed: nir.NIRGraph) -> str:
    """What the export's lowering did to `exported` to give `deployed` (its deployed file), for the
    report's `lowering`: in the words of `lower` where it only folded pools."""
    pools = [n for n, node in exported.nodes.items() if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)) and n not in deployed.nodes]
    composed = [n for n, node in exported.nodes.items() if isinstance(node, SYNAPTIC) and n not in deployed.nodes]
    done = [f"average pools {', '.join(pools)} folded into the next synaptic layer (export/lower.py)"] if pools else []
    done += [f"synaptic layers {', '.join(composed)} composed with the synapses they read (export/lower.py)"] if composed else []
    return "; ".join(done) or "as exported (no average pool to fold)"


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


def _layers_of(exported: nir.NIRGraph, deployed: nir.NIRGraph, prefix: str, dt: float) -> dict[str, _Synapse]:
    """The synaptic layers, by name (lowering keeps the names of the layers it folds pools into).

    Each is told which exported node shows its deployed input when the exported graph runs: itself,
    or the pool folded into it (that pool's input is what the folded layer reads), and the exported
    nodes between its source and itself, which loihi mode applies to the source's spikes."""
    synapses = {}
    for name, node in _graph_order(exported):
        if isinstance(node, SYNAPTIC):
            after = [s for s in _successors(exported, name) if isinstance(exported.nodes[s], NEURONS)]
            neuron = after[0] if after else None
            source = _upstream(exported, name, _routing)
            path = [name]
            while source is not None and path[-1] != source:
                path.append(_upstream(exported, path[-1], lambda n: False))  # one node further back
            route = [_module(n, exported.nodes[n], dt) for n in reversed(path[1:-1])]
            pools = [n for n in path[1:-1] if isinstance(exported.nodes[n], nir.AvgPool2d) and n not in deployed.nodes]
            synapses[f"{prefix}{name}"] = _Synapse(
                node, deployed.nodes.get(name, node), neuron and f"{prefix}{neuron}", neuron and exported.nodes[neuron],
                source=source and f"{prefix}{source}", route=route, deployed_from=f"{prefix}{pools[-1] if pools else name}",
            )
    return synapses


def _graph_order(graph: nir.NIRGraph) -> list[tuple[str, nir.NIRNode]]:
    """Nodes breadth first from the inputs, as data flows (a NIR file stores them sorted by name,
    '11' before '2'); cycles are fine, unreachable nodes come last. Reports list layers, and chips
    place them (Speck's cores, as sinabs does), in this order."""
    seen = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    for name in seen:  # grows while it is walked
        seen += [dst for src, dst in graph.edges if src == name and dst not in seen]
    seen += [name for name in graph.nodes if name not in seen]
    return [(name, graph.nodes[name]) for name in seen]


def _pipeline_delay(graph: nir.NIRGraph) -> int:
    """Synaptic stages on the longest path: Lava and Loihi take one timestep per stage."""
    depth: dict[str, int] = {}

    def visit(name: str) -> int:
        if name not in depth:
            depth[name] = 0  # while visiting: a recurrent edge back to it adds no stage
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
    records = simulate_netx(network, steps=t + k, aligned=True, device=device, record=("s",), **netx_drive(network, x))
    layers = []
    for i, (block, record) in enumerate(zip(network.blocks, records)):
        readout = block.neuron.du < 0 and not block.neuron.sigma_delta  # netx's non-spiking read-out integrator
        per_step = (record.s != 0).flatten(2).sum(2).double().sum(0).cpu().numpy()  # messages sent: a sigma-delta one is graded
        neurons = int(np.prod(block.shape))
        common = dict(
            name=block.name,
            neuron_model=None if readout else "SigmaDelta" if block.neuron.sigma_delta else "LIF",
            leak=not readout and block.neuron.dv > 0,
            neurons=neurons,
            output_shape=tuple(block.shape),
            spikes=0.0 if readout else float(per_step.sum() / n),
            spikes_per_step=[0.0] * t if readout else (per_step / n).tolist(),
            neuron_updates=float(neurons * t),
            destinations=int(i < k),  # a chain: every block sends to the next
        )
        if block.kind == "input":
            layers.append(Layer(kind="dense", input_shape=tuple(block.shape), kernel_size=None, stride=None, padding=None, in_channels=None,
                                out_channels=None, weights=0, nonzero_weights=0, weight_bits=0, fan_in=0, fan_out=0,
                                input_kind="graded", deployed_input_kind="graded", sops_dense=0.0, sops_effective_ac=0.0, sops_effective_mac=0.0, flops=0.0, **common))
            continue
        weight = torch.as_tensor(block.weight, dtype=torch.float32)
        mask = (weight != 0).float()
        if i:
            inputs = records[i - 1].s.float()  # what this block receives: the previous block's sample steps, one step later
        else:
            inputs = torch.as_tensor(x, dtype=torch.float32)
        flat = inputs.flatten(0, 1)
        if block.kind == "conv":
            conv = lambda v, w: F.conv2d(v, w, None, block.stride, block.padding, block.dilation, block.groups)  # noqa: E731
            effective = float(conv((flat != 0).float(), mask).sum())
            dense = float(conv(torch.ones_like(flat[:1]), torch.ones_like(mask)).sum()) * flat.shape[0]
            fan_in, fan_out = int(mask.flatten(1).sum(1).max()), int(np.ceil(float(mask.transpose(0, 1).flatten(1).sum(1).max()) / np.prod(block.stride)))
            geometry = dict(kind="conv", kernel_size=tuple(weight.shape[2:]), stride=tuple(block.stride), padding=tuple(block.padding), in_channels=int(weight.shape[1] * block.groups), out_channels=int(weight.shape[0]))
        else:
            flat = flat.flatten(1)
            effective = float(((flat != 0).float() @ mask.T).sum())
            dense = float(mask.numel()) * flat.shape[0]
            fan_in, fan_out = int(mask.sum(1).max()), int(mask.sum(0).max())
            geometry = dict(kind="dense", kernel_size=None, stride=None, padding=None, in_channels=None, out_channels=None)
        graded = block.input_message_bits > 0 if i == 0 else network.blocks[i - 1].neuron.message_bits > 0  # the sender's messages: SDNN's are graded
        layers.append(Layer(
            input_shape=tuple(inputs.shape[2:]), weights=int(weight.numel()), nonzero_weights=int(mask.sum()),
            weight_bits=int(block.num_weight_bits), fan_in=fan_in, fan_out=fan_out, input_kind="graded" if graded else "spike", deployed_input_kind="graded" if graded else "spike",
            sops_dense=dense / n, sops_effective_ac=0.0 if graded else effective / n, sops_effective_mac=effective / n if graded else 0.0,
            flops=dense / n, **geometry, **common,
        ))
    return Network(name=name, layers=layers, host=[], timesteps=t, dt=0.0, samples=n, pipeline_delay=k,
                   activity=ACTIVITY["reference", "loihi"].replace("export/model.net", "the .net file"), lowering="as given (a lava-dl .net file)")


ACTIVITY = {  # (backend, mode) -> where a report's spikes come from
    ("reference", "float"): "reference runtime, float (runtime/reference.py)",
    ("reference", "loihi"): "reference runtime, Loihi fixed point on export/model.net (runtime/loihi_fixed.py)",
    ("lava", "loihi"): "Lava, Loihi2SimCfg fixed_pt on export/model.net (lava-dl netx)",
}
GRAPH_ACTIVITY = {  # an export that is not one plain chain: its integers are loihi.json's
    ("reference", "loihi"): "reference runtime, Loihi fixed point on export/loihi.json (runtime/loihi_fixed.py simulate_export)",
    ("lava", "loihi"): "Lava, Loihi2SimCfg fixed_pt on spikeport's graph with export/loihi.json's integers (runtime/lava/, in the Lava worker)",
}


def _check_source(target: Target, backend: str, mode: str) -> None:
    if target.netx is not None and (backend, mode) != ("reference", "loihi"):
        raise UserError("a lava-dl .net file is measured with --backend reference --mode loihi (Lava's arithmetic, bit for bit)")
    if (backend, mode) == ("lava", "float"):
        raise UserError(
            "--backend lava --mode float: Lava's floating-point runner gives spike counts per layer, not which neurons "
            "spiked, and synaptic operations need that; use --mode loihi, or the reference runtime "
            "(equal to Lava's float run spike for spike, tests/test_runtime_lava.py)"
        )
    if (backend, mode) not in ACTIVITY:
        raise UserError(f"--backend {backend} --mode {mode}: reports take their activity from {'; '.join(f'{b} {m}' for b, m in ACTIVITY)}")


def measure(
    target: Target, inputs: dict[str, np.ndarray], device: torch.device, batch_size: int = 128, name: str = "network",
    backend: str = "reference", mode: str = "float",
) -> Network:
    """Run `target` on `inputs` ([N, T, ...] by name) and count what every layer does (module docstring).

    `backend`/`mode` pick where the spikes come from (ACTIVITY). In float mode the exported graph
    runs and each layer's input is observed as it runs. In loihi mode every neuron layer's spikes
    come from model.net in Loihi arithmetic, and each layer's input is rebuilt from its source's
    spikes (or the inputs) through the exported nodes between them (pools, Flatten); the first
    layer, which export/loihi.py runs on the host in float, reads the inputs."""
    _check_source(target, backend, mode)
    if target.netx is not None:
        network = measure_netx(target.netx, next(iter(inputs.values())), device, name)
        network.dt = target.dt or 0.0  # a .net file records no timestep; --dt gives the input's
        return network
    if target.manifest is None:
        exported = {"": target.nir_graph}
        timesteps = next(iter(inputs.values())).shape[1]
        dt = float((target.nir_graph.metadata or {}).get("dt", target.dt or 0.0))
    else:
        exported = {f"{p.name}.": read_nir(target.export_dir / p.file) for p in target.manifest.partitions if p.kind == "neuromorphic"}
        timesteps, dt = target.manifest.timesteps, target.manifest.dt
    synapses: dict[str, _Synapse] = {}
    notes = []
    for prefix, graph in exported.items():
        deployed, how = _as_deployed(target, prefix.rstrip("."), graph)
        synapses.update(_layers_of(graph, deployed, prefix, dt or 1.0))  # dt changes no routing node
        notes.append(f"{prefix.rstrip('.')}: {how}" if prefix else how)
    tally = _Tally(synapses, timesteps)
    samples = next(iter(inputs.values())).shape[0]
    if mode == "float":
        deployed_from = {s.deployed_from: layer for layer, s in synapses.items()}

        def observe(node: str, x: torch.Tensor, y: torch.Tensor) -> None:
            if node in synapses:
                tally.synaptic_input(node, x)
            if node in deployed_from:
                tally.deployed_input(deployed_from[node], x)
            tally.spikes(node, y)

        for start in range(0, samples, batch_size):
            run_reference(target, {k: v[start : start + batch_size] for k, v in inputs.items()}, device, observe)
    else:
        spikes = fixed_point_spikes(target, inputs, device, backend)
        sources = {**{f"{prefix}{k}": v for prefix in exported for k, v in inputs.items()}, **spikes}
        for start in range(0, samples, batch_size):
            window = {k: torch.as_tensor(v[start : start + batch_size], dtype=torch.float32, device=device).transpose(0, 1) for k, v in sources.items()}
            for layer, s in synapses.items():
                if s.source is None:  # it reads a sum of currents (a membrane shortcut): rebuilt from the synapses summed
                    x = _summed_currents(layer, synapses, exported, window, device, dt or 1.0)
                    tally.deployed_input(layer, x)
                    tally.synaptic_input(layer, x)
                    continue
                x = window[s.source]
                tally.deployed_input(layer, x)
                for module in s.route:
                    x = module.to(device)(x)
                tally.synaptic_input(layer, x)
            for neuron, y in window.items():
                tally.spikes(neuron, y)
    host = []
    if target.manifest is not None:
        host = [
            HostPartition(p.name, p.macs_per_sample, p.buffer_timesteps, p.causal) for p in target.manifest.partitions if p.kind == "host"
        ]
    # A Loihi-quantized export holds 8-bit weight mantissas (export/loihi.py); otherwise the weights
    # are float, quantized to each chip's precision when deployed.
    weight_bits = 8 if target.manifest is not None and "loihi" in target.manifest.files else None
    return Network(
        name=name,
        layers=tally.layers(samples, weight_bits),
        host=host,
        timesteps=timesteps,
        dt=dt,
        samples=samples,
        pipeline_delay=max((_pipeline_delay(g) for g in exported.values()), default=0),
        activity=(GRAPH_ACTIVITY if mode == "loihi" and target.manifest is not None and "netx" not in target.manifest.files else ACTIVITY)[backend, mode],
        lowering="; ".join(notes),
    )


def _as_deployed(target: Target, partition: str, exported: nir.NIRGraph) -> tuple[nir.NIRGraph, str]:
    """The partition as the chip runs it, and how it came from `exported`: the export's deployed
    file when it wrote one (nothing is lowered again here), else `lower`."""
    entry = next((p for p in target.manifest.partitions if p.name == partition), None) if target.manifest else None
    if entry is None or entry.deployed is None:
        return lower(exported)
    deployed = read_deployed(target.manifest, target.export_dir, partition, read_nir)
    return deployed, lowering(exported, deployed)


def _summed_currents(layer: str, synapses: dict[str, _Synapse], exported: dict[str, nir.NIRGraph], window: dict[str, torch.Tensor],
                     device: torch.device, dt: float) -> torch.Tensor:
    """The input of a synaptic layer that reads several nodes (a sum of currents, MS-ResNet's
    projection shortcut), rebuilt in loihi mode from the fixed-point spikes: each summed node is a
    neuron layer or input (its values), or a synaptic layer applied, with its bias, to its own input."""
    prefix, name = layer.split(".", 1) if "." in layer else ("", layer)
    prefix = f"{prefix}." if prefix else ""
    graph = exported[prefix]
    total = 0
    for source in [a for a, b in graph.edges if b == name]:
        node = graph.nodes[source]
        if isinstance(node, SYNAPTIC):
            s = synapses[f"{prefix}{source}"]
            x = _summed_currents(f"{prefix}{source}", synapses, exported, window, device, dt) if s.source is None else window[s.source]
            for module in ([] if s.source is None else s.route):
                x = module.to(device)(x)
            total = total + _module(source, node, dt).to(device)(x)
        else:
            total = total + window[f"{prefix}{source}"]
    return total


class _Tally:
    """Running counts of every deployed layer over all samples and timesteps ([T, B, ...] tensors)."""

    def __init__(self, synapses: dict[str, _Synapse], timesteps: int):
        self.synapses = synapses
        self.timesteps = timesteps
        self.neurons = {s.neuron: layer for layer, s in synapses.items() if s.neuron}
        self.counts = {layer: _Counts() for layer in synapses}

    def synaptic_input(self, layer: str, x: torch.Tensor) -> None:
        """Operations of the layer as exported, on its input x [T, B, ...] as the model computes it."""
        c, s = self.counts[layer], self.synapses[layer]
        folded = x.flatten(0, 1)
        c.graded |= not _spikes(folded)
        used = s.connections((folded != 0).float())
        if c.graded:
            c.mac += float(used.sum())
        else:
            c.ac += float(used.sum())
        c.output_shape = tuple(used.shape[1:])
        c.dense += s.dense_per_call(tuple(folded.shape[1:])) * folded.shape[0]

    def deployed_input(self, layer: str, x: torch.Tensor) -> None:
        """What the layer reads on a chip (after lowering): spikes or graded values, and its shape."""
        c = self.counts[layer]
        c.deployed_graded |= not _spikes(x)
        dense = not isinstance(self.synapses[layer].deployed, nir.Conv2d)
        c.deployed_shape = (math.prod(x.shape[2:]),) if dense else tuple(x.shape[2:])

    def spikes(self, neuron: str, y: torch.Tensor) -> None:
        if neuron in self.neurons:
            per_step = y.flatten(2).sum(2).sum(1).double().cpu().numpy()
            c = self.counts[self.neurons[neuron]]
            c.spikes_per_step = per_step if c.spikes_per_step is None else c.spikes_per_step + per_step

    def layers(self, samples: int, weight_bits: int | None) -> list[Layer]:
        destinations = {s.neuron: sum(other.source == s.neuron for other in self.synapses.values()) for s in self.synapses.values()}
        layers = []
        for layer, s in self.synapses.items():
            c, node = self.counts[layer], s.deployed  # geometry as deployed, operations as computed
            weight = np.asarray(node.weight)
            fan_in, fan_out = _fan(node, torch.as_tensor(weight != 0, dtype=torch.float32))
            per_step = c.spikes_per_step if c.spikes_per_step is not None else np.zeros(self.timesteps)
            conv = isinstance(node, nir.Conv2d)
            neuron_count = int(np.prod(c.output_shape))
            layers.append(
                Layer(
                    name=layer,
                    kind="conv" if conv else "dense",
                    neuron_model=None if s.neuron_node is None else type(s.neuron_node).__name__,
                    leak=isinstance(s.neuron_node, nir.LIF),
                    neurons=neuron_count,
                    input_shape=c.deployed_shape,
                    output_shape=c.output_shape,
                    kernel_size=tuple(weight.shape[2:]) if conv else None,
                    stride=_pair(node.stride) if conv else None,
                    padding=_padding(node) if conv else None,
                    in_channels=int(weight.shape[1] * node.groups) if conv else None,
                    out_channels=int(weight.shape[0]) if conv else None,
                    weights=int(weight.size),
                    nonzero_weights=int(np.count_nonzero(weight)),
                    weight_bits=weight_bits,
                    fan_in=fan_in,
                    fan_out=fan_out,
                    destinations=destinations[s.neuron] if s.neuron else 0,
                    input_kind="graded" if c.graded else "spike",
                    deployed_input_kind="graded" if c.deployed_graded else "spike",
                    spikes=float(per_step.sum() / samples),
                    spikes_per_step=(per_step / samples).tolist(),
                    sops_dense=c.dense / samples,
                    sops_effective_ac=c.ac / samples,
                    sops_effective_mac=c.mac / samples,
                    flops=c.dense / samples,
                    neuron_updates=float(neuron_count * self.timesteps),
                )
            )
        return layers


def _spikes(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x.abs() == 1)).all())  # NeuroBench: 0, 1 and -1 are spikes


def _padding(node: nir.Conv2d) -> tuple[int, int]:
    """Zero padding per side; "same" pads the larger side of an even kernel by k // 2."""
    if not isinstance(node.padding, str):
        return _pair(node.padding)
    if node.padding == "same":
        kernel = np.asarray(node.weight).shape[2:]
        return (int(kernel[0]) // 2, int(kernel[1]) // 2)
    return (0, 0)  # "valid"


def write_measured_activity(path: Path, target: Target, inputs: dict[str, np.ndarray], device: torch.device, given: Path,
                            backend: str, mode: str) -> Network:
    """Measure the activity of `target` on `inputs` and write it, with what it was measured on, to
    `path` (sim/activity.json: the file a report reads)."""
    name = given.stem if given.suffix else given.name
    network = measure(target, inputs, device, name=name, backend=backend, mode=mode)
    write_activity(path, network, measured_on(target, inputs, backend, mode))
    return network


def measured_on(target: Target, inputs: dict[str, np.ndarray], backend: str, mode: str) -> Measured:
    return Measured(fingerprint(target.source), backend, mode, inputs_fingerprint(inputs))
