"""Loihi fixed point across host boundaries, and the export's warnings and refusals. The gated stand-in for attention (tests/test_export.py's
Gated: a conv -> LIF, a second conv's current to the host, the gated spikes back to the chip):
two first layers read the model input on the host, each with a RingBuffer of its own; Lava's
fixed_pt run and the emulator agree exactly, for the gate over all T and for the causal one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spikeport.errors import UserError
from spikeport.export import exporter
from spikeport.export.exporter import export_model
from spikeport.export.loihi import read_loihi_json
from spikeport.train import layers
from spikeport.train.neuron import LIF
from spikeport.deployment import Deployment
from spikeport.runtime import reference as reference_backend
from spikeport.runtime.lava import run as lava_backend
from test_export import Gated

SAMPLES, T = 3, 4


@pytest.mark.lava
@pytest.mark.parametrize("over_time", [True, False])
def test_gated_fixed_point_in_lava_equals_the_emulator(over_time, tmp_path):
    torch.manual_seed(0)
    model = Gated(over_time=over_time).eval()
    export_model(model, (1, 8, 8), T, tmp_path / "export", formats=("nir", "onnx"), calibration=[torch.rand(T, 16, 1, 8, 8)])
    loihi = read_loihi_json(tmp_path / "export" / "loihi.json")
    hosts = [layer for layer in loihi.layers if layer.on_host]
    assert {layer.neuron for layer in hosts} == {"lif", None}  # the LIF's first layer, and the gate's input current
    target = Deployment.load(tmp_path / "export" / "manifest.json")
    x = {"x": torch.rand(SAMPLES, T, 1, 8, 8).numpy()}
    lava = lava_backend.run(target, x, mode="loihi")
    emulator = reference_backend.run(target, x, mode="loihi", device=torch.device("cpu"))
    assert sorted(lava.spikes) == sorted(emulator.spikes) and sum(int(c.sum()) for c in emulator.spikes.values()) > 0
    for name, counts in emulator.spikes.items():
        assert int((lava.spikes[name] != counts).sum()) == 0, name
    assert np.abs(lava.output - emulator.output).max() == 0.0 and np.abs(emulator.output).max() > 0


class Residual(nn.Module):
    """conv -> LIF -> (conv_a + conv_b) -> LIF -> linear: a membrane shortcut, one plain partition."""

    def __init__(self, b_gain: float):
        super().__init__()
        self.conv = layers.Conv2d(1, 4, 3, padding=1)
        self.lif1 = LIF(0.5, 0.5)
        self.conv_a = layers.Conv2d(4, 4, 3, padding=1)
        self.conv_b = layers.Conv2d(4, 4, 1)
        self.lif2 = LIF(0.5, 0.5)
        self.flat = layers.Flatten()
        self.fc = nn.Linear(4 * 8 * 8, 10)
        with torch.no_grad():
            self.conv_b.weight.mul_(b_gain)

    def forward(self, x):
        s = self.lif1(self.conv(x))
        return self.fc(self.flat(self.lif2(self.conv_a(s) + self.conv_b(s))))


def test_lossy_quantization_warns_in_the_terminal_and_unusable_is_exit_2(tmp_path, capsys):
    """A shortcut whose weights mostly vanish at the neuron's shared scale: a warning on stderr and in
    loihi.json, and the export is written; one whose weights all vanish: refused naming both layers,
    and no export folder is left."""
    torch.manual_seed(0)
    exporter.export_model(Residual(1e-3).eval(), (1, 8, 8), T, tmp_path / "lossy", formats=("nir", "onnx"))
    err = capsys.readouterr().err
    warnings = read_loihi_json(tmp_path / "lossy" / "loihi.json").warnings
    assert len(warnings) == 1 and warnings[0].startswith("conv_b -> lif2: ") and "round to 0" in warnings[0]
    assert "warning" in err and "conv_b -> lif2" in err
    with pytest.raises(UserError, match=r"conv_b -> lif2: its weights .* all round to 0 .* that the 8-bit weights of conv_a sets; "
                                         r"the inputs summed into lif2 cannot share one scale"):
        exporter.export_model(Residual(1e-5).eval(), (1, 8, 8), T, tmp_path / "unusable", formats=("nir", "onnx"))
    assert not (tmp_path / "unusable").exists()
