"""The bad-input corpus (issue 8): every way a user's file or argument can be wrong, as CLI cases.

Each case builds its bad input inside an empty workspace folder (from the files in this folder,
from a copy of a trained and exported run, or from a few seeded random bytes) and returns the
`spikeport` arguments that feed it in. tests/test_bad_inputs.py runs every case and asserts what
the CLI promises for bad input: exit 2, one stderr line that holds `expect` (the file or field and
the problem), no traceback, no file created or changed anywhere in the workspace (outputs and the
run folder both live there; the test also runs with the workspace as working directory).

Configs are plain files (configs/*.yaml, headed `# expect: <fragment>`, and `# known issue: <why>`
while a case fails); everything that must be derived from a real export is a small builder below.
A case with a known issue is an expected failure until the issue is fixed.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pickle
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import nir
import numpy as np
import torch
import yaml

from spikeport.io import MARKER as MARKER_NAME

HERE = Path(__file__).parent
PROFILE = HERE.parents[1] / "hwprofiles" / "profiles" / "loihi2.yaml"
RUN_FILES = ("config.yaml", "checkpoint.pt", "metrics.jsonl", "export")
HUGE = (10**6, 10**6)  # 4 TB of float32, declared by a file of a few KiB


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Path], list]  # (workspace, trained run) -> CLI arguments
    expect: tuple[str, ...]  # fragments of the one error line
    known_issue: str = ""  # why it fails today and where the fix belongs (an expected failure until fixed)


def copy_run(run: Path, ws: Path) -> Path:
    """The trained run's own files (not the sim/ or report/ other tests write) in ws/run."""
    (ws / "run").mkdir()
    for name in RUN_FILES:
        source = run / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, ws / "run" / name)
    return ws / "run"


def random_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def truncated(path: Path) -> Path:
    return written(path, path.read_bytes()[: path.stat().st_size // 2])


def written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


# --- builders: each returns the CLI arguments ------------------------------------------------------


def config_case(path: Path) -> Case:
    """A config file whose header says `# expect: FRAGMENT` (and `# known issue: WHY` while it fails)."""
    header = {}
    for line in path.read_text().splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(": ")
        header[key] = value
    build = lambda ws, run: ["train", path, "--out", ws / "out"]  # noqa: E731
    return Case(f"config-{path.stem}", build, (path.name, header["expect"]), header.get("known issue", ""))


def bytes_file(name: str, content: Callable[[Path], bytes], command: Callable[[Path], list]):
    """A file `name` in the workspace holding `content(run)`; `command(file)` feeds it in."""

    def build(ws: Path, run: Path) -> list:
        (ws / name).write_bytes(content(run))
        return command(ws / name)

    return build


def half_of(relative: str) -> Callable[[Path], bytes]:
    return lambda run: (run / relative).read_bytes()[: (run / relative).stat().st_size // 2]


def noise(seed: int) -> Callable[[Path], bytes]:
    return lambda run: random_bytes(4096, seed)


def in_run(relative: str, damage: Callable[[Path], None], *args: str):
    """Damage one file of a copy of the trained run; run `args` on the copy."""

    def build(ws: Path, run: Path) -> list:
        copied = copy_run(run, ws)
        damage(copied / relative)
        return [arg.replace("RUN", str(copied)) for arg in args]

    return build


def overwrite(content: Callable[[], bytes]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content())


def hostile_checkpoint(path: Path) -> None:
    """A checkpoint whose pickle would create ws/pwned when loaded (the checkpoint is
    ws/run/checkpoint.pt): the workspace check would see the marker."""

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {path.parent.parent / 'pwned'}",))

    state = torch.load(path, weights_only=True)
    torch.save({**state, "model": Exploit()}, path, pickle_module=pickle)


class _ScriptedPayload(torch.nn.Module):
    """A TorchScript module whose __setstate__ runs on load (torch < 2.6 loads it under weights_only)."""

    def forward(self, a):
        return a

    @torch.jit.export
    def __getstate__(self):
        return (self.training,)

    @torch.jit.export
    def __setstate__(self, state: tuple[bool]):
        print("pwned")
        self.training = state[0]


def torchscript_checkpoint(path: Path) -> None:
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; an attacker's archive is written anyway
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(_ScriptedPayload()), path)


def edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return damage


def nir_file(change: Callable[[dict, list], None]):
    """The trained run's model.nir with its nodes/edges changed, written as ws/bad.nir."""

    def build(ws: Path, run: Path) -> list:
        graph = nir.read(run / "export" / "model.nir")
        nodes, edges = dict(graph.nodes), list(graph.edges)
        change(nodes, edges)
        nir.write(ws / "bad.nir", nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata, type_check=False))
        return ["simulate", ws / "bad.nir", "--input", inputs_npz(ws, (2, 4, 1, 8, 8)), "--out", ws / "out"]

    return build


def lif_with(node: nir.LIF, **changes) -> nir.LIF:
    fields = dict(tau=node.tau, r=node.r, v_leak=node.v_leak, v_threshold=node.v_threshold, v_reset=node.v_reset)
    return nir.LIF(**{**fields, **changes})


def with_nan(array: np.ndarray, value: float) -> np.ndarray:
    array = np.array(array, dtype=np.float32)
    array.flat[3] = value
    return array


def netx_file(change: Callable[[h5py.File], None]):
    """The trained run's model.net with groups or datasets changed, written as ws/bad.net."""

    def build(ws: Path, run: Path) -> list:
        shutil.copy2(run / "export" / "model.net", ws / "bad.net")
        with h5py.File(ws / "bad.net", "r+") as f:
            change(f)
        return ["simulate", ws / "bad.net", "--mode", "loihi", "--out", ws / "out"]

    return build


def replace_dataset(f: h5py.File, key: str, shape=HUGE) -> None:
    """`key` declared with `shape` but stored sparsely: a tiny file that would take terabytes to read."""
    del f[key]
    f.create_dataset(key, shape=shape, dtype="f4", chunks=(1, 1000), compression="gzip")


def profile_file(change: Callable[[dict], None], command: str = "validate"):
    """loihi2.yaml with one change, written as ws/p.yaml, fed to `profiles validate` or to `report`."""

    def build(ws: Path, run: Path) -> list:
        data = yaml.safe_load(PROFILE.read_text())
        change(data)
        (ws / "p.yaml").write_text(yaml.safe_dump(data))
        if command == "validate":
            return ["profiles", "validate", ws / "p.yaml"]
        return ["report", copy_run(run, ws), "--profiles", ws / "p.yaml", "--samples", "4"]

    return build


def inputs_npz(ws: Path, shape=(2, 4, 1, 8, 8), value=None, dtype="float32", key: str = "input") -> Path:
    x = np.random.default_rng(0).random(shape).astype(dtype) if value is None else np.full(shape, value, dtype=dtype)
    np.savez(ws / "in.npz", **{key: x})
    return ws / "in.npz"


def with_input(*npz_args, **npz_kwargs):
    """simulate a copy of the run on ws/in.npz (made by inputs_npz)."""

    def build(ws: Path, run: Path) -> list:
        return ["simulate", copy_run(run, ws), "--input", inputs_npz(ws, *npz_args, **npz_kwargs)]

    return build


def object_npz(ws: Path, run: Path) -> list:
    np.savez(ws / "in.npz", input=np.array([{"a": 1}, None], dtype=object))
    return ["simulate", copy_run(run, ws), "--input", ws / "in.npz"]


def regular_file(ws: Path) -> Path:
    (ws / "a-file").write_text("not a folder\n")
    return ws / "a-file"


def valid_config(ws: Path) -> Path:
    (ws / "ok.yaml").write_text(yaml.safe_dump({"model": {"name": "spiking-cnn", "channels": [4, 8]}, "data": {"root": str(ws / "data")}, "train": {"epochs": 1}}))
    return ws / "ok.yaml"


def set_in(path: str, value) -> Callable[[dict], None]:
    """Set a dotted field of a nested dict (a profile) to `value`."""

    def change(data: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return change


def rename_in(path: str, new: str) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[new] = data.pop(last)

    return change


def _cycle(nodes: dict, edges: list) -> None:
    """Two Scale nodes feeding each other: the types agree, and the loop passes no neuron, so nothing
    holds the state that would delay it (a loop through a neuron is a recurrent network, and runs)."""
    nodes["loop_a"] = nir.Scale(np.ones((8, 8, 8)))
    nodes["loop_b"] = nir.Scale(np.ones((8, 8, 8)))
    edges += [("lif1", "loop_a"), ("loop_a", "loop_b"), ("loop_b", "loop_a")]


def _dangling(nodes: dict, edges: list) -> None:
    edges.append(("lif2", "ghost"))


def _shape_mismatch(nodes: dict, edges: list) -> None:
    nodes["fc"] = nir.Affine(weight=np.ones((10, 63), np.float32), bias=np.zeros(10, np.float32))


def _nan_weight(nodes: dict, edges: list) -> None:
    conv = nodes["conv1"]
    nodes["conv1"] = nir.Conv2d(input_shape=conv.input_shape, weight=with_nan(conv.weight, np.nan), stride=conv.stride, padding=conv.padding,
                                dilation=conv.dilation, groups=conv.groups, bias=conv.bias)


def _inf_weight(nodes: dict, edges: list) -> None:
    nodes["fc"] = nir.Affine(weight=with_nan(nodes["fc"].weight, np.inf), bias=nodes["fc"].bias)


def _negative_tau(nodes: dict, edges: list) -> None:
    nodes["lif2"] = lif_with(nodes["lif2"], tau=-np.abs(nodes["lif2"].tau))


def _nan_threshold(nodes: dict, edges: list) -> None:
    nodes["lif1"] = lif_with(nodes["lif1"], v_threshold=with_nan(nodes["lif1"].v_threshold, np.nan))


def nir_hdf5(change: Callable[[h5py.File], None]):
    """The trained run's model.nir changed where nir.NIRGraph would not let it be built, as ws/bad.nir."""

    def build(ws: Path, run: Path) -> list:
        shutil.copy2(run / "export" / "model.nir", ws / "bad.nir")
        with h5py.File(ws / "bad.nir", "r+") as f:
            change(f)
        return ["simulate", ws / "bad.nir", "--input", inputs_npz(ws), "--out", ws / "out"]

    return build


def _missing(key: str) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f[key]

    return change


def _set(key: str, value) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f[key]
        f[key] = value

    return change


def _drop(key: str) -> Callable[[dict], None]:
    return lambda data: data.pop(key)


def _first_partition(**fields) -> Callable[[dict], None]:
    return lambda data: data["partitions"][0].update(fields)


# --- round 2 builders: readers, bombs, numbers (issue 19) ------------------------------------------


def fifo(ws: Path, name: str) -> Path:
    """A named pipe: reading it blocks until someone writes (nobody does)."""
    os.mkfifo(ws / name)
    return ws / name


def hdf5_copy(relative: str, name: str, change: Callable[[Path, h5py.File], None]):
    """The trained run's `relative` HDF5 file as ws/NAME, changed by change(ws, file), simulated
    as a bare file (NIR: on ws/in.npz; netx: in Loihi fixed point)."""

    def build(ws: Path, run: Path) -> list:
        shutil.copy2(run / relative, ws / name)
        with h5py.File(ws / name, "r+") as f:
            change(ws, f)
        if name.endswith(".net"):
            return ["simulate", ws / name, "--mode", "loihi", "--out", ws / "out"]
        return ["simulate", ws / name, "--input", inputs_npz(ws), "--out", ws / "out"]

    return build


def _secret(ws: Path, nbytes: int) -> Path:
    return written(ws / "secret.bin", random_bytes(nbytes, 9))


def stored_outside(key: str, target: Callable[[Path, int], Path]):
    """Dataset `key` re-created with HDF5 external storage: its bytes are read from target(ws, nbytes)."""

    def change(ws: Path, f: h5py.File) -> None:
        data = np.asarray(f[key])
        del f[key]
        f.create_dataset(key, shape=data.shape, dtype=data.dtype, external=[(str(target(ws, data.nbytes)), 0, data.nbytes)])

    return change


def _other_file(ws: Path, shape=(4,)) -> Path:
    with h5py.File(ws / "other.h5", "w") as other:
        other["w"] = np.ones(shape, np.float32)
    return ws / "other.h5"


def linked_outside(key: str):
    def change(ws: Path, f: h5py.File) -> None:
        del f[key]
        f[key] = h5py.ExternalLink(str(_other_file(ws)), "/w")

    return change


def soft_linked(key: str, to: str):
    def change(ws: Path, f: h5py.File) -> None:
        del f[key]
        f[key] = h5py.SoftLink(to)

    return change


def virtual(key: str):
    """Dataset `key` as an HDF5 virtual dataset mapped from another file."""

    def change(ws: Path, f: h5py.File) -> None:
        shape = f[key].shape
        source = h5py.VirtualSource(str(_other_file(ws, shape)), "w", shape=shape)
        layout = h5py.VirtualLayout(shape=shape, dtype="f4")
        layout[...] = source
        del f[key]
        f.create_virtual_dataset(key, layout)

    return change


def onnx_external(location: Callable[[Path], str], length: int | None = None):
    """model.onnx with its largest initializer's bytes said to be in the file `location(export)`."""

    def damage(path: Path) -> None:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        tensor = max(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).nbytes)
        nbytes = numpy_helper.to_array(tensor).nbytes
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
            tensor.ClearField(field)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", location(path.parent)), ("offset", "0"), ("length", str(nbytes if length is None else length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        path.write_bytes(model.SerializeToString())

    return damage


def _symlink_to_passwd(export: Path) -> str:
    (export / "weights.bin").symlink_to("/etc/passwd")
    return "weights.bin"


def _short_file(export: Path) -> str:
    written(export / "weights.bin", b"\0" * 16)
    return "weights.bin"


def billion_laughs(levels: int = 9) -> str:
    """A YAML document of 9 aliases of 9 aliases ...: 1 KiB of text, 9^levels values when expanded."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def laughing_profile(run: Path) -> bytes:
    """loihi2.yaml with its description replaced by the billion laughs."""
    return (PROFILE.read_text() + billion_laughs().replace("a0:", "laughs:", 1)).encode()


def npz_member(ws: Path, header: dict, data: bytes | Callable, compression: int = 8) -> Path:
    """ws/in.npz holding one member input.npy: an .npy header of our choosing, then `data` (bytes, or
    a function writing chunks to the member), stored, deflated (8) or bzip2-compressed (12)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with zipfile.ZipFile(ws / "in.npz", "w", compression=compression) as archive, archive.open("input.npy", "w", force_zip64=True) as member:
        member.write(buffer.getvalue())
        data(member) if callable(data) else member.write(data)
    return ws / "in.npz"


def _zeros(nbytes: int) -> Callable:
    chunk = bytes(2**20)

    def write(member) -> None:
        for _ in range(nbytes // len(chunk)):
            member.write(chunk)

    return write


def declared(shape: tuple, data, compression: int = 8):
    """simulate a copy of the run on an npz whose input.npy header declares `shape` (float32)."""

    def build(ws: Path, run: Path) -> list:
        header = {"descr": "<f4", "fortran_order": False, "shape": shape}
        return ["simulate", copy_run(run, ws), "--input", npz_member(ws, header, data, compression)]

    return build


def _padded_conv(ws: Path, run: Path) -> list:
    """An NIR graph Input -> Conv2d -> Output whose conv pads an 8x8 input by 5000 on every side:
    a 1x10008x10008 output, 400 MB per sample and step, declared by a file of a few KiB."""
    weight = np.ones((1, 1, 3, 3), np.float32)
    conv = nir.Conv2d(input_shape=(8, 8), weight=weight, stride=1, padding=5000, dilation=1, groups=1, bias=np.zeros(1, np.float32))
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1, 8, 8])), "conv": conv, "output": nir.Output(np.array([1, 10006, 10006]))},
        edges=[("input", "conv"), ("conv", "output")],
        metadata={"dt": 1e-3},
    )
    nir.write(ws / "pad.nir", graph)
    return ["simulate", ws / "pad.nir", "--input", inputs_npz(ws), "--out", ws / "out"]


def in_hdf5(change: Callable[[Path, h5py.File], None]) -> Callable[[Path], None]:
    """Change an HDF5 file of a run copied into the workspace (ws/run/export/FILE)."""

    def damage(path: Path) -> None:
        with h5py.File(path, "r+") as f:
            change(path.parents[2], f)

    return damage


def bare_nir(ws: Path, run: Path) -> Path:
    shutil.copy2(run / "export" / "model.nir", ws / "model.nir")
    return ws / "model.nir"


# --- round 2 builders: folders, run states, data cache (issue 19) ---------------------------------

_HELD_LOCKS: list[int] = []  # flocks a case holds for the rest of the session (as a live training would)


def owned_folder(entries: dict[str, bytes | None], listed: list[str] | None = None) -> Callable[[Path], None]:
    """Write `entries` (None: a folder) under a folder, with a spikeport marker listing `listed`
    (all of `entries` by default; no marker when `listed` is [] and entries hold no MARKER_NAME)."""

    def make(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in entries.items():
            (folder / name).mkdir(parents=True) if content is None else (folder / name).write_bytes(content)
        if listed != []:
            marker = {"written_by": "spikeport", "what": folder.name, "entries": [*(listed if listed is not None else entries), MARKER_NAME]}
            (folder / MARKER_NAME).write_text(json.dumps(marker))

    return make


def report_into(make: Callable[[Path], None]):
    """`report` of a copy of the run, into ws/o/report made by `make` beforehand."""

    def build(ws: Path, run: Path) -> list:
        make(ws / "o" / "report")
        return ["report", copy_run(run, ws), "--samples", "2", "--profiles", "loihi2", "--out", ws / "o"]

    return build


def export_into(damage: Callable[[Path, Path], None]):
    """`export` of a copy of the run after damage(ws, RUN/export) (its export/ is spikeport's own)."""

    def build(ws: Path, run: Path) -> list:
        copied = copy_run(run, ws)
        damage(ws, copied / "export")
        return ["export", copied]

    return build


def _run_trained_into(ws: Path, folder: Path) -> None:
    """A user's run trained into RUN/export/mine (the issue's example)."""
    mine = folder / "mine"
    mine.mkdir()
    for name in ("config.yaml", "checkpoint.pt", "metrics.jsonl"):
        shutil.copy2(folder.parent / name, mine / name)


def dangling(ws: Path, name: str = "link") -> Path:
    """A symbolic link ws/NAME to ws/missing-NAME, which does not exist."""
    (ws / name).symlink_to(ws / f"missing-{name}")
    return ws / name


def sim_file_as(make: Callable[[Path], None]):
    """simulate a copy of the run into ws/o, whose sim/reference-float.npz is made by `make`."""

    def build(ws: Path, run: Path) -> list:
        (ws / "o" / "sim").mkdir(parents=True)
        make(ws / "o" / "sim" / "reference-float.npz")
        return ["simulate", copy_run(run, ws), "--samples", "2", "--out", ws / "o"]

    return build


def run_folder(files: dict[str, str], *extra: str, config: Callable[[Path], Path] | None = None):
    """train ws/ok.yaml into ws/out holding `files` (text; "CONFIG" is ok.yaml's text)."""

    def build(ws: Path, run: Path) -> list:
        path = valid_config(ws)
        (ws / "out").mkdir()
        for name, text in files.items():
            (ws / "out" / name).write_text(path.read_text() if text == "CONFIG" else text)
        return ["train", path, "--out", ws / "out", *extra]

    return build


def locked_run(ws: Path, run: Path) -> list:
    """ws/out while a training holds its lock (here: this process, on another open file)."""
    path = valid_config(ws)
    (ws / "out").mkdir()
    (ws / "out" / "config.yaml").write_text(path.read_text())
    fd = os.open(ws / "out" / ".train.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _HELD_LOCKS.append(fd)
    return ["train", path, "--out", ws / "out"]


def damaged_cache(damage: Callable[[dict], dict | bytes]):
    """train ws/ok.yaml on ws/data, whose digits cache is the trained run's, damaged: damage(arrays)
    returns the arrays to save, or the bytes to write."""

    def build(ws: Path, run: Path) -> list:
        source = run.parent / "data" / "digits" / "digits-v1.npz"
        target = ws / "data" / "digits" / "digits-v1.npz"
        target.parent.mkdir(parents=True)
        with np.load(source) as archive:
            changed = damage(dict(archive))
        if isinstance(changed, bytes):
            target.write_bytes(changed)
        else:
            np.savez(target, **changed)
        return ["train", valid_config(ws), "--out", ws / "out"]

    return build


def with_root(root: Callable[[Path], Path]):
    """train a config whose data.root is root(ws)."""

    def build(ws: Path, run: Path) -> list:
        path = valid_config(ws)
        config = yaml.safe_load(path.read_text())
        config["data"]["root"] = str(root(ws))
        path.write_text(yaml.safe_dump(config))
        return ["train", path, "--out", ws / "out"]

    return build


def _nested_file(ws: Path, folder: Path) -> None:
    (folder / "model.nir.d").mkdir()
    (folder / "model.nir.d" / "x").write_text("mine")


def _linked_elsewhere(ws: Path, folder: Path) -> None:
    """RUN/export moved to ws/elsewhere, a symbolic link in its place."""
    shutil.move(folder, ws / "elsewhere")
    folder.symlink_to(ws / "elsewhere")


def _file_in_place(ws: Path, folder: Path) -> None:
    shutil.rmtree(folder)
    folder.write_text("mine")


def report_into_dangling(ws: Path, run: Path) -> list:
    (ws / "o").mkdir()
    (ws / "o" / "report").symlink_to(ws / "gone")
    return ["report", copy_run(run, ws), "--samples", "2", "--out", ws / "o"]


def sim_into_dangling(ws: Path, run: Path) -> list:
    dangling(ws, "sim")
    return ["simulate", copy_run(run, ws), "--samples", "2", "--out", ws]


def _without(key: str) -> Callable[[dict], dict]:
    return lambda arrays: {k: v for k, v in arrays.items() if k != key}


def _changed(key: str, value: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], dict]:
    return lambda arrays: {**arrays, key: value(arrays[key])}


def _half_cache(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]



CASES: list[Case] = [
    *(config_case(path) for path in sorted((HERE / "configs").glob("*.yaml"))),
    # truncated and random-byte files of every format a command reads
    Case("nir-truncated", bytes_file("t.nir", half_of("export/model.nir"), lambda p: ["simulate", p]), ("t.nir", "not a readable NIR file")),
    Case("nir-random", bytes_file("r.nir", noise(1), lambda p: ["simulate", p]), ("r.nir", "not a readable NIR file")),
    Case("net-truncated", bytes_file("t.net", half_of("export/model.net"), lambda p: ["simulate", p, "--mode", "loihi"]), ("t.net", "not a readable netx HDF5 file")),
    Case("net-random", bytes_file("r.net", noise(2), lambda p: ["simulate", p, "--mode", "loihi"]), ("r.net", "not a readable netx HDF5 file")),
    Case("onnx-truncated", in_run("export/model.onnx", truncated, "simulate", "RUN", "--backend", "onnx", "--samples", "2"), ("model.onnx", "not a readable ONNX file")),
    Case("onnx-random", in_run("export/model.onnx", overwrite(lambda: random_bytes(4096, 3)), "simulate", "RUN", "--backend", "onnx", "--samples", "2"), ("model.onnx", "not a readable ONNX file")),
    Case("pt-truncated", in_run("checkpoint.pt", truncated, "export", "RUN"), ("checkpoint.pt", "not a readable checkpoint")),
    Case("pt-random", in_run("checkpoint.pt", overwrite(lambda: random_bytes(4096, 4)), "export", "RUN"), ("checkpoint.pt", "not a torch zip archive")),
    Case("pt-hostile-pickle", in_run("checkpoint.pt", hostile_checkpoint, "export", "RUN"), ("checkpoint.pt", "refused to load")),
    Case("pt-torchscript-export", in_run("checkpoint.pt", torchscript_checkpoint, "export", "RUN"), ("checkpoint.pt", "refused to load", "TorchScript")),
    Case("pt-torchscript-resume", in_run("checkpoint.pt", torchscript_checkpoint, "train", "RUN/config.yaml", "--out", "RUN", "--resume"), ("checkpoint.pt", "refused to load", "TorchScript")),
    Case("yaml-random-config", bytes_file("r.yaml", noise(5), lambda p: ["train", p, "--out", p.parent / "out"]), ("r.yaml", "not a text file")),
    Case("yaml-random-profile", bytes_file("r.yaml", noise(6), lambda p: ["profiles", "validate", p]), ("r.yaml", "not a text file")),
    Case("yaml-truncated-profile", bytes_file("t.yaml", lambda run: PROFILE.read_bytes()[:1500], lambda p: ["profiles", "validate", p]), ("t.yaml", "invalid YAML at line")),
    Case("npz-truncated", lambda ws, run: ["simulate", copy_run(run, ws), "--input", truncated(inputs_npz(ws))], ("in.npz", "not a readable npz file")),
    Case("npz-random", lambda ws, run: ["simulate", copy_run(run, ws), "--input", written(ws / "r.npz", random_bytes(4096, 7))], ("r.npz", "not a readable npz file")),
    Case("manifest-random", bytes_file("manifest.json", noise(8), lambda p: ["simulate", p]), ("manifest.json", "not valid JSON")),
    Case("manifest-truncated", in_run("export/manifest.json", truncated, "simulate", "RUN", "--samples", "2"), ("manifest.json", "not valid JSON")),
    # NIR graphs that read but cannot be run as they are
    Case("nir-cycle", nir_file(_cycle), ("bad.nir", "cycle through", "loop_a", "passes no neuron")),
    Case("nir-dangling-edge", nir_file(_dangling), ("bad.nir", "'ghost'")),
    Case("nir-shape-mismatch", nir_file(_shape_mismatch), ("bad.nir", "type mismatch", "fc.input")),
    Case("nir-nan-weight", nir_file(_nan_weight), ("bad.nir", "conv1", "weight", "NaN or infinite")),
    Case("nir-inf-weight", nir_file(_inf_weight), ("bad.nir", "fc", "weight", "NaN or infinite")),
    Case("nir-nan-threshold", nir_file(_nan_threshold), ("bad.nir", "lif1", "v_threshold", "NaN or infinite")),
    Case("nir-negative-tau", nir_file(_negative_tau), ("bad.nir", "lif2", "tau must be positive")),
    Case("nir-zero-stride", nir_hdf5(_set("node/nodes/conv2/stride", np.array([0, 0]))), ("bad.nir", "not a readable NIR file", "divide by zero")),
    Case("nir-absurd-shape", nir_hdf5(lambda f: replace_dataset(f, "node/nodes/fc/weight")), ("bad.nir", "node/nodes/fc/weight", "refused")),
    # netx files with missing groups or datasets, or absurd declared shapes
    Case("netx-no-layer-group", netx_file(_missing("layer")), ("bad.net", "no group 'layer'")),
    Case("netx-missing-weight", netx_file(_missing("layer/3/weight")), ("bad.net", "layer/3", "weight")),
    Case("netx-missing-neuron-field", netx_file(_missing("layer/1/neuron/vThMant")), ("bad.net", "layer/1/neuron", "vThMant")),
    Case("netx-missing-type", netx_file(_missing("layer/2/type")), ("bad.net", "layer/2", "type")),
    Case("netx-absurd-dataset", netx_file(lambda f: replace_dataset(f, "layer/3/weight")), ("bad.net", "layer/3", "refused")),
    Case("netx-absurd-shape", netx_file(_set("layer/0/shape", np.array([10**5, 10**5, 10**5]))), ("bad.net", "layer/0", "refused")),
    Case("netx-nan-bias", netx_file(lambda f: f["layer/3/bias"].__setitem__(0, np.nan)), ("bad.net", "layer/3", "bias")),
    # manifests with missing or wrong fields
    Case("manifest-missing-partitions", in_run("export/manifest.json", edit_manifest(_drop("partitions")), "simulate", "RUN"), ("manifest.json", "missing field 'partitions'")),
    Case("manifest-timesteps-word", in_run("export/manifest.json", edit_manifest(lambda d: d.update(timesteps="four")), "simulate", "RUN"), ("manifest.json", "malformed field", "'four'")),
    Case("manifest-negative-dt", in_run("export/manifest.json", edit_manifest(lambda d: d.update(dt=-0.001)), "simulate", "RUN"), ("manifest.json", "dt > 0")),
    Case("manifest-missing-file", in_run("export/manifest.json", edit_manifest(_first_partition(file="gone.nir")), "simulate", "RUN", "--samples", "2"), ("gone.nir", "no such file")),
    Case("manifest-file-outside", in_run("export/manifest.json", edit_manifest(_first_partition(file="../checkpoint.pt")), "simulate", "RUN", "--samples", "2"), ("manifest.json", "partitions.neuromorphic0.file", "../checkpoint.pt", "not a plain file name")),
    Case("manifest-bad-kind", in_run("export/manifest.json", edit_manifest(_first_partition(kind="gpu")), "simulate", "RUN"), ("manifest.json", "kind must be neuromorphic or host")),
    # profiles with wrong types, units or negative energies
    Case("profile-negative-energy", profile_file(set_in("energy.static_power_w.value", -0.2)), ("p.yaml", "energy.static_power_w.value", "greater than or equal to 0")),
    Case("profile-string-number", profile_file(set_in("capacity.cores_per_chip.value", "128")), ("p.yaml", "capacity.cores_per_chip.value")),
    Case("profile-wrong-unit", profile_file(rename_in("energy.energy_per_mac_pj", "energy_per_mac_nj")), ("p.yaml", "energy.energy_per_mac_nj", "Extra inputs are not permitted")),
    Case("profile-no-source", profile_file(lambda d: d["timing"]["step_time_s"].pop("source")), ("p.yaml", "timing.step_time_s.source")),
    Case("profile-bad-confidence", profile_file(set_in("energy.estimator.confidence", "very")), ("p.yaml", "energy.estimator.confidence")),
    Case("profile-negative-energy-report", profile_file(set_in("energy.energy_per_mac_pj.value", -4.6), "report"), ("p.yaml", "energy.energy_per_mac_pj.value")),
    # inputs of the wrong shape, dtype or value range
    Case("input-wrong-shape", with_input((2, 4, 1, 8, 9)), ("in.npz", "shape [2, 4, 1, 8, 9]", "expected [N, 4, 1, 8, 8]")),
    Case("input-no-time-axis", with_input((2, 1, 8, 8)), ("in.npz", "expected [N, 4, 1, 8, 8]")),
    Case("input-strings", with_input((2, 4, 1, 8, 8), "x", "<U1"), ("in.npz", "dtype <U1", "expected numbers")),
    Case("input-objects", object_npz, ("in.npz", "not a readable npz file")),
    Case("input-nan", with_input((2, 4, 1, 8, 8), np.nan), ("in.npz", "NaN or infinite")),
    Case("input-inf", with_input((2, 4, 1, 8, 8), -np.inf), ("in.npz", "NaN or infinite")),
    Case("input-missing-key", with_input((2, 4, 1, 8, 8), key="x"), ("in.npz", "missing key 'input'")),
    Case("input-wrong-shape-bare-nir", lambda ws, run: ["simulate", copy_run(run, ws) / "export" / "model.nir", "--input", inputs_npz(ws, (2, 4, 8, 8))], ("in.npz", "expected [N, T, 1, 8, 8]")),
    Case("input-wrong-shape-net", lambda ws, run: ["simulate", copy_run(run, ws) / "export" / "model.net", "--mode", "loihi", "--input", inputs_npz(ws, (2, 4, 8, 8))], ("in.npz", "expected [N, T, 8, 8, 8]")),  # the input layer: conv1's output
    # paths that do not exist or cannot be written
    Case("path-no-target", lambda ws, run: ["simulate", ws / "nothing-here"], ("nothing-here", "no such file or folder")),
    Case("path-no-input", lambda ws, run: ["simulate", copy_run(run, ws), "--input", ws / "missing.npz"], ("missing.npz", "no such file")),
    Case("path-no-run", lambda ws, run: ["export", ws / "no-run"], ("no-run", "no checkpoint there")),
    Case("path-no-config", lambda ws, run: ["train", ws / "missing.yaml", "--out", ws / "out"], ("missing.yaml", "cannot read")),
    Case("path-no-profiles-dir", lambda ws, run: ["profiles", "list", "--profiles-dir", ws / "mine"], ("mine", "not a folder of profiles")),
    Case("path-sim-out-under-a-file", lambda ws, run: ["simulate", copy_run(run, ws), "--samples", "2", "--out", regular_file(ws) / "sim"], ("a-file", "not a folder")),
    Case("path-report-out-under-a-file", lambda ws, run: ["report", copy_run(run, ws), "--samples", "2", "--out", regular_file(ws) / "r"], ("a-file", "not a folder")),
    Case("path-train-out-under-a-file", lambda ws, run: ["train", valid_config(ws), "--out", regular_file(ws) / "run"], ("a-file", "not a folder")),
    # --- round 2: readers, bombs, numbers (issue 19) ------------------------------------------------
    # reading outside the file: HDF5 external storage, external and soft links, virtual datasets
    Case("nir-external-storage", hdf5_copy("export/model.nir", "bad.nir", stored_outside("node/nodes/fc/weight", _secret)), ("bad.nir", "node/nodes/fc/weight", "external file", "refused")),
    Case("nir-external-storage-passwd", hdf5_copy("export/model.nir", "bad.nir", stored_outside("node/nodes/fc/weight", lambda ws, n: Path("/etc/passwd"))), ("bad.nir", "'/etc/passwd'", "refused")),
    Case("nir-external-storage-fifo", hdf5_copy("export/model.nir", "bad.nir", stored_outside("node/nodes/fc/weight", lambda ws, n: fifo(ws, "pipe"))), ("bad.nir", "external file", "refused")),
    Case("nir-external-link", hdf5_copy("export/model.nir", "bad.nir", linked_outside("node/nodes/fc/weight")), ("bad.nir", "node/nodes/fc/weight", "an external link", "refused")),
    Case("nir-soft-link", hdf5_copy("export/model.nir", "bad.nir", soft_linked("node/nodes/fc/bias", "/node/nodes/conv1/bias")), ("bad.nir", "node/nodes/fc/bias", "a soft link", "refused")),
    Case("nir-virtual-dataset", hdf5_copy("export/model.nir", "bad.nir", virtual("node/nodes/fc/weight")), ("bad.nir", "a virtual dataset", "refused")),
    Case("netx-external-storage", hdf5_copy("export/model.net", "bad.net", stored_outside("layer/3/weight", _secret)), ("bad.net", "layer/3/weight", "external file", "refused")),
    Case("netx-external-storage-fifo", hdf5_copy("export/model.net", "bad.net", stored_outside("layer/3/weight", lambda ws, n: fifo(ws, "pipe"))), ("bad.net", "external file", "refused")),
    Case("netx-external-link", hdf5_copy("export/model.net", "bad.net", linked_outside("layer/3/weight")), ("bad.net", "layer/3/weight", "an external link", "refused")),
    Case("netx-soft-link", hdf5_copy("export/model.net", "bad.net", soft_linked("layer/3/bias", "/layer/1/bias")), ("bad.net", "layer/3/bias", "a soft link", "refused")),
    Case("netx-external-storage-report", in_run("export/model.net", in_hdf5(stored_outside("layer/3/weight", _secret)), "report", "RUN", "--samples", "2", "--mode", "loihi"), ("model.net", "external file", "refused")),
    # ... ONNX external data outside the export folder, or not a plain file within it
    Case("onnx-external-passwd", in_run("export/model.onnx", onnx_external(lambda export: "/etc/passwd"), "simulate", "RUN", "--backend", "onnx", "--samples", "2"), ("model.onnx", "'/etc/passwd'", "outside the model's folder")),
    Case("onnx-external-parent", in_run("export/model.onnx", onnx_external(lambda export: "../checkpoint.pt"), "simulate", "RUN", "--backend", "onnx", "--samples", "2"), ("model.onnx", "'../checkpoint.pt'", "outside the model's folder")),
    Case("onnx-external-symlink", in_run("export/model.onnx", onnx_external(_symlink_to_passwd), "simulate", "RUN", "--backend", "onnx", "--samples", "2"), ("model.onnx", "'weights.bin'", "outside the model's folder")),
    Case("onnx-external-fifo", in_run("export/model.onnx", onnx_external(lambda export: fifo(export, "weights.bin").name), "simulate", "RUN", "--backend", "onnx", "--samples", "2"), ("model.onnx", "not a regular file")),
    Case("onnx-external-past-end", in_run("export/model.onnx", onnx_external(_short_file), "simulate", "RUN", "--backend", "onnx", "--samples", "2"), ("model.onnx", "lie outside the file")),
    # ... and files that are not files: a FIFO given where a file is read blocks forever
    Case("fifo-nir", lambda ws, run: ["simulate", fifo(ws, "f.nir"), "--input", inputs_npz(ws)], ("f.nir", "a FIFO")),
    Case("fifo-net", lambda ws, run: ["simulate", fifo(ws, "f.net"), "--mode", "loihi"], ("f.net", "a FIFO")),
    Case("fifo-config", lambda ws, run: ["train", fifo(ws, "f.yaml"), "--out", ws / "out"], ("f.yaml", "not a regular file")),
    Case("fifo-profile", lambda ws, run: ["profiles", "validate", fifo(ws, "f.yaml")], ("f.yaml", "not a regular file")),
    Case("fifo-npz", lambda ws, run: ["simulate", copy_run(run, ws), "--input", fifo(ws, "f.npz")], ("f.npz", "a FIFO")),
    # resource bombs: refused from what the file declares, before it is expanded or allocated
    Case("yaml-billion-laughs-profile", bytes_file("p.yaml", laughing_profile, lambda p: ["profiles", "validate", p]), ("p.yaml", "expands to more than")),
    Case("yaml-billion-laughs-report", lambda ws, run: ["report", copy_run(run, ws), "--samples", "2", "--profiles", written(ws / "p.yaml", laughing_profile(run))], ("p.yaml", "expands to more than")),
    Case("yaml-huge-profile", bytes_file("p.yaml", lambda run: PROFILE.read_bytes() + b"#" * (17 * 2**20) + b"\n", lambda p: ["profiles", "validate", p]), ("p.yaml", "17.0 MiB", "more than the 16.0 MiB")),
    Case("npz-declared-huge", declared((10**9, 4, 1, 8, 8), bytes(64)), ("in.npz", "declares shape [1000000000, 4, 1, 8, 8]", "not a readable npz file")),
    Case("npz-zip-bomb", declared((2**19, 4, 1, 8, 8), _zeros(2**29)), ("in.npz", "512.0 MiB", "zip bomb")),
    Case("npz-bzip2", declared((2, 4, 1, 8, 8), bytes(2048), compression=12), ("in.npz", "compressed with method 12")),
    Case("input-zero-samples", with_input((0, 4, 1, 8, 8)), ("in.npz", "holds 0 samples")),
    Case("input-zero-samples-report", lambda ws, run: ["report", copy_run(run, ws), "--input", inputs_npz(ws, (0, 4, 1, 8, 8))], ("in.npz", "holds 0 samples")),
    Case("manifest-absurd-timesteps", in_run("export/manifest.json", edit_manifest(lambda d: d.update(timesteps=10**9)), "simulate", "RUN", "--samples", "2"), ("at 1000000000 timesteps", "refused")),
    Case("nir-absurd-padding", _padded_conv, ("pad.nir", "node 'conv'", "100120036 values per step", "refused")),
    # values that are not numbers, at the schema that holds them (configs: configs/*.yaml)
    Case("profile-nan-energy", profile_file(set_in("energy.energy_per_synop_pj.value", float("nan"))), ("p.yaml", "energy.energy_per_synop_pj.value", "finite number")),
    Case("profile-inf-step-time", profile_file(set_in("timing.step_time_s.value", float("inf"))), ("p.yaml", "timing.step_time_s.value", "finite number")),
    Case("profile-inf-energy-report", profile_file(set_in("energy.static_power_w.value", float("inf")), "report"), ("p.yaml", "energy.static_power_w.value", "finite number")),
    Case("cli-budget-nan", lambda ws, run: ["report", copy_run(run, ws), "--samples", "2", "--budget-ms", "nan"], ("--budget-ms must be a finite number, got nan",)),
    Case("cli-budget-inf", lambda ws, run: ["report", copy_run(run, ws), "--samples", "2", "--budget-ms", "inf"], ("--budget-ms must be a finite number, got inf",)),
    Case("cli-budget-negative", lambda ws, run: ["report", copy_run(run, ws), "--samples", "2", "--budget-ms=-5"], ("--budget-ms must be > 0, got -5",)),
    Case("cli-dt-nan", lambda ws, run: ["simulate", bare_nir(ws, run), "--input", inputs_npz(ws), "--dt", "nan", "--out", ws / "out"], ("--dt must be a finite number, got nan",)),
    Case("cli-dt-zero-report", lambda ws, run: ["report", bare_nir(ws, run), "--input", inputs_npz(ws), "--dt", "0", "--out", ws / "out"], ("--dt must be > 0, got 0",)),
    Case("cli-seed-negative", lambda ws, run: ["train", valid_config(ws), "--seed=-1", "--out", ws / "out"], ("ok.yaml", "train.seed must be in [0, 2^32), got -1")),
    Case("manifest-nan-dt", in_run("export/manifest.json", edit_manifest(lambda d: d.update(dt=float("nan"))), "simulate", "RUN", "--samples", "2"), ("manifest.json", "dt > 0 (finite)", "nan")),
    Case("manifest-inf-macs", in_run("export/manifest.json", edit_manifest(_first_partition(macs_per_sample=float("inf"))), "simulate", "RUN", "--samples", "2"), ("manifest.json", "macs_per_sample must be a finite number")),
    Case("nir-nan-dt", nir_hdf5(_set("node/metadata/dt", np.nan)), ("bad.nir", "dt", "must be a positive number of seconds, got nan")),
    Case("cli-report-zero-samples", lambda ws, run: ["report", copy_run(run, ws), "--samples", "0"], ("--samples: must be at least 1, got 0",)),
    Case("cli-simulate-zero-samples", lambda ws, run: ["simulate", copy_run(run, ws), "--samples", "0"], ("--samples: must be at least 1, got 0",)),
    # --- round 2: folders, run states, data cache (issue 19) --------------------------------------
    # a folder spikeport would replace that holds what it did not write: refused, nothing deleted
    Case("folder-export-holds-a-run", export_into(_run_trained_into), ("export", "holds mine", "which spikeport did not write")),
    Case("folder-export-holds-a-file", export_into(lambda ws, f: (f / "notes.txt").write_text("mine")), ("export", "holds notes.txt", "which spikeport did not write")),
    Case("folder-export-nested-file", export_into(_nested_file), ("export", "holds model.nir.d and 1 more")),
    Case("folder-export-no-marker", export_into(lambda ws, f: (f / MARKER_NAME).unlink()), ("export", "was not written by spikeport")),
    Case("folder-export-marker-garbage", export_into(lambda ws, f: (f / MARKER_NAME).write_bytes(random_bytes(300, 9))), ("export", "was not written by spikeport")),
    Case("folder-export-is-a-file", export_into(_file_in_place), ("export", "is a file, not a folder spikeport wrote")),
    Case("folder-export-is-a-symlink", export_into(_linked_elsewhere), ("export", "is a symbolic link")),
    Case("folder-report-holds-a-file", report_into(owned_folder({"report.json": b"{}", "notes.md": b"mine"}, ["report.json"])), ("report", "holds notes.md", "which spikeport did not write")),
    Case("folder-report-user-made", report_into(owned_folder({"notes.md": b"mine"}, [])), ("report", "was not written by spikeport")),
    Case("folder-report-nested-file", report_into(owned_folder({"plots": None, "plots/a.png": b"png", "plots/mine.png": b"mine"}, ["plots", "plots/a.png"])), ("report", "holds plots/mine.png")),
    Case("folder-report-dangling-symlink", report_into_dangling, ("report", "is a symbolic link")),
    # output paths that are dangling symbolic links, or folders where a file must go
    Case("path-sim-out-dangling-symlink", lambda ws, run: ["simulate", copy_run(run, ws), "--samples", "2", "--out", dangling(ws)], ("link", "is a symbolic link to", "which does not exist")),
    Case("path-sim-folder-dangling-symlink", sim_into_dangling, ("sim", "is a symbolic link to", "which does not exist")),
    Case("path-sim-file-is-a-folder", sim_file_as(lambda p: p.mkdir()), ("reference-float.npz", "is a folder, but a file must be written there")),
    Case("path-sim-file-dangling-symlink", sim_file_as(lambda p: p.symlink_to(p.parent / "gone.npz")), ("reference-float.npz", "is a symbolic link to", "which does not exist")),
    Case("path-train-out-dangling-symlink", lambda ws, run: ["train", valid_config(ws), "--out", dangling(ws)], ("link", "is a symbolic link to", "which does not exist")),
    Case("path-report-out-dangling-symlink", lambda ws, run: ["report", copy_run(run, ws), "--samples", "2", "--out", dangling(ws)], ("link", "is a symbolic link to", "which does not exist")),
    Case("path-data-build-into-a-file", lambda ws, run: ["data", "build", "digits", "--out", regular_file(ws)], ("a-file", "is a file, not a folder of datasets")),
    # run folders: someone else's, another training's, a partial run with another config
    Case("run-partial-with-a-foreign-file", run_folder({"config.yaml": "CONFIG", "notes.txt": "mine"}), ("out", "not a spikeport run folder", "notes.txt")),
    Case("run-locked-by-another-training", locked_run, ("out", "another training is writing into this folder")),
    Case("run-locked-by-another-training-resume", lambda ws, run: [*locked_run(ws, run), "--resume"], ("out", "another training is writing into this folder")),
    Case("run-resume-partial-other-config", run_folder({"config.yaml": yaml.safe_dump({"model": {"name": "spiking-cnn", "channels": [2, 2]}})}, "--resume"), ("out", "started with another config")),
    Case("run-resume-empty-folder", run_folder({}, "--resume"), ("out", "holds no checkpoint.pt to resume from")),
    Case("run-checkpoint-without-resume", run_folder({"config.yaml": "CONFIG", "checkpoint.pt": "x"}), ("out", "already holds this run; pass --resume")),
    # data roots that are not folders, and damaged caches of generated datasets
    Case("data-root-is-a-file", with_root(regular_file), ("data.root", "a-file", "is a file, not a folder of datasets")),
    Case("data-root-dangling-symlink", with_root(lambda ws: dangling(ws, "data")), ("data.root", "is a symbolic link to", "which does not exist")),
    Case("data-cache-truncated", damaged_cache(_half_cache), ("digits-v1.npz", "the cached dataset is damaged")),
    Case("data-cache-random-bytes", damaged_cache(lambda arrays: random_bytes(4096, 10)), ("digits-v1.npz", "the cached dataset is damaged")),
    Case("data-cache-missing-split", damaged_cache(_without("test")), ("digits-v1.npz", "the cached dataset is damaged", "no array 'test'")),
    Case("data-cache-missing-images", damaged_cache(_without("images")), ("digits-v1.npz", "no array 'images'")),
    Case("data-cache-split-out-of-range", damaged_cache(_changed("train", lambda a: a + 10**6)), ("digits-v1.npz", "split 'train' does not index")),
    Case("data-cache-fewer-labels", damaged_cache(_changed("labels", lambda a: a[:-7])), ("digits-v1.npz", "labels for", "samples")),
    Case("data-cache-float-split", damaged_cache(_changed("test", lambda a: a.astype(np.float32))), ("digits-v1.npz", "split 'test' does not index")),
]
