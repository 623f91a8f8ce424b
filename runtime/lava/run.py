"""Lava as a backend: a NIR graph, an export's partitions, or a netx file run in Lava's CPU
simulator, in the Lava worker's own environment.

    run_lava(graph, inputs [N, T, *input_shape], mode="float") -> SimResult
    run_lava(graph, inputs, mode="loihi", loihi=read_loihi_json("loihi.json")) -> SimResult
    run_lava_manifest(manifest, export_dir, {partition: graph}, {input: [N, T, *shape]}) -> SimResult
    run_netx_fixed(path, values [N, window, *shape], window, drive="bias" | "a_in" | "inp") -> (outputs per layer, last voltage)
    run(deployment, inputs, mode="float" | "loihi", device="cpu", record=False) -> SimResult   (the backend)

The core plans the network (plan.py), the worker builds and runs it (worker/network.py) in a
process group of its own (sandbox.py), and this module turns the worker's recordings back into
what the graph computed, aligned to the input timesteps. Nothing here imports Lava.
"""

from __future__ import annotations

import dataclasses
import os
import nir
import numpy as np

from spikeport.deployment import Deployment, read_nir
from spikeport.errors import UserError
from spikeport.export.loihi import LoihiModel, host_current, input_bias
from spikeport.export.lower import deploy, fold_avgpool
from spikeport.export.manifest import Manifest
from spikeport.readers import check_hdf5, check_onnx_external
from spikeport.runtime.lava.plan import Host, Plan, aligned, plan_network, plan_output, spike_counts
from spikeport.runtime.lava.sandbox import run_worker
from spikeport.runtime.result import SimResult

MODES = ("float", "loihi")  # Lava's floating_pt models; its fixed_pt ones with loihi.json's integers

def run_lava(
    graph: nir.NIRGraph, inputs: np.ndarray, mode: str = "float", loihi: LoihiModel | None = None, timeout_s: float = 600
) -> SimResult:
    """Run `graph` on `inputs` [N, T, *input_shape] in Lava's Loihi2SimCfg and return what it computed,
    aligned to the input timesteps: `output` [N, T, *output_shape] (the read-out's logits per step in
    both modes, or the output layer's spikes), `delay` (the Lava steps of pipeline removed: the
    synaptic stages to the output), `spikes` (counts [N, T] per neuron layer) and `trains` (every
    neuron layer's spikes [N, T, *shape] but a read-out's).

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
    (recordings,) = _run_network([plan], {plan.input_name: drive}, timeout_s)
    n, t = inputs.shape[:2]
    output = plan_output(plan, recordings, n, t)
    if plan.fixed_pt and plan.readout:  # the read-out integrates: its increments are the logits (plan.py, "Fixed point")
        output = np.diff(output.astype(np.float64), axis=1, prepend=0.0) / (64 * plan.readout_scale)
    return SimResult(output, spike_counts(plan, recordings, n, t), plan.delay, trains=_trains(plan, recordings, n, t))


def _trains(plan: Plan, recorded: dict[str, np.ndarray], n: int, t: int) -> dict[str, np.ndarray]:
    """Every neuron layer's spikes [N, T, *shape] but a read-out's (its voltage is the output)."""
    return {neuron.name: aligned(recorded[neuron.name], neuron.depth, neuron.shape, n, t)
            for neuron in plan.neurons if not (plan.readout and neuron.name == plan.output)}


def run_lava_manifest(manifest: Manifest, export_dir: str | os.PathLike, graphs: dict[str, nir.NIRGraph], inputs: dict[str, np.ndarray],
                      timeout_s: float = 600, loihi: LoihiModel | None = None) -> SimResult:
    """Every partition of an export in one Lava run (floating_pt): each neuromorphic partition as
    in `run_lava`, each host partition as a HostPartition process (worker/host.py) running its ONNX file.

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
            try:
                plan = plan_network(graphs[p.name], loihi, depths={t.name: arrival[t.name] for t in p.inputs}, handoff=not final, partition=p.name)
            except UserError as e:  # the deployment names the partition Lava cannot run, and why
                raise UserError(f"partition {p.name}: {e}") from None
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
            stage = Host(p.name, path, {t.name: tuple(t.shape) for t in p.inputs}, {t.name: tuple(t.shape) for t in p.outputs},
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
    recordings = _run_network(stages, drives, timeout_s)
    n, t = next(iter(drives.values())).shape[:2]
    spikes, output = {}, None
    (model_output,) = (tensor.name for tensor in manifest.outputs)
    trains = {}
    for p, stage, recorded in zip(manifest.partitions, stages, recordings):
        if isinstance(stage, Plan):
            spikes.update({f"{p.name}.{layer}": counts for layer, counts in spike_counts(stage, recorded, n, t).items()})
            trains.update({f"{p.name}.{layer}": train for layer, train in _trains(stage, recorded, n, t).items()})
            if model_output in stage.outputs:
                output = plan_output(stage, recorded, n, t)
                if stage.fixed_pt and stage.readout:
                    output = np.diff(output.astype(np.float64), axis=1, prepend=0.0) / (64 * stage.readout_scale)
        else:
            trains.update({tensor: aligned(recorded[tensor], stage.delay, shape, n, t) for tensor, shape in stage.outputs.items() if tensor != model_output})
        if not isinstance(stage, Plan) and model_output in stage.outputs:
            output = aligned(recorded[model_output], stage.delay, stage.outputs[model_output], n, t)
            if loihi is not None:  # float32 values sent bit for bit through the int32 port (worker/host.py)
                output = np.ascontiguousarray(output).astype(np.int32).view(np.float32).astype(np.float64)
    return SimResult(output, spikes, arrival[model_output], trains=trains)


def _first_layer_currents(manifest: Manifest, stages: list, graphs: dict[str, nir.NIRGraph], loihi: LoihiModel,
                          inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fixed point: what each RingBuffer sends, "<partition>.<layer>" for every first layer reading
    a model input: its current, computed on the host in its integer units (export.loihi.host_current)."""
    drives = {}
    for p, stage in zip(manifest.partitions, stages):
        if not isinstance(stage, Plan):
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


def run_netx_fixed(path: str | os.PathLike, values: np.ndarray, window: int, timeout_s: float = 600, *, drive: str = "bias",
                   input_shape: tuple[int, ...] | None = None, input_message_bits: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """A lava-dl netx file in Loihi2SimCfg fixed_pt: samples back to back, `window` steps each.

    `values` [N, window, *shape] drive the network per step, as `drive` says: "bias", the input
    layer's bias_mant (as bias_mant.set would); "a_in", a sigma-delta input layer's a_in through a
    RingBuffer (as lava-dl's PilotNet SDNN test drives it); "inp", the spikes into the first
    synapse of a file without an input layer through a RingBuffer (as lava-dl drives SLAYER's
    exports), netx given `input_shape` (C, H, W) where its first block is a conv and
    `input_message_bits` (> 0: graded values, else spikes), as netx.hdf5.Network takes them. Index k arrives
    at step k + 1. netx resets every LIF layer when a sample's first step reaches it
    (reset_interval = window; sigma-delta layers never reset). Returns every layer's output
    (spikes, or a sigma-delta layer's graded messages) [N, window, *shape] and the last layer's
    voltage (a sigma-delta one's sigma), in the (C, H, W) order of the file's shapes. Same process
    handling as `run_lava`.
    """
    if drive not in ("bias", "a_in", "inp"):
        raise UserError(f"drive: {drive!r}; choose bias, a_in or inp")
    check_hdf5(path, "netx HDF5")  # lava-dl's netx opens it with h5py: nothing outside the file
    values = np.asarray(values)
    if drive != "bias":
        values = {"port": drive, "values": values, "input_shape": None if input_shape is None else [int(d) for d in input_shape],
                  "input_message_bits": int(input_message_bits)}
    result = run_worker({"run": "netx", "path": os.path.abspath(path), "drive": values, "window": int(window)}, timeout_s)
    return [result[f"spikes/{i}"] for i in range(len(result) - 1)], result["voltage"]


def _run_network(stages: list[Plan | Host], drives: dict[str, np.ndarray], timeout_s: float) -> list[dict[str, np.ndarray]]:
    """Run `stages` in the worker (worker/network.py `simulate`), fed `drives` [N, T, *shape] by
    name; per stage, its recordings [steps, *lava_shape] by layer or tensor."""
    fixed = any(isinstance(s, Plan) and s.fixed_pt for s in stages)
    request = {"run": "network", "fixed_pt": fixed, "stages": [_stage_request(s) for s in stages], "drives": drives}
    recordings: list[dict[str, np.ndarray]] = [{} for _ in stages]
    for key, array in run_worker(request, timeout_s).items():
        stage, name = key.split("/", 1)
        recordings[int(stage)][name] = array
    return recordings


def _stage_request(stage: Plan | Host) -> dict:
    """A stage as the worker reads it: its fields, its kind, and what the worker would otherwise derive."""
    if isinstance(stage, Plan):
        return {"kind": "plan", **dataclasses.asdict(stage), "readout_layer": stage.output if stage.readout else None}
    return {"kind": "host", **dataclasses.asdict(stage), "delay": stage.delay}


# ----------------------------------------------------------------------------------------------- the backend

def run(deployment: Deployment, inputs: dict[str, np.ndarray], *, mode: str = "float", device="cpu", record: bool = False,
        timeout_s: float = 600) -> SimResult:
    """The Lava backend: the deployment in Loihi2SimCfg, floating_pt (mode "float") or fixed_pt
    with the export's loihi.json (mode "loihi"); a lava-dl .net file in fixed_pt through netx.

    An export of one neuromorphic partition (or a .nir file) runs as `run_lava`; one with host
    partitions, or in fixed point one that is not a plain chain, as `run_lava_manifest`. Lava
    records every neuron layer, so `trains` holds their spikes [N, T, *shape] ("partition.layer"),
    and what each neuromorphic partition reads from a host ("partition.tensor", float units).
    `device` is the one signature's: Lava's CPU simulator runs on the CPU."""
    if mode not in MODES:
        raise UserError(f"--mode {mode}: the lava backend runs {', '.join(MODES)}")
    if deployment.netx is not None:
        if mode != "loihi":
            raise UserError(f"{deployment.path}: a lava-dl .net file holds Loihi integers; it runs with --mode loihi")
        return _run_netx_file(deployment.netx, next(iter(inputs.values())), timeout_s)
    if deployment.manifest is None:  # a foreign file: --dt (or its own), checked as the reference runtime checks it
        from spikeport.runtime.reference import timestep

        if mode == "loihi":
            raise UserError(f"{deployment.path}: --mode loihi needs the Loihi integers of an export (spikeport export {deployment.path.name})")
        graph = deployment.graph
        graph = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata={**(graph.metadata or {}), "dt": timestep(graph, deployment.dt)}, type_check=False)
        (x,) = inputs.values()
        result = run_lava(graph, x, timeout_s=timeout_s)
        return _result(result, result.trains, record)
    manifest = deployment.manifest
    loihi = _loihi_json(deployment) if mode == "loihi" else None
    if len(manifest.partitions) > 1 or (loihi is not None and "netx" not in manifest.files):
        graphs = deployment.graphs()
        result = run_lava_manifest(manifest, deployment.export_dir, graphs, inputs, timeout_s, loihi=loihi)
        trains = {k: v for k, v in result.trains.items() if "." in k and k.split(".", 1)[0] in graphs}
        sent = {k: v for k, v in result.trains.items() if k not in trains}
        if loihi is None:
            trains.update({f"{p.name}.{t.name}": sent[t.name] for p in manifest.partitions if p.kind == "neuromorphic" for t in p.inputs if t.name in sent})
        else:
            from spikeport.runtime.lava.worker.payload import from_payload
            from spikeport.runtime.reference import host_inputs

            trains.update(host_inputs(deployment, loihi, sent, from_payload))
        return _result(result, trains, record)
    (partition,) = manifest.partitions
    if partition.kind != "neuromorphic" or partition.file is None:
        raise UserError(f"partition {partition.name}: --backend lava runs neuromorphic partitions from their .nir file; this one is {partition.kind}"
                        + ("" if partition.file else " with no file"))
    (x,) = inputs.values()
    graph = read_nir(deployment.export_dir / partition.file)
    try:
        plan_network(graph, loihi)  # what Lava cannot run is refused naming the partition, before the worker starts
    except UserError as e:
        raise UserError(f"partition {partition.name}: {e}") from None
    result = run_lava(graph, x, mode=mode, loihi=loihi, timeout_s=timeout_s)
    prefix = f"{partition.name}."
    named = lambda d: {f"{prefix}{k}": v for k, v in d.items()}  # noqa: E731
    return SimResult(result.output, named(result.spikes), result.delay, trains=named(result.trains) if record else None)


def _result(result: SimResult, trains: dict[str, np.ndarray], record: bool) -> SimResult:
    return SimResult(result.output, result.spikes, result.delay, trains=trains if record else None)


def _loihi_json(deployment: Deployment) -> LoihiModel:
    from spikeport.export.loihi import read_loihi_json

    if deployment.file("loihi") is None:
        raise UserError(f"{deployment.path}: --mode loihi needs an export with loihi.json (spikeport export RUN --quantize loihi)")
    return read_loihi_json(deployment.file("loihi"))


def _run_netx_file(network, x: np.ndarray, timeout_s: float) -> SimResult:
    """A lava-dl .net file as netx loads it, in fixed_pt, driven as the reference backend drives it
    (loihi_fixed.netx_drive: the input layer's bias, a sigma-delta input layer's a_in, or the
    spikes into the first synapse through "inp"), one window of T + K steps per sample; every
    block's outputs cut to the steps that carry the sample (block i from window step i on), so the
    result is the reference backend's, bit for bit (tests/test_netx_sdnn.py). Sigma-delta neurons
    never reset, so each sample of such a file runs from a fresh network, in a Lava run of its own."""
    from spikeport.runtime.loihi_fixed import _as_int_tensor, netx_drive
    from spikeport.runtime.reference import netx_result

    ((kind, values),) = netx_drive(network, x).items()
    t, k = x.shape[1], len(network.blocks) - 1
    options = {"drive": kind}
    if kind == "a_in":
        _as_int_tensor(values, "cpu", "a_in")  # refused as the emulator refuses it: Lava's RingBuffer sends integers
    if kind == "spikes":
        options = {"drive": "inp", "input_shape": network.input_shape, "input_message_bits": network.blocks[0].input_message_bits}
    fresh = any(block.neuron.sigma_delta for block in network.blocks)
    runs = [run_netx_fixed(network.path, values[i : i + 1] if fresh else values, t + k, timeout_s, **options) for i in range(len(values) if fresh else 1)]
    outputs = [np.concatenate([r[0][i] for r in runs]) for i in range(len(network.blocks))]
    voltage = np.concatenate([r[1] for r in runs])
    trains = {block.name: outputs[i][:, i : i + t] for i, block in enumerate(network.blocks) if block.neuron.du >= 0}
    return netx_result(network, trains, voltage[:, k : k + t] if network.blocks[-1].neuron.du < 0 else None)


def run_export_netx(deployment: Deployment, inputs: dict[str, np.ndarray], timeout_s: float = 600) -> SimResult:
    """The export's model.net loaded unchanged by lava-dl netx in fixed_pt: what a lava-dl user gets
    from the file, equal to `run(deployment, inputs, mode="loihi")` on spikeport's own Lava graph
    (tests/test_runtime_lava.py) and to the reference backend's loihi mode."""
    from spikeport.runtime.reference import fixed_point_chain

    fp = fixed_point_chain(deployment, inputs)
    spikes, voltage = run_netx_fixed(deployment.file("netx"), fp.window_bias(), fp.window, timeout_s)
    readout = len(fp.layers) - 1
    return fp.result([np.asarray(r)[:, i : i + fp.timesteps] for i, r in enumerate(spikes)], np.asarray(voltage)[:, readout : readout + fp.timesteps], True)
