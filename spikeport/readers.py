"""Bounded readers: how spikeport opens a file a user gave it, one reader per format.

A file of a few KiB can ask for far more than it holds: a YAML alias tree that expands to 10^9
nodes, an npz member that declares terabytes, an HDF5 dataset whose data lives in another file (or
in a FIFO that never ends), an ONNX tensor whose bytes are "in" /etc/passwd. Each reader here reads
what the file declares first (headers, metadata, node graphs) and refuses, in one line naming the
file, before it allocates or follows anything:

- `regular_file`: the path is a regular file (a FIFO or a device would block or never end).
- `load_yaml`: at most MAX_TEXT_BYTES, nesting at most MAX_YAML_DEPTH, at most MAX_YAML_NODES
  nodes counted with every alias expanded, no alias that contains itself.
- `load_npz`: each member's .npy header (shape, dtype) is read from the zip without the data; the
  members together must fit in `memory_budget()`; stored or deflated members only, none expanding
  more than NPZ_MAX_RATIO-fold beyond NPZ_RATIO_FROM (a zip bomb), no Python objects, no member
  shorter than its header says.
- `check_hdf5`: every link walked without following it; soft, external and user-defined links,
  external storage and virtual datasets are refused, and dataset sizes are bounded from metadata.
- `check_onnx_external`: tensors stored outside the .onnx file only in regular files inside the
  model's folder, and within those files.

The readers of each stage (runtime/simulate.py, runtime/loihi_fixed.py, hwprofiles/registry.py,
spikeport/config.py) call these before handing the file to h5py, nir, numpy or onnxruntime.
"""

from __future__ import annotations

import math
import os
import resource
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np
import yaml

from spikeport.errors import UserError

MAX_TEXT_BYTES = 16 * 2**20  # a config or profile is a few KiB
MAX_YAML_NODES = 10**5  # scalars, lists and mappings, every alias expanded
MAX_YAML_DEPTH = 64  # lists and mappings inside each other
NPY_MAX_HEADER = 10_000  # numpy's own default limit on an .npy header
NPZ_MAX_RATIO = 200  # a deflated npz member expanding more than this is taken for a zip bomb ...
NPZ_RATIO_FROM = 256 * 2**20  # ... once it expands to more than this (small members compress as they like)


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e).strip() else type(e).__name__


def _shown(name: str) -> str:
    """A name from a file, for a one-line message: as it is, or quoted when it holds a newline."""
    return name if name.isprintable() else repr(name)


def regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """`path` if it is a regular file; a missing path, a folder, a FIFO or a device is refused
    (reading a FIFO blocks until someone writes, /dev/zero never ends)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise UserError(f"{path}: {kind}; expected a {what}")
    return path


def memory_budget() -> int:
    """Bytes a reader may let a file fill: half of what this process can still get, the least of
    the machine's available memory, the cgroup's remaining limit and the address-space limit."""
    candidates = []
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        candidates.append(int(info["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    try:
        limit, used = (Path("/sys/fs/cgroup") / name for name in ("memory.max", "memory.current"))
        if limit.read_text().strip() != "max":
            candidates.append(int(limit.read_text()) - int(used.read_text()))
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/statm") as f:
                mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            mapped = 0
        candidates.append(soft - mapped)
    return max(0, min(candidates) // 2)


def _size(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


# --- YAML -------------------------------------------------------------------------------------------


def load_yaml(path: str | os.PathLike, loader: type = yaml.SafeLoader) -> object:
    """A YAML file's document, composed with `loader` (a SafeLoader), bounded as the module says."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once and is refused below
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_TEXT_BYTES:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path}: {'a folder' if stat.S_ISDIR(info.st_mode) else 'not a regular file'}; expected a YAML file")
        raise UserError(f"{path}: {_size(info.st_size)}, more than the {_size(MAX_TEXT_BYTES)} a YAML file may have here")
    with os.fdopen(fd, "rb") as f:
        try:
            text = f.read(MAX_TEXT_BYTES + 1).decode()
        except OSError as e:
            raise UserError(f"{path}: cannot read ({e.strerror})") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a text file") from None
    return parse_yaml(text, str(path), loader)


def parse_yaml(text: str, source: str, loader: type = yaml.SafeLoader) -> object:
    """`text` as YAML: composed to nodes first, sized with aliases expanded, then constructed."""
    reader = None
    try:
        reader = loader(text)  # checks the characters at once
        node = reader.get_single_node()
        if node is not None:
            _check_nodes(node, source)
        return reader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or _first_line(e)
        raise UserError(f"{source}: invalid YAML{where}: {_first_line(Exception(problem))}") from None
    except RecursionError:  # the pure-Python composer recurses once per level
        raise UserError(f"{source}: invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep") from None
    except (ValueError, OverflowError) as e:  # int('9' * 5000): Python's limit on digits, a date out of range
        raise UserError(f"{source}: invalid YAML: {_first_line(e)}") from None
    finally:
        if reader is not None:
            reader.dispose()


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Refuse a node graph whose tree, with every alias expanded, is over MAX_YAML_NODES nodes or
    MAX_YAML_DEPTH levels, or that holds itself. Aliases make the composed graph a DAG that
    PyYAML never expands, but everything that walks the document afterwards (dataclasses, pydantic,
    json) does: the billion laughs of 9 aliases of 9 is 10^9 nodes from a 1 KiB file."""
    sizes: dict[int, int] = {}  # node id -> expanded size
    depths: dict[int, int] = {}  # node id -> levels below it
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            depths[key] = 1 + max((depths[id(c)] for c in children), default=0)
            open_nodes.discard(key)
            if sizes[key] > MAX_YAML_NODES:
                raise UserError(f"{source}: the YAML expands to more than {MAX_YAML_NODES} values (aliases of aliases); refused")
            if depths[key] > MAX_YAML_DEPTH:
                raise UserError(f"{source}: invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise UserError(f"{source}: invalid YAML: an alias refers to a node that contains it (a recursive document)")
        open_nodes.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                raise UserError(f"{source}: invalid YAML: an alias refers to a node that contains it (a recursive document)")
            if id(child) not in sizes:
                stack.append((child, False))
        if len(open_nodes) > MAX_YAML_DEPTH + 1:
            raise UserError(f"{source}: invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


# --- npz --------------------------------------------------------------------------------------------


def load_npz(path: str | os.PathLike, keys: list[str] | None = None, budget: int | None = None) -> tuple[list[str], dict[str, np.ndarray]]:
    """The names of an npz file's arrays, and the arrays of `keys` it holds (all when None).

    Every member asked for is sized from its .npy header inside the zip before any of its data is
    decompressed; together they must fit in `budget` bytes (default `memory_budget()`). numpy's
    own np.load would allocate the declared array first and find out about the data afterwards."""
    path = regular_file(path, "npz file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist() if info.filename.endswith(".npy")}
            wanted = [k for k in (members if keys is None else keys) if k in members]
            budget = memory_budget() if budget is None else budget
            total = 0
            for key in wanted:
                total += _member_bytes(path, archive, members[key])
                if total > budget:
                    raise UserError(f"{path}: its arrays declare {_size(total)}, more than the {_size(budget)} this machine has free for them; refused")
            arrays = {}
            for key in wanted:
                with archive.open(members[key]) as f:
                    arrays[key] = np.lib.format.read_array(f, allow_pickle=False, max_header_size=NPY_MAX_HEADER)
            return list(members), arrays
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as e:
        raise UserError(f"{path}: not a readable npz file ({_first_line(e)})") from None


def _member_bytes(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The bytes an npz member's array takes, from its header; refuse what cannot be read whole."""
    name = _shown(info.filename)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise UserError(f"{path}: {name}: compressed with method {info.compress_type}; npz members are stored or deflated")
    if info.file_size > NPZ_RATIO_FROM and info.file_size > NPZ_MAX_RATIO * max(1, info.compress_size):
        raise UserError(
            f"{path}: {name}: {_size(info.compress_size)} that expand to {_size(info.file_size)}, more than {NPZ_MAX_RATIO}-fold: "
            "taken for a zip bomb and refused (save real data with np.savez, uncompressed)"
        )
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=NPY_MAX_HEADER)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=NPY_MAX_HEADER)
        else:
            raise ValueError(f"{name}: .npy format version {version[0]}.{version[1]} is not read here")
        offset = f.tell()
    if dtype.hasobject:
        raise UserError(f"{path}: not a readable npz file ({name} holds Python objects, dtype {dtype}; only numbers are read)")
    nbytes = math.prod(shape) * dtype.itemsize
    if info.file_size < offset + nbytes:
        raise UserError(f"{path}: not a readable npz file ({name} declares shape {list(shape)}, {_size(nbytes)}, but holds {_size(max(0, info.file_size - offset))})")
    return nbytes


# --- HDF5 -------------------------------------------------------------------------------------------


def check_hdf5(path: str | os.PathLike, what: str, max_dataset: int | None = None, max_total: int | None = None) -> None:
    """Refuse an HDF5 file (`what`: "NIR", "netx HDF5") that would make h5py read outside it or
    read more than it should, before any dataset's data is read: soft, external or user-defined
    links; datasets stored in external files (`external=`) or virtual datasets (mapped from other
    files); datasets of more than `max_dataset` elements, or more than `max_total` together."""
    import h5py

    path = regular_file(path, f"{what} file")
    problems: list[str] = []
    sizes: dict[str, int] = {}
    try:
        with h5py.File(path, "r") as f:

            def visit(name: str) -> None:
                link, shown = f.get(name, getlink=True), _shown(name)
                if isinstance(link, h5py.SoftLink):
                    problems.append(f"{shown}: a soft link (to {_shown(link.path)}); refused")
                elif isinstance(link, h5py.ExternalLink):
                    problems.append(f"{shown}: an external link (to {_shown(link.filename)}); refused")
                elif not isinstance(link, h5py.HardLink):
                    problems.append(f"{shown}: a link of a user-defined type; refused")
                elif isinstance(item := f.get(name), h5py.Dataset):  # metadata only: no data is read
                    if item.is_virtual:
                        problems.append(f"{shown}: a virtual dataset (its data mapped from other files); refused")
                    elif item.external:
                        problems.append(f"{shown}: stored in an external file ({item.external[0][0]!r}); refused")
                    sizes[shown] = item.size or 0

            f.visit_links(visit)  # every link, none followed out of the file
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError, ValueError ... on a damaged file
        raise UserError(f"{path}: not a readable {what} file ({_first_line(e)})") from None
    if problems:
        raise UserError(f"{path}: {problems[0]}")
    for name, size in sizes.items():
        if max_dataset is not None and size > max_dataset:
            raise UserError(f"{path}: {name}: declares {size} elements, more than {max_dataset}; refused")
    if max_total is not None and sum(sizes.values()) > max_total:
        raise UserError(f"{path}: declares {sum(sizes.values())} elements in all, more than {max_total}; refused")


# --- ONNX -------------------------------------------------------------------------------------------


def check_onnx_external(path: str | os.PathLike) -> None:
    """Refuse an ONNX model whose tensors keep their bytes in files other than regular files inside
    the model's own folder, or past the end of those files (onnxruntime would read whatever the
    `location` field names: /etc/passwd, ../checkpoint.pt, a FIFO). Read with
    load_external_data=False, so only the .onnx file itself is read here."""
    import onnx

    path = regular_file(path, "ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and onnx's own errors share no base
        raise UserError(f"{path}: not a readable ONNX file ({_first_line(e)})") from None
    folder = path.resolve().parent
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        fields = {entry.key: entry.value for entry in tensor.external_data}
        location = fields.get("location", "")
        where = f"{path}: tensor {tensor.name!r}: external data {location!r}"
        target = (folder / location).resolve()
        if not location or os.path.isabs(location) or folder not in target.parents:
            raise UserError(f"{where} is outside the model's folder; refused")
        try:
            mode = os.stat(target).st_mode
        except OSError:
            raise UserError(f"{where}: no such file") from None
        if not stat.S_ISREG(mode):
            raise UserError(f"{where} is not a regular file; refused")
        try:
            offset, length = int(fields.get("offset", 0)), int(fields.get("length", 0))
        except ValueError:
            raise UserError(f"{where}: offset and length must be integers") from None
        if offset < 0 or length < 0 or offset + length > os.stat(target).st_size:
            raise UserError(f"{where}: offset {offset} and length {length} lie outside the file; refused")


def _tensors(graph):
    """Every TensorProto of a graph: initializers, sparse initializers, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
                yield attribute.sparse_tensor.indices
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)
