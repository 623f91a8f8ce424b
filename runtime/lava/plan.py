"""The Lava network that runs a NIR graph (one neuromorphic partition, as exported to model.nir),
or all the neuromorphic and host partitions of an export: the plan, as plain data, which the core
checks and the worker (worker/network.py) builds in Lava's CPU simulator and runs.

    plan_network(graph, loihi=None, depths=None, handoff=False, partition="") -> Plan

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
  the host processes exchange loihi.json's payloads (worker/host.py). runtime/loihi_fixed.py
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
branches); each host partition is a `worker/host.py` HostPartition process with an InPort per input
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
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import nir
import numpy as np

from spikeport.errors import UserError
from spikeport.export.loihi import BIAS_EXP, IDENTITY, LoihiModel, chain_layers, integers, neuron_bias
from spikeport.export.lower import UNIT_GAIN, deploy, topological_order
from spikeport.export.neuron_constants import neuron_constants
from spikeport.export.nir_graph import check_resets_to_zero
from spikeport.runtime.lava.worker.layout import lava_order, lava_shape

MAX_DELAYED_WEIGHTS = 2**22  # a convolution delayed as a DelayDense becomes a dense matrix of at most this many weights
_SYNAPTIC = (nir.Conv2d, nir.Affine, nir.Linear)
_NEURONS = (nir.LIF, nir.IF)


@dataclass(frozen=True)
class Synapse:
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
class Neuron:
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
    bias_exp: int = 0  # fixed point: export/loihi.py's BIAS_EXP (the bias is bias_mant << bias_exp)


@dataclass(frozen=True)
class Plan:
    """The Lava network, as plain data, so it is checked here and travels to the worker as a file."""

    inputs: dict[str, tuple[int, ...]]  # Input node -> its shape (NIR's order)
    synapses: list[Synapse]
    neurons: list[Neuron]
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
class Host:
    """A host partition in a Lava run (worker/host.py): its ONNX file, its boundary tensors
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


def plan_network(graph: nir.NIRGraph, loihi: LoihiModel | None = None, depths: dict[str, int] | None = None, handoff: bool = False,
                 partition: str = "") -> Plan:
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
    plan = Plan(
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


def _fixed_point(plan: Plan, graph: nir.NIRGraph, layers: list) -> Plan:
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
            bias = lava_order(_spread(bias_mant, graph.nodes[first.synapse], neuron.shape))
        elif first.on_host:  # the host's current includes the layer's bias
            bias = np.zeros_like(neuron.bias, dtype=np.int64)
        else:
            bias = lava_order(neuron_bias(graph, feeding))
        fixed_neurons.append(dataclasses.replace(neuron, bias=bias, du=first.du, dv=first.dv, vth=first.vth, bias_exp=BIAS_EXP))
    readout = by_neuron[plan.output] if plan.readout else None
    return dataclasses.replace(plan, synapses=fixed_synapses, neurons=fixed_neurons, fixed_pt=True,
                               readout_scale=readout[0].scale if readout else 1.0)


class _Builder:
    """Walks the graph in topological order, turning each node into a Synapse or Neuron.

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
        self.synapses: dict[str, Synapse] = {}
        self.neurons: dict[str, Neuron] = {}

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

    def _synapse(self, name: str, node: nir.NIRNode) -> Synapse:
        (read,) = self.sources[name]
        source = self.origin[read]
        if source not in self.neurons and source not in self.inputs:
            raise UserError(f"{name} ({type(node).__name__}): reads {read} ({type(self.nodes[read]).__name__}); "
                            "a synaptic layer must read an input or a neuron layer")
        graded = source not in self.neurons
        source_shape = self.shapes[source]
        if name in self.host:  # fixed point: computed on the host, its current arrives with the input (no stage)
            return Synapse(name, source, np.zeros((1, 1)), graded, self.depth[source], host=True)
        weight = np.asarray(node.weight, dtype=np.float64)
        depth = self.depth[source] + 1
        if isinstance(node, nir.Conv2d):
            if len(source_shape) != 3 or read != source:
                raise UserError(f"{name} (Conv2d): reads {read} of shape {self.shapes[read]}; a convolution needs a (C, H, W) map")
            if isinstance(node.padding, str):
                raise UserError(f"{name} (Conv2d): padding {node.padding!r}; give the padding in pixels")
            conv = {
                "input_shape": lava_shape(source_shape),
                "stride": _xy(node.stride),
                "padding": _xy(node.padding),
                "dilation": _xy(node.dilation),
                "groups": int(node.groups),
            }
            return Synapse(name, source, _lava_weight(weight, True, source_shape), graded, depth, conv)
        return Synapse(name, source, _lava_weight(weight, False, source_shape), graded, depth)

    def _neuron(self, name: str, node: nir.NIRNode) -> Neuron:
        shape = self.shapes[name]
        feeding = [self._shortcut(read, name) if self.origin[read] in self.neurons or self.origin[read] in self.inputs else read
                   for read in self.sources[name]]
        if not feeding or any(s not in self.synapses for s in feeding):
            raise UserError(f"{name} ({type(node).__name__}): reads {self.sources[name]}; a neuron layer reads synaptic layers (Conv2d, Affine, "
                            "Linear), and inputs or neuron layers of its own shape")
        depth = max(self.synapses[s].depth for s in feeding)
        for s in feeding:
            self._delay(s, depth - self.synapses[s].depth)
        constants = neuron_constants(node, self._dt(name), name)  # the step the reference runtime takes, decoded once
        threshold = _uniform(name, "v_threshold", constants.v_threshold)
        if np.any(constants.v_reset != 0):
            raise UserError(f"{name} ({type(node).__name__}): v_reset must be 0 (Lava resets the voltage to 0)")
        if np.any(constants.bias != 0):
            raise UserError(f"{name} (LIF): v_leak must be 0 (Lava's LIF decays towards 0)")
        dv = _uniform(name, "tau", constants.leak)  # Lava's v (1 - dv) is v * beta
        gain = _uniform(name, "the input gain dt*r/tau", constants.gain)
        bias = sum(_spread(getattr(self.nodes.get(s), "bias", 0.0), self.nodes.get(s), shape) for s in feeding)
        if abs(gain - 1) > UNIT_GAIN:  # Lava's LIF adds its input unscaled; `deploy` folded every gain it could (export/lower.py unit_gains)
            raise UserError(f"{name} ({type(node).__name__}): input gain dt*r/tau = {gain:.6g}, which cannot be folded into a synaptic layer of "
                            "its own (it reads an input or a neuron directly, or shares its synaptic layer); Lava's LIF takes gain 1")
        return Neuron(name, shape, feeding, lava_order(bias), dv, threshold, depth)

    def _shortcut(self, read: str, neuron: str) -> str:
        """An identity shortcut (an input or a neuron layer added straight into `neuron`) as an
        identity Dense, which `_delay` lines up with the deeper paths into the same neuron."""
        source = self.origin[read]
        if self.shapes[source] != self.shapes[neuron]:
            raise UserError(f"{neuron}: reads {read} (from {source} of shape {self.shapes[source]}) directly; "
                            f"an identity shortcut needs the neuron's shape {self.shapes[neuron]}")
        name = f"{source}_to_{neuron}"
        size = int(np.prod(self.shapes[neuron]))
        self.synapses[name] = Synapse(name, source, np.eye(size), source not in self.neurons, self.depth[source] + 1)
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
        self.neurons[name] = Neuron(name, shape, [name], lava_order(bias), 1.0, np.inf, self.depth[name])

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


def plan_output(plan: Plan, recordings: dict[str, np.ndarray], n: int, t: int) -> np.ndarray:
    """The output layer's recording (spikes, or the read-out's voltage) as [N, T, *shape]."""
    output = next(neuron for neuron in plan.neurons if neuron.name == plan.output)
    return aligned(recordings[output.name], output.depth, output.shape, n, t)


def aligned(recording: np.ndarray, depth: int, shape: tuple[int, ...], n: int, t: int) -> np.ndarray:
    """[steps, *lava_shape] recorded from Lava step 1 on by a layer `depth` steps behind the input
    -> [N, T, *shape] (NIR's order), input timestep by input timestep."""
    steps = recording[depth : depth + n * t]
    if steps.ndim == 4:
        steps = steps.transpose(0, 3, 2, 1)
    return steps.reshape(n, t, *shape)


def spike_counts(plan: Plan, recordings: dict[str, np.ndarray], n: int, t: int) -> dict[str, np.ndarray]:
    """Spike counts [N, T] of every spiking layer of `plan` (not its read-out)."""
    return {
        neuron.name: aligned(recordings[neuron.name], neuron.depth, neuron.shape, n, t).reshape(n, t, -1).sum(axis=2)
        for neuron in plan.neurons
        if not (plan.readout and neuron.name == plan.output)
    }
