"""manifest.json: what an export folder holds and how its files connect (docs/export.md).

The manifest is the contract between export and the runtimes and reports: the model's inputs and
outputs, the partitions in execution order with their files and boundary tensors, whether each
host partition is causal in time and how many timesteps it buffers, T and dt.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spikeport.errors import UserError
from spikeport.io import write_json

FORMAT = "spikeport-manifest-1"


@dataclass
class Tensor:
    name: str
    shape: list[int]  # per sample: no time, no batch
    kind: str  # "spike" or "graded"


@dataclass
class PartitionEntry:
    name: str
    kind: str  # "neuromorphic" or "host"
    file: str | None  # model.nir / host.onnx / <name>.nir / <name>.onnx; None when that format was not asked for
    inputs: list[Tensor]
    outputs: list[Tensor]
    causal: bool = True  # host: every output at t depends only on inputs at t' <= t
    buffer_timesteps: int = 0  # host: timesteps to collect before the first output
    host_ops: list[str] = field(default_factory=list)  # host: each op and why it cannot run on a core
    macs_per_sample: float = 0.0  # host: multiply-accumulates per sample over all T (torch's FLOP counter / 2)
    # neuromorphic: the partition as the chip runs it (deployed.nir, or deployed-<name>.nir each when there
    # are several; export/lower.py `deploy`), written once by export; None where it does not lower, or in
    # an export written before deployed files (readers then lower `file` themselves)
    deployed: str | None = None


@dataclass
class Manifest:
    timesteps: int
    dt: float  # seconds per timestep
    inputs: list[Tensor]
    outputs: list[Tensor]
    partitions: list[PartitionEntry]
    files: dict[str, str]  # whole-model files by format: "onnx" -> model.onnx (partition files are in partitions)
    source: dict  # the run it came from: model config, dataset, checkpoint epoch
    format: str = FORMAT

    def write(self, path: str | Path) -> None:
        write_json(path, asdict(self))


def _tensors(items: list[dict], where: str) -> list[Tensor]:
    try:
        return [Tensor(name=str(t["name"]), shape=[int(n) for n in t["shape"]], kind=str(t["kind"])) for t in items]
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise UserError(f"{where}: malformed tensor entry ({e})") from None


def read_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest; one line naming the file and the field when it is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not a spikeport manifest (expected format {FORMAT})")
    try:
        partitions = [
            PartitionEntry(
                name=p["name"],
                kind=p["kind"],
                file=p["file"],
                inputs=_tensors(p["inputs"], f"{path}: partitions.{p['name']}.inputs"),
                outputs=_tensors(p["outputs"], f"{path}: partitions.{p['name']}.outputs"),
                causal=bool(p.get("causal", True)),
                buffer_timesteps=int(p.get("buffer_timesteps", 0)),
                host_ops=list(p.get("host_ops", [])),
                macs_per_sample=float(p.get("macs_per_sample", 0.0)),
                deployed=p.get("deployed"),
            )
            for p in data["partitions"]
        ]
        manifest = Manifest(
            timesteps=int(data["timesteps"]),
            dt=float(data["dt"]),
            inputs=_tensors(data["inputs"], f"{path}: inputs"),
            outputs=_tensors(data["outputs"], f"{path}: outputs"),
            partitions=partitions,
            files=dict(data["files"]),
            source=dict(data.get("source", {})),
        )
    except KeyError as e:
        raise UserError(f"{path}: missing field {e}") from None
    except (TypeError, ValueError, OverflowError) as e:  # OverflowError: int() of an infinite number
        raise UserError(f"{path}: malformed field ({e})") from None
    if manifest.timesteps < 1 or not 0 < manifest.dt < math.inf:  # `not`: a NaN dt fails too
        raise UserError(f"{path}: timesteps must be >= 1 and dt > 0 (finite), got {manifest.timesteps} and {manifest.dt}")
    for p in manifest.partitions:
        if not 0 <= p.macs_per_sample < math.inf:
            raise UserError(f"{path}: partitions.{p.name}.macs_per_sample must be a finite number >= 0, got {p.macs_per_sample}")
        if p.kind not in ("neuromorphic", "host"):
            raise UserError(f"{path}: partitions.{p.name}.kind must be neuromorphic or host, got {p.kind!r}")
        if p.deployed is not None and (p.kind != "neuromorphic" or Path(str(p.deployed)).suffix != ".nir"):
            raise UserError(f"{path}: partitions.{p.name}.deployed: {p.deployed!r}; only a neuromorphic partition has a deployed graph, a .nir file")
    named = {f"partitions.{p.name}.file": p.file for p in manifest.partitions if p.file is not None}
    named.update({f"partitions.{p.name}.deployed": p.deployed for p in manifest.partitions if p.deployed is not None})
    named.update({f"files.{k}": v for k, v in manifest.files.items()})
    for key, name in named.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise UserError(f"{path}: {key}: {name!r} is not a plain file name in the export folder; refused")
    return manifest
