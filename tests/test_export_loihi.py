"""Loihi fixed point: the integers are Lava's ranges, share a scale with the threshold they feed,
are recomputable from model.nir, and the refusals name the layer and the value.

That the integers mean what the float model computes is shown in Lava itself (test_export_netx).
"""

import dataclasses
import json

import nir
import numpy as np
import pytest
import torch

from lava_env import in_lava
from spikeport.errors import UserError
from spikeport.export.loihi import (
    CURRENT_MAX,
    Calibration,
    LoihiBoundary,
    PartitionSpec,
    input_bias,
    integers,
    neuron_bias,
    quantize,
    quantize_partitions,
    read_loihi_json,
    write_loihi_json,
)
from spikeport.export.lower import fold_avgpool
from spikeport.export.nir_graph import to_nir, write_nir
from spikeport.runtime.lava.worker.payload import from_payload, to_payload
from spikeport.train.models import spiking_cnn


def digits_cnn(beta: float = 0.5, threshold: float = 1.0):
    torch.manual_seed(0)
    model = spiking_cnn((1, 8, 8), 10, channels=[4, 8], beta=beta, threshold=threshold)
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.2, 0.5)
    return model.eval()


def test_parameters_are_lava_integers_sharing_the_threshold_scale():
    model = digits_cnn(beta=0.9, threshold=0.7)
    graph = fold_avgpool(to_nir(model, (1, 8, 8)))
    q = quantize(graph)
    host, conv2, fc = q.layers
    assert [(l.synapse, l.neuron, l.kind, l.on_host) for l in q.layers] == [
        ("conv1", "lif1", "conv", True),
        ("conv2", "lif2", "conv", False),
        ("fc", None, "dense", False),
    ]
    for layer in (host, conv2):
        assert (layer.du, layer.dv, layer.bias_exp) == (4095, round(4096 * 0.1), 6)
        assert layer.vth == round(0.7 * layer.scale) and 1 <= layer.vth < 2**17
        assert layer.errors.threshold_abs == pytest.approx(abs(layer.vth / layer.scale - 0.7))
    assert (fc.du, fc.dv, fc.vth, fc.weight_exp) == (4095, 0, 2**17 - 1, 0)
    assert conv2.weight_exp == 1  # the larger exponent: vth fits, so the threshold gets the extra bit
    assert host.errors.current_max_abs == pytest.approx(0.5 / host.scale)
    for layer in (conv2, fc):
        weight = graph.nodes[layer.synapse].weight.astype(np.float64)
        w_int, bias_mant = integers(graph, layer)
        mantissa = w_int >> layer.weight_exp
        assert (mantissa << layer.weight_exp == w_int).all()
        assert mantissa.min() >= -128 and mantissa.max() <= 127 and max(mantissa.max(), -mantissa.min()) >= 127  # all 8 bits used
        assert np.abs(bias_mant).max() < 2**12
        error = np.abs(w_int / layer.scale - weight)
        assert layer.errors.weight_max_abs == pytest.approx(error.max())
        assert layer.errors.weight_mean_abs == pytest.approx(error.mean())
        assert layer.errors.weight_max_abs <= np.abs(weight).max() / 254 * 1.0001  # half a mantissa step
        assert layer.errors.weight_clipped_fraction == 0.0


def test_json_round_trip_and_weights_recomputed_from_model_nir(tmp_path):
    model = digits_cnn()
    graph = to_nir(model, (1, 8, 8))
    q = quantize(fold_avgpool(graph))
    write_loihi_json(q, tmp_path / "loihi.json")
    write_nir(graph, tmp_path / "model.nir")
    assert read_loihi_json(tmp_path / "loihi.json") == q
    text = (tmp_path / "loihi.json").read_text()
    assert len(text) < 10_000 and json.loads(text)["layers"][1]["errors"]["weight_max_abs"] > 0
    reread = fold_avgpool(nir.read(tmp_path / "model.nir"))
    for layer in q.layers[1:]:
        for a, b in zip(integers(reread, layer), integers(fold_avgpool(graph), layer)):
            assert np.array_equal(a, b)


def test_input_bias_is_the_host_layers_current_in_threshold_units():
    model = digits_cnn()
    graph = fold_avgpool(to_nir(model, (1, 8, 8)))
    q = quantize(graph, input_bound=1.0)
    x = torch.rand(1, 8, 8)
    with torch.no_grad():
        current = model.bn1(model.conv1(x[None, None]))[0, 0].double().numpy()
    bias = input_bias(graph, q, x.numpy())
    assert bias.shape == (4, 8, 8) and np.abs(bias).max() < 2**12
    assert np.abs(bias / q.layers[0].scale - current).max() <= 0.5 / q.layers[0].scale + 1e-6


def test_refusals_name_the_layer_and_value(tmp_path):
    with pytest.raises(UserError, match=r"pool1 \(AvgPool2d\): Lava cannot run it here"):
        quantize(to_nir(digits_cnn(), (1, 8, 8)))
    with pytest.raises(UserError, match=r"lif1: beta 1e-05 needs dv = round\(4096 \* \(1 - beta\)\) = 4096"):
        quantize(fold_avgpool(to_nir(digits_cnn(beta=1e-5), (1, 8, 8))))
    with pytest.raises(
        UserError, match=r"lif2: v_threshold 5000.0 is .* x the largest weight of conv2; vth = \d+ exceeds Lava's 131071"
    ):
        quantize(fold_avgpool(to_nir(digits_cnn(threshold=5000.0), (1, 8, 8))))
    graph = fold_avgpool(to_nir(digits_cnn(), (1, 8, 8)))
    nodes = dict(graph.nodes)
    lif = nodes["lif2"]
    nodes["lif2"] = nir.LIF(
        tau=lif.tau,
        r=lif.r,
        v_leak=lif.v_leak,
        v_threshold=np.linspace(0.5, 1.0, lif.tau.size).reshape(lif.tau.shape),
        v_reset=lif.v_reset,
    )
    with pytest.raises(UserError, match=r"lif2 \(LIF\): v_threshold varies across the layer \(0.5 .. 1.0\)"):
        quantize(nir.NIRGraph(nodes=nodes, edges=graph.edges, metadata=graph.metadata))
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(UserError, match=r"bad.json: format 'other'"):
        read_loihi_json(tmp_path / "bad.json")


def test_refuses_a_branching_graph():
    graph = fold_avgpool(to_nir(digits_cnn(), (1, 8, 8)))
    nodes = dict(graph.nodes, conv2b=graph.nodes["conv2"])
    edges = list(graph.edges) + [("lif1", "conv2b"), ("conv2b", "lif2")]
    with pytest.raises(UserError, match=r"lif1 \(LIF\): branches or joins at conv2, conv2b"):
        quantize(nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata))


def test_dense_host_layer_and_its_input_bias():
    w1, w2 = np.random.default_rng(0).normal(size=(2, 6, 5)), np.random.default_rng(1).normal(size=(3, 6))
    lif = nir.LIF(tau=np.full(6, 2e-3), r=np.full(6, 2.0), v_leak=np.zeros(6), v_threshold=np.full(6, 1.0), v_reset=np.zeros(6))
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([5])),
            "fc1": nir.Affine(w1[0], np.zeros(6)),
            "lif": lif,
            "fc2": nir.Affine(w2, np.zeros(3)),
            "output": nir.Output(np.array([3])),
        },
        edges=[("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "output")],
        metadata={"dt": 1e-3},
    )
    q = quantize(graph, input_bound=2.0)
    assert q.layers[0].dv == 2048 and q.layers[0].kind == "dense"
    x = np.full(5, 2.0)
    current = w1[0] @ x
    # the host layer computes in float32: within half a unit and float32's rounding
    assert np.abs(input_bias(graph, q, x) / q.layers[0].scale - current).max() <= 0.5 / q.layers[0].scale + 1e-6


# Lava's side: what lava.proc.dense.models.PyDenseModelBitAcc sends for binary spikes (its first
# step's weight prep, from lava.utils.weightutils), for netx's own re-expression of the integers
# (optimize_weight_bits) and for the file's mantissas at Dense's 8-bit mixed-sign convention.
_LAVA_DENSE = """
from lava.lib.dl.netx.utils import optimize_weight_bits
from lava.utils.weightutils import SignMode, clip_weights, determine_sign_mode, truncate_weights

def lava_dense(weights, weight_exp, num_weight_bits, spikes):
    sign = determine_sign_mode(weights)
    weights = truncate_weights(clip_weights(weights, sign, num_bits=8), sign, num_weight_bits)
    total = weights @ spikes
    return total << weight_exp if weight_exp > 0 else total >> -weight_exp

for i in range(int(count)):
    w_int, spikes, mantissa, exp = globals()[f"w{i}"], globals()[f"s{i}"], globals()[f"m{i}"], int(globals()[f"e{i}"])
    weights, bits, netx_exp, _ = optimize_weight_bits(w_int)
    result[f"netx{i}"] = lava_dense(weights, netx_exp, bits, spikes)
    result[f"dense{i}"] = lava_dense(2 * mantissa, exp - 1, 8, spikes)
    result[f"mixed{i}"] = np.array(determine_sign_mode(w_int) == SignMode.MIXED)
"""


@pytest.mark.lava
def test_lava_runs_the_integers_exactly_through_netx_and_through_dense_weight_exp():
    graph = fold_avgpool(to_nir(digits_cnn(), (1, 8, 8)))
    rng = np.random.default_rng(0)
    arrays, expected = {}, []
    layers = quantize(graph).layers[1:]
    for i, layer in enumerate(layers):
        w_int = integers(graph, layer)[0]
        w_int = w_int.reshape(w_int.shape[0], -1)  # a conv kernel as a matrix: the values are what is checked
        spikes = rng.integers(0, 2, w_int.shape[1])
        arrays.update({f"w{i}": w_int, f"s{i}": spikes, f"m{i}": w_int >> layer.weight_exp, f"e{i}": np.array(layer.weight_exp)})
        expected.append(w_int @ spikes)
    lava = in_lava(_LAVA_DENSE, count=np.array(len(layers)), **arrays)
    for i, want in enumerate(expected):
        # netx: the file's integers, re-expressed by netx's own optimize_weight_bits
        assert np.array_equal(lava[f"netx{i}"], want)
        # Lava's Dense process: 8-bit mixed-sign weights are 2 m, and the exponent one less
        assert np.array_equal(lava[f"dense{i}"], want)
        assert lava[f"mixed{i}"]


# ------------------------------------------------------------------------------- graphs (quantize_partitions)

DT = 1e-3


def _lif(n: int, threshold: float = 1.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2e-3), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.full(n, threshold), v_reset=np.zeros(n))


def _residual(b_scale: float = 1.0, threshold: float = 1.0, head: str = "fc") -> nir.NIRGraph:
    """input -> fc1 (host) -> lif1 -> {a, b} -> lif2 (a membrane shortcut: two synapses summed) -> fc -> output."""
    rng = np.random.default_rng(0)
    return nir.NIRGraph(
        nodes={
            "x": nir.Input(np.array([5])),
            "fc1": nir.Affine(rng.normal(size=(6, 5)), np.zeros(6)),
            "lif1": _lif(6),
            "a": nir.Affine(rng.normal(size=(4, 6)), np.full(4, 0.1)),
            "b": nir.Affine(b_scale * rng.normal(size=(4, 6)), np.zeros(4)),
            "lif2": _lif(4, threshold),
            head: nir.Affine(rng.normal(size=(3, 4)), np.zeros(3)),
            "output": nir.Output(np.array([3])),
        },
        edges=[("x", "fc1"), ("fc1", "lif1"), ("lif1", "a"), ("lif1", "b"), ("a", "lif2"), ("b", "lif2"), ("lif2", head), (head, "output")],
        metadata={"dt": DT},
    )


def _one_partition(graph: nir.NIRGraph, calibration: Calibration | None = None):
    spec = [PartitionSpec("neuromorphic0", "neuromorphic", [("x", "graded")], [("y", "graded")])]
    return quantize_partitions(spec, {"neuromorphic0": graph}, ["x"], ["y"], calibration or Calibration({}), input_bound=1.0)


def test_summed_inputs_share_the_neurons_scale_set_by_the_largest_weights():
    graph = _residual(b_scale=0.3)
    q = _one_partition(graph)
    a, b = [layer for layer in q.layers if layer.neuron == "lif2"]
    assert a.scale == b.scale and a.vth == b.vth == round(a.scale)  # threshold 1: vth = S
    base_a = min(127 / graph.nodes["a"].weight.max(), -128 / graph.nodes["a"].weight.min())
    assert a.scale == pytest.approx(2 * base_a)  # a's larger weights set S, all 8 bits at e = 1
    assert a.weight_exp == 1 and b.weight_exp == 0  # b's integers fit the mantissa at e = 0
    w_a, bias = integers(graph, a)
    w_b, _ = integers(graph, b)
    assert np.abs(w_a).max() in (254, 256) and np.abs(w_b).max() <= 127
    assert np.abs(w_b / b.scale - graph.nodes["b"].weight).max() <= 0.5 / b.scale + 1e-12  # b at the finest step
    assert np.array_equal(neuron_bias(graph, [a, b]), np.round(np.full(4, 0.1) * a.scale).astype(np.int64))
    assert q.warnings == []


def test_calibrated_current_leaves_headroom_in_lavas_24_bit_current():
    graph = _residual()
    q = _one_partition(graph, Calibration({}, currents={"neuromorphic0.lif2": 1000.0}))
    (a, _) = [layer for layer in q.layers if layer.neuron == "lif2"]
    assert a.scale == pytest.approx(CURRENT_MAX / (2 * 1000.0))


def test_unreconcilable_scales_and_unrepresentable_weights_are_refused_naming_the_layer():
    with pytest.raises(UserError, match=r"b -> lif2: its weights \(up to .*\) all round to 0 at the scale .* that the 8-bit weights of a sets; "
                                         r"the inputs summed into lif2 cannot share one scale"):
        _one_partition(_residual(b_scale=1e-5))
    with pytest.raises(UserError, match=r"a -> lif2: its weights .* all round to 0 at the scale .* that the threshold of lif2 \(vth at most 131071\) sets"):
        _one_partition(_residual(threshold=1e7))


def test_lossy_but_usable_is_a_warning_in_loihi_json(tmp_path):
    graph = _residual(b_scale=0.004)
    q = _one_partition(graph)
    assert len(q.warnings) == 1 and q.warnings[0].startswith("b -> lif2: ") and "round to 0" in q.warnings[0]
    write_loihi_json(q, tmp_path / "loihi.json")
    assert json.loads((tmp_path / "loihi.json").read_text())["warnings"] == q.warnings
    assert read_loihi_json(tmp_path / "loihi.json") == q


def test_mismatched_scales_in_loihi_json_are_refused(tmp_path):
    q = _one_partition(_residual(b_scale=0.3))
    data = json.loads(json.dumps({"format": "spikeport-loihi", "version": 2, "dt": q.dt, "input_bound": 1.0, "boundaries": [],
                                  "layers": [dataclasses.asdict(layer) for layer in q.layers]}))
    next(layer for layer in data["layers"] if layer["synapse"] == "b")["scale"] *= 2
    (tmp_path / "loihi.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"loihi.json: lif2: its synaptic layers have scales .* inputs summed into one neuron must share its scale"):
        read_loihi_json(tmp_path / "loihi.json")


def _handoff(values: np.ndarray):
    """neuromorphic0 hands the current of `cur` (an Affine reading lif1's spikes) to host0."""
    graph = _residual()
    nodes = {k: v for k, v in graph.nodes.items() if k not in ("a", "b", "lif2", "fc")}
    nodes["cur"] = nir.Affine(np.eye(6) * 0.5, np.zeros(6))
    nodes["output"] = nir.Output(np.array([6]))
    graph = nir.NIRGraph(nodes=nodes, edges=[("x", "fc1"), ("fc1", "lif1"), ("lif1", "cur"), ("cur", "output")], metadata={"dt": DT})
    specs = [PartitionSpec("neuromorphic0", "neuromorphic", [("x", "graded")], [("cur", "graded")]),
             PartitionSpec("host0", "host", [("cur", "graded")], [("y", "graded")])]
    return quantize_partitions(specs, {"neuromorphic0": graph}, ["x"], ["y"], Calibration({"cur": values}), input_bound=1.0)


def test_host_boundary_saturation_is_reported_warned_or_refused():
    fine = _handoff(np.full(1000, 0.5))
    (boundary,) = fine.boundaries
    assert (boundary.direction, boundary.payload_bits, boundary.layer, boundary.saturated_fraction) == ("to_host", 24, "neuromorphic0.cur", 0.0)
    assert boundary.scale == 254.0  # the current's own scale: weights 0.5 -> 127
    values = np.full(10_000, 0.5)
    values[:5] = 1e5  # beyond 2**23 / 254
    (boundary,) = _handoff(values).boundaries
    assert boundary.saturated_fraction == pytest.approx(5e-4)
    assert "cur (to host, 24-bit payload at scale 254): 0.050% of the calibration values saturate the payload" in _handoff(values).warnings[0]
    values[:500] = 1e5
    with pytest.raises(UserError, match=r"cur \(to host, 24-bit payload at scale 254\): 5.00% of the calibration values overflow the payload"):
        _handoff(values)


def test_payloads_from_and_to_the_host():
    to_chip = LoihiBoundary("g", "graded", "to_chip", 8, 127 / 2.0, None, False, 2.0, 0.0)
    assert to_payload(np.array([2.0, -2.0, 5.0, 0.01]), to_chip).tolist() == [127, -127, 127, 1]
    to_host = LoihiBoundary("c", "graded", "to_host", 24, 4.0, "p.fc", False, None, None)
    assert from_payload(np.array([8, -2]), to_host, np.array([0.5, 0.5])).tolist() == [2.5, 0.0]
    assert from_payload(np.array([8]), dataclasses.replace(to_host, host_layer=True), 0.5).tolist() == [2.0]  # bias already in it
    spikes = LoihiBoundary("s", "spike", "to_chip", 1, 1.0, None, False, None, None)
    assert to_payload(np.array([0.0, 1.0]), spikes).tolist() == [0, 1]


def test_graded_payload_scale_balances_its_readers_and_stays_a_power_of_two():
    """A host tensor g read by a synapse `b` summed with spikes (through `a`) into lif2: s_p is the power
    of two nearest sqrt(S |w_b| / |g|), S what a's weights and the threshold allow, and at most what 8 bits hold."""
    rng = np.random.default_rng(0)
    chip = nir.NIRGraph(
        nodes={"s": nir.Input(np.array([6])), "g": nir.Input(np.array([6])), "a": nir.Affine(rng.normal(size=(4, 6)), np.zeros(4)),
               "b": nir.Affine(0.5 * rng.normal(size=(4, 6)), np.zeros(4)), "lif2": _lif(4), "fc": nir.Affine(rng.normal(size=(3, 4)), np.zeros(3)),
               "output": nir.Output(np.array([3]))},
        edges=[("s", "a"), ("g", "b"), ("a", "lif2"), ("b", "lif2"), ("lif2", "fc"), ("fc", "output")],
        metadata={"dt": DT},
    )
    values = rng.uniform(0, 3.0, size=1000)
    specs = [PartitionSpec("host0", "host", [("s", "spike")], [("g", "graded")]),
             PartitionSpec("neuromorphic0", "neuromorphic", [("s", "spike"), ("g", "graded")], [("y", "graded")])]
    q = quantize_partitions(specs, {"neuromorphic0": chip}, [], ["y"], Calibration({"g": values, "s": np.zeros(1)}), input_bound=1.0)
    (g,) = [b for b in q.boundaries if b.tensor == "g"]
    w_a, w_b = chip.nodes["a"].weight, chip.nodes["b"].weight
    limit = 2 * min(127 / w_a.max(), -128 / w_a.min())
    balance = np.sqrt(limit * np.abs(w_b).mean() / values.mean())
    assert g.scale == 2.0 ** np.round(np.log2(balance)) and g.scale <= 127 / 3.0 and g.payload_bits == 8
    b = next(layer for layer in q.layers if layer.synapse == "b")
    assert b.input_scale == g.scale and b.scale == pytest.approx(limit)  # lif2's scale is still a's
    integral = quantize_partitions(specs, {"neuromorphic0": chip}, [], ["y"], Calibration({"g": np.round(values), "s": np.zeros(1)}))
    assert next(b for b in integral.boundaries if b.tensor == "g").scale == 1.0  # integers travel exactly
