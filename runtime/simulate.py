"""`spikeport simulate TARGET`: run a deployment on a backend, write DIR/sim/<backend>-<mode>.npz
and, from the same run's spike trains, DIR/sim/activity.json.

TARGET is a run folder (its export/manifest.json), an export folder, a manifest.json, a single
`.nir` file, or a lava-dl `.net` file (spikeport/deployment.py `Deployment.load`). Inputs come from
`--input FILE.npz` (key `input`, or `input.<name>` for each of several inputs, shape
[N, T, *input_shape]) or, for a run, from the first N samples of the run's test set.

This module is the stage only: it resolves the inputs, picks the backend from BACKENDS
(runtime/backends.py: each one file with one signature, `run(deployment, inputs, *, mode, device,
record) -> SimResult`), and
writes what the run gave. The npz holds `output` [N, T, *output_shape] aligned to the input
timesteps, `delay` (pipeline steps removed), `labels` when known, and `spikes.<layer>` spike counts
[N, T] per neuron layer. The activity file holds what runtime/measure.py counts in the run's spike
trains; a backend that gives none (ONNX) writes none, and says so. `--compare A,B` also writes
parity-A-vs-B.json: how far two backends' outputs and spikes agree.
"""

from __future__ import annotations

import dataclasses
import io
import math
import warnings
from pathlib import Path

import nir
import numpy as np

from spikeport.config import check_number
from spikeport.deployment import Deployment
from spikeport.errors import DeploymentWarning, UserError, recorded_warnings
from spikeport.export.manifest import Manifest
from spikeport.io import atomic_open, check_file_writable, write_json
from spikeport.progress import stage
from spikeport.readers import check_onnx_external, load_npz, memory_budget
from spikeport.runtime.backends import backend_module, check_backend
from spikeport.runtime.result import SimResult


def load(target: Deployment | str | Path, dt: float | None = None) -> Deployment:
    """The deployment a stage runs: `target` itself, or loaded from its path, with `dt` (seconds
    per step) for a single file that does not record it."""
    check_number("--dt", dt, 0, low_open=True)
    if isinstance(target, Deployment):
        return target if dt is None else dataclasses.replace(target, dt=dt)
    return Deployment.load(target, dt=dt)


def load_inputs(deployment: Deployment, input_file: Path | None, samples: int | None) -> tuple[Deployment, dict[str, np.ndarray], np.ndarray | None]:
    """Inputs [N, T, *shape] by name, and labels when they come from a test set; and the deployment,
    whose .net network takes its input shape from the inputs when the file has no input layer."""
    if deployment.manifest:
        names = [t.name for t in deployment.manifest.inputs]
    elif deployment.netx is not None:
        names = ["input"]
    else:
        names = [n for n, v in deployment.graph.nodes.items() if isinstance(v, nir.Input)]
    if input_file is not None:
        keys = ["input"] if len(names) == 1 else [f"input.{n}" for n in names]
        files, data = load_npz(input_file, [*keys, "labels"])
        missing = [k for k in keys if k not in data]
        if missing:
            raise UserError(f"{input_file}: missing key {missing[0]!r} (has: {', '.join(files) or 'nothing'})")
        inputs = {n: data[k] for n, k in zip(names, keys)}
        labels = data.get("labels")
    else:
        if deployment.manifest is None or "data" not in deployment.manifest.source:
            raise UserError(f"no --input given, and the target names no dataset to take samples from; give --input FILE.npz holding {_npz_layout(deployment, names)}")
        import torch

        from spikeport.train import datasets

        data_config = deployment.manifest.source["data"]
        test = datasets.load(data_config["name"], data_config["root"], "test", deployment.manifest.timesteps, options=data_config.get("options"))
        n = len(test) if samples is None else min(samples, len(test))
        _check_batch_fits(deployment.manifest, n, data_config["name"])
        items = [test[i] for i in range(n)]
        if isinstance(items[0][0], tuple):  # a multi-input dataset: one tensor per input, in the manifest's order
            inputs = {name: torch.stack([x[i] for x, _ in items]).numpy() for i, name in enumerate(names)}
        else:
            inputs = {names[0]: torch.stack([x for x, _ in items]).numpy()}
        labels = np.array([int(y) for _, y in items])
    if deployment.netx is not None and deployment.netx.input_shape is None:  # a file without an input layer: the input's shape
        x = inputs["input"]
        if x.ndim < 3:
            raise UserError(f"{input_file}: input 'input' has shape {list(x.shape)}; expected [N, T, C, H, W] for {deployment.source}")
        from spikeport.export.netx_read import read_netx

        deployment = deployment.with_netx(read_netx(deployment.source, input_shape=x.shape[2:]))
    for name, x in inputs.items():
        _check_input(name, x, deployment, input_file)
    return deployment, inputs, labels


def _npz_layout(deployment: Deployment, names: list[str]) -> str:
    """The arrays an --input file for `target` holds, for a message: keys and shapes."""
    if deployment.manifest:
        shapes = [[deployment.manifest.timesteps, *next(t.shape for t in deployment.manifest.inputs if t.name == n)] for n in names]
    elif deployment.netx is not None:
        shapes = [["T", *(deployment.netx.input_shape or ("C", "H", "W"))]]
    else:
        shapes = [["T", *(int(d) for d in deployment.graph.nodes[n].input_type["input"])] for n in names]
    keys = ["input"] if len(names) == 1 else [f"input.{n}" for n in names]
    arrays = [f"{key!r} [N, {', '.join(map(str, shape))}]" for key, shape in zip(keys, shapes)]
    return ", ".join(arrays) + " (numbers), and optionally 'labels' [N] (integers)"


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


def _check_input(name: str, x: np.ndarray, deployment: Deployment, source) -> None:
    where = source or "inputs"
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer) and x.dtype != bool:
        raise UserError(f"{where}: input {name!r} has dtype {x.dtype}; expected numbers")
    if deployment.manifest:
        shape = next(t.shape for t in deployment.manifest.inputs if t.name == name)
        expected = [deployment.manifest.timesteps, *shape]
        if x.ndim != len(expected) + 1 or list(x.shape[1:]) != expected:
            raise UserError(f"{where}: input {name!r} has shape {list(x.shape)}; expected [N, {', '.join(map(str, expected))}]")
    if deployment.netx is not None and (x.ndim != 2 + len(deployment.netx.input_shape) or tuple(x.shape[2:]) != tuple(deployment.netx.input_shape)):
        raise UserError(f"{where}: input {name!r} has shape {list(x.shape)}; expected [N, T, {', '.join(map(str, deployment.netx.input_shape))}]")
    if deployment.graph is not None:
        shape = [int(n) for n in deployment.graph.nodes[name].input_type["input"]]
        if x.ndim != 2 + len(shape) or list(x.shape[2:]) != shape:
            raise UserError(f"{where}: input {name!r} has shape {list(x.shape)}; expected [N, T, {', '.join(map(str, shape))}]")
    if x.ndim == 0 or len(x) == 0:
        raise UserError(f"{where}: input {name!r} holds 0 samples; nothing to simulate")
    if not np.all(np.isfinite(x)):
        raise UserError(f"{where}: input {name!r} holds NaN or infinite values")


def run(deployment: Deployment, inputs: dict[str, np.ndarray], backend: str, mode: str, device: str = "auto", name: str = "network"):
    """One backend's run of `deployment` on `inputs`, and the activity counted from its spike trains
    (runtime/measure.py `count`), or the reason there is none (ONNX gives no trains; a graph whose
    layers cannot be counted). What `simulate` writes, and what `report` counts when it is given
    no activity file: both call this, so a report counts the run `simulate` would make."""
    module = backend_module(backend, mode)
    from spikeport.device import resolve_device

    torch_device = resolve_device(device)
    with stage(f"{backend}-{mode}: {len(next(iter(inputs.values())))} samples"):
        result = module.run(deployment, inputs, mode=mode, device=torch_device, record=True)
    if result.trains is None:
        return result, f"the {backend} backend gives no spike trains to count (it runs the model as one graph)"
    from spikeport.runtime.measure import count

    try:
        return result, count(deployment, inputs, result.trains, torch_device, name=name, backend=backend, mode=mode)
    except UserError as e:  # the outputs stand; only the report's counting cannot be done on this graph
        return result, str(e)


def simulate(
    target: Deployment | str | Path,
    backend: str = "reference",
    mode: str = "float",
    samples: int | None = None,
    input_file: str | Path | None = None,
    device: str = "auto",
    out: str | Path | None = None,
    dt: float | None = None,
) -> SimResult:
    """Run `target` on `backend` in `mode`; write DIR/sim/<backend>-<mode>.npz and DIR/sim/activity.json
    and return the result, its `path` the npz.

    `dt` (seconds per step) is needed only for a .nir file whose metadata does not give it.
    """
    check_backend(backend, mode)
    if samples is not None and samples < 1:
        raise UserError(f"--samples: must be at least 1, got {samples}")
    deployment = load(target, dt)
    if deployment.netx is not None and (mode != "loihi" or backend == "onnx"):
        raise UserError(f"{deployment.path}: a lava-dl .net file holds Loihi integers; it runs with --mode loihi (--backend reference or lava)")
    if backend == "onnx" and deployment.file("onnx") is not None:
        check_onnx_external(deployment.file("onnx"))  # before torch: refused at once
    path = Path(out or deployment.folder) / "sim" / f"{backend}-{mode}.npz"
    check_file_writable(path)
    deployment, inputs, labels = load_inputs(deployment, Path(input_file) if input_file else None, samples)  # before torch, for a file
    deployment.check_deployed()
    from spikeport.activity import Measured, fingerprint, inputs_fingerprint, write_activity

    with recorded_warnings() as notes:  # one list, each warning once, for the run and its activity
        result, network = run(deployment, inputs, backend, mode, device, name=deployment_name(deployment))
        if isinstance(network, str):
            warnings.warn(f"no sim/activity.json: {network}", DeploymentWarning, stacklevel=2)
            network = None
    arrays = {"output": result.output, "delay": np.array(result.delay), "warnings": np.array(notes, dtype=str)}
    if labels is not None:
        arrays["labels"] = labels
    arrays.update({f"spikes.{k}": v for k, v in result.spikes.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    if network is not None:
        network.warnings = list(notes)
        write_activity(path.parent / "activity.json", network, Measured(fingerprint(deployment.source), backend, mode, inputs_fingerprint(inputs)))
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())
    result.labels, result.path, result.trains = labels, path, None  # what the npz holds
    return result


def deployment_name(deployment: Deployment) -> str:
    """The name a report gives the network: the run folder's, or the single file's stem."""
    return deployment.source.stem if deployment.manifest is None else deployment.folder.name


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
