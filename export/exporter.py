"""`spikeport export RUN_DIR`: a trained run folder -> RUN_DIR/export/ (docs/export.md); `spikeport
export FILE.nir`: a NIR file another tool wrote -> OUT/export/, the same files but ONNX
(`export_nir_file`).

    manifest.json   partitions, their files and boundary tensors, T, dt, inputs and outputs
    model.nir       the neuromorphic partition (or <partition>.nir each, when there are several);
                    its Input nodes are named after the manifest tensors they receive, its Output
                    nodes `output` (one output) or `output_<tensor>` (several)
    deployed.nir    what the chip runs (or deployed-<partition>.nir each): the partition lowered for a
                    neuromorphic core (export/lower.py `deploy`: pools folded, synapses composed), written
                    once so that the runtimes, the Loihi files and the report read it instead of lowering
                    again; absent for a partition no core can run as it is (the lowering's reason is the
                    report's `lowering`)
    host.onnx       the host partition, when there is one (or <partition>.onnx each)
    model.onnx      the whole model with T unrolled, the reference for ONNX Runtime
    loihi.json      Loihi fixed-point parameters per layer and their quantization error (--quantize loihi)
    model.net       the lava-dl netx HDF5 network (format lava; plain chains only)

ONNX inputs and outputs carry the manifest's tensor names.

The folder is built under a temporary name inside RUN_DIR and swapped into place when complete
(spikeport.io.replacing_folder), so a failed or killed export leaves the previous export as it
was; an export/ folder spikeport did not write, or one holding anything else, is refused.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from spikeport.console import console
from spikeport.errors import UserError
from spikeport.io import check_replaceable, replacing_folder
from spikeport.export import manifest as mf
from spikeport.export.loihi import Calibration, PartitionSpec, chain_layers, quantize_partitions, write_loihi_json
from spikeport.export.loihi import quantize as quantize_loihi
from spikeport.export.lower import deploy
from spikeport.export.netx import write_netx
from spikeport.export.nir_graph import DEFAULT_DT, check_resets_to_zero, to_nir, write_nir
from spikeport.export.onnx import export_onnx_graph
from spikeport.export.partition import HOST, NEUROMORPHIC, Boundary, Partitioned, buffered_timesteps, partition
from spikeport.train import datasets
from spikeport.train.checkpoint import checkpoint_config, load_checkpoint, load_weights
from spikeport.train.models import build_model
from spikeport.train.neuron import LIF
from spikeport.train.taaf import AudioVisualSNN, DeployedAV

FORMATS = ("nir", "onnx", "lava")
QUANTIZATIONS = ("loihi", "none")
CALIBRATION_SAMPLES = 128  # training samples (spread over the set) the fixed-point ranges are calibrated on: the float model's values


def _tensor(b: Boundary) -> mf.Tensor:
    return mf.Tensor(name=b.name, shape=list(b.shape), kind=b.kind)


def _example(b: Boundary, timesteps: int) -> torch.Tensor:
    """An input for tracing a partition: random spikes or random graded values, batch 2."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(timesteps, 2, *b.shape, generator=generator)
    return (x < 0.3).float() if b.kind == "spike" else x * 2


def _file_names(parts: Partitioned, kind: str, single: str, extension: str) -> dict[str, str]:
    """One partition of a kind -> the fixed name (model.nir, host.onnx); several -> one file each."""
    names = [p.name for p in parts.partitions if p.kind == kind]
    return {names[0]: single} if len(names) == 1 else {n: f"{n}{extension}" for n in names}


def export(run_dir: str | Path, formats: tuple[str, ...] = FORMATS, quantize: str | None = None, dt: float = DEFAULT_DT) -> Path:
    """Export the run in `run_dir` to `run_dir/export`; return that folder.

    `quantize` is "loihi" or "none"; by default "loihi" when "lava" is among the formats.
    """
    run_dir = Path(run_dir)
    _check_formats(formats)
    check_replaceable(run_dir / "export")
    checkpoint_path = run_dir / "checkpoint.pt"
    state = load_checkpoint(checkpoint_path)
    config = checkpoint_config(state, checkpoint_path)
    spec = datasets.spec(config.data.name)
    model = build_model(config.model, spec.input_shape, spec.num_classes, config.data.timesteps)
    load_weights(model, state, checkpoint_path)
    if isinstance(model, AudioVisualSNN):  # tensors in and out, the fusion head one host op
        model = DeployedAV(model)
    source = {"run": str(run_dir), "model": config.model, "data": asdict(config.data), "epochs_done": int(state["epochs_done"])}
    test = datasets.load(config.data.name, config.data.root, "test", config.data.timesteps, options=config.data.options)
    samples = [test[i][0] for i in range(min(len(test), 256))]
    input_bound = max(float(x.abs().max()) for sample in samples for x in (sample if isinstance(sample, tuple) else [sample]))
    train_set = datasets.load(config.data.name, config.data.root, "train", config.data.timesteps, options=config.data.options)
    picked = np.unique(np.linspace(0, len(train_set) - 1, min(len(train_set), CALIBRATION_SAMPLES)).astype(int))
    columns = zip(*[s if isinstance(s, tuple) else (s,) for s in (train_set[int(i)][0] for i in picked)])
    calibration = [torch.stack(column).transpose(0, 1).float() for column in columns]  # [T, B, ...] per input, in order
    return export_model(model, spec.input_shape, config.data.timesteps, run_dir / "export", formats, quantize, dt, source, input_bound, calibration)


def _check_formats(formats: tuple[str, ...]) -> None:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UserError(f"--formats: unknown format {', '.join(unknown) or '(none given)'} (known: {', '.join(FORMATS)})")


def _loihi_files(parts: Partitioned, deployed: dict[str, nir.NIRGraph], build: Path, lava: bool, input_bound: float,
                 calibration: dict[str, torch.Tensor]) -> tuple[dict[str, str], list[str]]:
    """loihi.json (and model.net for a plain chain, which netx holds) and the quantizer's warnings,
    from each neuromorphic partition's graph as deployed (as lowered; as exported where it does not lower,
    which the quantizer then refuses, naming the node).

    A model that is one plain chain of layers is quantized as a chain (export/loihi.py `quantize`);
    any other, residual sums, several partitions and host boundaries, by `quantize_partitions`,
    calibrated on `calibration` ([T, B, ...] per model input)."""
    chips = [p for p in parts.partitions if p.kind == NEUROMORPHIC]
    if len(parts.partitions) == 1 and _is_chain(deployed[chips[0].name]):
        lowered = deployed[chips[0].name]
        model = quantize_loihi(lowered, input_bound=input_bound)
        write_loihi_json(model, build / "loihi.json")
        files = {"loihi": "loihi.json"}
        if lava:
            write_netx(lowered, model, build / "model.net")
            files["netx"] = "model.net"
        return files, model.warnings
    specs = [PartitionSpec(p.name, p.kind, [(b.name, b.kind) for b in p.inputs], [(b.name, b.kind) for b in p.outputs]) for p in parts.partitions]
    # quantize_partitions lowers each graph itself (export/lower.py deploy); on a deployed graph that is the identity
    model = quantize_partitions(specs, deployed, [b.name for b in parts.inputs], [b.name for b in parts.outputs],
                                _calibrate(parts, calibration), input_bound=input_bound)
    write_loihi_json(model, build / "loihi.json")
    return {"loihi": "loihi.json"}, model.warnings


def _deployed(parts: Partitioned, graphs: dict[str, nir.NIRGraph]) -> tuple[dict[str, nir.NIRGraph], set[str]]:
    """Each neuromorphic partition as the chip runs it (export/lower.py `deploy`; a partition whose
    outputs feed another partition hands its pooled values on through a synaptic layer), and the
    names of those that lowered: one that does not (an overlapping pool, a convolution reading a
    convolution's current) keeps its exported graph here, for formats that need no lowering."""
    final = [b.name for b in parts.outputs]
    deployed, lowered = {}, set()
    for p in parts.partitions:
        if p.kind != NEUROMORPHIC:
            continue
        try:
            deployed[p.name] = deploy(graphs[p.name], handoff=[b.name for b in p.outputs] != final)
            lowered.add(p.name)
        except UserError:
            deployed[p.name] = graphs[p.name]
    return deployed, lowered


def _is_chain(graph: nir.NIRGraph) -> bool:
    try:
        chain_layers(graph)
    except UserError:
        return False
    return True


def _calibrate(parts: Partitioned, inputs: dict[str, torch.Tensor]) -> Calibration:
    """The float partitions on the calibration inputs: every boundary tensor's values, and the
    largest |input current| of every LIF (its summed input, seen by a hook), named as in NIR."""
    values = dict(inputs)
    currents: dict[str, float] = {}
    hooks = []
    for p in parts.partitions:
        if p.kind != NEUROMORPHIC:
            continue
        for name, module in p.module.named_modules():
            if isinstance(module, LIF):
                key = f"{p.name}.{name.replace('.', '_')}"

                def record(_, args, key=key):
                    currents[key] = max(currents.get(key, 0.0), float(args[0].detach().abs().max()))

                hooks.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            for p in parts.partitions:
                out = p.module(*[values[b.name] for b in p.inputs])
                out = list(out) if isinstance(out, (tuple, list)) else [out]
                values.update({b.name: y for b, y in zip(p.outputs, out)})
    finally:
        for hook in hooks:
            hook.remove()
    return Calibration(tensors={k: v.detach().numpy() for k, v in values.items()}, currents=currents)


def export_model(
    model: nn.Module,
    input_shapes: dict[str, tuple] | tuple,
    timesteps: int,
    out: Path,
    formats: tuple[str, ...] = FORMATS,
    quantize: str | None = None,
    dt: float = DEFAULT_DT,
    source: dict | None = None,
    input_bound: float = 1.0,
    calibration: list[torch.Tensor] | None = None,
) -> Path:
    """Export any model over [T, B, ...] inputs to the folder `out` (replaced only when complete).

    `input_bound` bounds |input|, for the Loihi first layer's fixed-point range (export/loihi.py);
    `calibration` ([T, B, ...] per model input, in order) sets the fixed-point ranges inside the model (by
    default random inputs within input_bound). The quantizer's warnings go to the terminal and
    loihi.json.
    """
    _check_formats(formats)
    quantize = quantize or "loihi"
    if quantize not in QUANTIZATIONS:
        raise UserError(f"--quantize: must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    model.eval()
    with replacing_folder(out, "export") as build:  # refuses, before any work, a folder spikeport did not write
        parts = partition(model, input_shapes, timesteps)
        files = {}
        nir_files = _file_names(parts, NEUROMORPHIC, "model.nir", ".nir") if "nir" in formats else {}
        onnx_files = _file_names(parts, HOST, "host.onnx", ".onnx") if "onnx" in formats else {}
        entries = []
        graphs: dict[str, nir.NIRGraph] = {}
        for p in parts.partitions:
            entry = mf.PartitionEntry(
                name=p.name,
                kind=p.kind,
                file=(nir_files if p.kind == NEUROMORPHIC else onnx_files).get(p.name),
                inputs=[_tensor(b) for b in p.inputs],
                outputs=[_tensor(b) for b in p.outputs],
                host_ops=p.host_ops,
            )
            if p.kind == NEUROMORPHIC:
                graph = to_nir(p.module, {arg: b.shape for arg, b in zip(p.args, p.inputs)}, dt=dt)
                graphs[p.name] = _rename(graph, {arg: b.name for arg, b in zip(p.args, p.inputs)})
                if entry.file:
                    write_nir(graphs[p.name], build / entry.file)
            if p.kind == HOST:
                examples = {b.name: _example(b, timesteps) for b in p.inputs}
                entry.buffer_timesteps = buffered_timesteps(p.module, list(examples.values()))
                entry.causal = entry.buffer_timesteps == 0
                entry.macs_per_sample = _macs_per_sample(p.module, examples)
                if entry.file:
                    export_onnx_graph(p.module, examples, [b.name for b in p.outputs], build / entry.file)
            entries.append(entry)
        deployed, lowered = _deployed(parts, graphs)
        if "nir" in formats or "lava" in formats:
            for entry in entries:
                if entry.name in lowered:
                    entry.deployed = "deployed.nir" if len(deployed) == 1 else f"deployed-{entry.name}.nir"
                    write_nir(deployed[entry.name], build / entry.deployed)
        if "onnx" in formats:
            examples = {b.name: _example(b, timesteps) for b in parts.inputs}
            export_onnx_graph(model, examples, [b.name for b in parts.outputs], build / "model.onnx")
            files["onnx"] = "model.onnx"
        if quantize == "loihi":
            if calibration is None:
                calibration = [_example(b, timesteps) * (input_bound / 2) for b in parts.inputs]
            named = {b.name: x for b, x in zip(parts.inputs, calibration)}
            loihi_files, warnings = _loihi_files(parts, deployed, build, "lava" in formats, input_bound, named)
            files.update(loihi_files)
            for line in warnings:
                console.print(f"[yellow]warning[/yellow]: {line}")
        mf.Manifest(
            timesteps=timesteps,
            dt=dt,
            inputs=[_tensor(b) for b in parts.inputs],
            outputs=[_tensor(b) for b in parts.outputs],
            partitions=entries,
            files=files,
            source=source or {},
        ).write(build / "manifest.json")
    return out


def _macs_per_sample(module: nn.Module, examples: dict[str, torch.Tensor]) -> float:
    """Multiply-accumulates of one sample through a host partition, from torch's FLOP counter."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*examples.values())
    batch = next(iter(examples.values())).shape[1]
    return counter.get_total_flops() / 2 / batch


def _rename(graph: nir.NIRGraph, names: dict[str, str]) -> nir.NIRGraph:
    """The graph with its Input nodes named after the manifest tensors they receive (the traced
    submodule names them after its arguments, and fx renames an argument called `input`)."""
    rename = lambda n: names.get(n, n)  # noqa: E731
    return nir.NIRGraph(
        nodes={rename(n): node for n, node in graph.nodes.items()},
        edges=[(rename(a), rename(b)) for a, b in graph.edges],
        metadata=graph.metadata,
        type_check=True,
    )



FOREIGN_FORMATS = ("nir", "lava")  # a foreign file has no torch model for ONNX to trace
CALIBRATION_RATE = 0.3  # without --input: Bernoulli spikes, as event data are
PARTITION = "neuromorphic0"  # the one partition of a foreign file, named as `partition` names a model's first


def export_nir_file(
    path: str | Path,
    out: Path,
    formats: tuple[str, ...] = FOREIGN_FORMATS,
    quantize: str | None = None,
    dt: float | None = None,
    timesteps: int | None = None,
    calibration: dict[str, np.ndarray] | None = None,
) -> Path:
    """Export a NIR file that another tool wrote (snnTorch, Norse, sinabs, rockpool) to the folder
    `out`, as `export_model` exports a model: manifest.json, model.nir (the file's graph with its dt
    written into it), deployed.nir (export/lower.py `deploy`: pools folded, input gains made 1),
    loihi.json and, for a plain chain ending in a read-out, model.net.

    dt is `dt` (--dt) or the file's own, with the reference runtime's warnings (runtime/reference.py
    `timestep`: a --dt that contradicts the file's, a dt at or beyond a time constant); they go to
    the terminal and into the manifest's source. `calibration` ([N, T, *shape] per Input node, the
    --input file's arrays) sets T and the fixed-point ranges; without it, Bernoulli spikes at
    CALIBRATION_RATE over `timesteps` steps stand in for event data. A node Loihi cannot compute is
    refused with one line naming it (export/nir_graph.py `check_resets_to_zero`, export/loihi.py)."""
    from spikeport.errors import recorded_warnings
    from spikeport.runtime.reference import timestep
    from spikeport.deployment import read_nir

    path = Path(path)
    unknown = [f for f in formats if f not in FOREIGN_FORMATS]
    if unknown or not formats:
        raise UserError(f"--formats: {', '.join(unknown) or '(none given)'} for a .nir file; it exports {', '.join(FOREIGN_FORMATS)} "
                        "(ONNX needs the torch model, which a NIR file does not hold)")
    quantize = quantize or "loihi"
    if quantize not in QUANTIZATIONS:
        raise UserError(f"--quantize: must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if "lava" in formats and quantize != "loihi":
        raise UserError("--formats lava: model.net holds Loihi integers; give --quantize loihi (the default)")
    graph = read_nir(path)
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if not inputs or not outputs:
        raise UserError(f"{path}: {len(inputs)} Input and {len(outputs)} Output nodes; an export needs at least one of each")
    if quantize == "loihi":  # before any work: a recurrent, CubaLIF or non-zero-reset neuron, named
        check_resets_to_zero(graph, "Loihi fixed-point")
    with recorded_warnings() as notes:
        step = timestep(graph, dt)
    shapes = {n: tuple(int(d) for d in np.asarray(graph.nodes[n].input_type["input"]).ravel()) for n in inputs}
    calibration, source_of_calibration = _foreign_calibration(path, shapes, calibration, timesteps)
    timesteps = next(iter(calibration.values())).shape[1]
    graph = _rename(graph, {n: ("output" if len(outputs) == 1 else f"output_{n}") for n in outputs})
    graph = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata={**(graph.metadata or {}), "dt": step}, type_check=True)
    output_names = ["output"] if len(outputs) == 1 else [f"output_{n}" for n in outputs]
    tensors_in = [mf.Tensor(n, list(shapes[n]), "spike" if _binary(calibration[n]) else "graded") for n in inputs]
    tensors_out = [mf.Tensor(o if len(outputs) == 1 else n, list(_output_shape(graph, o)), _output_kind(graph, o))
                   for n, o in zip(outputs, output_names)]
    source = {"nir": str(path), "from": "nir", "dt": step, "dt_from": "--dt" if dt is not None else "the file",
              "calibration": source_of_calibration, "warnings": notes}
    with replacing_folder(out, "export") as build:
        entry = mf.PartitionEntry(name=PARTITION, kind=NEUROMORPHIC, file="model.nir" if "nir" in formats else None,
                                  inputs=tensors_in, outputs=tensors_out)
        if entry.file:
            write_nir(graph, build / entry.file)
        files: dict[str, str] = {}
        try:
            deployed, lowered = deploy(graph), True
        except UserError:
            if quantize == "loihi":
                raise  # the lowering's reason is why no chip runs it: the one line the user needs
            deployed, lowered = graph, False
        if lowered:
            entry.deployed = "deployed.nir"
            write_nir(deployed, build / entry.deployed)
        if quantize == "loihi":
            input_bound = max(float(np.abs(x).max()) for x in calibration.values()) or 1.0
            model = _quantize_foreign(deployed, entry, calibration, input_bound)
            write_loihi_json(model, build / "loihi.json")
            files["loihi"] = "loihi.json"
            if "lava" in formats and _is_chain(deployed):
                write_netx(deployed, model, build / "model.net")
                files["netx"] = "model.net"
            for line in model.warnings:
                console.print(f"[yellow]warning[/yellow]: {line}")
        mf.Manifest(timesteps=timesteps, dt=step, inputs=tensors_in, outputs=tensors_out, partitions=[entry], files=files,
                    source=source).write(build / "manifest.json")
    return out


def _foreign_calibration(path: Path, shapes: dict[str, tuple[int, ...]], given: dict[str, np.ndarray] | None,
                         timesteps: int | None) -> tuple[dict[str, np.ndarray], str]:
    """[N, T, *shape] per Input node: the given arrays (checked against the graph), or random spikes."""
    if given is not None:
        missing = [n for n in shapes if n not in given]
        if missing:
            raise UserError(f"--input: no array for the graph's input {missing[0]!r} (the graph's inputs: {', '.join(shapes)})")
        arrays = {n: np.asarray(given[n], dtype=np.float32) for n in shapes}
        for n, x in arrays.items():
            if x.ndim != 2 + len(shapes[n]) or tuple(x.shape[2:]) != shapes[n] or len(x) == 0:
                raise UserError(f"--input: input {n!r} has shape {list(x.shape)}; expected [N, T, {', '.join(map(str, shapes[n]))}] for {path}")
            if not np.all(np.isfinite(x)):
                raise UserError(f"--input: input {n!r} holds NaN or infinite values")
        lengths = {x.shape[1] for x in arrays.values()}
        if timesteps is not None and lengths != {timesteps}:
            raise UserError(f"--timesteps {timesteps}: the --input arrays have {sorted(lengths)} timesteps")
        if len(lengths) != 1:
            raise UserError(f"--input: the inputs have different numbers of timesteps {sorted(lengths)}")
        return arrays, "the --input arrays"
    if timesteps is None:
        raise UserError(f"{path}: a NIR file does not say how many timesteps a sample has; give --timesteps (or --input FILE.npz to calibrate on)")
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) or timesteps < 1:
        raise UserError(f"--timesteps: must be a whole number >= 1, got {timesteps!r}")
    rng = np.random.default_rng(0)
    arrays = {n: (rng.random((16, int(timesteps), *shape)) < CALIBRATION_RATE).astype(np.float32) for n, shape in shapes.items()}
    return arrays, f"random spikes (16 samples, rate {CALIBRATION_RATE}): give --input FILE.npz to calibrate on your data"


def _binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def _output_shape(graph: nir.NIRGraph, output: str) -> tuple[int, ...]:
    return tuple(int(d) for d in np.asarray(graph.nodes[output].input_type["input"]).ravel())


def _output_kind(graph: nir.NIRGraph, output: str) -> str:
    """Spikes when a neuron (through Flatten nodes) produces the output, else graded values."""
    (name,) = [a for a, b in graph.edges if b == output]
    while isinstance(graph.nodes[name], nir.Flatten):
        (name,) = [a for a, b in graph.edges if b == name]
    return "spike" if isinstance(graph.nodes[name], (nir.LIF, nir.IF, nir.CubaLIF)) else "graded"


def _quantize_foreign(deployed: nir.NIRGraph, entry: mf.PartitionEntry, calibration: dict[str, np.ndarray], input_bound: float):
    """loihi.json's model of the deployed graph: a plain chain as `quantize` takes it, any other graph
    by `quantize_partitions`, its ranges from the deployed graph's float run on the calibration inputs."""
    if _is_chain(deployed):
        return quantize_loihi(deployed, input_bound=input_bound)
    from spikeport.runtime.reference import NIRExecutor

    currents: dict[str, float] = {}

    def record(node: str, summed: torch.Tensor, _output: torch.Tensor) -> None:
        if isinstance(deployed.nodes[node], (nir.LIF, nir.IF)):
            key = f"{entry.name}.{node}"
            currents[key] = max(currents.get(key, 0.0), float(summed.detach().abs().max()))

    values = {n: torch.as_tensor(x).transpose(0, 1) for n, x in calibration.items()}  # [T, N, ...]
    with torch.no_grad():
        result = NIRExecutor(deployed, dt=float(deployed.metadata["dt"]))(values, record)
    tensors = {**{n: v.numpy() for n, v in values.items()},
               **{t.name: result.outputs["output" if len(entry.outputs) == 1 else f"output_{t.name}"].numpy() for t in entry.outputs}}
    spec = PartitionSpec(entry.name, entry.kind, [(t.name, t.kind) for t in entry.inputs], [(t.name, t.kind) for t in entry.outputs])
    return quantize_partitions([spec], {entry.name: deployed}, [t.name for t in entry.inputs], [t.name for t in entry.outputs],
                               Calibration(tensors=tensors, currents=currents), input_bound=input_bound)
