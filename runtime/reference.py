"""The reference runtime: an NIR graph executed in torch, batched over samples, on CPU or CUDA.

Every node processes a whole [T, B, ...] sequence at once, in topological order: synaptic nodes
(Affine, Linear, Conv2d, pooling, Scale, Flatten) are stateless and fold time into the batch,
and neuron nodes run their recurrence over T. This is how the deployed network's accuracy is
measured on whole test sets and how spike statistics for reports are collected; Lava runs the same
graph about a thousand times slower.

Neurons follow NIR's equations stepped by forward Euler with the graph's dt, which is exactly the
trained neuron for spikeport's own files (export/nir_graph.py writes the inverse mapping):

    LIF: v[t] = (1 - dt/tau) v[t-1] + (dt/tau) v_leak + (dt r/tau) I[t];   IF: v[t] = v[t-1] + dt r I[t]
    spike where v[t] > v_threshold, then v[t] = v_reset in the same step.

A factor that is 1 (our files' dt r / tau) is skipped rather than multiplied, so that the float
operations are the training engine's: beta * v, then + input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import nir
import numpy as np
import torch
from torch import Tensor, nn

from spikeport.errors import UserError

NEURONS = (nir.LIF, nir.IF)


@dataclass
class Neuron:
    """Per-neuron constants of v[t] = decay v[t-1] + bias + gain I[t]; None means "not applied"."""

    decay: Tensor | None  # None: 1 (IF: no leak)
    gain: Tensor | None  # None: 1
    bias: Tensor | None  # None: 0
    threshold: Tensor
    reset: Tensor


def neuron_step_constants(node: nir.NIRNode, dt: float) -> Neuron:
    def tensor(a) -> Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64))

    def unless(value: Tensor, neutral: float) -> Tensor | None:
        return None if torch.all(torch.abs(value - neutral) < 1e-12) else value.float()

    threshold, reset = tensor(node.v_threshold).float(), tensor(node.v_reset).float()
    if isinstance(node, nir.IF):
        return Neuron(None, unless(dt * tensor(node.r), 1.0), None, threshold, reset)
    tau = tensor(node.tau)
    if torch.any(tau <= 0):
        raise UserError(f"LIF node: tau must be positive, got {tau.min().item()}")
    ratio = dt / tau
    return Neuron(
        decay=(1 - ratio).float(),
        gain=unless(ratio * tensor(node.r), 1.0),
        bias=unless(ratio * tensor(node.v_leak), 0.0),
        threshold=threshold,
        reset=reset,
    )


class NeuronLayer(nn.Module):
    def __init__(self, constants: Neuron):
        super().__init__()
        self.c = constants

    def forward(self, current: Tensor) -> Tensor:
        c = self.c
        x = current if c.gain is None else current * c.gain.to(current.device)
        if c.bias is not None:
            x = x + c.bias.to(current.device)
        decay = None if c.decay is None else c.decay.to(current.device)
        threshold, reset = c.threshold.to(current.device), c.reset.to(current.device)
        spikes = torch.empty_like(x)
        v = torch.zeros_like(x[0])
        for t in range(x.shape[0]):
            h = (v * decay if decay is not None else v) + x[t]
            s = h > threshold
            spikes[t] = s
            v = torch.where(s, reset, h)
        return spikes


class FoldTime(nn.Module):
    """A stateless per-sample op applied to [T, B, ...] by folding time into the batch."""

    def __init__(self, op: nn.Module):
        super().__init__()
        self.op = op

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x.flatten(0, 1)).unflatten(0, (x.shape[0], -1))


def _pair(v) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int)
    return (int(a[0]), int(a[-1]))


def _module(name: str, node: nir.NIRNode, dt: float) -> nn.Module:
    """The torch module computing one NIR node over [T, B, ...]."""
    f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    if isinstance(node, NEURONS):
        return NeuronLayer(neuron_step_constants(node, dt))
    if isinstance(node, (nir.Affine, nir.Linear)):
        weight = f32(node.weight)
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=isinstance(node, nir.Affine))
        linear.weight.data = weight
        if isinstance(node, nir.Affine):
            linear.bias.data = f32(node.bias)
        return linear
    if isinstance(node, nir.Conv2d):
        weight = f32(node.weight)
        padding = node.padding if isinstance(node.padding, str) else _pair(node.padding)
        conv = nn.Conv2d(weight.shape[1] * node.groups, weight.shape[0], weight.shape[2:], _pair(node.stride), padding, _pair(node.dilation), node.groups)
        conv.weight.data = weight
        conv.bias.data = f32(node.bias)
        return FoldTime(conv)
    if isinstance(node, nir.AvgPool2d):
        return FoldTime(nn.AvgPool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding)))
    if isinstance(node, nir.SumPool2d):  # an average with divisor 1 is the sum
        return FoldTime(nn.AvgPool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding), divisor_override=1))
    if isinstance(node, nir.Scale):
        scale = f32(node.scale)
        return _Lambda(lambda x: x * scale.to(x.device))
    if isinstance(node, nir.Flatten):
        return nn.Flatten(node.start_dim + 2, node.end_dim + 2 if node.end_dim >= 0 else node.end_dim)
    return _refuse(name, node, "not supported by the reference runtime")


def _refuse(name: str, node: nir.NIRNode, why: str):
    raise UserError(f"node {name!r} ({type(node).__name__}): {why}")


class _Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


@dataclass
class Result:
    outputs: dict[str, Tensor]  # output node -> [T, B, ...]
    spikes: dict[str, Tensor]  # neuron node -> spike counts per sample and timestep, [B, T]


class NIRExecutor(nn.Module):
    """An NIR graph as a torch module over [T, B, ...] inputs (one per nir.Input node)."""

    def __init__(self, graph: nir.NIRGraph, dt: float | None = None):
        super().__init__()
        dt = graph.metadata.get("dt", dt) if graph.metadata else dt
        if dt is None:
            raise UserError("the NIR graph has no dt in its metadata: give the timestep length (--dt)")
        self.dt = float(dt)
        self.inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
        self.outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
        self.sources: dict[str, list[str]] = {n: [] for n in graph.nodes}
        for src, dst in graph.edges:
            if src not in graph.nodes or dst not in graph.nodes:
                raise UserError(f"edge ({src!r}, {dst!r}) names a node the graph does not have")
            self.sources[dst].append(src)
        self.order = _topological_order(graph, self.sources)
        self.layers = nn.ModuleDict(
            {n.replace(".", "_"): _module(n, graph.nodes[n], self.dt) for n in self.order if not isinstance(graph.nodes[n], (nir.Input, nir.Output))}
        )
        self.neurons = [n for n in self.order if isinstance(graph.nodes[n], NEURONS)]

    def forward(self, inputs: dict[str, Tensor], observe: Callable[[str, Tensor, Tensor], None] | None = None) -> Result:
        """Run the graph; `observe(node, input, output)`, if given, sees every node's summed input
        and its output (how the reports count synaptic operations)."""
        values: dict[str, Tensor] = {}
        spikes: dict[str, Tensor] = {}
        for name in self.order:
            if name in self.inputs:
                values[name] = inputs[name]
                continue
            incoming = [values[s] for s in self.sources[name]]
            total = incoming[0] if len(incoming) == 1 else torch.stack(incoming).sum(0)  # NIR sums a node's inputs
            if name in self.outputs:
                values[name] = total
                continue
            values[name] = self.layers[name.replace(".", "_")](total)
            if observe is not None:
                observe(name, total, values[name])
            if name in self.neurons:
                spikes[name] = values[name].flatten(2).sum(2).transpose(0, 1)
        return Result({n: values[n] for n in self.outputs}, spikes)


def _topological_order(graph: nir.NIRGraph, sources: dict[str, list[str]]) -> list[str]:
    order, placed = [], set()
    pending = list(graph.nodes)
    while pending:
        ready = [n for n in pending if all(s in placed for s in sources[n])]
        if not ready:
            raise UserError(f"the graph has a cycle through {', '.join(sorted(pending)[:5])}: recurrent graphs are not supported by the reference runtime yet")
        for n in ready:
            order.append(n)
            placed.add(n)
        pending = [n for n in pending if n not in placed]
    return order
