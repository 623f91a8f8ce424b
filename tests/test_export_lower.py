"""fold_avgpool and compose_synapses: the lowered graph computes what the model computes.

Meaning is checked twice: one folded convolution against pool-then-convolution on random maps
for many kernel/stride/padding/pool combinations, and the whole digits CNN (float64) against its
folded NIR graph run by a small NIR evaluator over T timesteps.
"""

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikeport.errors import UserError
from spikeport.export.lower import compose_synapses, fold_avgpool
from spikeport.export.nir_graph import to_nir
from spikeport.train.models import spiking_cnn


def run_nir(graph: nir.NIRGraph, x: torch.Tensor) -> torch.Tensor:
    """Run a chain NIR graph on x [T, B, *shape] (float64) with spikeport's neuron semantics."""
    order, node = [], next(n for n, v in graph.nodes.items() if isinstance(v, nir.Input))
    while True:
        order.append(node)
        nxt = [b for a, b in graph.edges if a == node]
        if not nxt:
            break
        node = nxt[0]
    outputs = []
    state: dict[str, torch.Tensor] = {}
    dt = graph.metadata["dt"]
    for t in range(x.shape[0]):
        h = x[t]
        for name in order:
            n = graph.nodes[name]
            if isinstance(n, nir.Conv2d):
                h = F.conv2d(
                    h,
                    torch.from_numpy(n.weight).double(),
                    torch.from_numpy(n.bias).double(),
                    stride=tuple(n.stride),
                    padding=tuple(n.padding),
                    dilation=tuple(n.dilation),
                    groups=n.groups,
                )
            elif isinstance(n, nir.LIF):
                beta = torch.from_numpy(1 - dt / n.tau)
                u = beta * state.get(name, torch.zeros_like(h)) + h
                s = (u > torch.from_numpy(n.v_threshold)).double()
                state[name], h = u * (1 - s), s
            elif isinstance(n, nir.AvgPool2d):
                h = F.avg_pool2d(h, tuple(n.kernel_size), tuple(n.stride), tuple(n.padding))
            elif isinstance(n, nir.Flatten):
                h = h.flatten(1)
            elif isinstance(n, nir.Affine):
                h = h @ torch.from_numpy(n.weight).double().T + torch.from_numpy(n.bias).double()
        outputs.append(h)
    return torch.stack(outputs)


@pytest.mark.parametrize("kernel,stride,padding,pool", [(3, 1, 1, 2), (3, 2, 0, 2), (1, 1, 0, 3), (5, 1, 2, 2), (2, 3, 1, 2)])
def test_folded_conv_equals_pool_then_conv(kernel, stride, padding, pool):
    torch.manual_seed(0)
    size = 4 * pool * 3
    x = torch.rand(2, 3, size, size, dtype=torch.float64)
    w = torch.randn(5, 3, kernel, kernel, dtype=torch.float64)
    conv = nir.Conv2d(
        input_shape=(size // pool, size // pool),
        weight=w.numpy(),
        stride=stride,
        padding=padding,
        dilation=1,
        groups=1,
        bias=np.zeros(5),
    )
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([3, size, size])),
            "pool": nir.AvgPool2d(np.array([pool, pool]), np.array([pool, pool]), np.array([0, 0])),
            "conv": conv,
            "output": nir.Output(np.array(conv.output_type["output"])),
        },
        edges=[("input", "pool"), ("pool", "conv"), ("conv", "output")],
    )
    folded = fold_avgpool(graph)
    assert set(folded.nodes) == {"input", "conv", "output"} and folded.edges == [("input", "conv"), ("conv", "output")]
    c = folded.nodes["conv"]
    expected = F.conv2d(F.avg_pool2d(x, pool), w, stride=stride, padding=padding)
    got = F.conv2d(x, torch.from_numpy(c.weight), stride=tuple(c.stride), padding=tuple(c.padding))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12)


def test_digits_cnn_folded_graph_equals_model():
    torch.manual_seed(0)
    model = spiking_cnn((1, 8, 8), 10, channels=[4, 8], beta=0.5, threshold=0.5).eval()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.weight.uniform_(1.0, 2.0)
    graph = to_nir(model, (1, 8, 8))
    folded = fold_avgpool(graph)
    assert not any(isinstance(n, nir.AvgPool2d) for n in folded.nodes.values())
    assert tuple(folded.nodes["conv2"].stride) == (2, 2) and folded.nodes["conv2"].weight.shape[2:] == (6, 6)
    assert folded.nodes["fc"].weight.shape == (10, 8 * 4 * 4)
    x = torch.rand(6, 16, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = model.double()(x)
    spikes = run_nir(graph, x)
    assert torch.allclose(spikes, expected, atol=1e-9)  # the evaluator is the model
    assert torch.allclose(run_nir(folded, x), expected, atol=1e-6)
    assert expected.abs().max() > 0.1  # the network is not silent


def test_odd_map_before_affine_folds_with_zero_weights_for_dropped_pixels():
    torch.manual_seed(1)
    model = spiking_cnn((1, 7, 7), 3, channels=[4], threshold=0.3).eval()
    graph = to_nir(model, (1, 7, 7))
    folded = fold_avgpool(graph)
    weight = folded.nodes["fc"].weight.reshape(3, 4, 7, 7)
    assert (weight[:, :, 6, :] == 0).all() and (weight[:, :, :, 6] == 0).all()
    x = torch.rand(4, 8, 1, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        expected = model.double()(x)
    assert torch.allclose(run_nir(folded, x), expected, atol=1e-6)


def test_refuses_what_it_cannot_fold():
    with pytest.raises(UserError, match=r"pool1 \(AvgPool2d\): its 6x6 input is not a multiple of the kernel 4x4"):
        fold_avgpool(_odd_conv_graph())
    with pytest.raises(UserError, match=r"pool1 \(AvgPool2d\): kernel \(4, 4\), stride \(1, 1\)"):
        fold_avgpool(_odd_conv_graph(size=8, stride=1))
    graph = to_nir(spiking_cnn((1, 8, 8), 3, channels=[4]), (1, 8, 8))
    lif = nir.LIF(
        **{
            k: np.ones(4 * 4 * 4).reshape(4, 4, 4) * v
            for k, v in {"tau": 2.0, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0}.items()
        }
    )
    nodes = {k: v for k, v in graph.nodes.items() if k not in ("flatten", "fc", "output")}
    nodes.update(lif2=lif, output=nir.Output(np.array([4, 4, 4])))
    edges = [e for e in graph.edges if e[0] not in ("pool1", "flatten", "fc")] + [("pool1", "lif2"), ("lif2", "output")]
    with pytest.raises(UserError, match=r"pool1 \(AvgPool2d\): feeds lif2 \(LIF\)"):
        fold_avgpool(nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata))


def _odd_conv_graph(size: int = 6, stride: int = 4) -> nir.NIRGraph:
    pool = nir.AvgPool2d(np.array([4, 4]), np.array([stride, stride]), np.array([0, 0]))
    pooled = (size - 4) // stride + 1
    conv = nir.Conv2d(
        input_shape=(pooled, pooled), weight=np.ones((2, 1, 1, 1)), stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(2)
    )
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([1, size, size])),
            "pool1": pool,
            "conv": conv,
            "output": nir.Output(np.array(conv.output_type["output"])),
        },
        edges=[("input", "pool1"), ("pool1", "conv"), ("conv", "output")],
    )


def _residual_graph(outer_kernel: int = 1) -> nir.NIRGraph:
    """An MS-ResNet stage in NIR: a projection shortcut (1x1, stride 2) reading the sum of a 3x3
    convolution's current and an identity path from the input; and a dense head reading the sum of
    two affines' currents."""
    rng = np.random.default_rng(0)
    f = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    lif = lambda n: nir.LIF(tau=np.full(n, 2e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5), v_reset=np.zeros(n))  # noqa: E731
    pad = outer_kernel // 2
    nodes = {
        "input": nir.Input(np.array([4, 8, 8])),
        "lif0": lif((4, 8, 8)),
        "conv": nir.Conv2d((8, 8), f(4, 4, 3, 3), 1, 1, 1, 1, f(4)),
        "proj": nir.Conv2d((8, 8), f(6, 4, outer_kernel, outer_kernel), 2, pad, 1, 1, f(6)),
        "lif1": lif((6, 4, 4)),
        "flatten": nir.Flatten({"input": np.array([6, 4, 4])}, 0, 2),
        "fc_a": nir.Affine(f(5, 96), f(5)),
        "fc_b": nir.Linear(f(5, 96)),
        "head": nir.Affine(f(3, 5), f(3)),
        "output": nir.Output(np.array([3])),
    }
    edges = [("input", "lif0"), ("lif0", "conv"), ("conv", "proj"), ("input", "proj"), ("proj", "lif1"), ("lif1", "flatten"),
             ("flatten", "fc_a"), ("flatten", "fc_b"), ("fc_a", "head"), ("fc_b", "head"), ("head", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3}, type_check=True)


def test_composed_synapses_compute_what_the_sum_of_currents_computed():
    """No synaptic layer reads a current any more, each copy reads spikes or the input, and the
    reference runtime gives the same spikes and outputs (to float32's rounding of the sums)."""
    from spikeport.runtime.reference import NIRExecutor

    graph = _residual_graph()
    composed = compose_synapses(graph)
    synaptic = (nir.Conv2d, nir.Affine, nir.Linear)
    for a, b in composed.edges:
        assert not (isinstance(composed.nodes[a], synaptic) and isinstance(composed.nodes[b], synaptic)), (a, b)
    assert {"proj__conv", "proj__input", "head__fc_a", "head__fc_b"} <= set(composed.nodes)
    assert "conv" not in composed.nodes and "fc_a" not in composed.nodes  # they fed only the composed layers
    x = {"input": 2 * torch.rand(6, 3, 4, 8, 8)}
    want, got = NIRExecutor(graph)(x), NIRExecutor(composed)(x)
    assert all(torch.equal(want.spikes[k], got.spikes[k]) for k in want.spikes) and want.spikes["lif1"].sum() > 0
    torch.testing.assert_close(got.outputs["output"], want.outputs["output"], rtol=0, atol=1e-4)


def test_refuses_a_current_it_cannot_compose():
    with pytest.raises(UserError, match=r"proj \(Conv2d\) reads the current of conv \(Conv2d\); .* only a 1x1 convolution after a convolution"):
        compose_synapses(_residual_graph(outer_kernel=3))


def _pooled_cnn_graph() -> nir.NIRGraph:
    torch.manual_seed(0)
    return to_nir(spiking_cnn((1, 8, 8), 10, channels=[4, 8]).eval(), (1, 8, 8))


@pytest.mark.parametrize("graph, handoff", [(_pooled_cnn_graph, False), (_pooled_cnn_graph, True), (_residual_graph, False)])
def test_lowering_a_deployed_graph_changes_nothing(graph, handoff):
    """What lets a consumer that lowers what it is given (the quantizer, the Lava runner) be
    given the export's deployed.nir: deploy is the identity on its own result."""
    from spikeport.export.lower import deploy

    once = deploy(graph(), handoff)
    twice = deploy(once, handoff)
    assert set(twice.nodes) == set(once.nodes) and sorted(twice.edges) == sorted(once.edges)
    for name, node in once.nodes.items():
        for field in ("weight", "bias", "stride", "padding"):
            if hasattr(node, field):
                assert np.array_equal(np.asarray(getattr(twice.nodes[name], field)), np.asarray(getattr(node, field))), (name, field)
    assert not any(isinstance(n, (nir.AvgPool2d, nir.SumPool2d)) for n in once.nodes.values())


def test_read_deployed_reads_the_file_or_lowers_an_older_export(trained_run, tmp_path):
    """The deployed file when the manifest names one (refused when it is another export's: its
    inputs are not the partition's), else model.nir lowered, as an export before deployed files."""
    import json
    import shutil

    from spikeport.export.lower import deploy, read_deployed
    from spikeport.export.manifest import read_manifest

    export = tmp_path / "export"
    shutil.copytree(trained_run / "export", export)
    manifest = read_manifest(export / "manifest.json")
    (entry,) = manifest.partitions
    assert entry.deployed == "deployed.nir"
    written = read_deployed(manifest, export, entry.name)
    lowered = deploy(nir.read(export / "model.nir"))
    assert set(written.nodes) == set(lowered.nodes)
    assert all(np.array_equal(written.nodes[n].weight, lowered.nodes[n].weight) for n in lowered.nodes if hasattr(lowered.nodes[n], "weight"))

    data = json.loads((export / "manifest.json").read_text())
    data["partitions"][0].pop("deployed")  # an export written before deployed files
    (export / "manifest.json").write_text(json.dumps(data))
    older = read_deployed(read_manifest(export / "manifest.json"), export, entry.name)
    assert set(older.nodes) == set(written.nodes)

    other = nir.NIRGraph(nodes={"x": nir.Input(np.array([3])), "fc": nir.Affine(np.ones((2, 3)), np.zeros(2)), "output": nir.Output(np.array([2]))},
                         edges=[("x", "fc"), ("fc", "output")])
    nir.write(export / "deployed.nir", other)
    with pytest.raises(UserError, match=r"deployed.nir: inputs \['x'\] and outputs \['output'\], not partition neuromorphic0's"):
        read_deployed(manifest, export, entry.name)


def _gained_graph(dt: float = 1e-4, shortcut: bool = False, shared: bool = False) -> nir.NIRGraph:
    """Input -> Conv2d -> LIF (Norse's r = 1: gain dt / tau) -> Flatten -> Affine -> IF (r = 1: gain dt) -> Affine -> Output."""
    rng = np.random.default_rng(0)
    f = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    ones = lambda *shape: np.ones(shape, dtype=np.float32)  # noqa: E731
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=f(3, 2, 3, 3), stride=1, padding=1, dilation=1, groups=1, bias=f(3)),
        "lif": nir.LIF(tau=ones(3, 6, 6) * 2.5e-3, r=ones(3, 6, 6), v_leak=ones(3, 6, 6) * 0, v_threshold=ones(3, 6, 6) * 0.1, v_reset=ones(3, 6, 6) * 0),
        "flat": nir.Flatten(input_type={"input": np.array([3, 6, 6])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=f(4, 108), bias=f(4)),
        "if": nir.IF(r=ones(4), v_threshold=ones(4) * 2, v_reset=ones(4) * 0),
        "out": nir.Affine(weight=f(2, 4), bias=f(2)),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("input", "conv"), ("conv", "lif"), ("lif", "flat"), ("flat", "fc"), ("fc", "if"), ("if", "out"), ("out", "output")]
    if shortcut:  # the input added straight into the LIF, as a membrane shortcut: no synaptic layer to fold into
        nodes["lif"] = nir.LIF(tau=ones(2, 6, 6) * 2.5e-3, r=ones(2, 6, 6), v_leak=ones(2, 6, 6) * 0, v_threshold=ones(2, 6, 6) * 0.1, v_reset=ones(2, 6, 6) * 0)
        nodes["conv"] = nir.Conv2d(input_shape=(6, 6), weight=f(2, 2, 3, 3), stride=1, padding=1, dilation=1, groups=1, bias=f(2))
        nodes["flat"] = nir.Flatten(input_type={"input": np.array([2, 6, 6])}, start_dim=0, end_dim=-1)
        nodes["fc"] = nir.Affine(weight=f(4, 72), bias=f(4))
        edges.append(("input", "lif"))
    if shared:  # the Affine feeds the IF and the output too: folding it would change the output
        edges.append(("fc", "output2"))
        nodes["output2"] = nir.Output(output_type={"output": np.array([4])})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt}, type_check=True)


def _spikes(graph: nir.NIRGraph, x: np.ndarray) -> tuple[dict, dict]:
    from spikeport.runtime.reference import NIRExecutor

    with torch.no_grad():
        result = NIRExecutor(graph)({"input": torch.as_tensor(x)})
    return {k: v.numpy() for k, v in result.spikes.items()}, {k: v.numpy() for k, v in result.outputs.items()}


def test_deploy_folds_each_input_gain_into_its_synapses_exactly_once():
    """Norse's LIF at dt 1e-4 s has gain dt r / tau = 0.04, an IF at dt 0.5 s has dt r = 0.5: the
    deployed graph's synapses carry it (weight * gain, the product loihi.json's integers are made
    of), each neuron's decoded gain is exactly 1.0, and the graph computes what it computed."""
    from spikeport.export.lower import deploy
    from spikeport.export.neuron_constants import neuron_constants

    for dt, lif_gain, if_gain in ((1e-4, 0.04, 1e-4), (5e-4, 0.2, 5e-4)):
        graph = _gained_graph(dt)
        deployed = deploy(graph)
        assert neuron_constants(graph.nodes["lif"], dt).gain.flat[0] == pytest.approx(lif_gain)
        for name in ("lif", "if"):
            assert np.all(np.abs(neuron_constants(deployed.nodes[name], dt).gain - 1) <= 2.0**-53), name
        assert np.array_equal(deployed.nodes["conv"].weight, graph.nodes["conv"].weight * float(dt / 2.5e-3))
        assert np.array_equal(deployed.nodes["fc"].weight, graph.nodes["fc"].weight * dt)
        assert np.array_equal(deployed.nodes["out"].weight, graph.nodes["out"].weight)  # the read-out feeds no neuron
        assert deployed.nodes["conv"].weight.dtype == np.float32
        x = (np.random.default_rng(1).random((20, 3, 2, 6, 6)) < 0.5).astype(np.float32) * 30
        before, after = _spikes(graph, x), _spikes(deployed, x)
        assert sum(v.sum() for v in before[0].values()) > 0
        for name in before[0]:
            assert np.array_equal(before[0][name], after[0][name]), name
        assert np.allclose(before[1]["output"], after[1]["output"], rtol=1e-5, atol=1e-5)
        again = deploy(deployed)
        for name, node in deployed.nodes.items():
            for field in ("weight", "bias", "r"):
                if hasattr(node, field):
                    assert np.array_equal(getattr(again.nodes[name], field), getattr(node, field)), (name, field)


def test_unit_gain_is_1_to_the_last_bit_for_any_time_constant():
    """The gain r makes is 1.0, or 1 - 2**-53 where no float64 r makes it exact (1 in 20)."""
    from spikeport.export.lower import _with_unit_gain
    from spikeport.export.neuron_constants import neuron_constants

    rng = np.random.default_rng(2)
    taus = 10.0 ** rng.uniform(-4, 0, 2000)
    for dt in (1e-4, 1e-3, 0.37, 1.0):
        node = _with_unit_gain(nir.LIF(tau=taus, r=np.ones_like(taus), v_leak=0 * taus, v_threshold=np.ones_like(taus), v_reset=0 * taus), dt)
        gain = neuron_constants(node, dt).gain
        assert np.all(np.abs(gain - 1) <= 2.0**-53) and np.mean(gain == 1.0) > 0.9, dt
        node = _with_unit_gain(nir.IF(r=np.ones(3), v_threshold=np.ones(3), v_reset=np.zeros(3)), dt)
        assert np.all(np.abs(neuron_constants(node, dt).gain - 1) <= 2.0**-53)


def test_a_gain_with_no_synapse_of_its_own_or_no_dt_is_kept():
    """A neuron that reads the input directly (a shortcut) or a synaptic layer that also feeds
    an output: folding would scale what else reads it, so the gain stays for the consumers (the
    quantizer folds it into a shortcut's one integer); without dt there is no gain."""
    from spikeport.export.lower import deploy

    shortcut = deploy(_gained_graph(shortcut=True))
    assert np.array_equal(shortcut.nodes["conv"].weight, _gained_graph(shortcut=True).nodes["conv"].weight)
    assert np.array_equal(shortcut.nodes["lif"].r, _gained_graph(shortcut=True).nodes["lif"].r)
    assert not np.array_equal(shortcut.nodes["fc"].weight, _gained_graph(shortcut=True).nodes["fc"].weight)  # the IF's own synapse
    shared = deploy(_gained_graph(shared=True))
    assert np.array_equal(shared.nodes["fc"].weight, _gained_graph(shared=True).nodes["fc"].weight)
    graph = _gained_graph()
    bare = deploy(nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata={}, type_check=True))
    assert np.array_equal(bare.nodes["conv"].weight, graph.nodes["conv"].weight)
    lif = graph.nodes["lif"]  # r = tau / dt stored in float32 (24.999998..): a gain 1 to float32 precision is 1, as every reader takes it
    float32_r = nir.LIF(tau=lif.tau, r=np.full_like(lif.r, np.float32(2.5e-3 / 1e-4 * (1 - 6e-8))), v_leak=lif.v_leak, v_threshold=lif.v_threshold, v_reset=lif.v_reset)
    kept = deploy(nir.NIRGraph(nodes={**graph.nodes, "lif": float32_r}, edges=graph.edges, metadata=graph.metadata, type_check=True))
    assert np.array_equal(kept.nodes["conv"].weight, graph.nodes["conv"].weight) and np.array_equal(kept.nodes["lif"].r, float32_r.r)
