"""The deployment: what the chip runs, as one value that every backend and the report take.

    deployment = Deployment.load("runs/dc")        # a run folder, an export folder, a manifest.json,
    deployment = Deployment.load("lif.nir", dt=1e-4)  # a single .nir file, or a lava-dl .net file

An export folder is its checked manifest and the files it names (export writes them once: the
lowered graph of each partition, the Loihi integers); a single file is its graph (NIR) or its
netx blocks. Loading reads and checks what the backends need, so a missing or foreign file is
refused here, in one line naming it, before any backend starts.

This module imports neither torch nor Lava (`import spikeport` stays light, and the CLI checks its
arguments first); reading a .nir file checks that the reference runtime can run it, which imports
torch then.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spikeport.errors import DeploymentWarning, UserError
from spikeport.export.manifest import Manifest, PartitionEntry, read_manifest
from spikeport.io import recover
from spikeport.readers import check_hdf5

if TYPE_CHECKING:
    import nir

    from spikeport.export.netx_read import NetxNetwork

MAX_NIR_DATASET_ELEMENTS = 10**8  # one array of an NIR file (400 MB of float32)
MAX_NIR_TOTAL_ELEMENTS = 2 * 10**8  # all arrays of an NIR file together
MAX_NIR_NODE_ELEMENTS = 10**7  # values per sample and step into or out of one node (a conv's padding makes them)


@dataclass(eq=False)
class Deployment:
    """An export (its manifest and folder), a single .nir graph, or a lava-dl .net network."""

    path: Path  # the export folder, or the single .nir / .net file
    manifest: Manifest | None  # checked (export/manifest.py); None for a single file
    folder: Path  # where sim/ and report/ go by default: the run folder, or the file's folder
    source: Path  # the file that defines it, whose hash identifies it: manifest.json, or the .nir / .net
    graph: nir.NIRGraph | None = None  # a single .nir file, as written
    netx: NetxNetwork | None = None  # a lava-dl .net file (its input shape may come from the inputs)
    dt: float | None = None  # seconds per step, for a single file that does not record it

    def __eq__(self, other) -> bool:
        return isinstance(other, Deployment) and (self.path, self.source) == (other.path, other.source)

    __hash__ = None

    @property
    def export_dir(self) -> Path | None:
        return self.path if self.manifest is not None else None

    @property
    def timesteps(self) -> int | None:
        return self.manifest.timesteps if self.manifest else None

    @property
    def partitions(self) -> dict[str, PartitionEntry]:
        """Partition name -> its manifest entry (kind, file, deployed file, boundary tensors, host buffer)."""
        return {p.name: p for p in self.manifest.partitions} if self.manifest else {}

    def file(self, name: str) -> Path | None:
        """The export's file of a kind ("nir", "onnx", "loihi", "netx"), None when it wrote none."""
        return self.path / self.manifest.files[name] if self.manifest and name in self.manifest.files else None

    def graphs(self) -> dict[str, nir.NIRGraph]:
        """Each neuromorphic partition's NIR graph as exported, by partition name."""
        return {p.name: read_nir(self.path / p.file) for p in self.manifest.partitions if p.kind == "neuromorphic" and p.file is not None}

    def deployed(self, partition: str | None = None) -> nir.NIRGraph:
        """The nir.NIRGraph the chip runs for a neuromorphic partition (the only one when None): the
        export's deployed file, written once by `export` (export/lower.py `read_deployed`); for a
        single .nir file, that file lowered (pools folded, synapses composed)."""
        from spikeport.export.lower import deploy, read_deployed

        if self.manifest is None:
            if self.graph is None:
                raise UserError(f"{self.path}: a lava-dl .net file holds netx blocks, not a NIR graph")
            return deploy(self.graph)
        chips = [name for name, p in self.partitions.items() if p.kind == "neuromorphic"]
        if partition is None:
            if len(chips) != 1:
                raise UserError(f"{self.path}: {len(chips)} neuromorphic partitions ({', '.join(chips)}); name one")
            partition = chips[0]
        if partition not in chips:
            raise UserError(f"{self.path}: no neuromorphic partition {partition!r} (there are: {', '.join(chips)})")
        return read_deployed(self.manifest, self.path, partition, read_nir)

    def check_deployed(self) -> None:
        """Read every deployed file the manifest names and check it is its partition's: its inputs and
        outputs by name (export/lower.py `read_deployed`) and its inputs' shapes, so that another
        export's file is refused, naming it, before anything runs (the report counts on them)."""
        for name, p in self.partitions.items():
            if p.kind != "neuromorphic" or p.deployed is None:
                continue
            graph = self.deployed(name)
            for tensor in p.inputs:
                shape = [int(d) for d in np.asarray(graph.nodes[tensor.name].input_type["input"]).reshape(-1)]
                if shape != list(tensor.shape):
                    raise UserError(f"{self.path / p.deployed}: input {tensor.name} holds {shape}, not partition {name}'s "
                                    f"{list(tensor.shape)}; a file of another export? (export again: `spikeport export`)")

    def with_netx(self, network: NetxNetwork) -> Deployment:
        """The same .net deployment with its network read again (once the inputs give its input shape)."""
        return dataclasses.replace(self, netx=network)

    @classmethod
    def load(cls, path: str | Path, *, dt: float | None = None) -> Deployment:
        """A run folder, an export folder, a manifest.json, a .nir or a lava-dl .net file. An export
        whose manifest names a file that is not in its folder is refused, naming both; a file that
        is not what its name says is refused naming the file."""
        path = Path(path)
        if path.suffix == ".nir" or path.suffix == ".net":
            if not path.exists():
                raise UserError(f"{path}: no such file or folder")  # anything else there (a FIFO, a folder) its reader names
            if path.suffix == ".nir":
                return cls(path, None, path.parent, path, graph=read_nir(path), dt=dt)
            from spikeport.export.netx_read import read_netx

            return cls(path, None, path.parent, path, netx=read_netx(path, defer_input_shape=True), dt=dt)
        if path.is_dir():
            if (path / "manifest.json").exists():  # an export folder: the run folder holds it when it is RUN/export
                manifest, folder = path / "manifest.json", path.parent if path.name == "export" else path
            else:
                recover(path / "export")  # an export killed in its swap: finished (or rolled back) first
                manifest, folder = path / "export" / "manifest.json", path
                if not manifest.is_file():
                    raise UserError(f"{path}: no deployment there (no export/manifest.json; run `spikeport export {path}` first)")
        elif path.suffix == ".json":
            if not path.exists():
                raise UserError(f"{path}: no such file or folder")
            manifest, folder = path, path.parent
        elif not path.exists():
            raise UserError(f"{path}: no deployment there (no such file or folder)")
        else:
            raise UserError(f"{path}: expected a run folder, a manifest.json, a .nir or a lava-dl .net file")
        if not manifest.is_file():  # a FIFO would block the read
            raise UserError(f"{manifest}: not a regular file; a manifest.json is the one `spikeport export` writes")
        checked = read_manifest(manifest)  # validates it, naming the field that is wrong
        named = [*checked.files.values(), *(name for p in checked.partitions for name in (p.file, p.deployed) if name is not None)]
        missing = [name for name in named if not (manifest.parent / name).is_file()]
        if missing:
            raise UserError(f"{manifest}: names {', '.join(missing)}, not in {manifest.parent}; export again (`spikeport export`): no such file")
        return cls(manifest.parent, checked, folder, manifest, dt=dt)


def read_nir(path: Path) -> nir.NIRGraph:
    """An NIR file the reference runtime can run; UserError naming the file (and node) otherwise.

    The file is checked before nir.read sees it (spikeport/readers.py `check_hdf5`): no links or
    storage outside the file, and dataset sizes from their metadata, since nir.read loads every
    dataset whole and a file of a few KiB can declare terabytes (MAX_NIR_DATASET_ELEMENTS,
    MAX_NIR_TOTAL_ELEMENTS). The nodes' declared shapes are bounded before anything runs on them."""
    import nir

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
