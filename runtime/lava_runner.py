"""Run a NIR graph (one neuromorphic partition, as exported to model.nir), or all the neuromorphic
and host partitions of an export, in Lava's CPU simulator.

    run_lava(graph, inputs [N, T, *input_shape], mode="float") -> LavaResult
    run_lava(graph, inputs, mode="loihi", loihi=read_loihi_json("loihi.json")) -> LavaResult
    run_lava_manifest(manifest, export_dir, {partition: graph}, {input: [N, T, *shape]}) -> LavaResult

The graph is first lowered with `fold_avgpool` and `compose_synapses` (export/lower.py: a synaptic
layer reading a sum of currents, as MS-ResNet's projection shortcut does, becomes one composed
layer per path), so only synaptic layers (Conv2d, Affine, Linear) lie between neuron layers (LIF,
IF), each reading spikes or an input, then mapped onto Lava processes:

- the Input is a `lava.proc.io.source.RingBuffer` holding the whole input sequence. It sends real
  values (the first layer reads graded images), so the layer it feeds gets `num_message_bits=24`;
  layers fed by neurons get 0 (binary spikes), as on the chip.
- nir.Conv2d -> `lava.proc.conv.process.Conv`. Lava holds maps as (W, H, C) (X, Y, channel), takes
  stride/padding/dilation as (X, Y), and computes a true convolution (it flips the kernel before
  calling torch's correlation), so the torch weight [out, in, kh, kw] becomes
  `w.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :]` (out, kw, kh, in). The bias goes to the neuron.
  Lava's float Conv computes in float32 (through torch); Dense and LIF compute in float64.
- nir.Affine / nir.Linear -> `lava.proc.dense.process.Dense`; the bias goes to the neuron. Behind a
  nir.Flatten of a (C, H, W) map, Lava flattens its (W, H, C) array, so the weight's columns are
  permuted to that order rather than transposing the spikes.
- an identity shortcut (an input or neuron layer added straight into a neuron layer of its shape,
  MS-ResNet's membrane shortcut) -> a Dense of identity weights, so it is a synaptic stage too.
- nir.LIF / nir.IF -> `lava.proc.lif.process.LIFReset` with du = 1 (the current is this step's
  input), dv = dt / tau (Lava's v * (1 - dv) is then v * beta with beta = 1 - dt / tau, exactly as
  the exporter wrote it; IF: dv = 0), vth = v_threshold and bias_mant = the synaptic layers' biases.
  Lava's float model, u = a_in; v = v (1 - dv) + u + bias; spike where v > vth; v = 0 there, is
  our neuron, u[t] = beta u[t-1] + x[t], with x = W s + b. Several edges into one neuron (a residual
  sum) are several connections into its a_in, which Lava sums.
- the synaptic layer that feeds nir.Output is the read-out: a neuron with dv = 1 and vth = inf, so
  its voltage is this step's W s + b, the model's logits per timestep, probed with a Monitor.
  Every spiking layer's s_out is recorded by a `lava.proc.io.sink.RingBuffer`.

Fixed point (mode "loihi", `Loihi2SimCfg(select_tag="fixed_pt")`): the same plan, with the
integers of the export's loihi.json (export/loihi.py derives them and gives Lava's arithmetic) run
by Lava's bit-accurate Dense, Conv and LIFReset models. It is what model.net is when lava-dl netx
loads it, built here from model.nir instead, so it also runs exports without model.net:

- the first synaptic layer reads graded input and runs on the host in float
  (`export.loihi.input_bias`); its current, in the first LIF's integer units, is what the
  RingBuffer sends, straight into that LIF's a_in. netx drives its input layer through bias_mant
  instead; with du = 4095 the current u is this step's a_in << 6, added to v exactly as
  bias_mant << 6 would be, so the arithmetic is the same while all samples still run in one call
  (netx's bias_mant.set needs one run call per step). That LIF has depth 0: every layer sits one
  synaptic stage earlier than in float mode.
- Dense takes `weights = 2 m` and `weight_exp = e - 1` for w_int = m 2**e (its 8-bit weights
  drop the lowest bit), Conv takes w_int itself (its model applies no exponent), in the layouts
  above; each LIF takes du, dv, vth and the layer's bias mantissa with bias_exp = 6.
- the read-out integrates (dv = 0, maximal vth): its voltage is 64 s times the running sum of
  the logits, so the reported output is its increment per step divided by 64 s.
- any graph export/loihi.py quantizes: the synaptic layers summed into one LIF share its scale
  (loihi.json), an identity shortcut is a Dense of its one integer, a convolution delayed by a
  DelayDense its integer dense matrix; with several partitions (`run_lava_manifest(loihi=...)`)
  each first layer reading a model input has a RingBuffer of its own carrying its current, and
  the host processes exchange loihi.json's payloads (lava_host.py). runtime/loihi_fixed.py
  `simulate_export` computes the same, bit for bit.

Timing. A Lava synaptic process sends in step t what it received in step t - 1, so every synaptic
stage adds one step: a layer behind d stages sees input timestep t in Lava step t + d. Outputs are
read d steps late, which removes that delay; the run lasts N*T + delay steps so the last timesteps
come out. All N samples go through one run, back to back, T steps each (one compile instead of N):
each neuron layer resets u and v (LIFReset, interval T, offset d + 1) in the step in which the
first timestep of a sample reaches it. That reset also discards what a layer integrated before its
first real input, when it received only zeros but already its bias, so the pipeline's filling
leaves no trace. A neuron layer whose inputs come through different numbers of stages (a residual
block: two convolutions on one path, an identity or a 1x1 projection on the other) sits at the
deepest path's depth, and each shallower path's last synaptic layer becomes a
`lava.proc.dense.process.DelayDense` that holds its current back by the difference, so the sum
mixes no timesteps: an identity stays an identity, a convolution becomes its dense matrix in
Lava's (W, H, C) order (at most MAX_DELAYED_WEIGHTS weights; a 1x1 strided projection is small).

Partitions (`run_lava_manifest`, floating_pt, or fixed_pt with loihi.json). All partitions of an export run in one Lava
network, connected through the manifest's named boundary tensors, each one Lava port connection:
every model input is a RingBuffer of its own; each neuromorphic partition is the graph above, its
Input nodes reading the ports of the tensors they are named after (several of them, as TAAF's two
branches); each host partition is a `lava_host.HostPartition` process with an InPort per input
tensor and an OutPort per output tensor, running its ONNX file in ONNX Runtime on the timesteps it
has buffered (that module's docstring). Every tensor has an arrival depth, the Lava steps between
an input timestep and its value: 0 for the model's inputs, a layer's depth for a neuromorphic
partition's output, offset + buffer for a host partition's (a host partition that buffers b
timesteps sends its output b steps late). A neuromorphic partition's layers count their depth
from its inputs' arrival, so resets and read-outs shift by the stages and buffers in front of
them, and `delay` is the arrival depth of the model's output. A host partition's inputs must
arrive in the same step. What a neuromorphic partition hands on is a Lava port:

- a neuron layer's spikes;
- a synaptic layer's current (Dense or Conv `a_out`, graded, one stage after its input). A global
  average pool -> Flatten at the end of a branch becomes such a layer, a Dense of weights 1/(H W)
  (an identity Affine is put before the Output and `fold_avgpool` folds the pool into it), so the
  host partition receives the pooled spikes exactly, in the step the pool's Dense sends them.
  Lava's Dense and Conv add no bias, so a host partition reading a current adds its layer's bias
  as each timestep arrives; a neuromorphic partition reading a biased current is refused;
- not a read-out's voltage, which is only probed: a read-out is the model's output only.

Lifetime. Lava starts one OS process per Lava process. The session runs in a forked child that
leads its own process group: it builds, runs and stops the runtime (in a `finally`) and sends back
the recordings or its error. Lava 0.10 hangs when a process model raises (see
`_report_model_errors`), so each model phase sends its exception to the parent itself. The parent
waits for the first message, the child's death or `timeout_s`, whichever comes first, then kills
the process group and reaps its members (it is their subreaper meanwhile), so no process of the
run outlives the call, not even as a zombie, and a failure becomes a UserError that names it (the
model, the step, the exception).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait

import nir
import numpy as np

from spikeport.errors import UserError
from spikeport.export.loihi import BIAS_EXP, IDENTITY, LoihiModel, chain_layers, host_current, input_bias, integers, neuron_bias
from spikeport.export.lower import deploy, fold_avgpool, topological_order
from spikeport.export.manifest import Manifest
from spikeport.export.nir_graph import check_resets_to_zero
from spikeport.progress import stage
from spikeport.readers import check_hdf5, check_onnx_external

MODES = ("float", "loihi")  # Lava's floating_pt models; its fixed_pt ones with loihi.json's integers
GRADED_MESSAGE_BITS = 24  # Lava's widest graded payload; only the float models read it as "not binary"
KILL_GRACE_S = 10  # to kill and reap a run's processes; they go in milliseconds
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37  # linux/prctl.h
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # end spikeport, and so its Lava run (Ctrl-C raises KeyboardInterrupt)
SHARED_MEMORY = Path("/dev/shm")  # Python's SharedMemory segments, psm_*: Lava's channels
MAX_DELAYED_WEIGHTS = 2**22  # a convolution delayed as a DelayDense becomes a dense matrix of at most this many weights
_GAIN_TOLERANCE = 1e-6  # dt * r / tau is 1 to float32 precision: other tools store r in float32
_SYNAPTIC = (nir.Conv2d, nir.Affine, nir.Linear)
_NEURONS = (nir.LIF, nir.IF)


@functools.cache
def _lava_api() -> SimpleNamespace:
    """Lava's classes, imported on first use (in the parent, so the forked children inherit them).

    Importing Lava 0.10 calls multiprocessing.set_start_method("fork"), which raises once anything
    in this process has fixed the start method, even to "fork" (an export before the run does). A
    method already fixed to "fork" is unfixed first, which changes nothing Lava would not set.
    """
    if multiprocessing.get_start_method(allow_none=True) == "fork":
        multiprocessing.set_start_method(None, force=True)
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFReset
    from lava.proc.monitor.process import Monitor

    from spikeport.runtime.lava_host import HostPartition  # a Lava process module: imported after Lava set itself up

    return SimpleNamespace(
        PyLoihiProcessModel=PyLoihiProcessModel, RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, Conv=Conv, Dense=Dense, DelayDense=DelayDense,
        Sink=Sink, Source=Source, LIFReset=LIFReset, Monitor=Monitor, Host=HostPartition,
    )


@dataclass(frozen=True)
class LavaResult:
    """What a Lava run gives, aligned to the input timesteps (the pipeline delay removed).

    output: [N, T, *output_shape], the read-out's values, logits per step in both modes (or the
        output layer's spikes).
    delay: how many Lava steps of pipeline delay were removed (the synaptic stages to the output).
    spikes: per neuron layer, spike counts [N, T].
    """

    output: np.ndarray
    delay: int
    spikes: dict[str, np.ndarray]
    trains: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # run_lava_manifest: every neuron layer's spikes
    # [N, T, *shape] ("partition.layer"), and every tensor a host partition sends, as sent ([N, T, *shape], by tensor name)


@dataclass(frozen=True)
class _Synapse:
    """A Conv or Dense process; `weight` is in Lava's layout (see the module docstring)."""

    name: str
    source: str  # the neuron layer or input it reads
    weight: np.ndarray
    graded: bool
    depth: int  # synaptic stages between the input and its output, its own included
    conv: dict | None = None  # Conv's input_shape, stride, padding, dilation, groups, in Lava's (X, Y) order
    weight_exp: int = 0  # fixed point, Dense: the weighted sum is shifted by it
    delay: int = 0  # extra steps (a DelayDense) that align it with a deeper path into the same neuron
    host: bool = False  # fixed point: a first layer run on the host; its current is the input's RingBuffer itself


@dataclass(frozen=True)
class _Neuron:
    """A LIFReset process; `shape` is NIR's (C, H, W) or (n,), `bias` in Lava's layout.

    Float mode: du = 1 and real dv, vth, bias; loihi mode: the integers of loihi.json.
    """

    name: str
    shape: tuple[int, ...]
    synapses: list[str]  # what its a_in sums: synaptic layers, or the input itself (loihi mode's first LIF)
    bias: np.ndarray
    dv: float
    vth: float
    depth: int  # synaptic stages between the input and this layer
    du: float = 1.0


@dataclass(frozen=True)
class _Plan:
    """The Lava network, as plain data, so it is checked here and travels to the child process."""

    inputs: dict[str, tuple[int, ...]]  # Input node -> its shape (NIR's order)
    synapses: list[_Synapse]
    neurons: list[_Neuron]
    outputs: dict[str, str]  # Output node (or, in a run of partitions, the boundary tensor) -> the layer whose value it is
    readout: bool  # the output is a neuron's voltage (a read-out) rather than its spikes
    delay: int  # synaptic stages (and, in a run of partitions, buffers) between the inputs and the outputs
    fixed_pt: bool = False  # integers for Lava's fixed_pt models (mode "loihi")
    readout_scale: float = 1.0  # fixed_pt: the read-out's voltage is 64 * this * the running sum of the logits
    output_bias: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # handoff: a synaptic output's bias, NIR's order
    partition: str = ""  # the export's partition it runs

    @property
    def input_name(self) -> str:
        (name,) = self.inputs
        return name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inputs[self.input_name]

    @property
    def output(self) -> str:
        (layer,) = self.outputs.values()
        return layer


@dataclass(frozen=True)
class _Host:
    """A host partition in a Lava run (runtime/lava_host.py): its ONNX file, its boundary tensors
    (name -> shape in NIR's order), the timesteps it buffers, and `offset`, the Lava step, minus
    one, in which the stream's first timestep reaches it (the synaptic stages and buffers before it)."""

    name: str
    onnx: str
    inputs: dict[str, tuple[int, ...]]
    outputs: dict[str, tuple[int, ...]]
    buffer: int
    offset: int
    biases: dict[str, np.ndarray]  # input -> the bias of the synaptic layer whose current it is, added on arrival
    payloads: dict[str, dict] = dataclasses.field(default_factory=dict)  # fixed point: tensor -> its loihi.json boundary

    @property
    def delay(self) -> int:
        """Lava steps between an input timestep and this partition's output for it."""
        return self.offset + self.buffer


def run_lava(
    graph: nir.NIRGraph, inputs: np.ndarray, mode: str = "float", loihi: LoihiModel | None = None, timeout_s: float = 600
) -> LavaResult:
    """Run `graph` on `inputs` [N, T, *input_shape] in Lava's Loihi2SimCfg and return what it computed.

    mode "float" runs Lava's floating_pt models; "loihi" its fixed_pt ones with the integers of
    `loihi` (the export's loihi.json, `export.loihi.read_loihi_json`), which that mode needs.
    Raises UserError for a graph Lava cannot run as given, bad inputs, a failed run or a timeout;
    in every case the Lava processes are gone when it returns.
    """
    if mode not in MODES:
        raise UserError(f"mode: {mode!r}; choose one of {', '.join(MODES)}")
    if (mode == "loihi") != (loihi is not None):
        raise UserError(f"mode {mode!r}: " + ("needs the export's loihi.json (loihi=read_loihi_json(...))" if loihi is None else "takes no loihi.json; its integers are for mode 'loihi'"))
    plan = plan_network(graph, loihi)
    inputs = np.asarray(inputs, dtype=np.float64)
    if inputs.ndim != 2 + len(plan.input_shape) or inputs.shape[2:] != plan.input_shape or 0 in inputs.shape[:2]:
        raise UserError(f"inputs: shape {inputs.shape}; expected [N, T, {', '.join(map(str, plan.input_shape))}] with N, T >= 1")
    drive = inputs if loihi is None else input_bias(fold_avgpool(graph), loihi, inputs)
    _lava_api()  # imported here, once, so that the forked children inherit Lava
    (recordings,) = _in_child(_simulate, ([plan], {plan.input_name: drive}), timeout_s)
    n, t = inputs.shape[:2]
    output = _plan_output(plan, recordings, n, t)
    if plan.fixed_pt:
        output = np.diff(output.astype(np.float64), axis=1, prepend=0.0) / (64 * plan.readout_scale)
    return LavaResult(output=output, delay=plan.delay, spikes=_spike_counts(plan, recordings, n, t))


def run_lava_manifest(manifest: Manifest, export_dir: str | os.PathLike, graphs: dict[str, nir.NIRGraph], inputs: dict[str, np.ndarray],
                      timeout_s: float = 600, loihi: LoihiModel | None = None) -> LavaResult:
    """Every partition of an export in one Lava run (floating_pt): each neuromorphic partition as
    in `run_lava`, each host partition as a `lava_host.HostPartition` process running its ONNX file.

    `graphs` holds the NIR graph of each neuromorphic partition by name (read by the caller);
    `inputs` holds [N, T, *shape] per model input. The partitions form a graph through their named
    boundary tensors (module docstring, "Partitions"). `delay` counts the synaptic stages and host
    buffers in front of the model's output; spike counts are named `<partition>.<layer>`. Raises
    UserError as `run_lava` does. With `loihi` (the export's loihi.json) it runs fixed_pt: the
    neuromorphic partitions with its integers, the model inputs as their first layers' currents,
    and the host partitions exchanging its graded payloads (module docstring, "Fixed point").
    """
    arrival = {t.name: 0 for t in manifest.inputs}  # boundary tensor -> Lava steps between an input timestep and its value
    biases = {}  # boundary tensor -> the bias its synaptic layer leaves to the host partition reading it
    stages = []
    for p in manifest.partitions:
        missing = [t.name for t in p.inputs if t.name not in arrival]
        if missing:
            raise UserError(f"partition {p.name}: reads {', '.join(missing)}, which no earlier partition writes")
        if p.file is None:
            raise UserError(f"partition {p.name}: the export has no file for it; export with --formats nir,onnx")
        if p.kind == "neuromorphic":
            biased = [t.name for t in p.inputs if t.name in biases]
            if biased:
                raise UserError(f"partition {p.name}: reads {', '.join(biased)}, a synaptic layer's current with a bias, which Lava's Dense "
                                "and Conv do not add; the Lava runner leaves it to a host partition reading the current")
            final = [t.name for t in p.outputs] == [t.name for t in manifest.outputs]
            plan = plan_network(graphs[p.name], loihi, depths={t.name: arrival[t.name] for t in p.inputs}, handoff=not final, partition=p.name)
            nodes = {t.name: "output" if len(p.outputs) == 1 else f"output_{t.name}" for t in p.outputs}
            if set(nodes.values()) != set(plan.outputs):
                raise UserError(f"partition {p.name}: its graph's Output nodes {sorted(plan.outputs)} are not the manifest's {sorted(nodes.values())}")
            stage = dataclasses.replace(plan, outputs={tensor: plan.outputs[node] for tensor, node in nodes.items()})
            biases.update({tensor: plan.output_bias[node] for tensor, node in nodes.items() if node in plan.output_bias})
            depth = {layer.name: layer.depth for layer in [*stage.neurons, *stage.synapses]}
            arrival.update({tensor: depth[layer] for tensor, layer in stage.outputs.items()})
        else:
            path = os.path.join(export_dir, p.file)
            if not os.path.isfile(path):
                raise UserError(f"partition {p.name}: {path}: no such file")
            check_onnx_external(path)  # the host process's onnxruntime reads only what is inside the export
            offsets = {t.name: arrival[t.name] for t in p.inputs}
            if len(set(offsets.values())) != 1:
                raise UserError(f"partition {p.name}: its inputs arrive after different numbers of Lava steps {offsets}; a host process takes them in one step")
            payloads = {} if loihi is None else {b.tensor: dataclasses.asdict(b) for b in loihi.boundaries
                                                 if b.tensor in {t.name for t in [*p.inputs, *p.outputs]}}
            stage = _Host(p.name, path, {t.name: tuple(t.shape) for t in p.inputs}, {t.name: tuple(t.shape) for t in p.outputs},
                          p.buffer_timesteps, next(iter(offsets.values())), {t.name: biases[t.name] for t in p.inputs if t.name in biases},
                          payloads)
            arrival.update({t.name: stage.delay for t in p.outputs})
        stages.append(stage)
    drives = {}
    for tensor in manifest.inputs:
        x = np.asarray(inputs.get(tensor.name), dtype=np.float64)
        shape = tuple(tensor.shape)
        if x.ndim != 2 + len(shape) or x.shape[2:] != shape or 0 in x.shape[:2] or (drives and x.shape[:2] != next(iter(drives.values())).shape[:2]):
            raise UserError(f"inputs.{tensor.name}: shape {x.shape}; expected [N, T, {', '.join(map(str, shape))}] with N, T >= 1, as the other inputs")
        drives[tensor.name] = x
    if loihi is not None:  # each first layer's current, computed on the host, is a RingBuffer of its own
        drives = _first_layer_currents(manifest, stages, graphs, loihi, drives)
    _lava_api()
    recordings = _in_child(_simulate, (stages, drives), timeout_s)
    n, t = next(iter(drives.values())).shape[:2]
    spikes, output = {}, None
    (model_output,) = (tensor.name for tensor in manifest.outputs)
    trains = {}
    for p, stage, recorded in zip(manifest.partitions, stages, recordings):
        if isinstance(stage, _Plan):
            spikes.update({f"{p.name}.{layer}": counts for layer, counts in _spike_counts(stage, recorded, n, t).items()})
            trains.update({f"{p.name}.{neuron.name}": _aligned(recorded[neuron.name], neuron.depth, neuron.shape, n, t)
                           for neuron in stage.neurons if not (stage.readout and neuron.name == stage.output)})
            if model_output in stage.outputs:
                output = _plan_output(stage, recorded, n, t)
                if stage.fixed_pt:
                    output = np.diff(output.astype(np.float64), axis=1, prepend=0.0) / (64 * stage.readout_scale)
        else:
            trains.update({tensor: _aligned(recorded[tensor], stage.delay, shape, n, t) for tensor, shape in stage.outputs.items() if tensor != model_output})
        if not isinstance(stage, _Plan) and model_output in stage.outputs:
            output = _aligned(recorded[model_output], stage.delay, stage.outputs[model_output], n, t)
            if loihi is not None:  # float32 values sent bit for bit through the int32 port (lava_host)
                output = np.ascontiguousarray(output).astype(np.int32).view(np.float32).astype(np.float64)
    return LavaResult(output=output, delay=arrival[model_output], spikes=spikes, trains=trains)


def _first_layer_currents(manifest: Manifest, stages: list, graphs: dict[str, nir.NIRGraph], loihi: LoihiModel,
                          inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fixed point: what each RingBuffer sends, "<partition>.<layer>" for every first layer reading
    a model input: its current, computed on the host in its integer units (export.loihi.host_current)."""
    drives = {}
    for p, stage in zip(manifest.partitions, stages):
        if not isinstance(stage, _Plan):
            continue
        final = [t.name for t in p.outputs] == [t.name for t in manifest.outputs]
        graph = None
        for synapse in stage.synapses:
            if synapse.host:
                graph = graph or deploy(graphs[p.name], not final)
                (layer,) = [l for l in loihi.layers if l.partition == p.name and l.synapse == synapse.name]
                drives[f"{p.name}.{synapse.name}"] = host_current(graph, layer, inputs[synapse.source])
        unread = [name for name in stage.inputs if name in inputs and not any(s.host and s.source == name for s in stage.synapses)]
        if unread:
            raise UserError(f"partition {p.name}: the model input {unread[0]} reaches no first layer on the host; in fixed point one must read it")
    return drives


def _spike_counts(plan: _Plan, recordings: dict[str, np.ndarray], n: int, t: int) -> dict[str, np.ndarray]:
    """Spike counts [N, T] of every spiking layer of `plan` (not its read-out)."""
    return {
        neuron.name: _aligned(recordings[neuron.name], neuron.depth, neuron.shape, n, t).reshape(n, t, -1).sum(axis=2)
        for neuron in plan.neurons
        if not (plan.readout and neuron.name == plan.output)
    }


def plan_network(graph: nir.NIRGraph, loihi: LoihiModel | None = None, depths: dict[str, int] | None = None, handoff: bool = False,
                 partition: str = "") -> _Plan:
    """Check `graph` and describe the Lava network that runs it (see the module docstring), in
    floating point, or with the integers of `loihi` when given.

    depths: per Input node, how many Lava steps after the model's input its values arrive (0 for
    each by default). handoff: the outputs feed other partitions, so each must be a Lava port
    (module docstring, "Partitions"); otherwise there is one output, which may be a read-out.
    """
    check_resets_to_zero(graph, "Lava")
    graph = deploy(graph, handoff)
    nodes = graph.nodes
    sources = {name: [a for a, b in graph.edges if b == name] for name in nodes}
    inputs = [name for name, node in nodes.items() if isinstance(node, nir.Input)]
    outputs = [name for name, node in nodes.items() if isinstance(node, nir.Output)]
    if not handoff and (len(outputs) != 1 or (depths is None and len(inputs) != 1)):
        raise UserError(f"graph: {len(inputs)} Input and {len(outputs)} Output nodes; the Lava runner takes one of each")
    for name, node in nodes.items():
        if not isinstance(node, (nir.Input, nir.Output, *_SYNAPTIC, nir.Flatten, *_NEURONS)):
            raise UserError(f"{name} ({type(node).__name__}): no Lava mapping; the runner maps Conv2d, Affine, Linear, Flatten, LIF and IF")
        if not isinstance(node, nir.Input) and len(sources[name]) != 1 and not isinstance(node, _NEURONS):
            raise UserError(f"{name} ({type(node).__name__}): {len(sources[name])} inputs; only a neuron layer sums several")
    quantized = [] if loihi is None else [layer for layer in loihi.layers if layer.partition == partition]
    if loihi is not None and not partition:
        pairs = chain_layers(graph)  # a chain's loihi.json is the chain export/loihi.py `quantize` gives
        if [(layer.synapse, layer.neuron) for layer in quantized] != pairs:
            raise UserError(f"loihi.json: layers {[layer.synapse for layer in quantized]} do not match the graph's chain {[s for s, _ in pairs]}")
    builder = _Builder(nodes, sources, graph.metadata.get("dt"), {name: (depths or {}).get(name, 0) for name in inputs},
                       {layer.synapse for layer in quantized if layer.on_host}, fixed_point=loihi is not None)
    for name in topological_order(nodes, graph.edges, "the Lava runner takes feed-forward graphs"):
        builder.add(name)
    layers = {}
    for output in outputs:
        producer = builder.origin[sources[output][0]]
        if producer in builder.neurons or (handoff and producer in builder.synapses):
            layers[output] = producer
        elif isinstance(nodes[producer], _SYNAPTIC):
            builder.add_readout(producer)
            layers[output] = producer
        else:
            raise UserError(f"{output} (Output): reads {producer} ({type(nodes[producer]).__name__}); it must read a synaptic or neuron layer")
    biases = {output: _spread(getattr(nodes[layer], "bias", 0.0), nodes[layer], builder.shapes[layer])
              for output, layer in layers.items() if handoff and layer in builder.synapses}
    plan = _Plan(
        inputs={name: builder.shapes[name] for name in inputs},
        synapses=list(builder.synapses.values()),
        neurons=list(builder.neurons.values()),
        outputs=layers,
        readout=not handoff and isinstance(nodes[layers[outputs[0]]], _SYNAPTIC),
        delay=max(builder.depth[layer] for layer in layers.values()),
        output_bias={output: bias for output, bias in biases.items() if np.any(bias != 0)},
    )
    plan = dataclasses.replace(plan, partition=partition)
    return plan if loihi is None else _fixed_point(plan, graph, quantized)


def _fixed_point(plan: _Plan, graph: nir.NIRGraph, layers: list) -> _Plan:
    """The float plan of the deployed `graph` with loihi.json's integers (module docstring, "Fixed
    point"): each synapse's integer weights in Lava's layout, each neuron's du, dv, vth and bias
    mantissa; a first layer computed on the host (`host`) has no process and no stage."""
    by_synapse = {layer.synapse: layer for layer in layers}
    by_neuron: dict[str, list] = {}
    for layer in layers:
        by_neuron.setdefault(layer.neuron or layer.synapse, []).append(layer)
    missing = [s.name for s in plan.synapses if s.name not in by_synapse]
    if missing:
        raise UserError(f"loihi.json: no integers for synaptic layer(s) {', '.join(missing)} of the graph; export again")
    neurons = {n.name: n for n in plan.neurons}
    fixed_synapses = []
    for synapse in plan.synapses:
        layer = by_synapse[synapse.name]
        if synapse.host:
            fixed_synapses.append(synapse)
            continue
        w_int, _ = integers(graph, layer)
        source_shape = neurons[synapse.source].shape if synapse.source in neurons else plan.inputs[synapse.source]
        if layer.kind == IDENTITY:
            weight = np.eye(synapse.weight.shape[0], dtype=np.int64) * int(w_int[0])
        elif synapse.delay and synapse.conv is None and isinstance(graph.nodes[synapse.name], nir.Conv2d):
            weight = _conv_matrix(graph.nodes[synapse.name], source_shape, neurons[layer.neuron].shape, w_int).astype(np.int64)
        else:
            weight = _lava_weight(w_int, synapse.conv is not None, source_shape)
        if synapse.conv is None:  # Dense, DelayDense: 8-bit even weights 2m, the exponent e - 1 (export/loihi.py)
            fixed_synapses.append(dataclasses.replace(synapse, weight=weight << (1 - layer.weight_exp), weight_exp=layer.weight_exp - 1))
        else:
            fixed_synapses.append(dataclasses.replace(synapse, weight=weight))
    fixed_neurons = []
    for neuron in plan.neurons:
        feeding = by_neuron[neuron.name]
        first = feeding[0]
        if first.neuron is None:  # the read-out integrator
            _, bias_mant = integers(graph, first)
            bias = _lava(_spread(bias_mant, graph.nodes[first.synapse], neuron.shape))
        elif first.on_host:  # the host's current includes the layer's bias
            bias = np.zeros_like(neuron.bias, dtype=np.int64)
        else:
            bias = _lava(neuron_bias(graph, feeding))
        fixed_neurons.append(dataclasses.replace(neuron, bias=bias, du=first.du, dv=first.dv, vth=first.vth))
    readout = by_neuron[plan.output] if plan.readout else None
    return dataclasses.replace(plan, synapses=fixed_synapses, neurons=fixed_neurons, fixed_pt=True,
                               readout_scale=readout[0].scale if readout else 1.0)


class _Builder:
    """Walks the graph in topological order, turning each node into a _Synapse or _Neuron.

    For every node it records its NIR output shape, how many synaptic stages lie before it
    (`depth`, counted from the Lava step in which the inputs arrive), and the layer whose Lava port
    carries its value (`origin`: a Flatten is no process, just a view of the layer before it).
    """

    def __init__(self, nodes: dict, sources: dict, dt: float | None, inputs: dict[str, int], host: set[str] = frozenset(),
                 fixed_point: bool = False):
        self.nodes, self.sources, self.dt, self.inputs, self.host, self.fixed_point = nodes, sources, dt, inputs, host, fixed_point
        self.shapes = {name: _ints(nodes[name].input_type["input"]) for name in inputs}
        self.depth = dict(inputs)
        self.origin = {name: name for name in inputs}
        self.synapses: dict[str, _Synapse] = {}
        self.neurons: dict[str, _Neuron] = {}

    def add(self, name: str) -> None:
        node = self.nodes[name]
        if isinstance(node, nir.Input):
            return
        if isinstance(node, (nir.Flatten, nir.Output)):
            (source,) = self.sources[name]
            self.shapes[name] = _ints(node.output_type["output"]) if isinstance(node, nir.Flatten) else self.shapes[source]
            self.depth[name], self.origin[name] = self.depth[source], self.origin[source]
            return
        self.shapes[name] = _ints(node.output_type["output"])
        self.origin[name] = name
        if isinstance(node, _SYNAPTIC):
            self.synapses[name] = self._synapse(name, node)
        else:
            self.neurons[name] = self._neuron(name, node)
        self.depth[name] = (self.synapses.get(name) or self.neurons[name]).depth

    def _synapse(self, name: str, node: nir.NIRNode) -> _Synapse:
        (read,) = self.sources[name]
        source = self.origin[read]
        if source not in self.neurons and source not in self.inputs:
            raise UserError(f"{name} ({type(node).__name__}): reads {read} ({type(self.nodes[read]).__name__}); "
                            "a synaptic layer must read an input or a neuron layer")
        graded = source not in self.neurons
        source_shape = self.shapes[source]
        if name in self.host:  # fixed point: computed on the host, its current arrives with the input (no stage)
            return _Synapse(name, source, np.zeros((1, 1)), graded, self.depth[source], host=True)
        weight = np.asarray(node.weight, dtype=np.float64)
        depth = self.depth[source] + 1
        if isinstance(node, nir.Conv2d):
            if len(source_shape) != 3 or read != source:
                raise UserError(f"{name} (Conv2d): reads {read} of shape {self.shapes[read]}; a convolution needs a (C, H, W) map")
            if isinstance(node.padding, str):
                raise UserError(f"{name} (Conv2d): padding {node.padding!r}; give the padding in pixels")
            conv = {
                "input_shape": _lava_shape(source_shape),
                "stride": _xy(node.stride),
                "padding": _xy(node.padding),
                "dilation": _xy(node.dilation),
                "groups": int(node.groups),
            }
            return _Synapse(name, source, _lava_weight(weight, True, source_shape), graded, depth, conv)
        return _Synapse(name, source, _lava_weight(weight, False, source_shape), graded, depth)

    def _neuron(self, name: str, node: nir.NIRNode) -> _Neuron:
        shape = self.shapes[name]
        feeding = [self._shortcut(read, name) if self.origin[read] in self.neurons or self.origin[read] in self.inputs else read
                   for read in self.sources[name]]
        if not feeding or any(s not in self.synapses for s in feeding):
            raise UserError(f"{name} ({type(node).__name__}): reads {self.sources[name]}; a neuron layer reads synaptic layers (Conv2d, Affine, "
                            "Linear), and inputs or neuron layers of its own shape")
        depth = max(self.synapses[s].depth for s in feeding)
        for s in feeding:
            self._delay(s, depth - self.synapses[s].depth)
        threshold = _uniform(name, "v_threshold", node.v_threshold)
        if np.any(np.asarray(node.v_reset) != 0):
            raise UserError(f"{name} ({type(node).__name__}): v_reset must be 0 (Lava resets the voltage to 0)")
        if isinstance(node, nir.IF):
            dv, gain = 0.0, self._dt(name) * _uniform(name, "r", node.r)
        else:
            if np.any(np.asarray(node.v_leak) != 0):
                raise UserError(f"{name} (LIF): v_leak must be 0 (Lava's LIF decays towards 0)")
            tau = _uniform(name, "tau", node.tau)
            dv, gain = self._dt(name) / tau, self._dt(name) * _uniform(name, "r", node.r) / tau
        bias = sum(_spread(getattr(self.nodes.get(s), "bias", 0.0), self.nodes.get(s), shape) for s in feeding)
        if abs(gain - 1) > _GAIN_TOLERANCE:  # Lava's LIF adds its input unscaled: the gain goes into the weights and bias
            if self.fixed_point:
                raise UserError(f"{name} ({type(node).__name__}): input gain dt*r/tau = {gain:.6g}; fixed point takes the export's integers, made for gain 1")
            for s in feeding:
                self.synapses[s] = dataclasses.replace(self.synapses[s], weight=self.synapses[s].weight * gain)
            bias = bias * gain
        return _Neuron(name, shape, feeding, _lava(bias), dv, threshold, depth)

    def _shortcut(self, read: str, neuron: str) -> str:
        """An identity shortcut (an input or a neuron layer added straight into `neuron`) as an
        identity Dense, which `_delay` lines up with the deeper paths into the same neuron."""
        source = self.origin[read]
        if self.shapes[source] != self.shapes[neuron]:
            raise UserError(f"{neuron}: reads {read} (from {source} of shape {self.shapes[source]}) directly; "
                            f"an identity shortcut needs the neuron's shape {self.shapes[neuron]}")
        name = f"{source}_to_{neuron}"
        size = int(np.prod(self.shapes[neuron]))
        self.synapses[name] = _Synapse(name, source, np.eye(size), source not in self.neurons, self.depth[source] + 1)
        return name

    def _delay(self, name: str, steps: int) -> None:
        """Delay synaptic layer `name` by `steps` Lava steps: a DelayDense, so a convolution
        becomes its dense matrix (in Lava's (W, H, C) order on both sides)."""
        if steps == 0:
            return
        synapse = self.synapses[name]
        weight = synapse.weight
        if synapse.conv is not None:
            node = self.nodes[name]
            in_shape, out_shape = self.shapes[synapse.source], self.shapes[name]
            size = int(np.prod(in_shape)) * int(np.prod(out_shape))
            if size > MAX_DELAYED_WEIGHTS:
                raise UserError(f"{name} (Conv2d): is {steps} synaptic stages shallower than the other paths into its neuron; "
                                f"its dense matrix for a DelayDense would hold {size} weights (at most {MAX_DELAYED_WEIGHTS})")
            weight = _conv_matrix(node, in_shape, out_shape)
        self.synapses[name] = dataclasses.replace(synapse, weight=weight, conv=None, delay=steps, depth=synapse.depth + steps)

    def add_readout(self, name: str) -> None:
        """The read-out behind synaptic layer `name`: dv = 1 forgets the last step, vth = inf never fires."""
        shape = self.shapes[name]
        bias = _spread(getattr(self.nodes[name], "bias", 0.0), self.nodes[name], shape)
        self.neurons[name] = _Neuron(name, shape, [name], _lava(bias), 1.0, np.inf, self.depth[name])

    def _dt(self, name: str) -> float:
        if not isinstance(self.dt, (int, float)) or not self.dt > 0:
            raise UserError(f"{name}: the graph's metadata gives no dt (seconds per step), which a neuron's decay 1 - dt/tau needs")
        return float(self.dt)


def _lava_weight(weight: np.ndarray, conv: bool, source_shape: tuple[int, ...]) -> np.ndarray:
    """A NIR weight in Lava's layout (module docstring): a Conv's kernel flipped and as (out, X, Y, in);
    a Dense reading a (C, H, W) map with its columns in the order Lava flattens (W, H, C) in."""
    if conv:
        return np.ascontiguousarray(weight.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])
    if len(source_shape) == 3:
        return weight.reshape(weight.shape[0], *source_shape).transpose(0, 3, 2, 1).reshape(weight.shape[0], -1)
    return weight


def _conv_matrix(node: nir.Conv2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...], weight: np.ndarray | None = None) -> np.ndarray:
    """The convolution (bias aside; its kernel, or `weight`) as a Dense weight [out, in], both maps
    flattened in Lava's (W, H, C) order."""
    import torch

    n_in = int(np.prod(in_shape))
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    kernel = np.asarray(node.weight if weight is None else weight)
    columns = torch.nn.functional.conv2d(basis, torch.as_tensor(kernel, dtype=torch.float64), stride=_pair(node.stride),
                                         padding=_pair(node.padding), dilation=_pair(node.dilation), groups=int(node.groups))
    matrix = columns.reshape(n_in, *out_shape).numpy()  # [in (C, H, W), out (C, H, W)]
    matrix = matrix.reshape(*in_shape, *out_shape).transpose(5, 4, 3, 2, 1, 0)  # [out (W, H, C), in (W, H, C)]
    return np.ascontiguousarray(matrix.reshape(int(np.prod(out_shape)), n_in))


def _spread(bias, node: nir.NIRNode | None, shape: tuple[int, ...]) -> np.ndarray:
    """A synaptic layer's bias over its output map (0 for a Linear; a Conv2d's is per channel)."""
    bias = np.asarray(bias)
    if isinstance(node, nir.Conv2d):
        bias = bias.reshape(-1, 1, 1)
    return np.broadcast_to(bias, shape).copy()


def _uniform(name: str, parameter: str, values) -> float:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or np.any(values != values.flat[0]):
        raise UserError(f"{name}: {parameter} differs between neurons; Lava's LIF takes one value per layer")
    return float(values.flat[0])


def _ints(shape) -> tuple[int, ...]:
    return tuple(int(n) for n in np.asarray(shape).ravel())


def _pair(value) -> tuple[int, int]:
    h, w = np.broadcast_to(np.asarray(value, dtype=int).ravel(), (2,))
    return int(h), int(w)


def _xy(value) -> tuple[int, int]:
    """NIR's (H, W) pair as Lava's (X, Y) = (W, H)."""
    h, w = _pair(value)
    return w, h


def _lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[::-1] if len(shape) == 3 else shape


def _lava(array: np.ndarray) -> np.ndarray:
    """NIR's (C, H, W) as Lava's (W, H, C) (and back: the transpose is its own inverse); vectors stay."""
    return np.ascontiguousarray(array.transpose(2, 1, 0)) if array.ndim == 3 else array


def _plan_output(plan: _Plan, recordings: dict[str, np.ndarray], n: int, t: int) -> np.ndarray:
    """The output layer's recording (spikes, or the read-out's voltage) as [N, T, *shape]."""
    output = next(neuron for neuron in plan.neurons if neuron.name == plan.output)
    return _aligned(recordings[output.name], output.depth, output.shape, n, t)


def _aligned(recording: np.ndarray, depth: int, shape: tuple[int, ...], n: int, t: int) -> np.ndarray:
    """[steps, *lava_shape] recorded from Lava step 1 on by a layer `depth` steps behind the input
    -> [N, T, *shape] (NIR's order), input timestep by input timestep."""
    steps = recording[depth : depth + n * t]
    if steps.ndim == 4:
        steps = steps.transpose(0, 3, 2, 1)
    return steps.reshape(n, t, *shape)


def _simulate(stages: list[_Plan | _Host], drives: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Build the Lava network of `stages` (in order: each reads tensors the model's inputs or
    earlier stages give), send each of `drives` [N, T, *shape] through a RingBuffer of its own (all
    samples back to back), and return per stage its recordings [steps, *lava_shape]: each neuron
    layer's spikes or the read-out's voltage, a host partition's outputs. Runs in the child process."""
    lava = _lava_api()
    fixed = any(isinstance(s, _Plan) and s.fixed_pt for s in stages)
    n, t = next(iter(drives.values())).shape[:2]
    steps = n * t + max(max([s.delay, *(neuron.depth for neuron in s.neurons)]) if isinstance(s, _Plan) else s.delay for s in stages)
    ports, sources, probes = {}, [], []
    for name, drive in drives.items():
        sequence = np.zeros((*_lava_shape(drive.shape[2:]), steps), dtype=np.int32 if fixed else np.float64)
        sequence[..., : n * t] = np.moveaxis(np.stack([_lava(x) for x in drive.reshape(n * t, *drive.shape[2:])]), 0, -1)
        sources.append(lava.Source(data=sequence))
        ports[name] = sources[-1].s_out
    for stage in stages:
        if isinstance(stage, _Plan):
            outputs, stage_probes = _build_plan(lava, stage, ports, t, steps)
        else:
            host = lava.Host(onnx=stage.onnx, inputs=stage.inputs, outputs=stage.outputs, timesteps=t, buffer=stage.buffer,
                             offset=stage.offset, samples=n, biases=stage.biases, payloads=stage.payloads if fixed else None, name=stage.name)
            for tensor, port in zip(stage.inputs, host.x_in):
                ports[tensor].connect(port)
            outputs = dict(zip(stage.outputs, host.y_out))
            stage_probes = {tensor: lava.Sink(shape=port.shape, buffer=steps) for tensor, port in outputs.items()}
            for tensor, port in outputs.items():
                port.connect(stage_probes[tensor].a_in)
        ports.update(outputs)
        probes.append(stage_probes)
    try:  # any process runs and stops the whole connected network
        with warnings.catch_warnings():
            # Lava's compiler looks for HostPartition's model by executing every module of runtime/
            # on its own; outside their package the others fail (a dataclass needs its module
            # registered), one warning each. The model is found in lava_host, which loads.
            warnings.filterwarnings("ignore", message="Cannot import module .* when searching ProcessModels", category=UserWarning)
            sources[0].run(condition=lava.RunSteps(num_steps=steps), run_cfg=lava.Loihi2SimCfg(select_tag="fixed_pt" if fixed else "floating_pt"))
        return [
            {name: (probe.get_data()[name]["v"] if isinstance(probe, lava.Monitor) else np.moveaxis(probe.data.get(), -1, 0)) for name, probe in stage.items()}
            for stage in probes
        ]
    finally:
        sources[0].stop()


def _build_plan(lava: SimpleNamespace, plan: _Plan, tensors: dict, t: int, steps: int) -> tuple[dict, dict]:
    """The Lava processes of `plan`, reading its inputs from the ports in `tensors` (by name);
    returns its output ports by output name (a neuron layer's spikes, or in a handoff a synaptic
    layer's current; a read-out has none) and the probe of every neuron layer: a RingBuffer sink on
    its spikes, or a Monitor on the read-out's voltage."""
    fixed = plan.fixed_pt
    ports = {name: tensors[name] for name in plan.inputs if name in tensors}  # fixed point: a first layer may have its own RingBuffer
    currents = dict(ports)  # loihi mode: the first LIF reads the input directly
    neurons, probes = {}, {}
    for neuron in plan.neurons:
        neurons[neuron.name] = lif = lava.LIFReset(
            shape=_lava_shape(neuron.shape), du=neuron.du, dv=neuron.dv, vth=neuron.vth, bias_mant=neuron.bias,
            bias_exp=BIAS_EXP if fixed else 0, reset_interval=t, reset_offset=(neuron.depth + 1) % t, name=neuron.name,
        )
        ports[neuron.name] = lif.s_out
        if plan.readout and neuron.name == plan.output:
            probes[neuron.name] = monitor = lava.Monitor()
            monitor.probe(lif.v, steps)
        else:
            probes[neuron.name] = sink = lava.Sink(shape=lif.s_out.shape, buffer=steps)
            lif.s_out.connect(sink.a_in)
    for synapse in plan.synapses:
        if synapse.host:  # its own RingBuffer (run_lava_manifest), or the input's (run_lava: one first layer)
            key = f"{plan.partition}.{synapse.name}"
            currents[synapse.name] = ports[synapse.name] = tensors[key] if key in tensors else ports[synapse.source]
            continue
        bits = GRADED_MESSAGE_BITS if synapse.graded else 0
        if synapse.delay:
            delays = np.full(synapse.weight.shape, synapse.delay)
            process = lava.DelayDense(weights=synapse.weight, delays=delays, weight_exp=synapse.weight_exp, num_message_bits=bits, name=synapse.name)
        elif synapse.conv is None:
            process = lava.Dense(weights=synapse.weight, weight_exp=synapse.weight_exp, num_message_bits=bits, name=synapse.name)
        else:
            process = lava.Conv(weight=synapse.weight, num_message_bits=bits, name=synapse.name, **synapse.conv)
        port = ports[synapse.source]
        (port.flatten() if synapse.conv is None and len(port.shape) > 1 else port).connect(process.s_in)
        currents[synapse.name] = ports[synapse.name] = process.a_out
    for neuron in plan.neurons:
        a_in = neurons[neuron.name].a_in
        for name in neuron.synapses:
            current = currents[name]
            (current if current.shape == a_in.shape else current.reshape(a_in.shape)).connect(a_in)
    return ({} if plan.readout else {name: ports[layer] for name, layer in plan.outputs.items()}), probes


def run_netx_fixed(path: str | os.PathLike, bias: np.ndarray, window: int, timeout_s: float = 600) -> tuple[list[np.ndarray], np.ndarray]:
    """A lava-dl netx file in Loihi2SimCfg fixed_pt: samples back to back, `window` steps each.

    `bias` [N, window, C, H, W] drives the network's input layer per step (as bias_mant.set would);
    netx resets every layer when a sample's first step reaches it (reset_interval = window).
    Returns every layer's spikes [N, window, *shape] and the last layer's voltage [N, window, *shape],
    in the (C, H, W) order of the file's shapes. Same process handling as `run_lava`.
    """
    check_hdf5(path, "netx HDF5")  # lava-dl's netx opens it with h5py: nothing outside the file
    _lava_api()
    return _in_child(_simulate_netx, (str(path), np.asarray(bias), window), timeout_s)


def _simulate_netx(path: str, bias: np.ndarray, window: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Runs in the child: one Lava step per run call, so the input bias can change every step."""
    from lava.lib.dl.netx import hdf5

    lava = _lava_api()
    n = bias.shape[0]
    steps = n * window
    net = hdf5.Network(net_config=path, reset_interval=window)
    sinks = [lava.Sink(shape=layer.out.shape, buffer=steps) for layer in net.layers]
    for layer, sink in zip(net.layers, sinks):
        layer.out.connect(sink.a_in)
    net.in_layer.neuron.bias_mant.init = _lava(bias[0, 0])
    voltage = []
    try:
        for k in range(steps):
            if k:
                net.in_layer.neuron.bias_mant.set(_lava(bias[k // window, k % window]))
            net.run(condition=lava.RunSteps(num_steps=1), run_cfg=lava.Loihi2SimCfg(select_tag="fixed_pt"))
            voltage.append(_lava(net.out_layer.neuron.v.get()))
        spikes = [np.moveaxis(sink.data.get(), -1, 0) for sink in sinks]  # [steps, *lava_shape]
    finally:
        net.stop()
    per_sample = lambda a: a.reshape(n, window, *a.shape[1:])  # noqa: E731
    return [per_sample(np.stack([_lava(frame) for frame in s])) for s in spikes], per_sample(np.stack(voltage))


def _in_child(function: Callable, args: tuple, timeout_s: float):
    """function(*args) in a child process that leads its own process group; on return, error or
    timeout, the whole group is killed and reaped, so none of the processes Lava started outlives
    the call, not even as a zombie.

    For the length of the call this process is a child subreaper (Linux prctl): the Lava processes
    orphaned when the child dies become our children instead of init's, so we reap them ourselves
    rather than rely on the machine's init to do it (a container's may not).
    """
    resource_tracker.ensure_running()  # outside the run's group, see _stop
    context = multiprocessing.get_context("fork")  # Lava itself forks; fork also spares the re-imports
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child_main, args=(function, args, sender), name="spikeport-lava")
    status = "error"
    with _ended_by_signals(), stage("Lava session (Loihi2SimCfg, CPU)"), _subreaper():  # the stage's line only for a run that worked
        child.start()
        sender.close()
        try:
            ready = wait([receiver, child.sentinel], timeout=timeout_s)
            if receiver in ready:
                try:
                    status, value = receiver.recv()
                except EOFError:
                    value = f"the Lava session's process died (exit code {child.exitcode})"
            elif ready:
                value = f"the Lava session's process died (exit code {child.exitcode})"
            else:
                value = f"timed out after {timeout_s:g} s; the Lava processes were killed"
        finally:
            with _signals_blocked():  # a second signal must not cut the clean-up short
                _stop(child, grace_s=5 if status == "ok" else 0)
            receiver.close()
        if status == "error":
            raise UserError(f"Lava run failed: {value}")
    return value


class _Ended(BaseException):
    """SIGTERM or SIGHUP reached spikeport during a Lava run (raised by `_ended_by_signals`)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _ended_by_signals():
    """While the block runs, SIGTERM and SIGHUP raise `_Ended`, so the block's `finally` stops the
    Lava processes; the signal is then delivered again to the handler there was before (by default
    it ends spikeport, as it would have). A signal that was ignored (nohup) stays ignored; outside
    the main thread, where Python takes no signals, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def end(signum, frame):
        raise _Ended(signum)

    previous = {s: signal.getsignal(s) for s in ENDING_SIGNALS if signal.getsignal(s) != signal.SIG_IGN}
    restore = lambda: [signal.signal(s, h if h is not None else signal.SIG_DFL) for s, h in previous.items()]  # noqa: E731
    for s in previous:
        signal.signal(s, end)
    try:
        yield
    except _Ended as e:
        restore()
        signal.raise_signal(e.signum)
        raise SystemExit(128 + e.signum) from None  # the previous handler returned: end anyway
    finally:
        restore()


@contextlib.contextmanager
def _signals_blocked():
    """Hold SIGTERM and SIGHUP back for the block (main thread): they arrive when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, ENDING_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, ENDING_SIGNALS)


@contextlib.contextmanager
def _subreaper():
    """Make this process the subreaper of its descendants while the block runs, then restore."""
    libc = ctypes.CDLL(None, use_errno=True)
    before = ctypes.c_int(0)
    libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(before), 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, before.value, 0, 0, 0)


def _child_main(function: Callable, args: tuple, sender: Connection) -> None:
    for ending in ENDING_SIGNALS:
        signal.signal(ending, signal.SIG_DFL)  # not the parent's handler: only the parent stops the run
    os.setpgrp()
    _report_model_errors(sender)
    try:
        message = ("ok", function(*args))
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent, which names it
        message = ("error", _describe(e))
    sender.send(message)
    sender.close()


def _report_model_errors(sender: Connection) -> None:
    """Make every Lava process model send its exception straight to the parent.

    Lava 0.10 hangs when a process model raises: the model tells its runtime service and waits for
    its ports to close, while the service waits for the replies of the other models, which wait
    for data from the failed one. Lava's own report never comes, so each phase of every
    PyLoihiProcessModel (the processes Lava forks from this child inherit the patch and `sender`)
    reports first; the parent then kills the run at once instead of waiting for the timeout.
    """
    model_class = _lava_api().PyLoihiProcessModel
    for phase in ("_spike", "_pre_mgmt", "_lrn", "_post_mgmt", "_host"):
        setattr(model_class, phase, _reporting(getattr(model_class, phase), sender))


def _reporting(phase: Callable, sender: Connection) -> Callable:
    @functools.wraps(phase)
    def run_phase(model):
        try:
            return phase(model)
        except Exception as e:
            sender.send(("error", f"{type(model).__name__} failed in step {model.time_step}: {_describe(e)}"))
            raise

    return run_phase


def _describe(e: BaseException) -> str:
    """The exception in one line: its type and message."""
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"


def _stop(child: multiprocessing.Process, grace_s: float) -> None:
    """Give the child `grace_s` to exit by itself, then kill its process group (Lava's processes),
    reap every member and release the shared memory they held.

    The group is killed with killpg until it has no member left: one signal reaches every member
    at once, including a process forked at that moment, which a list of processes taken before
    the kill would miss (under load Lava may still be forking its runtime when a timeout strikes).
    Killed members are reaped here, as their subreaper (see `_subreaper`).

    Lava's channels are Python SharedMemory segments in /dev/shm, which a killed run never
    unlinks. The group is stopped (SIGSTOP) first, so the segments its members map can be listed
    from /proc; after the kill they are unlinked, and unregistered from this process's resource
    tracker (started before the fork, so every member registered them there), which would otherwise
    warn about them when spikeport exits. Another program's segments are never touched.
    """
    child.join(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGSTOP)
    segments = _group_segments(child.pid)
    child.kill()
    child.join()
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            break  # no member left, not even a zombie
        _reap_group(child.pid)
        time.sleep(0.01)
    _release(segments)


def _group_segments(group: int) -> set[str]:
    """The SharedMemory segments (/dev/shm/psm_*) that members of process group `group` map."""
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[2]) != group:
                continue
            maps = Path(entry.path, "maps").read_text()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)
            path = Path(fields[5]) if len(fields) == 6 else None
            if path and path.parent == SHARED_MEMORY and path.name.startswith("psm_"):
                found.add(path.name)  # an unlinked one reads "psm_x (deleted)": not a name any more
    return found


def _release(segments: set[str]) -> None:
    """Unlink what is left of `segments`, and tell the resource tracker they are gone."""
    for name in sorted(segments):
        try:
            (SHARED_MEMORY / name).unlink()
        except OSError:
            continue  # unlinked by Lava itself (a run that ended cleanly)
        resource_tracker.unregister(f"/{name}", "shared_memory")


def _reap_group(group: int) -> None:
    """Collect the exit status of every dead member of `group` that is our child by now."""
    while True:
        try:
            pid, _ = os.waitpid(-group, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
