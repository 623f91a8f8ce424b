"""Split a model into neuromorphic and host partitions (ARCHITECTURE.md, "Partitions").

NIR has no attention, matmul or softmax, and no neuromorphic core runs them either. Like TVM's
BYOC or hls4ml, the exporter therefore cuts the model's graph into

- neuromorphic partitions: runs of operations that map to NIR primitives (`nir_graph.classify`);
- host partitions: everything else, run on the host from an ONNX file.

Each fx node gets a partition in topological order: it joins the latest partition among its
inputs when that one is of its own kind, else the next partition of its kind after it (a new one
if there is none). Partitions therefore only ever feed later partitions, so the cut is acyclic,
and torch.fx's own `split_module` turns each into a submodule with its boundary tensors as
inputs and outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.fx.passes.split_module import split_module

from spikeport.export import nir_graph
from spikeport.train.neuron import LIF

NEUROMORPHIC = "neuromorphic"
HOST = "host"


@dataclass
class Boundary:
    """A tensor that crosses between partitions, or enters or leaves the model."""

    name: str
    shape: tuple[int, ...]  # per sample: no time, no batch
    kind: str  # "spike" (a LIF's output: 0/1 events) or "graded" (any real value)


@dataclass
class Partition:
    name: str  # "neuromorphic0", "host0", ...
    kind: str  # NEUROMORPHIC or HOST
    module: fx.GraphModule  # forward(*args) with one [T, B, ...] tensor per input -> outputs
    args: list[str]  # the module's forward argument names, one per input
    inputs: list[Boundary]
    outputs: list[Boundary]
    host_ops: list[str] = field(default_factory=list)  # for a host partition: why each op is here


@dataclass
class Partitioned:
    inputs: list[Boundary]  # the model's inputs
    outputs: list[Boundary]  # the model's outputs
    partitions: list[Partition]  # in execution order


def _assign(traced: fx.GraphModule, verdicts: dict[fx.Node, str | None]) -> tuple[dict[fx.Node, int], list[str]]:
    """Partition index per compute node, and the kind of each partition in order."""
    kinds: list[str] = []
    index: dict[fx.Node, int] = {}
    for node in traced.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        kind = NEUROMORPHIC if verdicts[node] is None else HOST
        sources = [index[n] for n in node.all_input_nodes if n in index]
        if nir_graph.is_sum(node) and sources and all(kinds[i] == HOST for i in sources):
            kind = HOST  # a sum has no NIR node of its own: it stays with host operands
        latest = max(sources, default=0)
        candidates = [i for i in range(latest, len(kinds)) if kinds[i] == kind]
        if candidates:
            index[node] = candidates[0]
        else:
            kinds.append(kind)
            index[node] = len(kinds) - 1
    return index, kinds


def _kind_of(traced: fx.GraphModule, node: fx.Node) -> str:
    producer = traced.get_submodule(node.target) if node.op == "call_module" else None
    return "spike" if isinstance(producer, LIF) else "graded"


def partition(model: nn.Module, input_shapes: dict[str, tuple] | tuple, timesteps: int = 1) -> Partitioned:
    """Cut `model` into partitions; shapes are per sample, by forward argument name."""
    traced = nir_graph.trace(model)
    shapes = nir_graph.named_shapes(traced, input_shapes)
    nir_graph.propagate_shapes(traced, shapes, timesteps)
    verdicts = nir_graph.classify(traced)
    index, kinds = _assign(traced, verdicts)

    split = split_module(traced, model, lambda node: index[node], keep_original_order=True)
    by_name = {node.name: node for node in traced.graph.nodes}

    def boundary(node_name: str) -> Boundary:
        """Model inputs are named after the forward argument; other tensors after their fx node."""
        node = by_name[node_name]
        if node.op == "placeholder":
            return Boundary(node.target, tuple(shapes[node.target]), "graded")
        return Boundary(node.name, tuple(node.meta["sample_shape"]), _kind_of(traced, node))

    counters = {NEUROMORPHIC: 0, HOST: 0}
    partitions = []
    for node in split.graph.nodes:
        if node.op != "call_module":
            continue
        i = int(node.target.removeprefix("submod_"))
        sub: fx.GraphModule = getattr(split, node.target)
        kind = kinds[i]
        name = f"{kind}{counters[kind]}"
        counters[kind] += 1
        sub_inputs = [n.target for n in sub.graph.nodes if n.op == "placeholder"]
        output_node = next(n for n in sub.graph.nodes if n.op == "output")
        returned = output_node.args[0]
        returned = list(returned) if isinstance(returned, (tuple, list)) else [returned]
        host_ops = [f"{nir_graph.describe(traced, n)}: {verdicts[n]}" for n, j in index.items() if j == i and verdicts[n]]
        partitions.append(
            Partition(
                name=name,
                kind=kind,
                module=sub,
                args=sub_inputs,
                inputs=[boundary(n) for n in sub_inputs],
                outputs=[boundary(n.name) for n in returned],
                host_ops=host_ops,
            )
        )
    model_inputs = [boundary(n.name) for n in traced.graph.nodes if n.op == "placeholder"]
    output = next(n for n in traced.graph.nodes if n.op == "output").args[0]
    return Partitioned(inputs=model_inputs, outputs=[boundary(output.name)], partitions=partitions)


def buffered_timesteps(module: nn.Module, inputs: list[torch.Tensor]) -> int:
    """How many timesteps a host partition must see before it can produce its first output.

    Measured rather than declared: the input at each timestep t is changed and the outputs before
    t are checked. A causal partition (elementwise gates, attention over t' <= t) needs no buffer;
    one whose early outputs depend on later inputs (attention over all T) needs all T.
    """
    steps = inputs[0].shape[0]
    with torch.no_grad():
        reference = _as_list(module(*inputs))
        for t in range(1, steps):
            changed = [x.clone() for x in inputs]
            for x in changed:
                x[t:] = torch.rand_like(x[t:]) * 2
            outputs = _as_list(module(*changed))
            if any(not torch.equal(a[:t], b[:t]) for a, b in zip(reference, outputs)):
                return steps
    return 0


def _as_list(outputs) -> list[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
