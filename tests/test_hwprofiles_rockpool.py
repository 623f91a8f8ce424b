"""Xylo Audio 2's fit against rockpool's own design-rule checks (devices/xylo/syns61201 `mapper`):
the same networks, built in rockpool and in spikeport, are accepted or refused alike."""

import importlib.util
import sys
import types
import warnings
from pathlib import Path

import pytest

from spikeport.hwprofiles.fit import check_fit
from spikeport.activity import Layer, Network
from spikeport.hwprofiles.registry import available_profiles

rockpool = pytest.importorskip("rockpool", reason="rockpool is a dev dependency (pip install -e .[dev])")


def _xylo_mapper():
    """rockpool's SYNS61201 mapper. The package `rockpool.devices.xylo` imports samna, SynSense's
    hardware driver, whose PyPI stub downloads the real one from SynSense's own index at import (no
    network here); the mapper needs only rockpool.graph, so its two modules are loaded on their own."""
    root = Path(rockpool.__file__).parent / "devices" / "xylo" / "syns61201"
    for package in ("rockpool.devices", "rockpool.devices.xylo", "rockpool.devices.xylo.syns61201"):
        if package not in sys.modules:
            module = types.ModuleType(package)
            module.__path__ = []
            sys.modules[package] = module
    for name in ("xylo_graph_modules", "xylo_mapper"):
        spec = importlib.util.spec_from_file_location(f"rockpool.devices.xylo.syns61201.{name}", root / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module.mapper


def _rockpool_verdict(sizes: list[int]) -> tuple[bool, list[str]]:
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIF, Linear

    mapper = _xylo_mapper()
    modules = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        modules += [Linear((n_in, n_out)), LIF(n_out)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mapper(Sequential(*modules).as_graph(), weight_dtype="float", threshold_dtype="float", dash_dtype="float")
            accepted = True
        except Exception as e:  # rockpool's DRCError is a ValueError
            assert type(e).__name__ == "DRCError", e
            accepted = False
    return accepted, [str(w.message) for w in caught if "Xylo only supports" in str(w.message)]


def _spikeport_network(sizes: list[int]) -> Network:
    layers = [
        Layer(
            name=f"fc{i}", kind="dense", neuron_model="LIF", leak=True, neurons=n_out, input_shape=(n_in,),
            output_shape=(n_out,), kernel_size=None, stride=None, padding=None, in_channels=None, out_channels=None,
            weights=n_in * n_out, nonzero_weights=n_in * n_out, weight_bits=8, fan_in=n_in, fan_out=n_out,
            destinations=int(i < len(sizes) - 2), input_kind="spike", deployed_input_kind="spike", spikes=1.0,
            spikes_per_step=[1.0], sops_dense=1.0, sops_effective_ac=1.0, sops_effective_mac=0.0, flops=1.0,
            neuron_updates=float(n_out),
        )
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]))
    ]
    return Network("net", layers, [], timesteps=1, dt=1e-3, samples=1, pipeline_delay=0)


NETWORKS = [
    [16, 63, 8],  # fits
    [16, 1000, 8],  # the whole hidden pool
    [16, 1001, 8],  # one hidden neuron too many
    [16, 500, 600, 8],  # 1100 hidden neurons in two layers
    [16, 8],  # a single neuron layer: no hidden layer
    [16, 200, 9],  # nine outputs
    [12, 300, 300, 7],  # fits
]


@pytest.mark.parametrize("sizes", NETWORKS, ids=lambda s: "-".join(map(str, s)))
def test_xylo_fit_agrees_with_rockpools_mapper(sizes):
    accepted, _ = _rockpool_verdict(sizes)
    fit = check_fit(_spikeport_network(sizes), available_profiles()["xylo-audio2"])
    assert fit.fits == accepted, fit.violations


def test_more_than_16_inputs_is_what_rockpool_warns_about():
    accepted, warned = _rockpool_verdict([17, 20, 8])
    fit = check_fit(_spikeport_network([17, 20, 8]), available_profiles()["xylo-audio2"])
    assert accepted and warned == ["Xylo only supports up to 16 input channels. The network requires 17 input channels."]
    assert [v.constraint for v in fit.violations] == ["network_inputs"]  # the device has 16 input channels
