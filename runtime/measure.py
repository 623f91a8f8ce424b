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

Where the spikes come from (ACTIVITY): the run itself. Every backend that gives spike trains
(reference and Lava, float and Loihi fixed point; a lava-dl .net file in either) records every
neuron layer's spikes and what each neuromorphic partition reads from a host, and `count` rebuilds
each layer's input from them through the exported nodes between (pools, Flatten, a sum of
currents), as the NIR executor computes it. So `spikeport simulate` writes the activity of the run
it made (sim/activity.json), and a report counts that run, not another.

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

from spikeport.activity import HostPartition, Layer, Network
from spikeport.deployment import Deployment
from spikeport.errors import UserError
from spikeport.export.lower import fold_avgpool
from spikeport.runtime.reference import NEURONS, _module, _pair

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


def _layers_of(exported: nir.NIRGraph, deployed: nir.NIRGraph, prefix: str) -> dict[str, _Synapse]:
    """The synaptic layers, by name (lowering keeps the names of the layers it folds pools into).

    Each is told which exported node shows its deployed input when the exported graph runs: itself,
    or the pool folded into it (that pool's input is what the folded layer reads)."""
    synapses = {}
    for name, node in _graph_order(exported):
        if isinstance(node, SYNAPTIC):
            after = [s for s in _successors(exported, name) if isinstance(exported.nodes[s], NEURONS)]
            neuron = after[0] if after else None
            source = _upstream(exported, name, _routing)
            path = [name]
            while source is not None and path[-1] != source:
                path.append(_upstream(exported, path[-1], lambda n: False))  # one node further back
            pools = [n for n in path[1:-1] if isinstance(exported.nodes[n], nir.AvgPool2d) and n not in deployed.nodes]
            synapses[f"{prefix}{name}"] = _Synapse(
                node, deployed.nodes.get(name, node), neuron and f"{prefix}{neuron}", neuron and exported.nodes[neuron],
                source=source and f"{prefix}{source}", deployed_from=f"{prefix}{pools[-1] if pools else name}",
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


def measure_netx(network, x: np.ndarray, trains: dict[str, np.ndarray], device: torch.device, name: str, activity: str) -> Network:
    """Activity of a lava-dl .net file from a run's trains (each block's outputs on the steps that
    carry the sample, [N, T, *shape]; none for a non-spiking read-out). Its input layer (neurons
    driven by bias, no synapses) is a layer with no weights and a graded drive; every later block
    reads the outputs of the one before, one step later, as Lava delivers them."""
    n, t = x.shape[:2]
    k = len(network.blocks) - 1
    layers = []
    for i, block in enumerate(network.blocks):
        readout = block.neuron.du < 0 and not block.neuron.sigma_delta  # netx's non-spiking read-out integrator
        sent = trains.get(block.name)
        per_step = np.zeros(t) if sent is None else (np.asarray(sent) != 0).reshape(n, t, -1).sum(2).sum(0).astype(np.float64)  # messages sent: a sigma-delta one is graded
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
        weight = torch.as_tensor(block.weight, dtype=torch.float32, device=device)
        mask = (weight != 0).float()
        # what this block receives: the previous block's sample steps, one step later
        inputs = torch.as_tensor(np.asarray(trains[network.blocks[i - 1].name] if i else x), device=device).float()
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
    return Network(name=name, layers=layers, host=[], timesteps=t, dt=0.0, samples=n, pipeline_delay=k, activity=activity,
                   lowering="as given (a lava-dl .net file)")


ACTIVITY = {  # (backend, mode) -> where a report's spikes come from, for an export that is one plain chain or a .nir file
    ("reference", "float"): "reference runtime, float (runtime/reference.py)",
    ("reference", "loihi"): "reference runtime, Loihi fixed point on export/model.net (runtime/loihi_fixed.py)",
    ("lava", "float"): "Lava, Loihi2SimCfg floating_pt on spikeport's graph (runtime/lava/, in the Lava worker)",
    ("lava", "loihi"): "Lava, Loihi2SimCfg fixed_pt on spikeport's graph with export/loihi.json's integers (runtime/lava/, in the Lava worker)",
}
GRAPH_ACTIVITY = {  # an export that is not one plain chain: its integers are loihi.json's
    ("reference", "loihi"): "reference runtime, Loihi fixed point on export/loihi.json (runtime/loihi_fixed.py simulate_export)",
}
NETX_ACTIVITY = {  # a lava-dl .net file
    ("reference", "loihi"): "reference runtime, Loihi fixed point on the .net file (runtime/loihi_fixed.py)",
    ("lava", "loihi"): "Lava, Loihi2SimCfg fixed_pt on the .net file (lava-dl netx, in the Lava worker)",
}


def check_source(deployment: Deployment, backend: str, mode: str) -> None:
    if deployment.netx is not None and (backend, mode) not in NETX_ACTIVITY:
        raise UserError("a lava-dl .net file is measured in Lava's arithmetic: --mode loihi (--backend reference or lava)")
    if (backend, mode) not in ACTIVITY:
        raise UserError(f"--backend {backend} --mode {mode}: gives no spike trains; reports take their activity from "
                        f"{'; '.join(f'{b} {m}' for b, m in ACTIVITY)}")


def measure(deployment: Deployment, inputs: dict[str, np.ndarray], device: torch.device, name: str = "network",
            backend: str = "reference", mode: str = "float", batch_size: int = 128) -> Network:
    """Run `deployment` on `inputs` ([N, T, ...] by name) on `backend` in `mode`, its trains
    recorded, and `count` them (`batch_size` samples at a time)."""
    from spikeport.runtime.backends import backend_module

    check_source(deployment, backend, mode)
    result = backend_module(backend, mode).run(deployment, inputs, mode=mode, device=device, record=True)
    return count(deployment, inputs, result.trains, device, name=name, backend=backend, mode=mode, batch_size=batch_size)


def count(
    deployment: Deployment, inputs: dict[str, np.ndarray], trains: dict[str, np.ndarray], device: torch.device, name: str = "network",
    backend: str = "reference", mode: str = "float", batch_size: int = 128,
) -> Network:
    """What every layer did in a run (module docstring), from the run's inputs and trains: every
    neuron layer's spikes [N, T, *shape] ("partition.layer"), and what each neuromorphic partition
    read from a host ("partition.tensor"). Each layer's input is rebuilt from those through the
    exported nodes between them (pools, Flatten, a sum of currents), so it is the input the
    exported graph computes: the same figures as observing the float graph while it runs."""
    check_source(deployment, backend, mode)
    if deployment.netx is not None:
        network = measure_netx(deployment.netx, next(iter(inputs.values())), trains, device, name, NETX_ACTIVITY[backend, mode])
        network.dt = deployment.dt or 0.0  # a .net file records no timestep; --dt gives the input's
        return network
    if deployment.manifest is None:
        exported = {"": deployment.graph}
        timesteps = next(iter(inputs.values())).shape[1]
        dt = float((deployment.graph.metadata or {}).get("dt", deployment.dt or 0.0))
    else:
        exported = {f"{name}.": graph for name, graph in deployment.graphs().items()}
        timesteps, dt = deployment.manifest.timesteps, deployment.manifest.dt
    synapses: dict[str, _Synapse] = {}
    where: dict[str, tuple[str, str]] = {}  # layer -> (its partition's prefix, its node)
    notes = []
    for prefix, graph in exported.items():
        deployed, how = _as_deployed(deployment, prefix.rstrip("."), graph)
        layers = _layers_of(graph, deployed, prefix)
        synapses.update(layers)
        where.update({layer: (prefix, layer[len(prefix):]) for layer in layers})
        notes.append(f"{prefix.rstrip('.')}: {how}" if prefix else how)
    tally = _Tally(synapses, timesteps)
    samples = next(iter(inputs.values())).shape[0]
    sources = {**{f"{prefix}{k}": v for prefix in exported for k, v in inputs.items()}, **trains}
    for start in range(0, samples, batch_size):
        window = {k: torch.as_tensor(np.asarray(v[start : start + batch_size]), device=device).float().transpose(0, 1) for k, v in sources.items()}
        graph_values = _Rebuilt(exported, window, device, dt or 1.0)  # dt changes no synaptic or routing node
        for layer, s in synapses.items():
            prefix, node = where[layer]
            tally.synaptic_input(layer, graph_values.input(prefix, node))
            tally.deployed_input(layer, graph_values.input(prefix, s.deployed_from[len(prefix):]))
        for neuron, y in window.items():
            tally.spikes(neuron, y)
    host = []
    if deployment.manifest is not None:
        host = [
            HostPartition(p.name, p.macs_per_sample, p.buffer_timesteps, p.causal) for p in deployment.manifest.partitions if p.kind == "host"
        ]
    # A Loihi-quantized export holds 8-bit weight mantissas (export/loihi.py); otherwise the weights
    # are float, quantized to each chip's precision when deployed.
    weight_bits = 8 if deployment.file("loihi") is not None else None
    graph_loihi = mode == "loihi" and deployment.manifest is not None and "netx" not in deployment.manifest.files
    return Network(
        name=name,
        layers=tally.layers(samples, weight_bits),
        host=host,
        timesteps=timesteps,
        dt=dt,
        samples=samples,
        pipeline_delay=max((_pipeline_delay(g) for g in exported.values()), default=0),
        activity=GRAPH_ACTIVITY.get((backend, mode), ACTIVITY[backend, mode]) if graph_loihi else ACTIVITY[backend, mode],
        lowering="; ".join(notes),
    )


def _as_deployed(deployment: Deployment, partition: str, exported: nir.NIRGraph) -> tuple[nir.NIRGraph, str]:
    """The partition as the chip runs it, and how it came from `exported`: the export's deployed
    file when it wrote one (nothing is lowered again here), else `lower`."""
    entry = deployment.partitions.get(partition)
    if entry is None or entry.deployed is None:
        return lower(exported)
    deployed = deployment.deployed(partition)
    return deployed, lowering(exported, deployed)


class _Rebuilt:
    """Every exported node's values in one batch [T, B, ...], computed from the run's trains: a node
    the run recorded (a neuron layer, an input, a tensor from a host) is its recording, any other
    node (a synaptic layer, a pool, a Flatten) is its torch module applied to the sum of its
    sources, as the NIR executor computes it. A neuron's recurrent input is its own recording, so
    no cycle is walked."""

    def __init__(self, exported: dict[str, nir.NIRGraph], window: dict[str, torch.Tensor], device: torch.device, dt: float):
        self.exported, self.window, self.device, self.dt = exported, window, device, dt
        self.values: dict[str, torch.Tensor] = {}

    def input(self, prefix: str, node: str) -> torch.Tensor:
        """The summed input of `node` (NIR sums a node's inputs)."""
        incoming = [self.value(prefix, source) for source, dst in self.exported[prefix].edges if dst == node]
        return incoming[0] if len(incoming) == 1 else torch.stack(incoming).sum(0)

    def value(self, prefix: str, node: str) -> torch.Tensor:
        key = f"{prefix}{node}"
        if key in self.window:
            return self.window[key]
        if key not in self.values:
            graph = self.exported[prefix]
            if isinstance(graph.nodes[node], NEURONS):
                raise UserError(f"{key}: the run recorded no spikes of this neuron layer, which a later layer reads")
            self.values[key] = _module(node, graph.nodes[node], self.dt).to(self.device)(self.input(prefix, node))
        return self.values[key]


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
