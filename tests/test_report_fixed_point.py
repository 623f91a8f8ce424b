"""Reports from Loihi fixed point for an export that is not a chain (a small DTA MS-ResNet: NIR +
host ONNX + NIR): `--mode loihi` counts activity from the emulator (runtime/loihi_fixed.py
simulate_export), `--backend lava` from Lava's fixed_pt run of the same integers, and the two
counts are equal, layer by layer."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spikeport.export.exporter import export_model
from spikeport.runtime.measure import measure
from spikeport.deployment import Deployment
from test_lava_dta import SAMPLES, T, _dta

pytestmark = pytest.mark.lava


def test_fixed_point_activity_from_the_emulator_equals_lavas(tmp_path):
    export_model(_dta(False), (1, 8, 8), T, tmp_path / "export", formats=("nir", "onnx"), input_bound=3.0,
                 calibration=[3 * torch.rand(T, 32, 1, 8, 8)])
    target = Deployment.load(tmp_path / "export" / "manifest.json")
    x = {"x": 3 * torch.rand(SAMPLES, T, 1, 8, 8).numpy()}
    emulator = measure(target, x, torch.device("cpu"), backend="reference", mode="loihi")
    lava = measure(target, x, torch.device("cpu"), backend="lava", mode="loihi")
    floating = measure(target, x, torch.device("cpu"), backend="reference", mode="float")
    assert "loihi.json" in emulator.activity and "fixed_pt" in lava.activity
    assert [layer.name for layer in emulator.layers] == [layer.name for layer in lava.layers] == [layer.name for layer in floating.layers]
    assert sum(layer.spikes for layer in emulator.layers) > 0
    for a, b in zip(emulator.layers, lava.layers):
        assert dataclasses.asdict(a) == dataclasses.asdict(b), a.name
    # fixed point is not float: some layer's activity differs (the comparison would not see a float run passed off as fixed)
    assert any(a.spikes != f.spikes or a.sops_effective_ac != f.sops_effective_ac for a, f in zip(emulator.layers, floating.layers))
