"""`spikeport simulate TARGET`: run an exported network on a backend, write DIR/sim/<backend>-<mode>.npz.

TARGET is a run folder (its export/manifest.json), a manifest.json, a single `.nir` file, or a
lava-dl `.net` file (reference backend, loihi mode).
Inputs come from `--input FILE.npz` (key `input`, or `input.<name>` for each of several inputs,
shape [N, T, *input_shape]) or, for a run, from the first N samples of the run's test set.

The npz holds `output` [N, T, *output_shape] aligned to the input timesteps, `delay` (pipeline
steps removed), `labels` when known, and `spikes.<layer>` spike counts [N, T] per neuron layer.
`--compare A,B` also writes parity-A-vs-B.json: how far two backends' outputs and spikes agree.
"""

from __future__ import annotations

import io
import warnings
import math
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import onnxruntime

from spikeport.config import check_number
from spikeport.errors import DeploymentWarning, UserError, recorded_warnings
from spikeport.export.manifest import Manifest, read_manifest
from spikeport.io import atomic_open, check_file_writable, recover, write_json
from spikeport.readers import check_hdf5, check_onnx_external, load_npz, memory_budget
from spikeport.progress import stage

# torch and the training package are imported where they are used: they take seconds to load, and
# a bad argument or file should be refused before that (`spikeport simulate` starts here).

BACKENDS = {"reference": ("float", "loihi"), "onnx": ("float",), "lava": ("float", "loihi")}
MAX_NIR_DATASET_ELEMENTS = 10**8  # one array of an NIR file (400 MB of float32)
MAX_NIR_TOTAL_ELEMENTS = 2 * 10**8  # all arrays of an NIR file together
MAX_NIR_NODE_ELEMENTS = 10**7  # values per sample and step into or out of one node (a conv's padding makes them)


@dataclass
class Target:
    folder: Path  # where sim/ goes by default
    manifest: Manifest | None  # None for a bare .nir file
    export_dir: Path | None
    nir_graph: nir.NIRGraph | None  # for a bare .nir file
    dt: float | None = None  # for a bare .nir file without dt in its metadata
    netx: object | None = None  # export.netx_read.NetxNetwork, for a lava-dl .net file
    source: Path | None = None  # the file that defines the deployment: its manifest.json, or the .nir / .net


@dataclass
class SimResult:
    output: np.ndarray  # [N, T, *output_shape]
    spikes: dict[str, np.ndarray]  # layer -> [N, T]
    delay: int = 0


def read_nir(path: Path) -> nir.NIRGraph:
    """An NIR file the reference runtime can run; UserError naming the file (and node) otherwise.

    The file is checked before nir.read sees it (spikeport/readers.py `check_hdf5`): no links or
    storage outside the file, and dataset sizes from their metadata, since nir.read loads every
    dataset whole and a file of a few KiB can declare terabytes (MAX_NIR_DATASET_ELEMENTS,
    MAX_NIR_TOTAL_ELEMENTS). The nodes' declared shapes are bounded before anything runs on them."""
    check_hdf5(path, "NIR", MAX_NIR_DATASET_ELEMENTS, MAX_NIR_TOTAL_ELEMENTS)
    try:
        with np.errstate(all="raise"):  # nir computes shapes from the file's fields: a stride 0 divides by zero
            graph = nir.read(path)
    except Exception as e:  # noqa: BLE001 - h5py and nir raise many types on a bad file; all mean "unreadable"
        raise UserError(f"{path}: not a readable NIR file ({_first_line(e)})") from None
    _check_node_sizes(path, graph)
    from spikeport.runtime.reference import NIRExecutor

    try:
        with warnings.catch_warnings():  # dt: any (it changes no shape), so what it would warn of is not the file's
            warnings.simplefilter("ignore", DeploymentWarning)
            NIRExecutor(graph, dt=1.0).check_runs()
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return graph


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _check_node_sizes(path: Path, graph: nir.NIRGraph) -> None:
    """Refuse a node whose input or output, as nir infers it from the fields (a conv's padding,
    a pool's stride), holds more than MAX_NIR_NODE_ELEMENTS values per sample and step: a few
    bytes of padding would otherwise make the first step allocate gigabytes."""
    for name, node in graph.nodes.items():
        for port, shape in [*(getattr(node, "input_type", None) or {}).items(), *(getattr(node, "output_type", None) or {}).items()]:
            dims = np.asarray(shape).reshape(-1)
            if dims.dtype.kind not in "iu" or not dims.size:
                continue  # not a shape: the runtime's own checks name it
            values = math.prod(abs(int(d)) for d in dims)
            if values > MAX_NIR_NODE_ELEMENTS:
                raise UserError(f"{path}: node {name!r}: its {port} holds {values} values per step ({list(map(int, dims))}), more than {MAX_NIR_NODE_ELEMENTS}; refused")


def resolve_target(target: str | Path) -> Target:
    target = Path(target)
    if target.is_dir():
        recover(target / "export")  # an export killed in its swap: finished (or rolled back) first
        manifest_path = target / "export" / "manifest.json"
        if not manifest_path.is_file():
            raise UserError(f"{target}: no export/manifest.json; run `spikeport export {target}` first")
        return Target(target, read_manifest(manifest_path), manifest_path.parent, None, source=manifest_path)
    if target.suffix == ".json":
        return Target(target.parent, read_manifest(target), target.parent, None, source=target)
    if target.suffix == ".nir":
        return Target(target.parent, None, None, read_nir(target), source=target)
    if target.suffix == ".net":
        from spikeport.export.netx_read import read_netx

        return Target(target.parent, None, None, None, netx=read_netx(target, defer_input_shape=True), source=target)
    if not target.exists():
        raise UserError(f"{target}: no such file or folder")
    raise UserError(f"{target}: expected a run folder, a manifest.json, a .nir or a lava-dl .net file")


def load_inputs(target: Target, input_file: Path | None, samples: int | None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Inputs [N, T, *shape] by name, and labels when they come from a test set."""
    if target.manifest:
        names = [t.name for t in target.manifest.inputs]
    elif target.netx is not None:
        names = ["input"]
    else:
        names = [n for n, v in target.nir_graph.nodes.items() if isinstance(v, nir.Input)]
    if input_file is not None:
        keys = ["input"] if len(names) == 1 else [f"input.{n}" for n in names]
        files, data = read_npz(input_file, [*keys, "labels"])
        missing = [k for k in keys if k not in data]
        if missing:
            raise UserError(f"{input_file}: missing key {missing[0]!r} (has: {', '.join(files) or 'nothing'})")
        inputs = {n: data[k] for n, k in zip(names, keys)}
        labels = data.get("labels")
    else:
        if target.manifest is None or "data" not in target.manifest.source:
            raise UserError(f"no --input given, and the target names no dataset to take samples from; give --input FILE.npz holding {_npz_layout(target, names)}")
        import torch

        from spikeport.train import datasets

        data_config = target.manifest.source["data"]
        test = datasets.load(data_config["name"], data_config["root"], "test", target.manifest.timesteps, options=data_config.get("options"))
        n = len(test) if samples is None else min(samples, len(test))
        _check_batch_fits(target.manifest, n, data_config["name"])
        items = [test[i] for i in range(n)]
        if isinstance(items[0][0], tuple):  # a multi-input dataset: one tensor per input, in the manifest's order
            inputs = {name: torch.stack([x[i] for x, _ in items]).numpy() for i, name in enumerate(names)}
        else:
            inputs = {names[0]: torch.stack([x for x, _ in items]).numpy()}
        labels = np.array([int(y) for _, y in items])
    if target.netx is not None and target.netx.input_shape is None:  # a file without an input layer: the input's shape
        x = inputs["input"]
        if x.ndim < 3:
            raise UserError(f"{input_file}: input 'input' has shape {list(x.shape)}; expected [N, T, C, H, W] for {target.source}")
        from spikeport.export.netx_read import read_netx

        target.netx = read_netx(target.source, input_shape=x.shape[2:])
    for name, x in inputs.items():
        _check_input(name, x, target, input_file)
    return inputs, labels


def _npz_layout(target: Target, names: list[str]) -> str:
    """The arrays an --input file for `target` holds, for a message: keys and shapes."""
    if target.manifest:
        shapes = [[target.manifest.timesteps, *next(t.shape for t in target.manifest.inputs if t.name == n)] for n in names]
    elif target.netx is not None:
        shapes = [["T", *(target.netx.input_shape or ("C", "H", "W"))]]
    else:
        shapes = [["T", *(int(d) for d in target.nir_graph.nodes[n].input_type["input"])] for n in names]
    keys = ["input"] if len(names) == 1 else [f"input.{n}" for n in names]
    arrays = [f"{key!r} [N, {', '.join(map(str, shape))}]" for key, shape in zip(keys, shapes)]
    return ", ".join(arrays) + " (numbers), and optionally 'labels' [N] (integers)"


def read_npz(path: Path, keys: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """The names of an npz file's arrays, and those of `keys` it holds, read whole and sized from
    their headers before any data (spikeport/readers.py `load_npz`)."""
    return load_npz(path, keys)


def _check_batch_fits(manifest: Manifest, n: int, dataset: str) -> None:
    """Refuse, before any sample is framed, a batch of test samples that is empty or that would not
    fit in memory (the manifest's timesteps times its inputs' shapes, float32, framed then stacked)."""
    if n == 0:
        raise UserError(f"{dataset}: no test samples to simulate (an empty test set, or 0 asked for)")
    need = n * manifest.timesteps * sum(math.prod(t.shape) for t in manifest.inputs) * 4 * 2
    if need > memory_budget():
        raise UserError(
            f"{n} samples of {dataset} at {manifest.timesteps} timesteps need {need / 2**30:.1f} GiB, more than the "
            f"{memory_budget() / 2**30:.1f} GiB free for them; refused (give fewer --samples)"
        )


def _check_input(name: str, x: np.ndarray, target: Target, source) -> None:
    where = source or "inputs"
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer) and x.dtype != bool:
        raise UserError(f"{where}: input {name!r} has dtype {x.dtype}; expected numbers")
    if target.manifest:
        shape = next(t.shape for t in target.manifest.inputs if t.name == name)
        expected = [target.manifest.timesteps, *shape]
        if x.ndim != len(expected) + 1 or list(x.shape[1:]) != expected:
            raise UserError(f"{where}: input {name!r} has shape {list(x.shape)}; expected [N, {', '.join(map(str, expected))}]")
    if target.netx is not None and (x.ndim != 2 + len(target.netx.input_shape) or tuple(x.shape[2:]) != tuple(target.netx.input_shape)):
        raise UserError(f"{where}: input {name!r} has shape {list(x.shape)}; expected [N, T, {', '.join(map(str, target.netx.input_shape))}]")
    if target.nir_graph is not None:
        shape = [int(n) for n in target.nir_graph.nodes[name].input_type["input"]]
        if x.ndim != 2 + len(shape) or list(x.shape[2:]) != shape:
            raise UserError(f"{where}: input {name!r} has shape {list(x.shape)}; expected [N, T, {', '.join(map(str, shape))}]")
    if x.ndim == 0 or len(x) == 0:
        raise UserError(f"{where}: input {name!r} holds 0 samples; nothing to simulate")
    if not np.all(np.isfinite(x)):
        raise UserError(f"{where}: input {name!r} holds NaN or infinite values")


def _time_major(inputs: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    import torch

    return {n: torch.as_tensor(x, dtype=torch.float32, device=device).transpose(0, 1) for n, x in inputs.items()}


def run_reference(target: Target, inputs: dict[str, np.ndarray], device: torch.device, observe=None) -> SimResult:
    """The manifest's partitions in order: NIR partitions in torch, host partitions in ONNX Runtime.

    `observe(layer, input, output)` sees every NIR node's input and output (NIRExecutor.forward);
    layers of a manifest are named `<partition>.<node>`.
    """
    import torch

    from spikeport.runtime.reference import NIRExecutor

    if target.manifest is None:
        executor = NIRExecutor(target.nir_graph, dt=target.dt).to(device)
        with torch.no_grad():
            result = executor(_time_major(inputs, device), observe)
        (output,) = result.outputs.values()
        return SimResult(output.transpose(0, 1).cpu().numpy(), {k: v.cpu().numpy() for k, v in result.spikes.items()})
    values = _time_major(inputs, device)
    spikes: dict[str, np.ndarray] = {}
    for p in target.manifest.partitions:
        if p.file is None:
            raise UserError(f"partition {p.name}: the export has no file for it; export with --formats nir,onnx")
        path = target.export_dir / p.file
        if p.kind == "neuromorphic":
            executor = NIRExecutor(read_nir(path), dt=target.manifest.dt).to(device)
            named = None if observe is None else (lambda node, x, y, p=p: observe(f"{p.name}.{node}", x, y))
            with torch.no_grad():
                result = executor({t.name: values[t.name] for t in p.inputs}, named)
            for t in p.outputs:  # Output node names: see export/exporter.py
                values[t.name] = result.outputs["output" if len(p.outputs) == 1 else f"output_{t.name}"]
            spikes.update({f"{p.name}.{k}": v.cpu().numpy() for k, v in result.spikes.items()})
        else:
            session = _onnx_session(path, ["CPUExecutionProvider"])
            outs = session.run([t.name for t in p.outputs], {t.name: values[t.name].cpu().numpy() for t in p.inputs})
            values.update({t.name: torch.as_tensor(o, device=device) for t, o in zip(p.outputs, outs)})
    output = values[target.manifest.outputs[0].name]
    return SimResult(output.transpose(0, 1).cpu().numpy(), spikes)


def _onnx_session(path: Path, providers: list[str]) -> onnxruntime.InferenceSession:
    check_onnx_external(path)  # before onnxruntime reads any tensor stored outside the file
    try:
        return onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors (InvalidProtobuf, Fail, NoSuchFile ...) share no base but Exception
        raise UserError(f"{path}: not a readable ONNX file ({_first_line(e)})") from None


def run_onnx_model(target: Target, inputs: dict[str, np.ndarray], device: torch.device) -> SimResult:
    if target.manifest is None or "onnx" not in target.manifest.files:
        raise UserError("--backend onnx needs an export with model.onnx (spikeport export RUN --formats nir,onnx)")
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = _onnx_session(target.export_dir / target.manifest.files["onnx"], providers)
    feeds = {n: np.ascontiguousarray(np.swapaxes(x, 0, 1), dtype=np.float32) for n, x in inputs.items()}
    (output,) = session.run([target.manifest.outputs[0].name], feeds)
    return SimResult(np.swapaxes(output, 0, 1), {})


def run_in_lava(target: Target, inputs: dict[str, np.ndarray], device: torch.device, mode: str = "float") -> SimResult:
    """spikeport's Lava graph of an export that is one neuromorphic partition, or of a .nir file, in
    Loihi2SimCfg: floating_pt, or (mode "loihi") fixed_pt with the export's loihi.json. An export
    with host partitions runs all its partitions in one floating_pt run (`run_lava_manifest`)."""
    from spikeport.export.loihi import read_loihi_json
    from spikeport.runtime.lava.run import run_lava, run_lava_manifest

    if target.manifest is None:  # a foreign file: --dt (or its own), checked as the reference runtime checks it
        from spikeport.runtime.reference import timestep

        graph = target.nir_graph
        graph = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata={**(graph.metadata or {}), "dt": timestep(graph, target.dt)}, type_check=False)
    elif len(target.manifest.partitions) > 1 or _graph_loihi(target, mode):
        parts = target.manifest.partitions
        graphs = {p.name: read_nir(target.export_dir / p.file) for p in parts if p.kind == "neuromorphic" and p.file is not None}
        result = run_lava_manifest(target.manifest, target.export_dir, graphs, inputs, loihi=_loihi_json(target) if mode == "loihi" else None)
        return SimResult(result.output, result.spikes, result.delay)
    else:
        parts = target.manifest.partitions
        if len(parts) != 1 or parts[0].kind != "neuromorphic" or parts[0].file is None:
            raise UserError(f"--backend lava: runs an export that is one neuromorphic partition with its .nir file; this one has {', '.join(p.name for p in parts)}")
        graph = read_nir(target.export_dir / parts[0].file)
    loihi = None
    if mode == "loihi":
        if target.manifest is None or "loihi" not in target.manifest.files:
            raise UserError("--backend lava --mode loihi: needs an export with loihi.json (spikeport export RUN --quantize loihi)")
        loihi = read_loihi_json(target.export_dir / target.manifest.files["loihi"])
    (x,) = inputs.values()
    result = run_lava(graph, x, mode=mode, loihi=loihi)
    prefix = "" if target.manifest is None else f"{target.manifest.partitions[0].name}."
    return SimResult(result.output, {f"{prefix}{k}": v for k, v in result.spikes.items()}, result.delay)


def _loihi_json(target: Target):
    from spikeport.export.loihi import read_loihi_json

    if target.manifest is None or "loihi" not in target.manifest.files:
        raise UserError("--mode loihi: needs an export with loihi.json (spikeport export RUN --quantize loihi)")
    return read_loihi_json(target.export_dir / target.manifest.files["loihi"])


def _graph_loihi(target: Target, mode: str) -> bool:
    """Loihi fixed point of an export that is not one plain chain (loihi.json's layers name their partitions)."""
    return mode == "loihi" and target.manifest is not None and "netx" not in target.manifest.files and "loihi" in target.manifest.files


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
        return _hold_last(self.bias, self.window - self.timesteps)


def _fixed_point(target: Target, inputs: dict[str, np.ndarray]) -> _FixedPoint:
    from spikeport.export.loihi import input_bias, read_loihi_json
    from spikeport.export.lower import read_deployed

    files = target.manifest.files if target.manifest else {}
    if "netx" not in files or "loihi" not in files:
        raise UserError("--mode loihi: needs an export with loihi.json and model.net (spikeport export RUN --formats nir,onnx,lava)")
    partition = target.manifest.partitions[0]
    graph = read_deployed(target.manifest, target.export_dir, partition.name, read_nir)  # what export lowered, once
    model = read_loihi_json(target.export_dir / files["loihi"])
    (x,) = inputs.values()
    t = x.shape[1]
    window = t + len(model.layers) - 1
    # The first layer runs on the host (export/loihi.py): its current, one frame per step, is the
    # input layer's bias.
    frames = input_bias(graph, model, x)  # [N, T, *input layer shape]
    return _FixedPoint(model.layers, frames, window, t, f"{partition.name}.")


def _fixed_point_result(fp: _FixedPoint, spikes: list, voltage) -> SimResult:
    """From every block's spikes and the read-out's voltage on the steps that carry the sample
    ([N, T, ...], block i from step i of its window on): the read-out's voltage is 64 s times the
    running sum of the logits (export/loihi.py), so its increments are the logits per step."""
    counts = {name: s.reshape(len(fp.bias), fp.timesteps, -1).sum(-1) for name, s in _named_spikes(fp, spikes).items()}
    v = np.asarray(voltage, dtype=np.float64)
    logits = np.diff(v, axis=1, prepend=0.0) / (64 * fp.layers[-1].scale)
    return SimResult(logits, counts, delay=len(fp.layers) - 1)


def _named_spikes(fp: _FixedPoint, spikes: list) -> dict[str, np.ndarray]:
    """Every neuron layer's spikes [N, T, *shape] by its layer name, from per-block spikes [N, T, *shape]."""
    return {f"{fp.prefix}{layer.neuron}": np.asarray(spikes[i]) for i, layer in enumerate(fp.layers) if layer.neuron is not None}


def _sample_steps(window_records: list, t: int) -> list:
    """Per-block records of whole windows [N, window, ...] cut to the T steps that carry the sample:
    block i from step i on (what simulate_netx(aligned=True) computes directly)."""
    return [np.asarray(r)[:, i : i + t] for i, r in enumerate(window_records)]


def fixed_point_spikes(target: Target, inputs: dict[str, np.ndarray], device: torch.device, backend: str = "reference") -> dict[str, np.ndarray]:
    """Which neurons spiked when, [N, T, *shape] per neuron layer, in Lava's fixed-point arithmetic on
    the export's model.net: from the reference runtime (batched torch) or from Lava itself (lava-dl
    netx in Loihi2SimCfg fixed_pt). The spike counts a simulation writes do not say which neurons
    spiked, and a report needs that to count synaptic operations."""
    if _graph_loihi(target, "loihi"):
        return _export_fixed_point_spikes(target, inputs, device, backend)
    fp = _fixed_point(target, inputs)
    path = target.export_dir / target.manifest.files["netx"]
    if backend == "lava":
        from spikeport.runtime.lava.run import run_netx_fixed

        spikes, _ = run_netx_fixed(path, fp.window_bias(), fp.window)
        spikes = _sample_steps(spikes, fp.timesteps)
    else:
        from spikeport.export.netx_read import read_netx
        from spikeport.runtime.loihi_fixed import simulate_netx

        records = simulate_netx(read_netx(path), bias=fp.bias, steps=fp.window, aligned=True, device=device, record=("s",))
        spikes = [record.s.cpu().numpy() for record in records]
    return _named_spikes(fp, spikes)


def _export_fixed_point_spikes(target: Target, inputs: dict[str, np.ndarray], device: torch.device, backend: str) -> dict[str, np.ndarray]:
    """fixed_point_spikes of an export that is not one plain chain: every neuron layer's spikes
    ("partition.layer"), and what each neuromorphic partition reads from a host partition
    ("partition.tensor", in float units: the payload / its scale), from the emulator or Lava."""
    from spikeport.runtime.lava.worker.payload import from_payload

    loihi = _loihi_json(target)
    if backend == "lava":
        from spikeport.runtime.lava.run import run_lava_manifest

        graphs = {p.name: read_nir(target.export_dir / p.file) for p in target.manifest.partitions if p.kind == "neuromorphic" and p.file}
        result = run_lava_manifest(target.manifest, target.export_dir, graphs, inputs, loihi=loihi)
        spikes = {k: v for k, v in result.trains.items() if "." in k and k.split(".", 1)[0] in graphs}
        sent = {k: v for k, v in result.trains.items() if k not in spikes}
    else:
        record = run_export_fixed(target, inputs, device)
        spikes = {k: v.cpu().numpy() for k, v in record.spikes.items()}
        sent = {k: v.cpu().numpy() for k, v in record.tensors.items()}
    boundaries = {b.tensor: b for b in loihi.boundaries if b.direction == "to_chip"}
    for p in target.manifest.partitions:
        if p.kind == "neuromorphic":
            spikes.update({f"{p.name}.{t.name}": from_payload(sent[t.name], boundaries[t.name]) for t in p.inputs if t.name in boundaries})
    return spikes


def _hold_last(x: np.ndarray, k: int) -> np.ndarray:
    """x [N, T, ...] with its last step repeated k more times: [N, T + k, ...]."""
    return np.concatenate([x, np.repeat(x[:, -1:], k, axis=1)], axis=1)


def netx_drive(network, x: np.ndarray) -> dict[str, np.ndarray]:
    """simulate_netx's drive for samples x [N, T, ...], padded to windows of T + K steps: the input
    layer's bias (held at the last frame: those steps are never read), a sigma-delta input layer's
    a_in (integers, as Lava's RingBuffer sends them), or the first synapse's spikes."""
    k = len(network.blocks) - 1
    if network.has_input_layer and network.blocks[0].neuron.sigma_delta:
        return {"a_in": _hold_last(x, k)}
    if network.has_input_layer:
        return {"bias": _hold_last(x, k).round().astype(np.int64)}
    first = network.blocks[0]
    if first.input_message_bits == 0 and not np.isin(x, (0, 1)).all():  # netx would take any non-zero value as a spike
        raise UserError(f"{network.path}: its first block {first.name} reads spikes, 0 or 1 (netx's input_message_bits 0); the input holds "
                        "other values")
    return {"spikes": np.concatenate([x, np.zeros((x.shape[0], k, *x.shape[2:]), x.dtype)], axis=1)}


def netx_outputs(network) -> dict[int, tuple[str, ...]]:
    """simulate_netx's `record` for a simulation result: every spiking block's spikes, and the
    voltage of netx's non-spiking read-out integrator (du -1), which is the output."""
    return {i: ("v",) if block.neuron.du < 0 else ("s",) for i, block in enumerate(network.blocks)}


def export_outputs(network) -> dict[int, tuple[str, ...]]:
    """simulate_netx's `record` for an export's model.net: the spikes of every block but the
    read-out, and the read-out's voltage (export/netx.py: it integrates the logits)."""
    last = len(network.blocks) - 1
    return {**{i: ("s",) for i in range(last)}, last: ("v",)}


def _run_netx_file(network, x: np.ndarray, device: torch.device) -> SimResult:
    """A lava-dl .net file in Lava's fixed-point arithmetic, one fresh window of T + K steps per
    sample (K: the blocks after the first; netx resets every layer once per window).

    x [N, T, *input shape] is the input layer's bias_mant per step (a network that starts with
    an input layer; a sigma-delta one: its a_in) or the spikes into the first synapse; the output
    is the last block's spikes (a sigma-delta block: its graded messages, a Sigma read-out its
    sigma), or the voltage of a non-spiking read-out, aligned to the input timesteps. The spike
    counts of a sigma-delta block count its non-zero messages."""
    from spikeport.runtime.loihi_fixed import simulate_netx

    t, k = x.shape[1], len(network.blocks) - 1
    records = simulate_netx(network, steps=t + k, aligned=True, device=device, record=netx_outputs(network), **netx_drive(network, x))
    spikes = {
        block.name: (record.s != 0).flatten(2).sum(2).cpu().numpy()
        for block, record in zip(network.blocks, records)
        if block.neuron.du >= 0  # netx's read-out integrator (du -1) does not spike
    }
    last, block = records[-1], network.blocks[-1]
    output = last.v if block.neuron.du < 0 else last.s
    return SimResult(output.cpu().numpy().astype(np.float64), spikes, delay=k)


def run_reference_loihi(target: Target, inputs: dict[str, np.ndarray], device: torch.device) -> SimResult:
    """Lava's fixed-point arithmetic in batched torch (runtime/loihi_fixed.py) on the export's model.net."""
    from spikeport.export.netx_read import read_netx
    from spikeport.runtime.loihi_fixed import simulate_netx

    if target.netx is not None:
        return _run_netx_file(target.netx, next(iter(inputs.values())), device)
    if _graph_loihi(target, "loihi"):
        record = run_export_fixed(target, inputs, device)
        return SimResult(record.output, {k: v.flatten(2).sum(2).cpu().numpy() for k, v in record.spikes.items()})
    fp = _fixed_point(target, inputs)
    network = read_netx(target.export_dir / target.manifest.files["netx"])
    records = simulate_netx(network, bias=fp.bias, steps=fp.window, aligned=True, device=device, record=export_outputs(network))
    return _fixed_point_result(fp, [None if r.s is None else r.s.cpu().numpy() for r in records], records[-1].v.cpu().numpy())


def run_export_fixed(target: Target, inputs: dict[str, np.ndarray], device: torch.device):
    """An export that is not one plain chain in Lava's fixed-point arithmetic (loihi_fixed.simulate_export)."""
    from spikeport.runtime.loihi_fixed import simulate_export

    graphs = {p.name: read_nir(target.export_dir / p.file) for p in target.manifest.partitions if p.kind == "neuromorphic" and p.file}
    return simulate_export(target.manifest, target.export_dir, graphs, _loihi_json(target), inputs, device)


def run_lava_loihi(target: Target, inputs: dict[str, np.ndarray], device: torch.device) -> SimResult:
    """`--backend lava --mode loihi`: spikeport's own Lava graph in fixed_pt (model.nir + loihi.json)."""
    return run_in_lava(target, inputs, device, mode="loihi")


def run_netx_in_lava(target: Target, inputs: dict[str, np.ndarray], device: torch.device) -> SimResult:
    """Lava's Loihi2SimCfg fixed_pt on the export's model.net, loaded unchanged by lava-dl netx: what
    a lava-dl user gets from the file; equal to `run_lava_loihi` (tests/test_runtime_lava.py)."""
    from spikeport.runtime.lava.run import run_netx_fixed

    fp = _fixed_point(target, inputs)
    spikes, voltage = run_netx_fixed(target.export_dir / target.manifest.files["netx"], fp.window_bias(), fp.window)
    readout = len(fp.layers) - 1
    return _fixed_point_result(fp, _sample_steps(spikes, fp.timesteps), np.asarray(voltage)[:, readout : readout + fp.timesteps])


RUNNERS = {
    ("reference", "float"): run_reference,
    ("reference", "loihi"): run_reference_loihi,
    ("onnx", "float"): run_onnx_model,
    ("lava", "float"): run_in_lava,
    ("lava", "loihi"): run_lava_loihi,
}


def simulate(
    target: str | Path,
    backend: str = "reference",
    mode: str = "float",
    samples: int | None = None,
    input_file: str | Path | None = None,
    device: str = "auto",
    out: str | Path | None = None,
    dt: float | None = None,
) -> Path:
    """Run `target` on `backend` in `mode`; write and return DIR/sim/<backend>-<mode>.npz.

    `dt` (seconds per step) is needed only for a .nir file whose metadata does not give it.
    """
    if backend not in BACKENDS:
        raise UserError(f"--backend: unknown backend {backend!r} (built: {', '.join(BACKENDS)})")
    if mode not in BACKENDS[backend]:
        raise UserError(f"--mode {mode}: backend {backend} runs {', '.join(BACKENDS[backend])} only")
    if samples is not None and samples < 1:
        raise UserError(f"--samples: must be at least 1, got {samples}")
    check_number("--dt", dt, 0, low_open=True)
    resolved = resolve_target(target)
    resolved.dt = dt
    if backend == "onnx" and resolved.manifest and "onnx" in resolved.manifest.files:
        check_onnx_external(resolved.export_dir / resolved.manifest.files["onnx"])  # before torch: refused at once
    if resolved.netx is not None and (backend, mode) != ("reference", "loihi"):
        raise UserError(f"{target}: a lava-dl .net file runs with --backend reference --mode loihi")
    path = Path(out or resolved.folder) / "sim" / f"{backend}-{mode}.npz"
    check_file_writable(path)
    inputs, labels = load_inputs(resolved, Path(input_file) if input_file else None, samples)
    from spikeport.device import resolve_device

    with recorded_warnings() as notes:  # one list, each warning once, for the run and its activity
        with stage(f"{backend}-{mode}: {len(next(iter(inputs.values())))} samples"):
            result = RUNNERS[backend, mode](resolved, inputs, resolve_device(device))
        if backend == "reference":  # its activity too, for reports (cheap here; a Lava run is not repeated for it)
            from spikeport.runtime.measure import write_measured_activity

            try:
                write_measured_activity(path.parent / "activity.json", resolved, inputs, resolve_device(device), Path(target), backend, mode)
            except UserError as e:  # the outputs stand; only the report's counting cannot be done on this graph
                warnings.warn(f"no sim/activity.json: {e}", DeploymentWarning, stacklevel=2)
    arrays = {"output": result.output, "delay": np.array(result.delay), "warnings": np.array(notes, dtype=str)}
    if labels is not None:
        arrays["labels"] = labels
    arrays.update({f"spikes.{k}": v for k, v in result.spikes.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


def parity(a: Path, b: Path, out: Path) -> dict:
    """How far two simulation results agree: outputs, predictions, and spikes of common layers."""
    (_, x), (_, y) = load_npz(a), load_npz(b)
    if x["output"].shape != y["output"].shape:
        raise UserError(f"{a.name} and {b.name}: outputs have shapes {x['output'].shape} and {y['output'].shape}")
    layers = sorted(k for k in x if k.startswith("spikes.") and k in y)
    report = {
        "a": a.name,
        "b": b.name,
        "output_max_abs_diff": float(np.abs(x["output"] - y["output"]).max()),
        "prediction_agreement": float((x["output"].mean(1).argmax(-1) == y["output"].mean(1).argmax(-1)).mean()),
        "layers": {
            k.removeprefix("spikes."): {
                "spike_count_mismatches": int((x[k] != y[k]).sum()),
                "spikes_a": int(x[k].sum()),
                "spikes_b": int(y[k].sum()),
            }
            for k in layers
        },
    }
    write_json(out, report)
    return report
