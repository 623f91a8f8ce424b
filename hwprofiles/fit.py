"""Does a network fit a chip? Every constraint is checked and every violation listed.

The layers are those of the graph as deployed (runtime/measure.py folds average pools into the next
layer first), so a pool is no layer and the layer after it reads spikes.

A check whose limit the profile does not know (null) cannot fail; its name goes to `unchecked`
instead, so "fits" never hides a limit nobody looked up: `verdict` is "yes" only when every
constraint that applies to the network was checked, else "yes (N of M constraints checked)". A
limit whose source says "not applicable" is no constraint of that chip. Read-out layers
(neuron_model None) skip the neuron-model and leak checks: they only integrate, they do not spike.

Packing (cores needed), by the profile's memory model (memory.py):
- `synapse_bits`: layers are placed in order. A layer goes into the last, partly filled core if
  its neurons and synapse bits both fit what is left there; otherwise it gets
  max(ceil(neurons / neurons_per_core), ceil(bits / synapse_memory_per_core_bits)) fresh cores,
  split evenly. One neuron's synapses (fan_in x bits) must fit one core.
- `speck`: one layer per core, and each layer must get a distinct core whose neuron and kernel
  memory both hold it (a bipartite matching over the chip's 9 unequal cores, found as sinabs finds
  it, so that `placement` names the cores sinabs would use).
- `loihi2_tiles`: as the Loihi 2 compiler maps lava-dl networks (the per-core distribution it prints
  in lava-dl's PilotNet benchmark notebooks): every layer gets cores of its own; a layer with a
  (C, H, W) output (convolutions, an input layer) is cut along W into tiles of w columns x all H x
  all C, w the largest power of two <= W whose tile holds at most neurons_per_core neurons; a dense
  layer puts n = floor(synapse bits per core / (inputs x weight bits)) neurons in a core (at most
  neurons_per_core), every input stored at the chip's weight width whatever the layer's own
  width and however many weights are zero: that is what the 12 cores the compiler gave
  PilotNet's 2560 x 100 layer require. Cores per layer are listed in `layer_cores`.
Chips = ceil(cores / cores_per_chip), checked against chips_max.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field

from spikeport.hwprofiles import memory
from spikeport.activity import Layer, Network
from spikeport.hwprofiles.schema import Profile

NETWORK = "(network)"  # the `layer` of a violation that concerns the whole network


@dataclass
class Violation:
    layer: str
    constraint: str
    value: object
    limit: object


@dataclass
class Fit:
    fits: bool
    violations: list[Violation]
    unchecked: list[str]  # constraints whose limit is unknown for this profile
    cores: int | None
    chips: int | None
    constraints: int = 0  # constraints that apply to this network, checked or not
    layer_cores: dict[str, int] | None = None  # cores per layer, where the memory model assigns them
    placement: dict[str, int] | None = None  # the core index of each layer (Speck: as sinabs places them)

    @property
    def verdict(self) -> str:
        if not self.fits:
            return "no"
        if not self.unchecked:
            return "yes"
        return f"yes ({self.constraints - len(self.unchecked)} of {self.constraints} constraints checked)"

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


@dataclass
class _Checker:
    profile: Profile
    violations: list[Violation] = field(default_factory=list)
    unchecked: set[str] = field(default_factory=set)
    considered: set[str] = field(default_factory=set)
    placement: dict[str, int] | None = None

    def limit(self, section: str, name: str, constraint: str):
        """The profile's limit, or None after noting the constraint as unchecked; a limit whose
        source says "not applicable" is no constraint of that chip (neither checked nor unchecked)."""
        figure = getattr(getattr(self.profile, section), name)
        value = figure.value
        if value is None and figure.source.startswith("not applicable"):
            return None
        self.considered.add(constraint)
        if value is None:
            self.unchecked.add(constraint)
        return value

    def at_most(self, layer: str, constraint: str, value, limit) -> None:
        if limit is not None and value > limit:
            self.violations.append(Violation(layer, constraint, value, limit))


def check_fit(network: Network, profile: Profile) -> Fit:
    if profile.kind == "baseline":
        return Fit(fits=True, violations=[], unchecked=[], cores=None, chips=None)
    c = _Checker(profile)
    for index, layer in enumerate(network.layers):
        _check_layer(c, layer, first=index == 0)
    _check_network(c, network)
    pack = {"speck": _pack_speck, "loihi2_tiles": _pack_tiles}.get(profile.capacity.memory_model.value, _pack_bits)
    cores = pack(c, network.layers)
    layer_cores = None
    if isinstance(cores, dict):
        layer_cores, cores = cores, sum(cores.values())
    chips = None
    per_chip = c.limit("capacity", "cores_per_chip", "chips")
    if cores is not None and per_chip is not None:
        chips = math.ceil(cores / per_chip)
        c.at_most(NETWORK, "chips", chips, c.limit("capacity", "chips_max", "chips"))
    c.considered |= c.unchecked
    return Fit(not c.violations, c.violations, sorted(c.unchecked), cores, chips, len(c.considered), layer_cores, c.placement)


def _check_layer(c: _Checker, layer: Layer, first: bool) -> None:
    """The first layer's weights may have a precision of their own (Akida: 8 bits there, 4 elsewhere);
    a profile without that figure holds the first layer to the same width as the others."""
    name = layer.name
    types = c.limit("support", "layer_types", "layer_type")
    if types is not None and layer.kind not in types:
        c.violations.append(Violation(name, "layer_type", layer.kind, types))
    if layer.neuron_model is not None:
        models = c.limit("support", "neuron_models", "neuron_model")
        if models is not None and layer.neuron_model not in models:
            c.violations.append(Violation(name, "neuron_model", layer.neuron_model, models))
        if layer.leak and c.limit("support", "leak", "leak") is False:
            c.violations.append(Violation(name, "leak", True, False))
    if layer.weight_bits is not None:  # float weights are quantized to the chip's precision on deployment
        own = c.profile.precision.input_layer_weight_bits_max.value if first else None
        if own is not None:
            c.at_most(name, "input_layer_weight_bits", layer.weight_bits, own)
        else:
            c.at_most(name, "weight_bits", layer.weight_bits, c.limit("precision", "weight_bits_max", "weight_bits"))
    if layer.deployed_input_kind == "graded" and c.limit("precision", "graded_payload_bits", "graded_input") == 0:
        c.violations.append(Violation(name, "graded_input", "graded", "binary spikes"))
    c.at_most(name, "fan_in", layer.fan_in, c.limit("capacity", "fan_in_max", "fan_in"))
    c.at_most(name, "fan_out", layer.fan_out, c.limit("capacity", "fan_out_max", "fan_out"))
    c.at_most(name, "destinations", layer.destinations, c.limit("capacity", "destinations_max", "destinations"))
    if layer.kind == "conv":
        _check_conv(c, layer)
    else:
        size = math.prod(layer.input_shape)
        c.at_most(name, "dense_input_size", size, c.limit("capacity", "dense_input_size_max", "dense_input_size"))


def _check_conv(c: _Checker, layer: Layer) -> None:
    """Spatial limits compare (height, width) pairs: a violation when either side is too large."""
    name = layer.name
    pairs = [
        ("input_size", tuple(layer.input_shape[-2:]), "input_size_max"),
        ("output_size", tuple(layer.output_shape[-2:]), "output_size_max"),
        ("kernel_size", tuple(layer.kernel_size), "kernel_size_max"),
    ]
    for constraint, value, limit_name in pairs:
        limit = c.limit("capacity", limit_name, constraint)
        if limit is not None and any(v > m for v, m in zip(value, limit)):
            c.violations.append(Violation(name, constraint, list(value), list(limit)))
    padding_max = c.limit("capacity", "padding_max", "padding")
    if padding_max is not None and any(p > padding_max for p in layer.padding):
        c.violations.append(Violation(name, "padding", list(layer.padding), padding_max))
    channels_max = c.limit("capacity", "channels_max", "channels")
    c.at_most(name, "channels", max(layer.in_channels, layer.out_channels), channels_max)
    strides = c.limit("capacity", "strides", "stride")
    if strides is not None and any(s not in strides for s in layer.stride):
        c.violations.append(Violation(name, "stride", list(layer.stride), strides))


def _check_network(c: _Checker, network: Network) -> None:
    if network.layers:
        first, last = network.layers[0], network.layers[-1]
        inputs_max = c.limit("capacity", "network_inputs_max", "network_inputs")
        c.at_most(first.name, "network_inputs", math.prod(first.input_shape), inputs_max)
        c.at_most(last.name, "network_outputs", last.neurons, c.limit("capacity", "network_outputs_max", "network_outputs"))
        hidden = sum(layer.neurons for layer in network.layers[:-1])
        c.at_most(NETWORK, "hidden_neurons", hidden, c.limit("capacity", "hidden_neurons_max", "hidden_neurons"))
    layers_min = c.limit("capacity", "neuron_layers_min", "neuron_layers")
    if layers_min is not None and len(network.layers) < layers_min:
        c.violations.append(Violation(NETWORK, "neuron_layers", len(network.layers), f"at least {layers_min}"))
    if network.host and c.limit("support", "runs_host_partitions", "host_partition") is False:
        for part in network.host:
            c.violations.append(Violation(part.name, "host_partition", part.macs, "no host partition on chip"))


def _pack_bits(c: _Checker, layers: list[Layer]) -> int | None:
    per_core = c.limit("capacity", "neurons_per_core", "neurons_per_core")
    bits_per_core = c.limit("capacity", "synapse_memory_per_core_bits", "synapse_memory_per_core")
    if per_core is None and bits_per_core is None:
        c.unchecked.add("cores")
        return None
    weight_bits_max = c.profile.precision.weight_bits_max.value
    cores, free_neurons, free_bits = 0, 0.0, 0.0
    for layer in layers:
        bits = memory.synapse_bits(layer, weight_bits_max)
        per_neuron = layer.fan_in * memory.stored_weight_bits(layer, weight_bits_max)
        c.at_most(layer.name, "synapse_memory_per_core", per_neuron, bits_per_core)
        if cores and layer.neurons <= free_neurons and bits <= free_bits:
            free_neurons -= layer.neurons
            free_bits -= bits
            continue
        need = max(
            math.ceil(layer.neurons / per_core) if per_core else 1,
            math.ceil(bits / bits_per_core) if bits_per_core else 1,
        )
        cores += need
        free_neurons = need * per_core - layer.neurons if per_core else math.inf
        free_bits = need * bits_per_core - bits if bits_per_core else math.inf
    return cores


def _pack_tiles(c: _Checker, layers: list[Layer]) -> dict[str, int] | None:
    per_core = c.limit("capacity", "neurons_per_core", "neurons_per_core")
    bits_per_core = c.limit("capacity", "synapse_memory_per_core_bits", "synapse_memory_per_core")
    if per_core is None or bits_per_core is None:
        c.unchecked.add("cores")
        return None
    weight_bits_max = c.profile.precision.weight_bits_max.value
    cores = {}
    for layer in layers:
        if len(layer.output_shape) == 3:
            channels, height, width = layer.output_shape
            column = channels * height
            if column > per_core:  # not even one column fits a core: split by neurons alone
                cores[layer.name] = math.ceil(layer.neurons / per_core)
                continue
            tile = 1 << int(math.log2(width))
            while tile > 1 and tile * column > per_core:
                tile //= 2
            cores[layer.name] = math.ceil(width / tile)
        else:
            per_neuron = math.prod(layer.input_shape) * (weight_bits_max or 8)  # dense rows at the chip's width
            c.at_most(layer.name, "synapse_memory_per_core", per_neuron, bits_per_core)
            fit = min(per_core, bits_per_core // per_neuron) if per_neuron else per_core
            cores[layer.name] = math.ceil(layer.neurons / max(fit, 1))
    return cores


def _pack_speck(c: _Checker, layers: list[Layer]) -> int:
    neuron_mem = c.limit("capacity", "neuron_memory_per_core_entries", "neuron_memory_per_core")
    kernel_mem = c.limit("capacity", "kernel_memory_per_core_entries", "kernel_memory_per_core")
    if neuron_mem is None or kernel_mem is None:
        return len(layers)
    needs = [(memory.speck_neuron_entries(layer), memory.speck_kernel_entries(layer)) for layer in layers]
    for layer, (neurons, kernel) in zip(layers, needs):
        c.at_most(layer.name, "neuron_memory_per_core", neurons, max(neuron_mem))
        c.at_most(layer.name, "kernel_memory_per_core", kernel, max(kernel_mem))
    if len(layers) <= len(neuron_mem):
        fits_core = [
            [i for i in range(len(neuron_mem)) if n <= neuron_mem[i] and k <= kernel_mem[i]] for n, k in needs
        ]
        cores = sinabs_mapping(fits_core, len(neuron_mem))
        c.placement = {layer.name: core for layer, core in zip(layers, cores) if core is not None}
        for layer, need, candidates, core in zip(layers, needs, fits_core, cores):
            if core is None and candidates:  # a layer that fits no core at all is already reported above
                c.violations.append(Violation(layer.name, "core_assignment", list(need), "no free core holds it"))
    return len(layers)


def sinabs_mapping(candidates: list[list[int]], n_cores: int) -> list[int | None]:
    """Each layer's core, as sinabs assigns them (backend/dynapcnn/mapping.py `get_valid_mapping`):
    a maximum matching found by Edmonds-Karp, breadth first over the flow graph source -> layers ->
    cores -> sink, layers and cores in index order. Written here because sinabs 3.1.3 requires
    nir <= 1.0.4 and cannot be installed beside this project's nir 1.0.8; the same search order
    gives the same cores, which tests/test_hwprofiles_mapping.py checks on the NIR paper's CNN.
    None: the layer got no core."""
    core_of: list[int | None] = [None] * len(candidates)
    owner: list[int | None] = [None] * n_cores
    while True:
        pred: dict[tuple[str, int], tuple[str, int] | None] = {}
        queue = deque()
        for layer, core in enumerate(core_of):
            if core is None:  # the source's edge to the layer still has capacity
                pred["layer", layer] = None
                queue.append(("layer", layer))
        free = None
        while queue:
            kind, index = queue.popleft()
            if kind == "layer":
                for core in candidates[index]:
                    if ("core", core) not in pred and core_of[index] != core:
                        pred["core", core] = ("layer", index)
                        queue.append(("core", core))
                continue
            held_by = owner[index]
            if held_by is not None and ("layer", held_by) not in pred:  # the residual edge back to its layer
                pred["layer", held_by] = ("core", index)
                queue.append(("layer", held_by))
            if held_by is None and free is None:
                free = index
        if free is None:
            return core_of
        node = ("core", free)
        while node is not None:  # augment: each layer on the path moves to the core after it
            layer = pred[node][1]
            core_of[layer], owner[node[1]] = node[1], layer
            node = pred["layer", layer]
