"""Fuzzing the readers of user files: NIR, netx, manifest, profile, config, npz.

Each property says the same thing about one reader: whatever it is given, it returns or raises
UserError (one line for the user); any other exception is a bug. NIR and netx files that read are
also simulated, as `spikeport simulate FILE` would, on an input of the shape they declare. The inputs are valid files from a
small export (`seed_files`), then changed by hypothesis: random bytes, the valid file's bytes with
some flipped or cut, a dataset of the HDF5 file deleted or replaced by an array of another shape,
dtype or values (NaN, inf, huge), a field of the JSON/YAML document deleted or replaced by any
JSON value.

tests/test_fuzz_readers.py runs every property with few examples as part of the suite;
tests/fuzzing/campaign.py runs them with many and records the executions and failures.
"""

from __future__ import annotations

import copy
import io
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import yaml
from hypothesis import strategies as st

from spikeport.errors import UserError

PROFILE = Path(__file__).resolve().parents[2] / "hwprofiles" / "profiles" / "loihi2.yaml"
MAX_INPUT = 10**5  # elements per sample and step of the input a fuzzed network is run on
CONFIG = {
    "model": {"name": "spiking-cnn", "channels": [2, 4]},
    "data": {"name": "digits", "root": "data", "timesteps": 2, "batch_size": 8},
    "train": {"epochs": 1, "optimizer": "adamw", "lr": 0.01, "seed": 0},
}


@dataclass(frozen=True)
class Seeds:
    """Valid inputs for every reader, written once per session or campaign."""

    nir: bytes
    netx: bytes
    manifest: dict
    profile: dict
    config: dict
    npz: bytes


def seed_files(folder: Path) -> Seeds:
    """An untrained 2/4-channel digits CNN exported to NIR and netx, its manifest, a shipped profile."""
    from spikeport.export.exporter import export_model
    from spikeport.train.models import spiking_cnn

    export = export_model(spiking_cnn((1, 8, 8), 10, channels=[2, 4]), (1, 8, 8), 2, folder / "export", formats=("nir", "lava"))
    return Seeds(
        nir=(export / "model.nir").read_bytes(),
        netx=(export / "model.net").read_bytes(),
        manifest=json.loads((export / "manifest.json").read_text()),
        profile=yaml.safe_load(PROFILE.read_text()),
        config=copy.deepcopy(CONFIG),
        npz=_npz_bytes({"input": np.random.default_rng(0).random((2, 2, 1, 8, 8)).astype(np.float32), "labels": np.arange(2)}),
    )


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


# --- strategies -------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated_document(draw, document: dict):
    """`document` with 1-3 fields, at any depth, deleted or replaced by any JSON value."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        node = document
        while isinstance(node, (dict, list)) and node:
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
            if isinstance(node[key], (dict, list)) and node[key] and draw(st.booleans()):
                node = node[key]
                continue
            if draw(st.booleans()):
                del node[key]
            else:
                node[key] = draw(json_values)
            break
    return document


@st.composite
def mutated_bytes(draw, content: bytes):
    """`content` cut short, or with a few bytes overwritten, or random bytes of its length."""
    how = draw(st.sampled_from(["cut", "flip", "random"]))
    if how == "cut":
        return content[: draw(st.integers(0, len(content) - 1))]
    if how == "random":
        return draw(st.binary(min_size=0, max_size=len(content)))
    data = bytearray(content)
    for _ in range(draw(st.integers(1, 16))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def _array(dtype: str, shape: tuple, fill) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):  # NaN or 2**40 as an integer: whatever numpy makes of it
        return np.full(shape, fill).astype(dtype)


arrays = st.one_of(
    st.builds(
        _array,
        st.sampled_from(["float32", "float64", "int64", "int8", "uint8", "bool"]),
        st.lists(st.integers(0, 4), max_size=4).map(tuple),
        st.sampled_from([0, 1, -1, 3.5, 2**40, -(2**40), np.nan, np.inf, -np.inf]),
    ),
    st.text(max_size=6).map(lambda s: np.bytes_(s.encode())),
)


@st.composite
def mutated_hdf5(draw, content: bytes):
    """A valid HDF5 file with 1-3 of its datasets or groups deleted, replaced by another array, or
    replaced by a link that leads outside the file or elsewhere in it (external, soft)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.h5"
        path.write_bytes(content)
        with h5py.File(path, "r+") as f:
            for _ in range(draw(st.integers(1, 3))):
                names: list[str] = []
                f.visit(names.append)
                if not names:
                    break
                name = draw(st.sampled_from(sorted(names)))
                how = draw(st.sampled_from(["delete", "replace", "soft link", "external link"]))
                is_dataset = isinstance(f[name], h5py.Dataset)
                del f[name]
                if how == "replace" and is_dataset:
                    f[name] = draw(arrays)
                elif how == "soft link":
                    f[name] = h5py.SoftLink("/" + draw(st.sampled_from(sorted(names))))
                elif how == "external link":
                    f[name] = h5py.ExternalLink("/etc/passwd", "/x")
        return path.read_bytes()


def hdf5_inputs(content: bytes):
    return st.one_of(mutated_hdf5(content), mutated_bytes(content))


def text_inputs(document: dict):
    """A YAML/JSON document changed field by field, its text cut or flipped, or any text."""
    return st.one_of(
        mutated_document(document).map(lambda d: yaml.safe_dump(d).encode()),
        mutated_bytes(yaml.safe_dump(document).encode()),
        st.text(max_size=200).map(str.encode),
    )


# --- properties: each takes the bytes of a file ----------------------------------------------------


def in_file(suffix: str, content: bytes, read: Callable[[Path], object]) -> None:
    """Write `content` to a file and read it: a UserError is an accepted answer, nothing else is."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(content)
        try:
            read(path)
        except UserError as e:
            assert "\n" not in str(e), f"a UserError of several lines: {e}"


def simulated(path: Path, shapes: dict[str, tuple], *args) -> None:
    """`spikeport simulate PATH` on one sample of ones in the shapes the file declares (skipped
    when they are large: the readers' own limits are what is tested there)."""
    from spikeport.runtime.simulate import simulate

    if any(math.prod(shape) > MAX_INPUT for shape in shapes.values()):
        return
    keys = ["input"] if len(shapes) == 1 else [f"input.{name}" for name in shapes]
    np.savez(path.parent / "in.npz", **{key: np.ones((1, 2, *shape)) for key, shape in zip(keys, shapes.values())})
    simulate(path, *args, input_file=path.parent / "in.npz", device="cpu", dt=1e-3)


def run_nir(content: bytes) -> None:
    """An NIR file as `spikeport simulate FILE.nir` reads and runs it."""
    import nir

    from spikeport.deployment import read_nir

    def read_and_run(path: Path) -> None:
        graph = read_nir(path)
        inputs = {name: tuple(np.asarray(node.input_type["input"]).reshape(-1).tolist()) for name, node in graph.nodes.items() if isinstance(node, nir.Input)}
        simulated(path, inputs)

    in_file(".nir", content, read_and_run)


def run_netx(content: bytes) -> None:
    """A netx file as `spikeport simulate FILE.net --mode loihi` reads and runs it."""
    from spikeport.export.netx_read import read_netx

    in_file(".net", content, lambda path: simulated(path, {"input": read_netx(path).input_shape}, "reference", "loihi"))


def read_manifest(content: bytes) -> None:
    from spikeport.export.manifest import read_manifest

    in_file(".json", content, read_manifest)


def read_profile(content: bytes) -> None:
    from spikeport.hwprofiles.registry import load_profile

    in_file(".yaml", content, load_profile)


def read_npz(content: bytes) -> None:
    """An npz file as `--input` reads it (spikeport/readers.py load_npz): sized from its headers."""
    from spikeport.readers import load_npz

    in_file(".npz", content, load_npz)


def read_config(content: bytes) -> None:
    from spikeport.config import load_config

    in_file(".yaml", content, load_config)


def properties(seeds: Seeds) -> dict[str, tuple[st.SearchStrategy, Callable[[bytes], None]]]:
    """Reader name -> (the strategy of its inputs, the property)."""
    manifest = st.one_of(mutated_document(seeds.manifest).map(lambda d: json.dumps(d).encode()), text_inputs(seeds.manifest))
    return {
        "nir": (hdf5_inputs(seeds.nir), run_nir),
        "netx": (hdf5_inputs(seeds.netx), run_netx),
        "manifest": (manifest, read_manifest),
        "profile": (text_inputs(seeds.profile), read_profile),
        "config": (text_inputs(seeds.config), read_config),
        "npz": (mutated_bytes(seeds.npz), read_npz),
    }
