"""torch -> NIR: a spikeport model as a `nir.NIRGraph` (ARCHITECTURE.md, "Semantics").

spikeport has its own exporter because snnTorch 1.0's `export_to_nir` crashes on
Conv2d -> Leaky -> Flatten -> Linear, drops modules it does not know with a printed warning,
assumes dt = 1e-4 s and writes v_reset = 0 whatever the Leaky's reset mechanism, and because nirtorch's `torch_to_nir` knows
no shapes (an NIR neuron's parameters are arrays of the layer's shape) and fails on an unknown
module with a bare KeyError instead of naming it.

How it works:

1. `trace`: torch.fx symbolic tracing, keeping the layers that map (and torch.nn's own) whole,
   without the calls whose result the forward discards.
2. Shapes: the model runs once on [T=1, B=1, *shape] zeros; NIR shapes are the per-sample rest.
3. `classify`: every fx node either maps to NIR or gets the reason it cannot. The partitioner
   will cut the graph along these verdicts; until then `to_nir` refuses any node that cannot map,
   naming it: a module is never dropped.
4. One NIR node per mapped module, named after its fx node (the module path, dots as
   underscores), plus one nir.Input per forward argument and a nir.Output; the graph is built with NIR's type
   inference and checking on, so NIR's own shape arithmetic checks ours.

The mapping, per-sample shapes throughout (no batch, no time axis):

- Conv2d -> nir.Conv2d (a zero bias when the layer has none: NIR's Conv2d always has one). A
  grouped convolution is written as the equivalent dense one, zero across groups, with groups=1:
  nir 1.0.8 takes a Conv2d's input channels from weight.shape[1], which is in_channels / groups,
  so a grouped node fails NIR's own type check and nir.read refuses the file.
- BatchNorm2d -> folded into the Conv2d before it, with its running statistics (eval semantics):
  w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta. It must
  directly follow a Conv2d that feeds nothing else (after a Linear it cannot even run: our
  BatchNorm2d takes [T, B, C, H, W]).
- AvgPool2d -> nir.AvgPool2d: one node that states what the model computes, whose type NIR
  infers, and which snnTorch's and nirtorch's importers read; SumPool2d + Scale would need a
  per-neuron scale array and a node pair every importer has to fuse back (snnTorch 1.0 imports
  no SumPool2d). A chip without averaging can still fold 1/k^2 into the next weights later.
- AdaptiveAvgPool2d(1) (a global average) -> nir.AvgPool2d with one window the size of the map.
- A TimeMixing module (attention across timesteps, e.g. the DTA block) stays one fx node and is a
  host operation: no neuromorphic core runs it.
- Flatten -> nir.Flatten with start_dim/end_dim counted in the per-sample shape (torch's minus 2).
- Linear -> nir.Affine (nir.Linear without a bias): the non-spiking read-out is an Affine that
  feeds nir.Output.
- LIF -> nir.LIF. Our neuron is u[t] = beta u[t-1] + x[t]; NIR's LIF, tau dv/dt = (v_leak - v) + R I,
  stepped by forward Euler with step dt, is v[t] = (1 - dt/tau) v[t-1] + (dt R / tau) I[t]. So
  tau = dt / (1 - beta), r = tau / dt, v_leak = 0, v_threshold = threshold, v_reset = 0; the spike
  is v > v_threshold and the reset happens in the step that spikes. beta == 1 -> nir.IF, whose
  dv/dt = R I steps to v[t] = v[t-1] + dt R I[t]: r = 1 / dt. Neuron parameters are float64 so
  that 1 - dt/tau gives beta back exactly.
- CubaLIF (snnTorch's Synaptic) -> nir.CubaLIF as snnTorch's export_to_nir writes it: tau_syn =
  dt / (1 - alpha), w_in = tau_syn / dt, tau_mem and r as for the LIF, so that the Euler step is
  i[t] = alpha i[t-1] + I[t], v[t] = beta v[t-1] + i[t].
- A neuron's `recurrent` Linear or Conv2d (RecurrentLIF, CubaLIF: snnTorch's RLeaky, RSynaptic)
  -> an Affine/Linear/Conv2d node `<neuron>_recurrent` with edges neuron -> it -> neuron, flat as snnTorch's
  import_nir finds recurrence; the cycle is what says that its input is the step before's spikes.
- x + y -> no node: NIR sums a node's inputs, so every producer of the sum gets an edge to each
  consumer (a membrane shortcut into a LIF is several edges into the LIF node).

The graph's metadata holds dt, the reset convention, the spike condition, the discretization and
the spikeport version; nir.write stores it and nir.read gives it back.
"""

from __future__ import annotations

import contextlib
import operator
import os
from typing import Iterator

import nir
import numpy as np
import torch
from torch import fx, nn
from torch.nn.modules.utils import _pair

import spikeport
from spikeport.errors import UserError
from spikeport.io import atomic_open
from spikeport.train.layers import TimeMixing
from spikeport.train.neuron import LIF, RESETS, CubaLIF, RecurrentLIF

DEFAULT_DT = 1e-3  # seconds per timestep
RESET = "zero, immediate"
SPIKE_CONDITION = "v > v_threshold"
DISCRETIZATION = (
    "forward Euler with step dt: v[t] = (1 - dt/tau) * v[t-1] + (dt * r / tau) * I[t] (IF: v[t-1] + dt * r * I[t]); "
    "z[t] = v[t] > v_threshold; v[t] = v_reset where z[t], in the same step"
)
RULE_KEY, DELAY_KEY = "spikeport_reset", "spikeport_reset_delay"  # metadata of a neuron node (reset_rule)
MAPPED = "Conv2d, BatchNorm2d folded into the Conv2d before it, AvgPool2d, global AdaptiveAvgPool2d, Flatten, Linear, LIF and sums"

_LEAVES = (nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear, LIF, TimeMixing)
_ADD_FUNCTIONS = (operator.add, torch.add)  # fx records `a += b` as operator.add


def to_nir(model: nn.Module, input_shapes: dict[str, tuple] | tuple, dt: float = DEFAULT_DT) -> nir.NIRGraph:
    """The NIR graph of `model`, whose forward takes [T, B, *shape] tensors.

    `input_shapes` gives the per-sample shape of each forward argument by name, or, for a model
    with one argument, just that shape. `dt` is the duration of one timestep in seconds.
    """
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0:
        raise UserError(f"dt: must be a positive number of seconds, got {dt!r}")
    traced = trace(model)
    shapes = named_shapes(traced, input_shapes)
    propagate_shapes(traced, shapes)
    refused = [(node, why) for node, why in classify(traced).items() if why]
    if refused:
        node, why = refused[0]
        more = f" (also refused: {', '.join(describe(traced, n) for n, _ in refused[1:])})" if refused[1:] else ""
        raise UserError(f"{describe(traced, node)}: {why}; to_nir maps only {MAPPED}{more}")

    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            nodes[node.target] = nir.Input(np.array(shapes[node.target]))
        elif node.op == "output":
            returned = node.args[0]
            for name, value in output_names(returned).items():
                nodes[name] = nir.Output(np.array(_shape(value)))
                edges += [(source, name) for source in _sources(traced, value)]
        elif node.op == "call_module" and not isinstance(_module(traced, node), nn.BatchNorm2d):
            nodes[node.name] = _nir_node(traced, node, dt)
            edges += [(source, node.name) for source in _sources(traced, node.args[0])]
            m = _module(traced, node)
            if isinstance(m, (CubaLIF, RecurrentLIF)) and m.recurrent is not None:
                nodes[f"{node.name}_recurrent"] = _synapse_node(m.recurrent, _shape(node))
                edges += [(node.name, f"{node.name}_recurrent"), (f"{node.name}_recurrent", node.name)]
    metadata = {
        "dt": float(dt),
        "reset": RESET if not any(RULE_KEY in n.metadata for n in nodes.values()) else f"per neuron node (its {RULE_KEY} metadata)",
        "spike_condition": SPIKE_CONDITION,
        "discretization": DISCRETIZATION,
        "source": f"spikeport {spikeport.__version__}",
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)


def output_names(returned) -> dict[str, fx.Node]:
    """The nir.Output node for each returned tensor: `output` for a single one, else
    `output_<name of the fx node that computes it>` (a partition with several boundary outputs)."""
    if isinstance(returned, fx.Node):
        return {"output": returned}
    return {f"output_{value.name}": value for value in returned}


def write_nir(graph: nir.NIRGraph, path: str | os.PathLike) -> None:
    """nir.write to a temporary file beside `path`, renamed into place once complete."""
    with atomic_open(path, "w+b") as f:  # h5py reads back what it writes: the handle must read too
        nir.write(f, graph)


class _Tracer(fx.Tracer):
    """torch.fx's tracer, keeping the layers that map to NIR whole (the spikeport layers live
    outside torch.nn, so by default fx would trace through their time folding)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, _LEAVES) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """The fx graph of `model`: one node per argument, leaf module call or tensor operation that
    contributes to the output."""
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001 - fx fails in many ways on an untraceable forward; all are the model's
        raise UserError(f"model ({type(model).__name__}): torch.fx cannot trace its forward: {_first_line(e)}") from None
    traced = fx.GraphModule(model, graph, class_name=type(model).__name__)
    # A layer whose result the forward discards adds nothing to the outputs; left in, NIR's type
    # inference would make it an extra graph output.
    traced.graph.eliminate_dead_code()
    traced.recompile()
    return traced


def classify(traced: fx.GraphModule) -> dict[fx.Node, str | None]:
    """For each fx node of `traced` (after shape propagation), None when it maps to NIR, else why not.

    The nodes that map form the neuromorphic partition; the others will run on the host.
    """
    return {node: _refusal(traced, node) for node in traced.graph.nodes}


def _refusal(traced: fx.GraphModule, node: fx.Node) -> str | None:
    if node.op == "placeholder":
        return None
    if node.op == "output":
        returned = node.args[0]
        values = returned if isinstance(returned, (tuple, list)) else [returned]
        return None if all(isinstance(v, fx.Node) for v in values) else "the model returns something other than tensors"
    if node.op == "call_module":
        return _module_refusal(traced, node)
    if is_sum(node):
        shapes = {arg.meta.get("sample_shape") if isinstance(arg, fx.Node) else None for arg in node.args}
        if len(shapes) != 1 or None in shapes:  # a constant, a broadcast or no tensor at all
            return "only a sum of two tensors of one shape maps to NIR (as the edges into one node)"
        sources = _sources(traced, node)
        if len(set(sources)) != len(sources):
            return "sums a value with itself; NIR edges into a node cannot repeat"
        return None
    operation = f"Tensor.{node.target}" if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    return f"{operation} has no NIR primitive"


def _module_refusal(traced: fx.GraphModule, node: fx.Node) -> str | None:
    m = _module(traced, node)
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            return f"padding_mode={m.padding_mode!r}: NIR convolutions pad with zeros"
    elif isinstance(m, nn.BatchNorm2d):
        producer = node.args[0]
        if not (producer.op == "call_module" and isinstance(_module(traced, producer), nn.Conv2d) and len(producer.users) == 1):
            return "batch norm maps only folded into a Conv2d directly before it whose output nothing else reads"
        if m.running_mean is None:
            return "track_running_stats=False leaves no statistics to fold into the convolution"
    elif isinstance(m, nn.AvgPool2d):
        if m.ceil_mode:
            return "ceil_mode=True: NIR pooling rounds the output size down"
        if m.divisor_override or (any(_pair(m.padding)) and not m.count_include_pad):
            return "NIR's AvgPool2d divides by the kernel area (divisor_override and count_include_pad=False do not)"
    elif isinstance(m, nn.AdaptiveAvgPool2d):
        if _pair(m.output_size) != (1, 1):
            return f"output_size={m.output_size}: only a global average (output size 1) maps to NIR's AvgPool2d"
    elif isinstance(m, TimeMixing):
        return f"{type(m).__name__} mixes timesteps (attention over T): no neuromorphic core runs it"
    elif isinstance(m, nn.Flatten):
        if _flatten_dims(m, node)[0] < 0:
            return "it flattens the time or batch axis; NIR shapes hold one sample"
    elif isinstance(m, nn.Linear):
        if len(_shape(node.args[0])) != 1:
            return f"its input is {tuple(_shape(node.args[0]))} per sample; NIR's Affine takes vectors (flatten first)"
    elif isinstance(m, LIF):
        if not 0 <= m.beta <= 1:
            return f"beta={m.beta}: a NIR LIF decays, so beta must lie in [0, 1]"
        if isinstance(m, CubaLIF) and not (0 <= m.alpha < 1 and m.beta < 1):
            return f"alpha={m.alpha}, beta={m.beta}: a NIR CubaLIF's current and membrane decay, so both must lie in [0, 1)"
    else:
        return "no NIR primitive"
    return None


def _nir_node(traced: fx.GraphModule, node: fx.Node, dt: float) -> nir.NIRNode:
    """The NIR node of a mapped module call (a batch norm after it already folded in)."""
    m = _module(traced, node)
    shape_in = _shape(node.args[0])
    if isinstance(m, nn.Conv2d):
        return _synapse_node(m, shape_in, _batch_norm_after(traced, node))
    if isinstance(m, nn.AvgPool2d):
        return nir.AvgPool2d(
            kernel_size=np.array(_pair(m.kernel_size)), stride=np.array(_pair(m.stride)), padding=np.array(_pair(m.padding))
        )
    if isinstance(m, nn.AdaptiveAvgPool2d):  # a global average: one window the size of the map
        window = np.array(shape_in[1:])
        return nir.AvgPool2d(kernel_size=window, stride=window, padding=np.array([0, 0]))
    if isinstance(m, nn.Flatten):
        start_dim, end_dim = _flatten_dims(m, node)
        return nir.Flatten(input_type=np.array(shape_in), start_dim=start_dim, end_dim=end_dim)
    if isinstance(m, nn.Linear):
        return _synapse_node(m, shape_in)
    # LIF and its subclasses (classify lets nothing else through)
    shape = _shape(node)
    zeros, threshold = np.zeros(shape), np.full(shape, m.threshold)
    rule = {} if m.resets_to_zero_at_once else {RULE_KEY: m.reset, DELAY_KEY: int(m.reset_delay)}
    if isinstance(m, CubaLIF):
        tau_syn, tau_mem = dt / (1 - m.alpha), dt / (1 - m.beta)
        return nir.CubaLIF(
            tau_syn=np.full(shape, tau_syn), tau_mem=np.full(shape, tau_mem), r=np.full(shape, tau_mem / dt), v_leak=zeros,
            v_threshold=threshold, v_reset=zeros, w_in=np.full(shape, tau_syn / dt), metadata=rule,
        )
    if m.beta == 1:
        return nir.IF(r=np.full(shape, 1 / dt), v_threshold=threshold, v_reset=zeros, metadata=rule)
    tau = dt / (1 - m.beta)
    return nir.LIF(tau=np.full(shape, tau), r=np.full(shape, tau / dt), v_leak=zeros, v_threshold=threshold, v_reset=zeros, metadata=rule)


def _synapse_node(m: nn.Linear | nn.Conv2d, shape_in: tuple[int, ...], bn: nn.BatchNorm2d | None = None) -> nir.NIRNode:
    """The NIR node of a Linear, or of a Conv2d (with `bn` folded in) reading `shape_in`."""
    if isinstance(m, nn.Conv2d):
        weight, bias = _folded(m, bn)
        return nir.Conv2d(
            input_shape=tuple(shape_in[1:]), weight=_ungrouped(weight, m.groups), stride=m.stride,
            padding=m.padding, dilation=m.dilation, groups=1, bias=bias,
        )
    weight = m.weight.detach().cpu().numpy()
    return nir.Linear(weight) if m.bias is None else nir.Affine(weight, m.bias.detach().cpu().numpy())


def reset_rule(node: nir.NIRNode) -> tuple[str, bool]:
    """(reset, reset_delay) of a neuron node: NIR's own rule, ("zero", False), unless its metadata
    names another (a model exported from snnTorch with subtractive reset). NIR cannot say
    subtract-versus-zero, so spikeport keeps the rule in the node's metadata and reads it back
    here; other tools ignore it, which is why such a file is refused by every Loihi target.

    A delayed zero reset is written only for snnTorch's Synaptic, RLeaky and RSynaptic, where it
    zeroes the whole membrane of the step after a spike (train/neuron.py snntorch_steps); a
    `Leaky`'s delayed zero reset fires as the immediate one and is written as NIR's own rule."""
    metadata = getattr(node, "metadata", None) or {}
    decode = lambda v: v.decode() if isinstance(v, bytes) else str(v.item() if hasattr(v, "item") else v)  # noqa: E731
    reset = decode(metadata[RULE_KEY]) if RULE_KEY in metadata else "zero"
    if reset not in RESETS:
        raise UserError(f"metadata {RULE_KEY}={reset!r}: must be one of {', '.join(RESETS)}")
    return reset, bool(int(np.asarray(metadata.get(DELAY_KEY, 0)))) and reset != "none"


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """The convolution's weight and bias with `bn` folded in (in float64, then back to float32)."""
    weight = conv.weight.detach().cpu().double()
    bias = conv.bias.detach().cpu().double() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    if bn is not None:
        mean, var = bn.running_mean.detach().cpu().double(), bn.running_var.detach().cpu().double()
        gamma = bn.weight.detach().cpu().double() if bn.affine else torch.ones_like(mean)
        beta = bn.bias.detach().cpu().double() if bn.affine else torch.zeros_like(mean)
        scale = gamma / torch.sqrt(var + bn.eps)
        weight, bias = weight * scale.view(-1, 1, 1, 1), (bias - mean) * scale + beta
    return weight.float().numpy(), bias.float().numpy()


def _ungrouped(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped convolution's weight as that of the equivalent dense convolution."""
    out_channels, in_per_group = weight.shape[:2]
    out_per_group = out_channels // groups
    dense = np.zeros((out_channels, in_per_group * groups, *weight.shape[2:]), dtype=weight.dtype)
    for g in range(groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        dense[rows, g * in_per_group : (g + 1) * in_per_group] = weight[rows]
    return dense


def _batch_norm_after(traced: fx.GraphModule, node: fx.Node) -> nn.BatchNorm2d | None:
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_module" and isinstance(_module(traced, users[0]), nn.BatchNorm2d):
        return _module(traced, users[0])
    return None


def _sources(traced: fx.GraphModule, node: fx.Node) -> list[str]:
    """The NIR nodes whose outputs sum to `node`'s value: sums dissolve into edges, and a batch
    norm stands for the convolution it is folded into."""
    if is_sum(node):
        return [source for arg in node.args for source in _sources(traced, arg)]
    if node.op == "call_module" and isinstance(_module(traced, node), nn.BatchNorm2d):
        return _sources(traced, node.args[0])
    return [node.target if node.op == "placeholder" else node.name]


def is_sum(node: fx.Node) -> bool:
    if node.kwargs:  # torch.add(a, b, alpha=...) is no plain sum
        return False
    return (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (node.op == "call_method" and node.target == "add")


def _flatten_dims(m: nn.Flatten, node: fx.Node) -> tuple[int, int]:
    """Flatten's dimensions counted in the per-sample shape (the full tensor has T and B first)."""
    ndim = len(_shape(node.args[0])) + 2
    return m.start_dim % ndim - 2, m.end_dim % ndim - 2


def named_shapes(traced: fx.GraphModule, input_shapes: dict[str, tuple] | tuple) -> dict[str, tuple[int, ...]]:
    names = [node.target for node in traced.graph.nodes if node.op == "placeholder"]
    if not isinstance(input_shapes, dict):
        if len(names) != 1:
            raise UserError(f"input_shapes: the model takes {len(names)} inputs ({', '.join(names)}); give a shape for each by name")
        input_shapes = {names[0]: input_shapes}
    if sorted(input_shapes) != sorted(names):
        raise UserError(f"input_shapes: names {sorted(input_shapes)} differ from the model's inputs {names}")
    for name, shape in input_shapes.items():
        if not (isinstance(shape, (tuple, list)) and all(isinstance(n, int) and n > 0 for n in shape)):
            raise UserError(f"input_shapes[{name!r}]: a per-sample shape of positive integers, got {shape!r}")
    return {name: tuple(shape) for name, shape in input_shapes.items()}


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph and records each node's per-sample output shape in node.meta."""

    def run_node(self, n: fx.Node):
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["sample_shape"] = tuple(result.shape[2:])
        return result


def propagate_shapes(traced: fx.GraphModule, shapes: dict[str, tuple[int, ...]], timesteps: int = 1) -> None:
    """Record every node's per-sample shape, from one run on [T, B=1, *shape] zeros (a model that
    mixes timesteps needs its real T; for all others one step is enough)."""
    parameter = next(traced.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    names = [node.target for node in traced.graph.nodes if node.op == "placeholder"]
    inputs = [torch.zeros(timesteps, 1, *shapes[name], device=device) for name in names]
    with _eval_mode(traced), torch.no_grad():
        try:
            _ShapeRecorder(traced).run(*inputs)
        except Exception as e:  # noqa: BLE001 - the model's own forward failing on inputs of these shapes
            given = ", ".join(f"{name}: {shapes[name]}" for name in names)
            raise UserError(f"input_shapes ({given}): the model fails on inputs of these shapes: {_first_line(e)}") from None


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the shape run, so no batch norm statistics move; each module's mode is restored."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _shape(node: fx.Node) -> tuple[int, ...]:
    """`node`'s per-sample shape: its output shape without the time and batch axes."""
    return node.meta["sample_shape"]


def _module(traced: fx.GraphModule, node: fx.Node) -> nn.Module:
    return traced.get_submodule(node.target)


def describe(traced: fx.GraphModule, node: fx.Node) -> str:
    """'model.gate (Sigmoid)' for a module; for an operation, the module whose forward holds it."""
    if node.op == "call_module":
        return f"model.{node.target} ({type(_module(traced, node)).__name__})"
    stack = node.meta.get("nn_module_stack")
    if stack:
        path, kind = list(stack.values())[-1]
        return f"model.{path} ({kind.__name__}), operation {node.name}"
    return f"model ({type(traced).__name__}), operation {node.name}"


def check_resets_to_zero(graph: nir.NIRGraph, target: str) -> None:
    """Refuse, naming the node, a neuron that `target` (Lava, Loihi) does not compute as the file
    says: Loihi's LIF resets to zero at once, so a subtractive or absent reset would run as another
    model; and spikeport maps neither a CubaLIF's synaptic current nor a recurrent connection (a
    cycle through the neuron) to Loihi yet."""
    for name, node in graph.nodes.items():
        if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
            reached = reachable(graph, name)
            back = [src for src, dst in graph.edges if dst == name and src in reached]
            if back:
                raise UserError(f"{name} ({type(node).__name__}): its recurrent input from {back[0]} has no {target} mapping in spikeport; run it in the reference runtime")
            if isinstance(node, nir.CubaLIF):
                raise UserError(f"{name} (CubaLIF): its synaptic current (tau_syn) has no {target} mapping in spikeport; run it in the reference runtime")
            reset, delay = reset_rule(node)
            if (reset, delay) != ("zero", False):
                rule = f"reset {reset!r}" + (" with a delay" if delay else "")
                raise UserError(f"{name} ({type(node).__name__}): its {rule} has no {target} equivalent (Loihi's LIF resets to zero at once); run it in the reference runtime")


def reachable(graph: nir.NIRGraph, start: str) -> set[str]:
    """The nodes that `start` feeds, directly or through others (and itself, on a cycle): an edge into
    a node from one of these is a recurrent one (the Loihi check here, the reference runtime's delayed edges)."""
    found, frontier = set(), [start]
    while frontier:
        here = frontier.pop()
        for src, dst in graph.edges:
            if src == here and dst not in found:
                found.add(dst)
                frontier.append(dst)
    return found
