"""Lowering passes on a NIR graph, for chips whose cores cannot pool graded values.

Loihi (and Lava's netx blocks) have no averaging layer: a neuron sends spikes, and the only thing
between two neuron layers is a synapse matrix. An average pool between a LIF and the next synaptic
layer is linear, so it is folded into that layer's weights, exactly:

- AvgPool2d(k, stride k) -> Conv2d(kernel K, stride S, padding P) is one Conv2d with kernel K*k,
  stride S*k, padding P*k and weights W'[o, i, k*a + da, k*b + db] = W[o, i, a, b] / k^2.
  Pooled pixel j averages input pixels k*j .. k*j + k-1, so the convolution's tap a at output Y,
  which reads pooled pixel Y*S + a - P, reads input pixels k*(Y*S + a - P) + da: a convolution of
  the unpooled map with stride S*k, tap k*a + da and padding P*k (a padded pooled pixel is k
  padded input pixels). This holds only when the pool covers the whole map: when H or W is not a
  multiple of k, pooling drops the last rows/columns but the folded convolution would read them
  where the original read its zero padding, so such a pool is refused rather than folded wrong.
- AvgPool2d(k, stride k) -> Flatten -> Affine is Flatten -> Affine over the unpooled map, with each
  affine weight spread over the k x k pixels it averaged, divided by k^2. Rows and columns that
  pooling drops get weight zero, so here odd sizes fold exactly.

Anything else (overlapping or padded pools, a pool feeding several layers, a dilated convolution
after it) is refused with a UserError naming the node.

A synapse on a chip reads spikes, never another synapse's current. MS-ResNet's membrane shortcut
(DTA's backbone) sums currents, and a projection shortcut (a 1x1 convolution) then reads that sum.
`compose_synapses` removes such reads: a synaptic layer S reading layers A1, A2, ... (the sum of
their outputs) becomes one layer per source, S o A_j for a synaptic source and S itself for a
neuron or input, all feeding S's consumers. Composing is linear algebra, exact up to the order of
floating-point sums:

- Affine S after Affine A: weight W_S W_A, bias W_S b_A.
- Conv2d S of kernel 1x1 (no padding, no groups) after Conv2d A (no groups): kernel
  W[o, i, y, x] = sum_m W_S[o, m] W_A[m, i, y, x], stride A's times S's (output pixel Y of S is
  pixel s_S Y of A, which reads input pixels s_A s_S Y + tap - p_A), A's padding and dilation,
  bias W_S b_A.
- S's own bias goes to its first copy only, so that the copies add it once.

Anything else (a 3x3 convolution after a convolution, a convolution after an affine) is refused,
naming both layers.

A chip's neuron adds its synaptic input unscaled; NIR's Euler step scales it by the input gain
dt r / tau (IF: dt r; export/neuron_constants.py). spikeport's own files have gain 1 (r = tau / dt),
other tools' do not: Norse's LIF (r = 1, dt 1e-4 s, tau 2.5 ms) has 0.04, a float32 r gives
1 +- 6e-8. `unit_gains` folds the gain into the synaptic layers feeding the neuron, once:

- v[t] = beta v[t-1] + g (W s + b) = beta v[t-1] + (g W) s + (g b): weight and bias times g (the
  product `export/loihi.py` has always formed, `node.weight * g`, so loihi.json's integers are
  the same from the exported graph and from the deployed one), and r set so that the decoded gain
  is 1.0 (within 2**-53 where no float64 r makes it exact); a gain within UNIT_GAIN (1e-6) of 1
  is 1 already, as the reference runtime, snnTorch, Norse and Lava read a float32 r, and is left;
- only where every input of the neuron is a synaptic layer that feeds nothing else; a neuron that
  reads an input or a neuron directly (an identity shortcut) or shares its synaptic layer keeps
  its gain, which the quantizer folds into the shortcut's one integer and the Lava runner into its
  identity Dense;
- a graph whose metadata has no dt keeps every gain: there is none without dt (the runtimes ask
  for --dt), and a gain that varies across a layer is kept too (Lava's LIF refuses it, naming it).

`deploy(graph, handoff)` is the whole lowering, what both the Lava runner and the Loihi quantizer
(export/loihi.py) read: in a partition whose outputs feed other partitions (`handoff`), a global
average pool -> Flatten before an Output first gets an identity Affine after it
(`pool_before_outputs`), so that the pool folds into a synaptic layer whose current (the pooled
spikes) is the graded tensor handed on; then pools are folded, synapses composed and input gains
made 1. Lowering a lowered graph changes nothing (no pool is left to fold, no synapse reads
another, every gain it can fold is 1), so a consumer that lowers what it is given may be given the
deployed graph.

`spikeport export` lowers each neuromorphic partition once and writes it (deployed.nir, or
deployed-<partition>.nir each; manifest `partitions[].deployed`). `read_deployed` is how a later
stage gets it: the deployed file, or, for an export written before deployed files, the exported
graph lowered there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nir
import numpy as np

from spikeport.errors import UserError
from spikeport.export.neuron_constants import neuron_constants


def fold_avgpool(graph: nir.NIRGraph) -> nir.NIRGraph:
    """`graph` with every nir.AvgPool2d and nir.SumPool2d (an average without the division, as
    sinabs writes them) folded into the synaptic layer after it (see the module)."""
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    for name, pool in graph.nodes.items():
        if not isinstance(pool, (nir.AvgPool2d, nir.SumPool2d)):
            continue
        kernel = _pair(pool.kernel_size)
        divisor = kernel[0] * kernel[1] if isinstance(pool, nir.AvgPool2d) else 1  # a sum pool adds, an average divides
        if _pair(pool.stride) != kernel or any(_pair(pool.padding)):
            raise UserError(
                f"{name} ({type(pool).__name__}): kernel {kernel}, stride {_pair(pool.stride)}, padding {_pair(pool.padding)}; "
                "only non-overlapping unpadded pools (stride == kernel, padding 0) fold into the next layer"
            )
        consumers = [b for a, b in edges if a == name]
        if len(consumers) != 1 or _sources(edges, consumers[0]) != [name]:
            raise UserError(
                f"{name} ({type(pool).__name__}): feeds {consumers or 'nothing'}; it folds only into one layer that reads nothing else"
            )
        shape = tuple(int(n) for n in pool.input_type["input"])  # (C, H, W)
        consumer = nodes[consumers[0]]
        if isinstance(consumer, nir.Conv2d):
            nodes[consumers[0]] = _fold_into_conv(f"{name} ({type(pool).__name__})", kernel, shape, consumers[0], consumer, divisor)
            folded_into = consumers[0]
        elif isinstance(consumer, nir.Flatten) and _single_affine_after(edges, nodes, consumers[0]):
            affine_name = next(b for a, b in edges if a == consumers[0])
            nodes[consumers[0]], nodes[affine_name] = _fold_into_flatten_affine(shape, kernel, consumer, nodes[affine_name], divisor)
            folded_into = consumers[0]
        else:
            raise UserError(
                f"{name} ({type(pool).__name__}): feeds {consumers[0]} ({type(consumer).__name__}); "
                "it folds only into a Conv2d or a Flatten -> Affine"
            )
        edges = [(a, folded_into if b == name else b) for a, b in edges if a != name]
        del nodes[name]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata), type_check=True)


_SYNAPTIC = (nir.Affine, nir.Linear, nir.Conv2d)


def deploy(graph: nir.NIRGraph, handoff: bool = False) -> nir.NIRGraph:
    """The graph as a chip runs it (module docstring): pools folded, synapses composed, input gains 1."""
    return unit_gains(compose_synapses(fold_avgpool(pool_before_outputs(graph) if handoff else graph)))


UNIT_GAIN = 1e-6  # a gain this close to 1 is 1, as the reference runtime reads it (runtime/reference.py FLOAT32_TOLERANCE): r stored in float32


def unit_gains(graph: nir.NIRGraph) -> nir.NIRGraph:
    """`graph` with each LIF's and IF's input gain dt r / tau (IF: dt r) folded into the synaptic
    layers that feed it, where they feed only it (see the module docstring)."""
    dt = (graph.metadata or {}).get("dt")
    if not isinstance(dt, (int, float, np.integer, np.floating)) or isinstance(dt, bool) or not 0 < dt < np.inf:
        return graph
    nodes = dict(graph.nodes)
    for name, node in graph.nodes.items():
        if not isinstance(node, (nir.LIF, nir.IF)):
            continue
        gain = neuron_constants(node, float(dt), name).gain
        if gain.size == 0 or np.any(gain != gain.flat[0]) or abs(gain.flat[0] - 1) <= UNIT_GAIN or not gain.flat[0] > 0:
            continue
        sources = _sources(graph.edges, name)
        exclusive = all(isinstance(nodes[s], _SYNAPTIC) and [b for a, b in graph.edges if a == s] == [name] for s in sources)
        if not sources or not exclusive:
            continue
        g = float(gain.flat[0])
        for source in sources:
            layer = nodes[source]
            weight = layer.weight * g  # as export/loihi.py _float_weights forms it (a float32 weight stays float32)
            if isinstance(layer, nir.Conv2d):
                _, height, width = (int(n) for n in layer.input_type["input"])
                nodes[source] = nir.Conv2d(input_shape=(height, width), weight=weight, stride=layer.stride, padding=layer.padding,
                                           dilation=layer.dilation, groups=layer.groups, bias=_scaled_bias(layer, g), metadata=dict(layer.metadata))
            elif isinstance(layer, nir.Affine):
                nodes[source] = nir.Affine(weight=weight, bias=_scaled_bias(layer, g), metadata=dict(layer.metadata))
            else:
                nodes[source] = nir.Linear(weight=weight, metadata=dict(layer.metadata))
        nodes[name] = _with_unit_gain(node, float(dt))
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=dict(graph.metadata), type_check=True)


def _scaled_bias(layer: nir.NIRNode, gain: float) -> np.ndarray:
    """A layer's bias times the gain, as export/loihi.py _float_weights forms it."""
    return np.asarray(layer.bias) * gain


def _with_unit_gain(node: nir.NIRNode, dt: float) -> nir.NIRNode:
    """The neuron with r chosen so that its decoded gain (dt / tau) r (IF: dt r) is 1.0, or within
    2**-53 of it: of 1 / ratio and the float64 numbers up to 3 steps either side, the one whose
    product with ratio is nearest 1 (exactly 1.0 for about 19 time constants in 20; for the others
    no float64 r gives it, and 1 - 2**-53 is the nearest)."""
    ratio = dt / np.asarray(node.tau, dtype=np.float64) if isinstance(node, nir.LIF) else np.full(np.shape(node.r), dt, dtype=np.float64)
    ratio = np.broadcast_to(ratio, np.shape(node.r))
    candidates, up, down = [1 / ratio], 1 / ratio, 1 / ratio
    for _ in range(3):
        up, down = np.nextafter(up, np.inf), np.nextafter(down, -np.inf)
        candidates += [up, down]
    candidates = np.stack(candidates)
    nearest = np.abs(ratio * candidates - 1).argmin(axis=0)
    r = np.take_along_axis(candidates, nearest[None], axis=0)[0]
    if isinstance(node, nir.LIF):
        return nir.LIF(tau=node.tau, r=r, v_leak=node.v_leak, v_threshold=node.v_threshold, v_reset=node.v_reset, metadata=dict(node.metadata))
    return nir.IF(r=r, v_threshold=node.v_threshold, v_reset=node.v_reset, metadata=dict(node.metadata))


def handoff(manifest, name: str) -> bool:
    """Whether partition `name` of `manifest` (export/manifest.py) hands its outputs on to another
    partition, instead of giving the model's outputs: `deploy`'s `handoff`."""
    (entry,) = [p for p in manifest.partitions if p.name == name]
    return [t.name for t in entry.outputs] != [t.name for t in manifest.outputs]


def read_deployed(manifest, export_dir: Path, name: str, read: Callable[[Path], nir.NIRGraph] = nir.read) -> nir.NIRGraph:
    """Neuromorphic partition `name` of an export as the chip runs it: its deployed file, or (an
    export written before deployed files) its exported graph lowered here. `read` reads an NIR file
    (the runtimes pass their bounded reader, spikeport/deployment.py `read_nir`). A deployed file whose
    inputs or outputs are not the partition's (a file of another export) is refused, naming it."""
    (entry,) = [p for p in manifest.partitions if p.name == name]
    if entry.deployed is None:
        if entry.file is None:
            raise UserError(f"partition {name}: the export has neither its deployed graph nor its .nir file; export with --formats nir")
        return deploy(read(Path(export_dir) / entry.file), handoff(manifest, name))
    path = Path(export_dir) / entry.deployed
    graph = read(path)
    inputs = sorted(n for n, node in graph.nodes.items() if isinstance(node, nir.Input))
    outputs = sorted(n for n, node in graph.nodes.items() if isinstance(node, nir.Output))
    expected = ["output"] if len(entry.outputs) == 1 else sorted(f"output_{t.name}" for t in entry.outputs)
    if inputs != sorted(t.name for t in entry.inputs) or outputs != expected:
        raise UserError(f"{path}: inputs {inputs} and outputs {outputs}, not partition {name}'s "
                        f"({sorted(t.name for t in entry.inputs)} and {expected}); a file of another export?")
    return graph


def pool_before_outputs(graph: nir.NIRGraph) -> nir.NIRGraph:
    """`graph` with an identity Affine between every AvgPool2d -> Flatten and the Output it feeds,
    so that `fold_avgpool` folds the pool into it: a Dense of weights 1/k^2, whose current (the
    pooled spikes) is the graded tensor a host partition reads."""
    nodes, edges = dict(graph.nodes), list(graph.edges)
    for source, name in graph.edges:
        pooled = isinstance(graph.nodes[name], nir.Output) and isinstance(graph.nodes[source], nir.Flatten) and any(
            b == source and isinstance(graph.nodes[a], nir.AvgPool2d) for a, b in graph.edges)
        if pooled:
            size = int(np.prod(np.asarray(graph.nodes[source].output_type["output"]).ravel()))
            nodes[f"{name}_pool"] = nir.Affine(weight=np.eye(size, dtype=np.float32), bias=np.zeros(size, dtype=np.float32))
            edges = [e for e in edges if e != (source, name)] + [(source, f"{name}_pool"), (f"{name}_pool", name)]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata), type_check=True)


def compose_synapses(graph: nir.NIRGraph) -> nir.NIRGraph:
    """`graph` with no synaptic layer reading another one's current (see the module docstring)."""
    nodes, edges = dict(graph.nodes), list(graph.edges)
    while True:
        reading = [n for n, node in nodes.items() if isinstance(node, _SYNAPTIC) and any(isinstance(nodes[s], _SYNAPTIC) for s in _sources(edges, n))]
        if not reading:
            return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata), type_check=True)
        name = reading[0]
        layer, sources = nodes.pop(name), _sources(edges, name)
        consumers = [b for a, b in edges if a == name]
        edges = [(a, b) for a, b in edges if name not in (a, b)]
        for i, source in enumerate(sources):
            copy = f"{name}__{source}"
            if isinstance(nodes[source], _SYNAPTIC):
                nodes[copy] = _composed(name, layer, source, nodes[source], keep_bias=i == 0)
                reads = _sources(edges, source)
            else:
                nodes[copy] = _with_bias(layer, _bias(layer) if i == 0 else np.zeros_like(_bias(layer)))
                reads = [source]
            edges += [(r, copy) for r in reads] + [(copy, c) for c in consumers]
        for source in sources:  # a source that fed only `name` is now read by nothing
            if isinstance(nodes.get(source), _SYNAPTIC) and not any(a == source for a, _ in edges):
                del nodes[source]
                edges = [(a, b) for a, b in edges if b != source]


def _composed(name: str, outer: nir.NIRNode, inner_name: str, inner: nir.NIRNode, keep_bias: bool) -> nir.NIRNode:
    """The layer `outer` o `inner` (module docstring); UserError where it is not one layer."""
    outer_bias = _bias(outer) if keep_bias else np.zeros_like(_bias(outer))
    if isinstance(outer, (nir.Affine, nir.Linear)) and isinstance(inner, (nir.Affine, nir.Linear)):
        mix = outer.weight.astype(np.float64)
        weight, bias = mix @ inner.weight.astype(np.float64), mix @ _bias(inner) + outer_bias
        return nir.Affine(weight=weight.astype(outer.weight.dtype), bias=bias.astype(outer.weight.dtype), metadata=dict(outer.metadata))
    pointwise = (
        isinstance(outer, nir.Conv2d) and outer.weight.shape[2:] == (1, 1) and outer.groups == 1
        and not isinstance(outer.padding, str) and not any(_pair(outer.padding))
    )
    if pointwise and isinstance(inner, nir.Conv2d) and inner.groups == 1 and not isinstance(inner.padding, str):
        mix = outer.weight[:, :, 0, 0].astype(np.float64)
        weight = np.einsum("om,miyx->oiyx", mix, inner.weight.astype(np.float64))
        stride = tuple(a * b for a, b in zip(_pair(inner.stride), _pair(outer.stride)))
        _, height, width = (int(n) for n in inner.input_type["input"])
        return nir.Conv2d(
            input_shape=(height, width),
            weight=weight.astype(outer.weight.dtype),
            stride=stride,
            padding=_pair(inner.padding),
            dilation=_pair(inner.dilation),
            groups=1,
            bias=(mix @ _bias(inner) + outer_bias).astype(outer.weight.dtype),
            metadata=dict(outer.metadata),
        )
    raise UserError(
        f"{name} ({type(outer).__name__}) reads the current of {inner_name} ({type(inner).__name__}); "
        "a chip's synapse reads spikes, and only a 1x1 convolution after a convolution or an affine after an affine "
        "compose into one synaptic layer"
    )


def _bias(layer: nir.NIRNode) -> np.ndarray:
    """A synaptic layer's bias (zeros for nir.Linear, which has none)."""
    return np.asarray(getattr(layer, "bias", np.zeros(layer.weight.shape[0], dtype=layer.weight.dtype)), dtype=np.float64)


def _with_bias(layer: nir.NIRNode, bias: np.ndarray) -> nir.NIRNode:
    if isinstance(layer, nir.Conv2d):
        _, height, width = (int(n) for n in layer.input_type["input"])
        return nir.Conv2d(input_shape=(height, width), weight=layer.weight, stride=layer.stride, padding=layer.padding,
                          dilation=layer.dilation, groups=layer.groups, bias=bias.astype(layer.weight.dtype), metadata=dict(layer.metadata))
    return nir.Affine(weight=layer.weight, bias=bias.astype(layer.weight.dtype), metadata=dict(layer.metadata))


def _fold_into_conv(pool_name: str, kernel: tuple[int, int], shape: tuple[int, ...], name: str, conv: nir.Conv2d, divisor: int) -> nir.Conv2d:
    _, height, width = shape
    if height % kernel[0] or width % kernel[1]:
        raise UserError(
            f"{pool_name}: its {height}x{width} input is not a multiple of the kernel {kernel[0]}x{kernel[1]}; "
            f"pooling drops the last rows/columns, which the strided convolution {name} would read: "
            "make the map a multiple of the kernel"
        )
    if _pair(conv.dilation) != (1, 1):
        raise UserError(f"{name} (Conv2d): dilation {_pair(conv.dilation)} after pool {pool_name}; only dilation 1 folds a pool")
    if isinstance(conv.padding, str):
        raise UserError(f"{name} (Conv2d): padding {conv.padding!r} after pool {pool_name}; only numeric padding folds a pool")
    weight = np.repeat(np.repeat(conv.weight, kernel[0], axis=2), kernel[1], axis=3) / divisor
    stride, padding = _pair(conv.stride), _pair(conv.padding)
    return nir.Conv2d(
        input_shape=(height, width),
        weight=weight.astype(conv.weight.dtype),
        stride=(stride[0] * kernel[0], stride[1] * kernel[1]),
        padding=(padding[0] * kernel[0], padding[1] * kernel[1]),
        dilation=(1, 1),
        groups=conv.groups,
        bias=conv.bias,
        metadata=dict(conv.metadata),
    )


def _fold_into_flatten_affine(
    shape: tuple[int, ...], kernel: tuple[int, int], flatten: nir.Flatten, affine: nir.Affine, divisor: int
) -> tuple[nir.Flatten, nir.Affine]:
    channels, height, width = shape
    pooled_h, pooled_w = height // kernel[0], width // kernel[1]
    pooled = affine.weight.reshape(affine.weight.shape[0], channels, pooled_h, pooled_w)
    spread = np.zeros((affine.weight.shape[0], channels, height, width), dtype=affine.weight.dtype)
    spread[:, :, : pooled_h * kernel[0], : pooled_w * kernel[1]] = np.repeat(
        np.repeat(pooled, kernel[0], axis=2), kernel[1], axis=3
    )
    spread /= divisor
    new_flatten = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=2, metadata=dict(flatten.metadata))
    return new_flatten, nir.Affine(weight=spread.reshape(spread.shape[0], -1), bias=affine.bias, metadata=dict(affine.metadata))


def _single_affine_after(edges: list[tuple[str, str]], nodes: dict[str, nir.NIRNode], flatten_name: str) -> bool:
    """True when the Flatten flattens the whole (C, H, W) map into one Affine that reads nothing else."""
    flatten = nodes[flatten_name]
    consumers = [b for a, b in edges if a == flatten_name]
    ndim = len(flatten.input_type["input"])
    whole = flatten.start_dim % ndim == 0 and flatten.end_dim % ndim == ndim - 1
    return (
        whole
        and len(consumers) == 1
        and isinstance(nodes[consumers[0]], nir.Affine)
        and _sources(edges, consumers[0]) == [flatten_name]
    )


def _sources(edges: list[tuple[str, str]], name: str) -> list[str]:
    return [a for a, b in edges if b == name]


def _pair(value) -> tuple[int, int]:
    flat = np.atleast_1d(np.asarray(value)).astype(int)
    return (int(flat[0]), int(flat[-1]))


def topological_order(nodes: dict, edges: list[tuple[str, str]], why: str = "") -> list[str]:
    """The nodes in an order where each comes after its sources; a cycle is refused naming its
    nodes (and `why` the caller cannot run one)."""
    order, placed = [], set()
    while len(order) < len(nodes):
        ready = [n for n in nodes if n not in placed and all(a in placed for a, b in edges if b == n)]
        if not ready:
            raise UserError(f"graph: a cycle through {sorted(set(nodes) - placed)}" + (f"; {why}" if why else ""))
        order += ready
        placed.update(ready)
    return order
