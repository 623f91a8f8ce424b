"""Loihi fixed point across host boundaries on the gated stand-in for attention (tests/test_export.py's
Gated: a conv -> LIF, a second conv's current to the host, the gated spikes back to the chip):
two first layers read the model input on the host, each with a RingBuffer of its own; Lava's
fixed_pt run and the emulator agree exactly, for the gate over all T and for the causal one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikeport.export.exporter import export_model
from spikeport.export.loihi import read_loihi_json
from spikeport.runtime.simulate import resolve_target, run_in_lava, run_reference_loihi
from test_export import Gated

SAMPLES, T = 3, 4


@pytest.mark.parametrize("over_time", [True, False])
def test_gated_fixed_point_in_lava_equals_the_emulator(over_time, tmp_path):
    torch.manual_seed(0)
    model = Gated(over_time=over_time).eval()
    export_model(model, (1, 8, 8), T, tmp_path / "export", formats=("nir", "onnx"), calibration=[torch.rand(T, 16, 1, 8, 8)])
    loihi = read_loihi_json(tmp_path / "export" / "loihi.json")
    hosts = [layer for layer in loihi.layers if layer.on_host]
    assert {layer.neuron for layer in hosts} == {"lif", None}  # the LIF's first layer, and the gate's input current
    target = resolve_target(tmp_path / "export" / "manifest.json")
    x = {"x": torch.rand(SAMPLES, T, 1, 8, 8).numpy()}
    lava = run_in_lava(target, x, torch.device("cpu"), mode="loihi")
    emulator = run_reference_loihi(target, x, torch.device("cpu"))
    assert sorted(lava.spikes) == sorted(emulator.spikes) and sum(int(c.sum()) for c in emulator.spikes.values()) > 0
    for name, counts in emulator.spikes.items():
        assert int((lava.spikes[name] != counts).sum()) == 0, name
    assert np.abs(lava.output - emulator.output).max() == 0.0 and np.abs(emulator.output).max() > 0
