"""The Python API: the four stages as keyword-only functions that return values.

    run = spikeport.train(config="configs/digits-cnn.yaml", out="runs/dc")
    deployment = spikeport.export(run=run)
    sim = spikeport.simulate(target=deployment, samples=100)
    report = spikeport.report(target=deployment, profiles=["loihi2", "speck"])

Each function is what the CLI command of the same name runs, and each stage still leaves its files
in the run folder (ARCHITECTURE.md, "The run folder"): the values returned here are read back from
those files, so what a notebook holds is exactly what a later stage, or another tool, reads.
Bad input raises `spikeport.errors.UserError` with the one line the CLI would print.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


from spikeport.deployment import Deployment
from spikeport.errors import UserError
from spikeport.readers import load_npz
from spikeport.runtime.result import SimResult

PathLike = str | Path


@dataclass(frozen=True)
class Run:
    """A run folder written by `train`: its resolved config and one metrics row per epoch."""

    folder: Path
    config: dict
    metrics: list[dict]

    @property
    def test_accuracy(self) -> float | None:
        return self.metrics[-1].get("test_acc") if self.metrics else None

    @classmethod
    def load(cls, folder: PathLike) -> Run:
        from spikeport.config import load_config
        from spikeport.io import read_text

        folder = Path(folder)
        if not (folder / "config.yaml").is_file():
            raise UserError(f"{folder}: not a run folder (no config.yaml; `spikeport train` writes one)")
        lines = read_text(folder / "metrics.jsonl").splitlines() if (folder / "metrics.jsonl").exists() else []
        return cls(folder, load_config(folder / "config.yaml").to_dict(), [json.loads(line) for line in lines if line.strip()])


@dataclass(frozen=True)
class Report:
    """report.json of one network against several chips."""

    path: Path  # the report folder: report.json, report.md, report.html, plots/
    data: dict = field(repr=False)
    passed: bool = True  # every requested check (fit, budget) passed

    @property
    def profiles(self) -> dict[str, dict]:
        """Profile name -> its entry: fit, energy, latency."""
        return dict(self.data["profiles"])


def _target(target: Deployment | Run | PathLike) -> Deployment | Path:
    """What the stages take: a Deployment as it is, a run's folder, or the path given."""
    if isinstance(target, Deployment):
        return target
    if isinstance(target, Run):
        return target.folder
    return Path(target)


def train(
    *,
    config: PathLike | Mapping,
    out: PathLike,
    epochs: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    resume: bool = False,
    nproc: int = 1,
) -> Run:
    """Train a config (a YAML path or the same data as a dict) into the run folder `out`.

    `nproc` > 1 trains in that many processes (torchrun; DDP over gloo on CPU, nccl on GPU), each
    started as `spikeport train` on the config file; what a user can get wrong is checked once here,
    before they start. Processes that fail raise subprocess.CalledProcessError (they have printed why)."""
    from spikeport.config import config_from_dict, load_config

    if not isinstance(config, Mapping):
        _check_is_config(Path(config))
    if nproc < 1:
        raise UserError(f"--nproc: must be at least 1, got {nproc}")
    source = "config" if isinstance(config, Mapping) else str(config)
    resolved = dict(config) if isinstance(config, Mapping) else load_config(config).to_dict()
    resolved = json.loads(json.dumps(resolved))  # a deep copy: the caller's dict stays as it was
    resolved.setdefault("train", {})
    if epochs is not None:
        resolved["train"]["epochs"] = epochs
    if seed is not None:
        resolved["train"]["seed"] = seed
    checked = config_from_dict(resolved, source=source)
    from spikeport.device import resolve_device
    from spikeport.train.loop import check_run_folder, model_for
    from spikeport.train.loop import train as run_training

    try:
        model_for(checked)  # a wrong model option is named against the config that holds it
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    if nproc > 1:
        if isinstance(config, Mapping):
            raise UserError("nproc > 1: give the config as a YAML file; each training process reads it")
        resolve_device(device)
        check_run_folder(out, checked, resume)
        options = [*(["--epochs", str(epochs)] if epochs is not None else []), *(["--seed", str(seed)] if seed is not None else []),
                   "--device", device, *(["--resume"] if resume else [])]
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   "-m", "spikeport.cli", "train", str(config), "--out", str(out), *options]
        subprocess.run(command, check=True)
        return Run.load(out)
    history = run_training(checked, out, device=device, resume=resume)
    # from what training returned: under torchrun only the first process writes metrics.jsonl
    return Run(Path(out), checked.to_dict(), list(history))


NOT_CONFIGS = {
    ".nir": "an exported network (NIR)",
    ".onnx": "an exported network (ONNX)",
    ".net": "an exported network (lava-dl netx)",
    ".pt": "a checkpoint",
    ".npz": "an array file",
}


def _check_is_config(path: Path, command: str = "train") -> None:
    """Refuse a file that is plainly not a config, by its suffix, with what to do instead."""
    what = NOT_CONFIGS.get(path.suffix.lower())
    if what:
        raise UserError(f"{path}: {what}, not a config; `spikeport {command}` takes a config YAML (see configs/), "
                        "`spikeport simulate` and `spikeport report` take exported networks")


def export(
    *,
    run: Run | PathLike | None = None,
    model=None,
    nir: PathLike | None = None,
    input_shape: Sequence[int] | None = None,
    timesteps: int | None = None,
    out: PathLike | None = None,
    formats: Sequence[str] | None = None,
    quantize: str | None = None,
    dt: float | None = None,
    inputs: PathLike | None = None,
) -> Deployment:
    """Export a trained run to RUN/export, a model of your own (an snnTorch `nn.Module`) to OUT/export,
    or a NIR file that another tool wrote to OUT/export.

    A run: `export(run=...)`. Your model: `export(model=net, input_shape=(1, 28, 28), timesteps=25,
    out="runs/mine")`, with `input_shape` one sample at one step (export/from_snntorch.py says which
    models are understood; its spikes are checked equal to your model's before anything is written).
    `formats` defaults to nir, onnx and lava (the Lava/Loihi files only where every neuron is one Loihi
    computes); `quantize` ("loihi" or "none") to loihi whenever lava is among them.

    A NIR file: `export(nir="lif_norse.nir", dt=1e-4, timesteps=200, out="runs/lif")`, or with
    `inputs` (an npz as `simulate --input` takes: `input` [N, T, *shape]) instead of `timesteps`, to
    calibrate the fixed-point ranges on your data. `dt` is needed where the file gives none; OUT
    defaults to the file's folder. Formats nir and lava (export/exporter.py `export_nir_file`).
    """
    from spikeport.config import check_number

    if sum(x is not None for x in (run, model, nir)) != 1:
        raise UserError("export: give one of run= (a trained run folder), model= (an nn.Module) or nir= (a .nir file)")
    check_number("--dt", dt, 0, low_open=True)
    if nir is not None:
        return _export_nir(Path(nir), out, formats, quantize, dt, timesteps, inputs)
    if inputs is not None:
        raise UserError("export: inputs= (calibration samples) is for nir= files; a run calibrates on its training set")
    if run is not None:
        from spikeport.train.checkpoint import check_checkpoint

        from spikeport.io import check_replaceable

        check_checkpoint(_target(run) / "checkpoint.pt")  # before the exporter's imports (torch): a wrong path answers at once
        check_replaceable(_target(run) / "export")  # and a folder export may not replace, too
    from spikeport.export.exporter import export as run_export
    from spikeport.export.exporter import export_model
    from spikeport.export.nir_graph import DEFAULT_DT

    if run is not None:
        return Deployment.load(run_export(_target(run), tuple(formats or ("nir", "onnx", "lava")), quantize, dt or DEFAULT_DT))
    from spikeport.export.from_snntorch import convert, off_chip

    if out is None or input_shape is None or timesteps is None:
        raise UserError("export(model=...): give input_shape (one sample at one step), timesteps and out (the folder to write)")
    chain = convert(model, tuple(input_shape), timesteps)
    refused = off_chip(chain)  # neuron layers no Loihi target computes, one line each
    if formats is None:
        formats = ("nir", "onnx") if refused else ("nir", "onnx", "lava")
    if refused and quantize is None:
        quantize = "none"  # Loihi integers for a neuron that Loihi does not compute would mislead
    if refused and ("lava" in formats or quantize == "loihi"):
        raise UserError(f"{refused[0]}; or export formats nir and onnx only")
    source = {"model": type(model).__name__, "from": "snntorch", "input_shape": list(input_shape)}
    folder = export_model(chain, tuple(input_shape), timesteps, Path(out) / "export", tuple(formats), quantize, dt or DEFAULT_DT, source)
    return Deployment.load(folder)


def _export_nir(path: Path, out: PathLike | None, formats: Sequence[str] | None, quantize: str | None, dt: float | None,
                timesteps: int | None, inputs: PathLike | None) -> Deployment:
    """export(nir=...): the file checked, the calibration arrays read, then export/exporter.py."""
    if path.suffix != ".nir":
        raise UserError(f"{path}: not a .nir file; export(nir=...) takes a NIR graph")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    arrays = None
    if inputs is not None:
        import nir as nir_format

        from spikeport.deployment import read_nir

        names = [n for n, node in read_nir(path).nodes.items() if isinstance(node, nir_format.Input)]
        keys = ["input"] if len(names) == 1 else [f"input.{n}" for n in names]
        found, data = load_npz(Path(inputs), keys)
        missing = [k for k in keys if k not in data]
        if missing:
            raise UserError(f"{inputs}: missing key {missing[0]!r} (has: {', '.join(found) or 'nothing'})")
        arrays = {n: data[k] for n, k in zip(names, keys)}
    from spikeport.export.exporter import FOREIGN_FORMATS, export_nir_file

    folder = Path(out) / "export" if out is not None else path.parent / "export"
    return Deployment.load(export_nir_file(path, folder, tuple(formats or FOREIGN_FORMATS), quantize, dt, timesteps, arrays))


def simulate(
    *,
    target: Deployment | Run | PathLike,
    backend: str = "reference",
    mode: str = "float",
    samples: int | None = None,
    inputs: PathLike | None = None,
    device: str = "auto",
    out: PathLike | None = None,
    dt: float | None = None,
) -> SimResult:
    """Run the deployment on one backend (reference, onnx, lava) in float or Loihi fixed point;
    writes sim/<backend>-<mode>.npz and, where the backend gives spike trains, sim/activity.json."""
    from spikeport.runtime.simulate import simulate as run_simulation

    return run_simulation(_target(target), backend, mode, samples, Path(inputs) if inputs else None, device, Path(out) if out else None, dt)


@dataclass(frozen=True)
class Parity:
    """parity-A-vs-B.json: how far two backends' runs agree (outputs, predictions, spikes per layer)."""

    path: Path
    data: dict = field(repr=False)

    @property
    def output_max_abs_diff(self) -> float:
        return float(self.data["output_max_abs_diff"])

    @property
    def prediction_agreement(self) -> float:
        return float(self.data["prediction_agreement"])


def compare(*, a: SimResult | PathLike, b: SimResult | PathLike, out: PathLike | None = None) -> Parity:
    """Compare two simulation results; writes `out` (default: parity-A-vs-B.json beside A's npz)."""
    from spikeport.runtime.simulate import parity

    first, second = (Path(r.path if isinstance(r, SimResult) else r) for r in (a, b))
    path = Path(out) if out else first.parent / f"parity-{first.stem}-vs-{second.stem}.json"
    return Parity(path, parity(first, second, path))


def report(
    *,
    target: Deployment | Run | PathLike,
    profiles: Sequence[str] | str = "all",
    profiles_dirs: Sequence[PathLike] = (),
    inputs: PathLike | None = None,
    samples: int = 256,
    backend: str = "reference",
    mode: str | None = None,
    budget_ms: float | None = None,
    out: PathLike | None = None,
    device: str = "auto",
    dt: float | None = None,
    activity: PathLike | None = None,
) -> Report:
    """Activity, fit, energy and latency of the deployment per hardware profile. With `activity`
    (the sim/activity.json that `simulate` writes) nothing is run again: the file's counts are used."""
    from spikeport.reporting import make_report

    if samples < 1:
        raise UserError(f"samples: must be at least 1, got {samples}")
    names = [] if profiles == "all" else [profiles] if isinstance(profiles, str) else list(profiles)
    result = make_report(_target(target), names, list(profiles_dirs), inputs, samples, budget_ms, out, device, dt, backend, mode, activity)
    return Report(Path(result.out_dir), result.data, result.passed)
