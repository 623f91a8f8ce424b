"""Build a Lava network from a plan and run it, in the worker (runtime/lava/plan.py says what a
plan is and why it looks as it does: layouts, depths, resets, the read-out, fixed point).

    simulate(stages, drives, fixed_pt) -> per stage, its recordings [steps, *lava_shape]
    simulate_netx(path, drive, window) -> every layer's output and the last layer's voltage

A stage is a dict: {"kind": "plan", ...} with the fields of plan.Plan, or {"kind": "host", ...}
with those of plan.Host. Everything here is Lava's own processes, wired as the plan says; nothing
is computed but the Lava run itself.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.dense.process import DelayDense, Dense
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from lava.proc.lif.process import LIFReset
from lava.proc.monitor.process import Monitor

from host import HostPartition
from layout import lava_order, lava_shape

GRADED_MESSAGE_BITS = 24  # Lava's widest graded payload; only the float models read it as "not binary"


def simulate(stages: list[dict], drives: dict[str, np.ndarray], fixed_pt: bool) -> list[dict[str, np.ndarray]]:
    """Build the Lava network of `stages` (in order: each reads tensors the model's inputs or
    earlier stages give), send each of `drives` [N, T, *shape] through a RingBuffer of its own (all
    samples back to back), and return per stage its recordings [steps, *lava_shape]: each neuron
    layer's spikes or the read-out's voltage, a host partition's outputs."""
    n, t = next(iter(drives.values())).shape[:2]
    steps = n * t + max(max([s["delay"], *(neuron["depth"] for neuron in s["neurons"])]) if s["kind"] == "plan" else s["delay"] for s in stages)
    ports, sources, probes = {}, [], []
    for name, drive in drives.items():
        sequence = np.zeros((*lava_shape(drive.shape[2:]), steps), dtype=np.int32 if fixed_pt else np.float64)
        sequence[..., : n * t] = np.moveaxis(np.stack([lava_order(x) for x in drive.reshape(n * t, *drive.shape[2:])]), 0, -1)
        sources.append(Source(data=sequence))
        ports[name] = sources[-1].s_out
    for stage in stages:
        if stage["kind"] == "plan":
            outputs, stage_probes = _build_plan(stage, ports, t, steps, fixed_pt)
        else:
            host = HostPartition(onnx=stage["onnx"], inputs=stage["inputs"], outputs=stage["outputs"], timesteps=t, buffer=stage["buffer"],
                                 offset=stage["offset"], samples=n, biases=stage["biases"], payloads=stage["payloads"] if fixed_pt else None,
                                 name=stage["name"])
            for tensor, port in zip(stage["inputs"], host.x_in):
                ports[tensor].connect(port)
            outputs = dict(zip(stage["outputs"], host.y_out))
            stage_probes = {tensor: Sink(shape=port.shape, buffer=steps) for tensor, port in outputs.items()}
            for tensor, port in outputs.items():
                port.connect(stage_probes[tensor].a_in)
        ports.update(outputs)
        probes.append(stage_probes)
    try:  # any process runs and stops the whole connected network
        sources[0].run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt" if fixed_pt else "floating_pt"))
        return [
            {name: (probe.get_data()[name]["v"] if isinstance(probe, Monitor) else np.moveaxis(probe.data.get(), -1, 0)) for name, probe in stage.items()}
            for stage in probes
        ]
    finally:
        sources[0].stop()


def _build_plan(plan: dict, tensors: dict, t: int, steps: int, fixed_pt: bool) -> tuple[dict, dict]:
    """The Lava processes of `plan`, reading its inputs from the ports in `tensors` (by name);
    returns its output ports by output name (a neuron layer's spikes, or in a handoff a synaptic
    layer's current; a read-out has none) and the probe of every neuron layer: a RingBuffer sink on
    its spikes, or a Monitor on the read-out's voltage."""
    ports = {name: tensors[name] for name in plan["inputs"] if name in tensors}  # fixed point: a first layer may have its own RingBuffer
    currents = dict(ports)  # loihi mode: the first LIF reads the input directly
    neurons, probes = {}, {}
    for neuron in plan["neurons"]:
        name = neuron["name"]
        neurons[name] = lif = LIFReset(
            shape=lava_shape(neuron["shape"]), du=neuron["du"], dv=neuron["dv"], vth=neuron["vth"], bias_mant=neuron["bias"],
            bias_exp=neuron["bias_exp"], reset_interval=t, reset_offset=(neuron["depth"] + 1) % t, name=name,
        )
        ports[name] = lif.s_out
        if name == plan["readout_layer"]:
            probes[name] = monitor = Monitor()
            monitor.probe(lif.v, steps)
        else:
            probes[name] = sink = Sink(shape=lif.s_out.shape, buffer=steps)
            lif.s_out.connect(sink.a_in)
    for synapse in plan["synapses"]:
        name = synapse["name"]
        if synapse["host"]:  # its own RingBuffer (a run of partitions), or the input's (one first layer)
            key = f"{plan['partition']}.{name}"
            currents[name] = ports[name] = tensors[key] if key in tensors else ports[synapse["source"]]
            continue
        bits = GRADED_MESSAGE_BITS if synapse["graded"] else 0
        weight = synapse["weight"]
        if synapse["delay"]:
            process = DelayDense(weights=weight, delays=np.full(weight.shape, synapse["delay"]), weight_exp=synapse["weight_exp"],
                                 num_message_bits=bits, name=name)
        elif synapse["conv"] is None:
            process = Dense(weights=weight, weight_exp=synapse["weight_exp"], num_message_bits=bits, name=name)
        else:
            conv = {key: tuple(value) if isinstance(value, list) else value for key, value in synapse["conv"].items()}
            process = Conv(weight=weight, num_message_bits=bits, name=name, **conv)
        port = ports[synapse["source"]]
        (port.flatten() if synapse["conv"] is None and len(port.shape) > 1 else port).connect(process.s_in)
        currents[name] = ports[name] = process.a_out
    for neuron in plan["neurons"]:
        a_in = neurons[neuron["name"]].a_in
        for name in neuron["synapses"]:
            current = currents[name]
            (current if current.shape == a_in.shape else current.reshape(a_in.shape)).connect(a_in)
    outputs = {} if plan["readout_layer"] else {name: ports[layer] for name, layer in plan["outputs"].items()}
    return outputs, probes


def simulate_netx(path: str, drive, window: int) -> tuple[list[np.ndarray], np.ndarray]:
    """A lava-dl netx file in Loihi2SimCfg fixed_pt, samples back to back, `window` steps each
    (one Lava step per run call, so a bias can change every step; netx resets every LIF layer when
    a sample's first step reaches it, reset_interval = window; sigma-delta layers never reset).

    `drive` is the input layer's bias [N, window, C, H, W] per step (as bias_mant.set would), or
    {"port": "a_in" | "inp", "values": [N, window, *shape], "input_shape": (C, H, W) or None,
    "input_message_bits": netx's (0: spikes)}: what
    a RingBuffer source sends, index k at step k + 1, into the input layer's `neuron.a_in` (a
    sigma-delta input layer, as lava-dl's PilotNet SDNN test drives it) or into `net.inp` (a file
    with no input layer, as lava-dl drives SLAYER's exports; netx is given its input_shape).
    Returns every layer's output (spikes, or graded messages) and the last layer's voltage (a
    sigma-delta one's sigma), [N, window, *shape] each, in the (C, H, W) order of the file's shapes."""
    from lava.lib.dl.netx import hdf5

    port = "bias" if isinstance(drive, np.ndarray) else drive["port"]
    values = drive if port == "bias" else drive["values"]
    input_shape = None if port == "bias" else drive.get("input_shape")
    n = values.shape[0]
    steps = n * window
    options = {} if input_shape is None else {"input_shape": lava_shape(tuple(input_shape))}
    if port != "bias" and drive.get("input_message_bits"):
        options["input_message_bits"] = int(drive["input_message_bits"])
    net = hdf5.Network(net_config=path, reset_interval=window, **options)
    sinks = [Sink(shape=layer.out.shape, buffer=steps) for layer in net.layers]
    for layer, sink in zip(net.layers, sinks):
        layer.out.connect(sink.a_in)
    if port == "bias":
        net.in_layer.neuron.bias_mant.init = lava_order(values[0, 0])
    else:
        frames = values.reshape(steps, *values.shape[2:])
        source = Source(data=np.moveaxis(np.stack([lava_order(x) for x in frames]), 0, -1).astype(np.int32))
        source.s_out.connect(net.in_layer.neuron.a_in if port == "a_in" else net.inp)
    neuron = net.out_layer.neuron
    state = neuron.v if hasattr(neuron, "v") else neuron.sigma
    voltage = []
    try:
        for k in range(steps):
            if k and port == "bias":
                net.in_layer.neuron.bias_mant.set(lava_order(values[k // window, k % window]))
            net.run(condition=RunSteps(num_steps=1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            voltage.append(lava_order(state.get()))
        spikes = [np.moveaxis(sink.data.get(), -1, 0) for sink in sinks]  # [steps, *lava_shape]
    finally:
        net.stop()
    per_sample = lambda a: a.reshape(n, window, *a.shape[1:])  # noqa: E731
    return [per_sample(np.stack([lava_order(frame) for frame in s])) for s in spikes], per_sample(np.stack(voltage))
