"""Fit, energy, timing and the written report, on networks built by hand with known answers."""

import json
import math

from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import yaml
from rich.console import Console

from spikeport.export.nir_graph import to_nir
from spikeport.runtime.measure import measure
from spikeport.hwprofiles.energy import estimate
from spikeport.hwprofiles.fit import check_fit
from spikeport.activity import HostPartition, Layer, Network
from spikeport.hwprofiles.registry import BUILTIN_DIR, available_profiles
from spikeport.hwprofiles.report import build_report, write_report
from spikeport.hwprofiles.table import print_profiles, print_report
from spikeport.hwprofiles.timing import latency_s
from spikeport.deployment import Deployment
from spikeport.train.models import spiking_cnn

PROFILES = available_profiles()


def dense(name, n_in, n_out, *, model="LIF", leak=True, bits=8, input_kind="spike", spikes=10.0, t=4, **kw) -> Layer:
    sops = n_in * n_out * t
    fields = dict(
        name=name, kind="dense", neuron_model=model, leak=leak, neurons=n_out,
        input_shape=(n_in,), output_shape=(n_out,), kernel_size=None, stride=None, padding=None,
        in_channels=None, out_channels=None, weights=n_in * n_out, nonzero_weights=n_in * n_out,
        weight_bits=bits, fan_in=n_in, fan_out=n_out, destinations=1, input_kind=input_kind, deployed_input_kind=input_kind,
        spikes=spikes, spikes_per_step=[spikes / t] * t, sops_dense=float(sops),
        sops_effective_ac=0.0 if input_kind == "graded" else sops / 10,
        sops_effective_mac=float(sops) if input_kind == "graded" else 0.0,
        flops=float(sops), neuron_updates=float(n_out * t),
    )
    return Layer(**{**fields, **kw})


def conv(name, c_in, c_out, k, hw, *, model="IF", leak=False, stride=1, padding=0, destinations=1, t=4) -> Layer:
    out = hw // stride
    weights = c_in * c_out * k * k
    return Layer(
        name=name, kind="conv", neuron_model=model, leak=leak, neurons=c_out * out * out,
        input_shape=(c_in, hw, hw), output_shape=(c_out, out, out), kernel_size=(k, k), stride=(stride, stride),
        padding=(padding, padding), in_channels=c_in, out_channels=c_out, weights=weights, nonzero_weights=weights,
        weight_bits=8, fan_in=c_in * k * k, fan_out=c_out * k * k, destinations=destinations, input_kind="spike",
        deployed_input_kind="spike", spikes=5.0, spikes_per_step=[1.25] * t,
        sops_dense=1.0, sops_effective_ac=1.0, sops_effective_mac=0.0, flops=1.0, neuron_updates=float(c_out * out * out * t),
    )


def network(*layers, host=(), t=4, delay=0) -> Network:
    return Network("net", list(layers), list(host), timesteps=t, dt=1e-3, samples=3, pipeline_delay=delay)


def constraints(fit):
    return {(v.layer, v.constraint) for v in fit.violations}


# --- fit -------------------------------------------------------------------------------------


def test_speck_lists_every_violation():
    big = conv("big", 2000, 2000, 17, 200, model="LIF", leak=True, stride=3)
    result = check_fit(network(conv("ok", 2, 8, 3, 64), big), PROFILES["speck"])
    assert not result.fits
    assert constraints(result) == {
        ("big", "kernel_size"), ("big", "channels"), ("big", "neuron_model"), ("big", "leak"),
        ("big", "input_size"), ("big", "output_size"), ("big", "stride"),
        ("big", "neuron_memory_per_core"), ("big", "kernel_memory_per_core"),
    }
    by_name = {v.constraint: v for v in result.violations}
    assert by_name["kernel_size"].value == [17, 17] and by_name["kernel_size"].limit == [16, 16]
    assert by_name["channels"].value == 2000 and by_name["channels"].limit == 1024
    assert by_name["kernel_memory_per_core"].value == 2000 * 2 ** (9 + 11)  # c * 2^(ceil log2 289 + ceil log2 2000)
    assert by_name["neuron_memory_per_core"].limit == 65536
    assert result.cores == 2 and result.chips == 1


def test_speck_small_network_fits_and_ten_layers_do_not():
    small = [conv(f"c{i}", 8, 8, 3, 32) for i in range(3)]
    assert check_fit(network(*small), PROFILES["speck"]).fits
    ten = check_fit(network(*[conv(f"c{i}", 8, 8, 3, 32) for i in range(10)]), PROFILES["speck"])
    assert ("(network)", "chips") in constraints(ten) and ten.cores == 10 and ten.chips == 2


def test_speck_needs_distinct_cores_for_big_layers():
    # 64 x 32 x 32 = 65536 neuron entries fit only cores 0-2; a fourth such layer has no core left
    layers = [conv(f"c{i}", 64, 64, 1, 32) for i in range(4)]
    result = check_fit(network(*layers), PROFILES["speck"])
    assert [v.constraint for v in result.violations] == ["core_assignment"]


def test_small_dense_network_fits_loihi_with_expected_cores():
    layers = dense("fc1", 784, 100), dense("fc2", 100, 600), dense("out", 600, 10, model=None)
    result = check_fit(network(*layers), PROFILES["loihi"])
    # fc1: 78,400 x 8 = 627,200 of 1,048,576 bits -> core 1; fc2 (480,000 bits) does not fit the
    # 421,376 left -> core 2; the read-out (48,000 bits, 10 neurons) shares core 2
    assert result.fits and result.violations == []
    assert result.cores == 2 and result.chips == 1
    assert "fan_out" in result.unchecked


def test_loihi_packing_by_synapse_memory_and_sharing():
    memory_bound = check_fit(network(dense("fc", 784, 1000)), PROFILES["loihi"])
    assert memory_bound.cores == math.ceil(784 * 1000 * 8 / 1048576) == 6
    shared = check_fit(network(dense("a", 20, 10), dense("b", 10, 5)), PROFILES["loihi"])
    assert shared.cores == 1


def test_loihi_violations_weight_bits_graded_host_and_fan_in():
    net = network(
        dense("enc", 5000, 10, bits=32, input_kind="graded"),
        host=[HostPartition("head", macs=100.0, buffer_timesteps=0, causal=True)],
    )
    result = check_fit(net, PROFILES["loihi"])
    assert constraints(result) == {
        ("enc", "weight_bits"), ("enc", "graded_input"), ("enc", "fan_in"),
        ("head", "host_partition"),
    }
    assert check_fit(net, PROFILES["spinnaker2"]).violations == []  # ARM cores run the host part; limits unknown
    assert "fan_in" in check_fit(net, PROFILES["spinnaker2"]).unchecked


def test_one_neuron_must_fit_one_core(tmp_path):
    data = yaml.safe_load((BUILTIN_DIR / "loihi.yaml").read_text())
    data["capacity"]["synapse_memory_per_core_bits"]["value"] = 1000
    (tmp_path / "loihi.yaml").write_text(yaml.safe_dump(data))
    small_memory = available_profiles([tmp_path])["loihi"]
    result = check_fit(network(dense("fc", 200, 4)), small_memory)  # 200 synapses x 8 bits > 1000
    assert [(v.constraint, v.value, v.limit) for v in result.violations] == [("synapse_memory_per_core", 1600, 1000)]
    assert result.cores == math.ceil(200 * 4 * 8 / 1000)


def test_xylo_limits():
    result = check_fit(network(dense("in", 40, 100), dense("out", 100, 12)), PROFILES["xylo-audio2"])
    assert constraints(result) == {("in", "network_inputs"), ("out", "network_outputs")}
    assert result.cores == 1
    wide = check_fit(network(dense("in", 16, 600), dense("mid", 600, 500), dense("out", 500, 8)), PROFILES["xylo-audio2"])
    assert ("(network)", "hidden_neurons") in constraints(wide)  # 1100 hidden neurons share 1000
    shallow = check_fit(network(dense("out", 16, 8)), PROFILES["xylo-audio2"])
    assert constraints(shallow) == {("(network)", "neuron_layers")}


def test_baseline_always_fits():
    result = check_fit(network(dense("fc", 10**6, 10, bits=32)), PROFILES["ann-45nm"])
    assert result.fits and result.cores is None


# --- energy and timing ---------------------------------------------------------------------


def two_layer(delay=2):
    return network(
        dense("fc1", 20, 10, spikes=30.0, input_kind="graded"),
        dense("fc2", 10, 4, spikes=6.0),
        host=[HostPartition("head", macs=1000.0, buffer_timesteps=3, causal=False)],
        t=4,
        delay=delay,
    )


def central(e) -> dict:
    return {name: None if t is None else t[1] for name, t in e.terms.items()}


def test_component_energy_by_hand():
    net = two_layer()
    e = estimate(net, PROFILES["loihi"])
    sops = (20 * 10 * 4) + (10 * 4 * 4) / 10  # fc1 effective MACs (graded), fc2 effective ACs
    latency = (4 + 3 + 2) * 1e-3
    active = (4 + 3) * 1e-3  # samples stream: the pipeline delay overlaps the next sample
    updates = 10 * 4 + 4 * 4
    expected = {
        "synops": sops * 23.6e-12,
        "neuron_updates": updates * 66.5e-12,
        "spike_hops": 36 * 3.0e-12,
        "static": 0.029 * active,
        "host_macs": 1000 * 4.6e-12,
    }
    assert e.estimator == "components" and not e.partial
    assert central(e) == pytest.approx(expected)
    assert e.total[1] == pytest.approx(sum(expected.values()))
    # Davies 2018: 52-81 pJ per neuron update, 1.7-4.0 pJ per hop; the other figures are points
    low = sum(expected.values()) - updates * (66.5 - 52) * 1e-12 - 36 * (3.0 - 1.7) * 1e-12
    high = sum(expected.values()) + updates * (81 - 66.5) * 1e-12 + 36 * (4.0 - 3.0) * 1e-12
    assert e.total[0] == pytest.approx(low) and e.total[2] == pytest.approx(high)
    assert e.to_dict()["dominant"] == ["neuron_updates"]
    assert latency_s(net, PROFILES["loihi"]) == pytest.approx(latency)


def test_paper_convention_by_hand():
    e = estimate(two_layer(), PROFILES["ann-45nm"])
    # fc1 reads graded input: E_MAC x its FLOPs; fc2: E_AC x its SOPs
    assert central(e) == pytest.approx({"first_layer_macs": 800 * 4.6e-12, "acs": 16 * 0.9e-12, "host_macs": 1000 * 4.6e-12})
    assert e.total[0] == e.total[1] == e.total[2]  # the convention's constants are exact by definition
    spike_input = network(dense("fc1", 20, 10), dense("fc2", 10, 4))
    assert estimate(spike_input, PROFILES["ann-45nm"]).terms["first_layer_macs"] == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("name", sorted(n for n, p in PROFILES.items()))
def test_every_profile_gives_a_number_with_an_interval(name):
    e = estimate(two_layer(), PROFILES[name])
    assert not e.partial and e.total is not None
    low, value, high = e.total
    assert 0 < low <= value <= high


def test_unknown_constants_make_a_partial_total(tmp_path):
    data = yaml.safe_load((BUILTIN_DIR / "loihi.yaml").read_text())
    for field in ("energy_per_synop_pj", "energy_per_neuron_update_pj", "energy_per_spike_hop_pj"):
        data["energy"][field] = {"value": None, "confidence": None, "source": "not found"}
    (tmp_path / "unknown.yaml").write_text(yaml.safe_dump(data))
    from spikeport.hwprofiles.registry import load_profile

    unknown = load_profile(tmp_path / "unknown.yaml")
    e = estimate(two_layer(), unknown)
    assert e.terms["synops"] is None and e.terms["neuron_updates"] is None
    assert e.partial and set(e.to_dict()["unknown"]) == {"synops", "neuron_updates", "spike_hops"}
    assert e.total[1] == pytest.approx(0.029 * 7e-3 + 1000 * 4.6e-12)
    silent = estimate(network(dense("fc", 20, 10, spikes=0.0)), unknown)
    assert silent.terms["spike_hops"] == (0.0, 0.0, 0.0)  # nothing happens, whatever it would cost
    data["energy"]["static_power_w"] = {"value": None, "confidence": None, "source": "not found"}
    (tmp_path / "unknown.yaml").write_text(yaml.safe_dump(data))
    no_host = estimate(network(dense("fc", 20, 10)), load_profile(tmp_path / "unknown.yaml"))
    assert no_host.terms["host_macs"] == (0.0, 0.0, 0.0) and no_host.total is None and no_host.partial  # not "0 J"


def test_event_driven_chip_is_on_for_the_input_duration():
    speck = estimate(two_layer(), PROFILES["speck"])  # no step time: static power over T x dt
    assert speck.terms["static"] == pytest.approx((0.00042 * 4e-3, 0.00042 * 4e-3, 0.00117 * 4e-3))


def test_loihi2_step_time_is_its_busiest_core_plus_the_barrier():
    from spikeport.hwprofiles.timing import step_time_s

    net = network(dense("fc1", 20, 10), dense("fc2", 10, 4))  # effective ACs: 80 and 16 over T = 4
    loihi2 = PROFILES["loihi2"]
    low, value, high = step_time_s(net, loihi2, {"fc1": 1, "fc2": 1})
    assert value == pytest.approx(1.7e-7 + 80 / 4 * 2.07e-9 + 10 * 4.04e-9)
    assert low == pytest.approx(6.7e-8 + 20 * 2.02e-9 + 10 * 3.18e-9) and high > value
    assert step_time_s(net, loihi2) == (1.528e-4, 1.528e-4, 1.528e-4)  # not mapped: the measured step
    report = build_report(net, [loihi2]).data["profiles"]["loihi2"]
    assert report["step_time_s"] == pytest.approx(value) and report["latency_s"] == pytest.approx(4 * value)


def test_truenorth_per_synop_figure_is_all_in():
    e = estimate(two_layer(), PROFILES["truenorth"])
    assert set(e.terms) == {"synops", "host_macs"} and not e.partial
    assert e.terms["synops"][1] == pytest.approx(816 * 26e-12)


def test_budget_check():
    net = network(dense("fc1", 20, 10, model="IF", leak=False), t=10, delay=1)  # 11 steps x 1 ms on loihi
    loihi = [PROFILES["loihi"]]
    assert build_report(net, loihi, budget_ms=11.0).passed
    failed = build_report(net, loihi, budget_ms=10.9)
    assert not failed.passed and failed.data["profiles"]["loihi"]["budget_ok"] is False
    unknown = build_report(net, [PROFILES["speck"]], budget_ms=100.0)  # speck has no step time
    assert unknown.data["profiles"]["speck"]["budget_ok"] is None and not unknown.passed
    no_budget = build_report(net, [PROFILES["speck"], PROFILES["ann-45nm"]])
    assert no_budget.passed and no_budget.data["checks"]["budget"] is None


def test_fit_failure_fails_the_report():
    net = network(conv("big", 2000, 8, 3, 32))
    assert not build_report(net, [PROFILES["speck"]]).passed


# --- written report ------------------------------------------------------------------------


def test_numpy_counts_become_plain_numbers():
    np = pytest.importorskip("numpy")
    net = network(dense("fc", 20, 10, spikes=np.float32(3.0), fan_in=np.int64(20)))
    data = build_report(net, [PROFILES["loihi"]]).data
    assert type(data["layers"][0]["spikes"]) is float and json.dumps(data)


def test_write_report(tmp_path):
    out = tmp_path / "report"
    report = write_report(two_layer(), [PROFILES[n] for n in ("loihi", "loihi2", "speck", "ann-45nm")], out, budget_ms=50)
    data = json.loads((out / "report.json").read_text())
    assert data == json.loads(json.dumps(report.data))
    assert data["schema_version"] == 2
    assert set(data["totals"]) >= {
        "spikes", "sops_dense", "sops_effective_ac", "sops_effective_mac", "neuron_updates",
        "host_macs", "timesteps", "samples",
    }
    assert data["totals"]["spikes"] == 36 and data["totals"]["host_macs"] == 1000
    for layer in data["layers"]:
        assert set(layer) >= {"name", "kind", "neurons", "spikes", "sops_dense", "sops_effective_ac"}
    for entry in data["profiles"].values():
        assert set(entry) >= {"fits", "violations", "cores", "chips", "energy_j", "latency_s", "budget_ok"}
        assert "total" in entry["energy_j"]
        for v in entry["violations"]:
            assert set(v) == {"layer", "constraint", "value", "limit"}
    loihi2 = data["profiles"]["loihi2"]
    assert set(loihi2["energy_j"]["terms"]["synops"]) == {"low", "value", "high"}
    assert loihi2["energy_j"]["low"] <= loihi2["energy_j"]["total"] <= loihi2["energy_j"]["high"]
    vs = loihi2["energy_vs_baseline"]
    assert vs["value"] == pytest.approx(loihi2["energy_j"]["total"] / data["paper_convention"]["total"])
    assert vs["low"] <= vs["value"] <= vs["high"]
    assert loihi2["figures"]["energy.energy_per_synop_pj"]["derived_from"] == "pilotnet_lif_dynamic_energy"
    assert "pilotnet_lif_dynamic_energy" in loihi2["measurements"]
    assert data["profiles"]["speck"]["latency_s"] is None
    assert data["paper_convention"]["estimator"] == "paper"
    synop = data["profiles"]["loihi"]["figures"]["energy.energy_per_synop_pj"]
    assert synop["value"] == 23.6 and synop["confidence"] == "M" and "Davies" in synop["source"]

    html = (out / "report.html").read_text()
    assert html.count("src='data:image/png;base64,iVBOR") == 4  # the PNG signature, base64-encoded
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        "energy_breakdown.png", "energy_per_profile.png", "firing_rate_per_step.png", "spikes_per_layer.png",
    ]
    md = (out / "report.md").read_text()
    assert "| loihi2 |" in md and "unknown" in md
    for name in ("spikes_per_layer", "firing_rate_per_step", "energy_per_profile", "energy_breakdown"):
        assert f"](plots/{name}.png)" in md  # report.md links its plots

    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_fits_is_yes_only_when_every_constraint_was_checked(tmp_path):
    from spikeport.hwprofiles.fit import Fit

    assert Fit(True, [], [], 1, 1, constraints=12).verdict == "yes"
    assert Fit(False, [], ["fan_in"], 1, 1, constraints=12).verdict == "no"
    net = network(dense("fc1", 20, 10), dense("fc2", 10, 4))
    fit = check_fit(net, PROFILES["loihi2"])
    checked = fit.constraints - len(fit.unchecked)
    assert fit.fits and fit.unchecked and fit.verdict == f"yes ({checked} of {fit.constraints} constraints checked)"
    report = write_report(net, [PROFILES["loihi2"]], tmp_path / "report")
    md, html = (tmp_path / "report" / "report.md").read_text(), (tmp_path / "report" / "report.html").read_text()
    for text in (md, html):
        assert fit.verdict in text and ", ".join(fit.unchecked) in text  # verdict and the unchecked ones
    console = Console(record=True, width=300)
    print_report(report.data, console)
    text = console.export_text()
    assert fit.verdict in text and "unchecked: " + ", ".join(fit.unchecked) in text


def test_violation_lines_say_what_the_value_and_limit_are():
    from spikeport.hwprofiles.render import violation_text

    host = violation_text({"layer": "head", "constraint": "host_partition", "value": 1000.0, "limit": "x"})
    assert host == "head: a host partition (1e+03 MACs per sample) runs off the fabric; this chip runs no host partition"
    none = violation_text({"layer": "fc", "constraint": "neuron_model", "value": "LIF", "limit": []})
    assert none == "fc: neuron_model is LIF; the chip supports: none"
    assert violation_text({"layer": "fc", "constraint": "fan_in", "value": 70, "limit": 63}) == "fc: fan_in is 70, above the chip's limit of 63"


def test_terminal_tables():
    console = Console(record=True, width=200)
    print_report(build_report(two_layer(), [PROFILES["loihi"], PROFILES["speck"]]).data, console)
    print_profiles(list(PROFILES.values()), console)
    text = console.export_text()
    assert "graded_input" in text and "xylo-audio2" in text
    assert "Davies et al. 2018 (IEEE Micro 38" in text  # `profiles list` names the sources


# --- limits added later: Speck's destinations and padding, Akida's input layer ---------------


def test_speck_layer_with_three_destinations_fails_naming_it():
    result = check_fit(network(conv("split", 2, 4, 3, 16, destinations=3), conv("a", 4, 4, 3, 16)), PROFILES["speck"])
    assert [(v.layer, v.constraint, v.value, v.limit) for v in result.violations] == [("split", "destinations", 3, 2)]
    assert check_fit(network(conv("split", 2, 4, 3, 16, destinations=2)), PROFILES["speck"]).fits


def test_speck_padding_limit():
    result = check_fit(network(conv("wide", 2, 4, 16, 32, padding=8)), PROFILES["speck"])
    assert [(v.layer, v.constraint, v.value, v.limit) for v in result.violations] == [("wide", "padding", [8, 8], 7)]
    assert check_fit(network(conv("wide", 2, 4, 16, 32, padding=7)), PROFILES["speck"]).fits


def test_akida_input_layer_takes_8_bit_weights_the_others_4():
    akida = PROFILES["akida-akd1000"]
    net = network(dense("first", 10, 10, model=None, bits=8), dense("second", 10, 10, model=None, bits=8))
    assert [(v.layer, v.constraint, v.limit) for v in check_fit(net, akida).violations] == [("second", "weight_bits", 4)]
    wide = network(dense("first", 10, 10, model=None, bits=16))
    assert [(v.layer, v.constraint, v.value, v.limit) for v in check_fit(wide, akida).violations] == [
        ("first", "input_layer_weight_bits", 16, 8)
    ]
    # without an input-layer figure of its own, the first layer is held to the chip's weight width
    assert ("first", "weight_bits") in constraints(check_fit(network(dense("first", 10, 10, bits=16)), PROFILES["loihi"]))


def test_a_profile_written_before_the_new_limits_still_loads_and_says_they_are_unchecked(tmp_path):
    data = yaml.safe_load((BUILTIN_DIR / "speck.yaml").read_text())
    del data["capacity"]["destinations_max"], data["capacity"]["padding_max"]
    (tmp_path / "speck.yaml").write_text(yaml.safe_dump(data))
    old = available_profiles([tmp_path])["speck"]
    result = check_fit(network(conv("split", 2, 4, 3, 16, destinations=3, padding=9)), old)
    assert result.fits and {"destinations", "padding"} <= set(result.unchecked)


# --- fit judges the graph as deployed: average pools folded into the next layer --------------


def measured(graph: nir.NIRGraph, x: np.ndarray):
    return measure(Deployment(Path("graph.nir"), None, Path("."), Path("graph.nir"), graph=graph), {"input": x}, torch.device("cpu"))


def test_a_folded_pool_is_no_layer_and_the_layer_after_it_reads_spikes():
    """conv1 -> LIF -> AvgPool(2) -> conv2 -> LIF -> AvgPool(2) -> Flatten -> fc, as exported. On a
    chip the pools are folded into conv2 and fc (export/lower.py): conv2 becomes a 6x6 stride-2
    convolution over lif1's spikes, so Loihi's binary-spike limit holds for it; only conv1, which
    reads the image, needs graded input. Its operations are still counted as the model computes
    them (pooled spikes are graded: MACs), so they stay comparable with NeuroBench."""
    torch.manual_seed(0)
    graph = to_nir(spiking_cnn((1, 8, 8), 3, channels=[4, 4], batch_norm=False).eval(), (1, 8, 8))
    x = 3 * np.random.default_rng(0).random((6, 4, 1, 8, 8), dtype=np.float32)
    net = measured(graph, x)
    assert [layer.name for layer in net.layers] == ["conv1", "conv2", "fc"]  # no pool is a layer
    assert "pool1, pool2 folded" in net.lowering
    conv1, conv2, fc = net.layers
    assert conv1.spikes > 0  # conv2 reads real spikes, pooled into graded values as exported
    assert (conv2.kernel_size, conv2.stride, conv2.padding, conv2.input_shape) == ((6, 6), (2, 2), (2, 2), (4, 8, 8))
    assert conv2.output_shape == (4, 4, 4) and conv2.fan_in == 4 * 6 * 6
    assert fc.input_shape == (4 * 4 * 4,) and fc.weights == 3 * 4 * 4 * 4
    assert [layer.deployed_input_kind for layer in net.layers] == ["graded", "spike", "spike"]
    assert [conv1.input_kind, conv2.input_kind] == ["graded", "graded"]  # as the model computes it
    loihi = check_fit(net, PROFILES["loihi"])
    assert [(v.layer, v.constraint) for v in loihi.violations] == [("conv1", "graded_input")]
    speck = check_fit(net, PROFILES["speck"])
    assert speck.cores == 3  # one core per synaptic layer; the pools take none


def test_a_pool_that_cannot_fold_is_judged_as_exported():
    """An overlapping pool (stride 1) has no folded form: the layers are counted as exported and
    the report says why, so conv2 reads graded values and Loihi rejects it."""
    torch.manual_seed(0)
    graph = to_nir(spiking_cnn((1, 8, 8), 3, channels=[4, 4], batch_norm=False).eval(), (1, 8, 8))
    nodes = dict(graph.nodes)
    nodes["pool1"] = nir.AvgPool2d(np.array([2, 2]), np.array([1, 1]), np.array([0, 0]))
    conv2 = graph.nodes["conv2"]
    nodes["conv2"] = nir.Conv2d(input_shape=(7, 7), weight=conv2.weight, stride=1, padding=1, dilation=1, groups=1, bias=conv2.bias)
    nodes["pool2"] = nir.AvgPool2d(np.array([7, 7]), np.array([7, 7]), np.array([0, 0]))
    nodes["flatten"] = nir.Flatten(input_type={"input": np.array([4, 1, 1])}, start_dim=0, end_dim=2)
    nodes["fc"] = nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3))
    lif2 = graph.nodes["lif2"]
    nodes["lif2"] = nir.LIF(**{k: np.full((4, 7, 7), getattr(lif2, k).flat[0]) for k in ("tau", "r", "v_leak", "v_threshold")})
    unfoldable = nir.NIRGraph(nodes=nodes, edges=graph.edges, metadata=graph.metadata)
    net = measured(unfoldable, 3 * np.random.default_rng(0).random((4, 4, 1, 8, 8), dtype=np.float32))
    assert net.lowering.startswith("as exported, pools not folded: pool1 (AvgPool2d): kernel (2, 2), stride (1, 1)")
    assert net.layers[0].spikes > 0 and net.layers[1].deployed_input_kind == "graded"
    assert ("conv2", "graded_input") in constraints(check_fit(net, PROFILES["loihi"]))


def _lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2e-3), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5))


def test_destinations_are_counted_from_the_graph():
    """lif0 sends to three synaptic layers (summed again into lif1): three destinations, one too
    many for Speck, which names the layer whose neurons are lif0."""
    rng = np.random.default_rng(0)
    nodes = {
        "input": nir.Input(np.array([3])),
        "fc0": nir.Affine(rng.uniform(0, 1, (4, 3)), np.zeros(4)),
        "lif0": _lif(4),
        **{name: nir.Linear(rng.uniform(0, 1, (4, 4))) for name in ("fa", "fb", "fc")},
        "lif1": _lif(4),
        "out": nir.Affine(rng.uniform(0, 1, (2, 4)), np.zeros(2)),
        "output": nir.Output(np.array([2])),
    }
    edges = [("input", "fc0"), ("fc0", "lif0"), *[(e, d) for name in ("fa", "fb", "fc") for e, d in (("lif0", name), (name, "lif1"))],
             ("lif1", "out"), ("out", "output")]
    net = measured(nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3}), rng.uniform(0, 2, (2, 3, 3)))
    assert {layer.name: layer.destinations for layer in net.layers} == {"fc0": 3, "fa": 1, "fb": 1, "fc": 1, "out": 0}
    violations = [(v.layer, v.constraint, v.value, v.limit) for v in check_fit(net, PROFILES["speck"]).violations]
    assert ("fc0", "destinations", 3, 2) in violations and not [v for v in violations if v[1] == "destinations" and v[0] != "fc0"]
