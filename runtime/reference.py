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

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import nir
import numpy as np
import torch
from torch import Tensor, nn

from spikeport.errors import DeploymentWarning, UserError
from spikeport.export.neuron_constants import neuron_constants
from spikeport.export.nir_graph import reachable, reset_rule
from spikeport.runtime.loihi_fixed import hold_last, netx_drive, simulate_export, simulate_netx
from spikeport.runtime.result import SimResult

if TYPE_CHECKING:
    from spikeport.deployment import Deployment  # which imports this module to check a .nir file it reads

NEURONS = (nir.LIF, nir.IF, nir.CubaLIF)
MAX_INPUT_ELEMENTS = 10**7  # values per sample and step of one Input node: a file declaring more is refused
FLOAT32_TOLERANCE = 1e-6  # about 8 float32 roundings: a factor this close to 1 was meant to be 1


@dataclass
class Synapse:
    """A CubaLIF's synaptic current i[t] = decay i[t-1] + gain I[t], which then drives the membrane."""

    decay: Tensor
    gain: Tensor | None  # None: 1


@dataclass
class Neuron:
    """Per-neuron constants of v[t] = decay v[t-1] + bias + gain I[t]; None means "not applied"."""

    decay: Tensor | None  # None: 1 (IF: no leak)
    gain: Tensor | None  # None: 1
    bias: Tensor | None  # None: 0
    threshold: Tensor
    reset: Tensor
    rule: tuple[str, bool] = ("zero", False)  # (reset, reset_delay): export/nir_graph.py reset_rule
    synapse: Synapse | None = None  # CubaLIF: I is first filtered into a current


def neuron_step_constants(node: nir.NIRNode, dt: float) -> Neuron:
    """The node's Euler step (export/neuron_constants.py decodes it) as torch tensors, with every
    factor that is neutral left out (`unless`)."""

    def unless(value: np.ndarray, neutral: float) -> Tensor | None:
        """None where `value` is `neutral` to float32 precision: files written by other tools store
        their constants in float32 (the NIR paper's braille network has r = 9.99999762 for
        tau_mem / dt = 10), and snnTorch, Norse and Lava read such a gain as exactly 1."""
        value = torch.as_tensor(value)
        return None if torch.all(torch.abs(value - neutral) <= FLOAT32_TOLERANCE * max(abs(neutral), 1.0)) else value.float()

    c = neuron_constants(node, dt)
    threshold, reset = torch.as_tensor(c.v_threshold).float(), torch.as_tensor(c.v_reset).float()
    if c.kind == "IF":
        return Neuron(None, unless(c.gain, 1.0), None, threshold, reset, reset_rule(node))
    synapse = None
    if c.kind == "CubaLIF":  # tau_syn di/dt = -i + w_in I, by forward Euler like the membrane
        synapse = Synapse(torch.as_tensor(c.synapse_decay).float(), unless(c.synapse_gain, 1.0))
    return Neuron(
        decay=torch.as_tensor(c.beta).float(),
        gain=unless(c.gain, 1.0),
        bias=unless(c.bias, 0.0),
        threshold=threshold,
        reset=reset,
        rule=reset_rule(node),
        synapse=synapse,
    )


class NeuronLayer(nn.Module):
    """A neuron node over [T, B, ...]: `run` also takes and returns its state, for graphs that are
    stepped one timestep at a time (recurrent ones)."""

    def __init__(self, constants: Neuron):
        super().__init__()
        self.c = constants

    def forward(self, current: Tensor) -> Tensor:
        return self.run(current, None)[0]

    def run(self, current: Tensor, state: tuple | None, recurrent: Tensor | None = None) -> tuple[Tensor, tuple]:
        """`recurrent`: the input along recurrent edges, added after the decayed state and the
        feed-forward input, as snnTorch's RLeaky and RSynaptic add it (so the rounding is theirs)."""
        c, device = self.c, current.device
        on = lambda a: None if a is None else a.to(device)  # noqa: E731
        decay, gain, bias, threshold, reset = on(c.decay), on(c.gain), on(c.bias), on(c.threshold), on(c.reset)
        if c.synapse is None:  # the input drives the membrane directly: scale it for all steps at once
            current = current if gain is None else current * gain
            current = current if bias is None else current + bias
            recurrent = recurrent if gain is None or recurrent is None else recurrent * gain
            gain = bias = None
        spikes = torch.empty_like(current)
        v, i = state if state is not None else (torch.zeros_like(current[0]), torch.zeros_like(current[0]))
        for t in range(current.shape[0]):
            drive, late = current[t], None if recurrent is None else recurrent[t]
            if c.synapse is not None:  # i = alpha i + I, then v = beta v + i, as snnTorch's Synaptic
                synaptic = lambda x: x if c.synapse.gain is None else x * c.synapse.gain.to(device)  # noqa: E731
                i = i * c.synapse.decay.to(device) + synaptic(drive)
                i = i if late is None else i + synaptic(late)
                drive, late = (i if gain is None else i * gain), None
                drive = drive if bias is None else drive + bias
            v, spikes[t] = self._step(v, drive, late, decay, threshold, reset)
        return spikes, (v, i)

    def _step(self, v: Tensor, drive: Tensor, late: Tensor | None, decay: Tensor | None, threshold: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """One step of the membrane (`late`: the recurrent input, added last): NIR's reset (to
        v_reset, at once), or snnTorch's other rules (train/neuron.py lif_steps, snntorch_steps) in
        their operations and order. A delayed zero reset is the (R)Synaptic/RLeaky one: the whole
        membrane of the step after the spike is zeroed."""
        rule, delayed = self.c.rule
        h = (v * decay if decay is not None else v) + drive
        h = h if late is None else h + late
        if (rule, delayed) == ("zero", False):
            s = h > threshold
            return torch.where(s, reset, h), s
        owed = (v > threshold).to(v.dtype)  # the reset the previous step left (delayed rule)
        v = h
        if rule == "subtract":
            v = v - owed * threshold
        elif rule == "zero":  # delayed (the immediate rule returned above)
            v = v - v * owed
        s = (v > threshold).to(v.dtype)
        if rule == "subtract" and not delayed:
            v = v - (s - owed) * threshold
        return v, s


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


def _summed(values: list[Tensor]) -> Tensor:
    return values[0] if len(values) == 1 else torch.stack(values).sum(0)  # NIR sums a node's inputs


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
    trains: dict[str, Tensor] | None = None  # with record: neuron node -> its spikes [T, B, ...]


class NIRExecutor(nn.Module):
    """An NIR graph as a torch module over [T, B, ...] inputs (one per nir.Input node)."""

    def __init__(self, graph: nir.NIRGraph, dt: float | None = None):
        super().__init__()
        self.dt = timestep(graph, dt)
        self.inputs = {n: np.asarray(node.input_type["input"]).reshape(-1) for n, node in graph.nodes.items() if isinstance(node, nir.Input)}  # name -> shape
        self.outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
        self.sources, self.delayed, self.order = _check_graph(graph)
        self.layers = nn.ModuleDict(
            {n.replace(".", "_"): _built(n, graph.nodes[n], self.dt) for n in self.order if not isinstance(graph.nodes[n], (nir.Input, nir.Output))}
        )
        self.neurons = [n for n in self.order if isinstance(graph.nodes[n], NEURONS)]

    def forward(self, inputs: dict[str, Tensor], observe: Callable[[str, Tensor, Tensor], None] | None = None, record: bool = False) -> Result:
        """Run the graph; `observe(node, input, output)`, if given, sees every node's summed input
        and its output; `record` keeps every neuron node's spikes (Result.trains)."""
        if any(self.delayed.values()):
            return self._stepped(inputs, observe, record)
        values: dict[str, Tensor] = {}
        spikes: dict[str, Tensor] = {}
        for name in self.order:
            self._run_node(name, inputs, values, spikes, observe)
        return Result({n: values[n] for n in self.outputs}, spikes, {n: values[n] for n in self.neurons} if record else None)

    def _stepped(self, inputs: dict[str, Tensor], observe, record: bool = False) -> Result:
        """A recurrent graph, one timestep at a time: a neuron's recurrent inputs (`delayed`) are
        what their sources produced at the step before (nothing at the first step), as snnTorch's
        RLeaky/RSynaptic and the NIR paper's platforms run them. Neurons carry their state across
        steps; every other node is stateless."""
        steps = next(iter(inputs.values())).shape[0]
        states: dict[str, tuple] = {}
        previous = self._at_rest(inputs)
        seen: dict[str, list[tuple[Tensor, Tensor]]] = {n: [] for n in self.order}
        for t in range(steps):
            values: dict[str, Tensor] = {}
            for name in self.order:
                if name in self.inputs:
                    values[name] = inputs[name][t : t + 1]
                    continue
                fed, late = [values[s] for s in self.sources[name]], [previous[s] for s in self.delayed[name]]
                total = _summed(fed + late)
                layer = None if name in self.outputs else self.layers[name.replace(".", "_")]
                if name in self.neurons:  # the recurrent inputs added last, as snnTorch adds them
                    values[name], states[name] = layer.run(_summed(fed), states.get(name), _summed(late)) if fed and late else layer.run(total, states.get(name))
                else:
                    values[name] = total if layer is None else layer(total)
                seen[name].append((total, values[name]))
            previous = values
        joined = {n: (torch.cat([a for a, _ in pairs]), torch.cat([b for _, b in pairs])) for n, pairs in seen.items() if pairs}
        if observe is not None:
            for name in self.order:
                if name in joined and name not in self.outputs:
                    observe(name, *joined[name])
        spikes = {n: joined[n][1].flatten(2).sum(2).transpose(0, 1) for n in self.neurons}
        return Result({n: joined[n][1] for n in self.outputs}, spikes, {n: joined[n][1] for n in self.neurons} if record else None)

    def _run_node(self, name: str, inputs: dict[str, Tensor], values: dict[str, Tensor], spikes: dict[str, Tensor], observe) -> None:
        if name in self.inputs:
            values[name] = inputs[name]
            return
        incoming = [values[s] for s in self.sources[name]]
        total = incoming[0] if len(incoming) == 1 else torch.stack(incoming).sum(0)  # NIR sums a node's inputs
        if name in self.outputs:
            values[name] = total
            return
        values[name] = self.layers[name.replace(".", "_")](total)
        if observe is not None:
            observe(name, total, values[name])
        if name in self.neurons:
            spikes[name] = values[name].flatten(2).sum(2).transpose(0, 1)

    def _at_rest(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every node's output at the step before the first: no input, no spike, and what the
        stateless nodes make of that (an Affine's bias), which is what a recurrent input reads at
        step 0 (snnTorch's RSynaptic adds recurrent(0), its bias, too)."""
        values: dict[str, Tensor] = {}
        for name in self.order:
            if name in self.inputs:
                values[name] = torch.zeros_like(inputs[name][:1])
                continue
            incoming = [values[s] for s in self.sources[name]]
            total = incoming[0] if len(incoming) == 1 else torch.stack(incoming).sum(0)
            layer = None if name in self.outputs else self.layers[name.replace(".", "_")]
            values[name] = torch.zeros_like(total) if name in self.neurons else total if layer is None else layer(total)
        return values

    def check_runs(self) -> None:
        """One step of zeros through every node, so that fields that do not fit together (a bias of
        another length than the weight's rows, a flatten of a shape its source does not make, a node
        fed nothing) fail before any work, naming the node, instead of mid-simulation."""
        for name, shape in self.inputs.items():
            if shape.dtype.kind not in "iu" or np.any(shape < 1) or math.prod(int(n) for n in shape) > MAX_INPUT_ELEMENTS:
                raise UserError(f"input node {name!r}: shape {shape.tolist()} is not 1 to {MAX_INPUT_ELEMENTS} values")
        zeros = {name: torch.zeros(1, 1, *(int(n) for n in shape)) for name, shape in self.inputs.items()}
        values: dict[str, Tensor] = {}
        for name in self.order:
            try:
                with torch.no_grad():
                    self._run_node(name, zeros, values, {}, None)
            except (RuntimeError, ValueError, TypeError, IndexError) as e:
                raise UserError(f"node {name!r}: does not run on the output of {', '.join(self.sources[name]) or 'nothing'} ({_first_line(e)})") from None


# What the tools that write NIR files assume when a file records no dt (they never do).
DT_CONVENTIONS = "snnTorch's export_to_nir and import_nir assume 1e-4 s, sinabs one step (dt = 1), spikeport writes dt into the file"


def timestep(graph: nir.NIRGraph, given: float | None) -> float:
    """The seconds per step to run `graph` with: `given` (--dt), else the file's own dt.

    A wrong dt runs without error and gives wrong spikes (3x too many, or none), so what makes one
    likely is said: a --dt that contradicts the file's own dt, and a dt at or beyond a neuron's
    time constant, where the Euler decay 1 - dt/tau is zero or negative (DeploymentWarning)."""
    recorded = graph.metadata.get("dt") if graph.metadata else None
    if recorded is not None and not _positive_number(recorded):
        raise UserError(f"metadata dt: must be a positive number of seconds, got {np.asarray(recorded).tolist()!r:.60}")
    if given is None and recorded is None:
        raise UserError(f"the NIR graph has no dt in its metadata: give the timestep length with --dt ({DT_CONVENTIONS})")
    if given is not None and not _positive_number(given):
        raise UserError(f"dt must be a positive number of seconds, got {np.asarray(given).tolist()!r:.60}")
    if given is not None and recorded is not None and not math.isclose(float(given), float(recorded), rel_tol=FLOAT32_TOLERANCE):
        warnings.warn(f"--dt {float(given):g} s contradicts the file's own dt {float(recorded):g} s; running with --dt", DeploymentWarning, stacklevel=2)
    dt = float(given if given is not None else recorded)
    for name, node in graph.nodes.items():
        for field in {nir.LIF: ("tau",), nir.CubaLIF: ("tau_syn", "tau_mem")}.get(type(node), ()):
            tau = np.asarray(getattr(node, field), dtype=float)
            if tau.size and np.all(tau > 0) and np.any(dt >= tau):
                warnings.warn(
                    f"node {name!r}: dt {dt:g} s is at least its {field} {tau.min():g} s, so the decay 1 - dt/{field} = {1 - dt / tau.min():.3g} "
                    f"is not in (0, 1) and the neuron does not integrate; is the dt right? ({DT_CONVENTIONS})",
                    DeploymentWarning,
                    stacklevel=2,
                )
                break
    return dt


def _positive_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and 0 < value < np.inf


def _built(name: str, node: nir.NIRNode, dt: float) -> nn.Module:
    """The node's torch module; fields torch refuses (groups that do not divide the channels, a
    stride that is not a number) are the file's error."""
    try:
        return _module(name, node, dt)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        return _refuse(name, node, f"its fields do not make a {type(node).__name__} ({_first_line(e)})")


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _check_graph(graph: nir.NIRGraph) -> tuple[dict[str, list[str]], dict[str, list[str]], list[str]]:
    """Refuse a graph this runtime cannot run as it is, naming the node: edges to nodes that do not
    exist, a cycle that passes no neuron, NaN or infinite parameters, a neuron with a time constant
    <= 0 (forward Euler would grow without bound). Returns each node's sources, its recurrent
    (delayed) sources, and an execution order.

    A cycle is a recurrent connection: NIR edges carry no delay, and every platform of the NIR
    paper feeds a neuron's recurrent input from the step before. So an edge into a neuron from a
    node that the neuron itself reaches is delayed by one step, and the rest must be acyclic."""
    sources: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        if src not in graph.nodes or dst not in graph.nodes:
            raise UserError(f"edge ({src!r}, {dst!r}) names a node the graph does not have")
        sources[dst].append(src)
    for name, node in graph.nodes.items():
        _check_parameters(name, node)
    delayed: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for dst, node in graph.nodes.items():
        if isinstance(node, NEURONS):
            reached = reachable(graph, dst)
            delayed[dst] = [s for s in sources[dst] if s in reached]
            sources[dst] = [s for s in sources[dst] if s not in reached]
    return sources, delayed, _topological_order(graph, sources)


def _check_parameters(name: str, node: nir.NIRNode) -> None:
    for field, value in vars(node).items():
        if isinstance(value, (np.ndarray, float)) and np.asarray(value).dtype.kind in "fc" and not np.all(np.isfinite(value)):
            _refuse(name, node, f"{field} holds NaN or infinite values")
    for field in {nir.LIF: ("tau",), nir.CubaLIF: ("tau_syn", "tau_mem")}.get(type(node), ()):
        tau = np.asarray(getattr(node, field))
        if tau.dtype.kind not in "iuf" or np.any(tau <= 0):
            _refuse(name, node, f"{field} must be positive, got {tau.min() if tau.dtype.kind in 'iuf' else tau.dtype}")


def _topological_order(graph: nir.NIRGraph, sources: dict[str, list[str]]) -> list[str]:
    order, placed = [], set()
    pending = list(graph.nodes)
    while pending:
        ready = [n for n in pending if all(s in placed for s in sources[n])]
        if not ready:
            raise UserError(f"the graph has a cycle through {', '.join(sorted(pending)[:5])} that passes no neuron: nothing in it holds state to delay it by a step")
        for n in ready:
            order.append(n)
            placed.add(n)
        pending = [n for n in pending if n not in placed]
    return order


# ----------------------------------------------------------------------------------------------- the backend

MODES = ("float", "loihi")  # NIR's float equations; Lava's fixed-point arithmetic (runtime/loihi_fixed.py)


def run(deployment: Deployment, inputs: dict[str, np.ndarray], *, mode: str = "float", device: str | torch.device = "cpu",
        record: bool = False) -> SimResult:
    """The reference backend: `inputs` {name: [N, T, *shape]} through the deployment, batched in torch.

    float: the manifest's partitions in order, each NIR partition in the NIR executor, each host
    partition from its ONNX file in ONNX Runtime (a single .nir file: its graph). loihi: Lava's
    fixed-point arithmetic (runtime/loihi_fixed.py) on the export's model.net (a plain chain), on
    its loihi.json's integers (any other export, `simulate_export`), or on a lava-dl .net file.
    `record`: every neuron layer's spikes [N, T, *shape] in `trains`, and what each neuromorphic
    partition reads from a host partition ("partition.tensor", in float units)."""
    if mode not in MODES:
        raise UserError(f"--mode {mode}: the reference backend runs {', '.join(MODES)}")
    device = _torch_device(device)
    if mode == "float":
        return _run_float(deployment, inputs, device, record)
    if deployment.netx is not None:
        return _run_netx_file(deployment.netx, next(iter(inputs.values())), device)
    if deployment.manifest is not None and "netx" not in deployment.manifest.files and "loihi" in deployment.manifest.files:
        return _run_export_fixed(deployment, inputs, device, record)
    return _run_chain_fixed(deployment, inputs, device, record)


def _torch_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    from spikeport.device import resolve_device

    return resolve_device(device)


def _time_major(inputs: dict[str, np.ndarray], device: torch.device) -> dict[str, Tensor]:
    return {n: torch.as_tensor(x, dtype=torch.float32, device=device).transpose(0, 1) for n, x in inputs.items()}


def _batch_major(x: Tensor) -> np.ndarray:
    return x.transpose(0, 1).cpu().numpy()


def _run_float(deployment: Deployment, inputs: dict[str, np.ndarray], device: torch.device, record: bool) -> SimResult:
    if deployment.netx is not None:
        raise UserError(f"{deployment.path}: a lava-dl .net file holds Loihi integers; it runs with --mode loihi")
    trains = {} if record else None
    if deployment.manifest is None:
        executor = NIRExecutor(deployment.graph, dt=deployment.dt).to(device)
        with torch.no_grad():
            result = executor(_time_major(inputs, device), record=record)
        (output,) = result.outputs.values()
        if record:
            trains.update({k: _batch_major(v).astype(bool) for k, v in result.trains.items()})
        return SimResult(_batch_major(output), {k: v.cpu().numpy() for k, v in result.spikes.items()}, trains=trains)
    values = _time_major(inputs, device)
    spikes: dict[str, np.ndarray] = {}
    missing = [p.name for p in deployment.manifest.partitions if p.file is None]
    if missing:
        raise UserError(f"partition {missing[0]}: the export has no file for it; export with --formats nir,onnx")
    graphs = deployment.graphs()
    for p in deployment.manifest.partitions:
        path = deployment.export_dir / p.file
        if p.kind == "neuromorphic":
            executor = NIRExecutor(graphs[p.name], dt=deployment.manifest.dt).to(device)
            with torch.no_grad():
                result = executor({t.name: values[t.name] for t in p.inputs}, record=record)
            for t in p.outputs:  # Output node names: see export/exporter.py
                values[t.name] = result.outputs["output" if len(p.outputs) == 1 else f"output_{t.name}"]
            spikes.update({f"{p.name}.{k}": v.cpu().numpy() for k, v in result.spikes.items()})
            if record:
                trains.update({f"{p.name}.{t.name}": _batch_major(values[t.name]) for t in p.inputs})
                trains.update({f"{p.name}.{k}": _batch_major(v).astype(bool) for k, v in result.trains.items()})
        else:
            from spikeport.runtime.onnx import session

            outs = session(path, ["CPUExecutionProvider"]).run([t.name for t in p.outputs], {t.name: values[t.name].cpu().numpy() for t in p.inputs})
            values.update({t.name: torch.as_tensor(o, device=device) for t, o in zip(p.outputs, outs)})
    output = values[deployment.manifest.outputs[0].name]
    return SimResult(_batch_major(output), spikes, trains=trains)


@dataclass
class _FixedPoint:
    """What running an export's model.net needs: the Loihi parameters and the input layer's drive."""

    layers: list  # export.loihi.LoihiLayer, one per netx block
    bias: np.ndarray  # [N, T, *input layer shape]: the host layer's current, per step of the sample
    window: int  # steps per sample: T + the synaptic stages after the input layer
    timesteps: int
    prefix: str

    def window_bias(self) -> np.ndarray:
        """The bias for whole windows [N, window, ...], as Lava runs them: after the sample's last
        frame the input layer's steps are never read, so the last frame is held."""
        return hold_last(self.bias, self.window - self.timesteps)

    def result(self, spikes: list, voltage, record: bool) -> SimResult:
        """From every block's spikes and the read-out's voltage on the steps that carry the sample
        ([N, T, ...], block i from step i of its window on): the read-out's voltage is 64 s times
        the running sum of the logits (export/loihi.py), so its increments are the logits per step."""
        named = {f"{self.prefix}{layer.neuron}": np.asarray(spikes[i]) for i, layer in enumerate(self.layers) if layer.neuron is not None}
        counts = {name: s.reshape(len(self.bias), self.timesteps, -1).sum(-1) for name, s in named.items()}
        v = np.asarray(voltage, dtype=np.float64)
        logits = np.diff(v, axis=1, prepend=0.0) / (64 * self.layers[-1].scale)
        return SimResult(logits, counts, delay=len(self.layers) - 1, trains=named if record else None)


def fixed_point_chain(deployment: Deployment, inputs: dict[str, np.ndarray]) -> _FixedPoint:
    """An export that is one plain chain (its model.net) in fixed point: its Loihi layers and the
    input layer's drive. The first layer runs on the host (export/loihi.py): its current, one frame
    per step, is the input layer's bias."""
    from spikeport.export.loihi import input_bias, read_loihi_json

    if deployment.file("netx") is None or deployment.file("loihi") is None:
        raise UserError("--mode loihi: needs an export with loihi.json and model.net (spikeport export RUN --formats nir,onnx,lava)")
    partition = deployment.manifest.partitions[0]
    model = read_loihi_json(deployment.file("loihi"))
    (x,) = inputs.values()
    t = x.shape[1]
    frames = input_bias(deployment.deployed(partition.name), model, x)  # [N, T, *input layer shape]
    return _FixedPoint(model.layers, frames, t + len(model.layers) - 1, t, f"{partition.name}.")


def _run_chain_fixed(deployment: Deployment, inputs: dict[str, np.ndarray], device: torch.device, record: bool) -> SimResult:
    from spikeport.export.netx_read import read_netx

    if deployment.manifest is None:
        raise UserError(f"{deployment.path}: --mode loihi runs an export with Loihi integers (spikeport export FILE.nir) or a lava-dl .net file")
    fp = fixed_point_chain(deployment, inputs)
    network = read_netx(deployment.file("netx"))
    records = simulate_netx(network, bias=fp.bias, steps=fp.window, aligned=True, device=device, record=export_outputs(network))
    return fp.result([None if r.s is None else r.s.cpu().numpy() for r in records], records[-1].v.cpu().numpy(), record)


def export_outputs(network) -> dict[int, tuple[str, ...]]:
    """simulate_netx's `record` for an export's model.net: the spikes of every block but the
    read-out, and the read-out's voltage (export/netx.py: it integrates the logits)."""
    last = len(network.blocks) - 1
    return {**{i: ("s",) for i in range(last)}, last: ("v",)}


def _run_export_fixed(deployment: Deployment, inputs: dict[str, np.ndarray], device: torch.device, record: bool) -> SimResult:
    """An export that is not one plain chain, on loihi.json's integers (loihi_fixed.simulate_export)."""
    from spikeport.export.loihi import read_loihi_json
    from spikeport.runtime.lava.worker.payload import from_payload

    loihi = read_loihi_json(deployment.file("loihi"))
    done = simulate_export(deployment.manifest, deployment.export_dir, deployment.graphs(), loihi, inputs, device)
    counts = {k: v.flatten(2).sum(2).cpu().numpy() for k, v in done.spikes.items()}
    trains = None
    if record:
        trains = {k: v.cpu().numpy() for k, v in done.spikes.items()}
        trains.update(host_inputs(deployment, loihi, {k: v.cpu().numpy() for k, v in done.tensors.items()}, from_payload))
    return SimResult(done.output, counts, trains=trains)


def host_inputs(deployment: Deployment, loihi, sent: dict[str, np.ndarray], from_payload) -> dict[str, np.ndarray]:
    """What each neuromorphic partition reads from a host partition, "partition.tensor" in float
    units (the payload / its scale), from the tensors as sent (by tensor name)."""
    boundaries = {b.tensor: b for b in loihi.boundaries if b.direction == "to_chip"}
    return {f"{p.name}.{t.name}": from_payload(sent[t.name], boundaries[t.name])
            for p in deployment.manifest.partitions if p.kind == "neuromorphic" for t in p.inputs if t.name in boundaries}


def _run_netx_file(network, x: np.ndarray, device: torch.device) -> SimResult:
    """A lava-dl .net file in Lava's fixed-point arithmetic, one fresh window of T + K steps per
    sample (K: the blocks after the first; netx resets every layer once per window).

    x [N, T, *input shape] is the input layer's bias_mant per step (a network that starts with
    an input layer; a sigma-delta one: its a_in) or the spikes into the first synapse; the output
    is the last block's spikes (a sigma-delta block: its graded messages, a Sigma read-out its
    sigma), or the voltage of a non-spiking read-out, aligned to the input timesteps. The spike
    counts of a sigma-delta block count its non-zero messages; its trains are the messages."""
    t, k = x.shape[1], len(network.blocks) - 1
    wanted = {i: ("v",) if block.neuron.du < 0 else ("s",) for i, block in enumerate(network.blocks)}  # netx's read-out integrator: its voltage
    records = simulate_netx(network, steps=t + k, aligned=True, device=device, record=wanted, **netx_drive(network, x))
    trains = {block.name: record.s.cpu().numpy() for block, record in zip(network.blocks, records) if record.s is not None}
    return netx_result(network, trains, None if records[-1].v is None else records[-1].v.cpu().numpy())


def netx_result(network, trains: dict[str, np.ndarray], voltage: np.ndarray | None) -> SimResult:
    """A .net file's result from its blocks' outputs [N, T, *shape] (every block but a non-spiking
    read-out) and, for such a read-out, its voltage [N, T, *shape]: what both backends return."""
    spikes = {name: (s != 0).reshape(*s.shape[:2], -1).sum(-1) for name, s in trains.items()}
    last = network.blocks[-1]
    output = voltage if last.neuron.du < 0 else trains[last.name]
    return SimResult(np.asarray(output).astype(np.float64), spikes, delay=len(network.blocks) - 1, trains=trains)

