"""A small DTA MS-ResNet's export in Lava: the encoder on the chip, the DTA gate on the host (ONNX,
buffering T timesteps, or none for the causal variant), the residual stages with membrane
shortcuts on the chip, their projection shortcut composed with the convolutions whose currents it
reads (export/lower.py compose_synapses); compared with the reference runtime layer by layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikeport.export.exporter import export_model
from spikeport.export.loihi import read_loihi_json
from spikeport.runtime.lava.run import run_lava_manifest
from spikeport.deployment import Deployment
from spikeport.runtime import reference as reference_backend
from spikeport.runtime.lava import run as lava_backend
from spikeport.runtime.loihi_fixed import simulate_export
from spikeport.train.models import build_model

pytestmark = pytest.mark.lava

SAMPLES, T = 4, 4
GAIN = 2.5  # the residual stages' kernels scaled up, so that every layer of an untrained model spikes


def _dta(causal: bool):
    torch.manual_seed(0)
    config = {"name": "dta-msresnet", "stem_channels": 8, "stages": [[16, 1, 1], [32, 1, 2]], "causal": causal}
    model = build_model(config, (1, 8, 8), 10, T).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("blocks") and p.ndim == 4:
                p.mul_(GAIN)
    return model


@pytest.mark.parametrize("causal", [False, True])
def test_dta_fixed_point_in_lava_equals_the_emulator_bit_for_bit(causal, tmp_path):
    """The export quantizes by default (a residual MS-ResNet, the gate's graded payload to the
    chip, the encoder's current to the host); Lava's fixed_pt run of spikeport's graph (Dense/Conv
    with summed inputs, DelayDense on the shorter paths, the host process exchanging integers)
    and the reference runtime's loihi mode agree exactly: every layer's spike count at every
    timestep and the read-out's logits."""
    model = _dta(causal)
    calibration = [3 * torch.rand(T, 32, 1, 8, 8)]
    export_model(model, (1, 8, 8), T, tmp_path / "export", formats=("nir", "onnx"), input_bound=3.0, calibration=calibration)
    target = Deployment.load(tmp_path / "export" / "manifest.json")
    loihi = read_loihi_json(tmp_path / "export" / "loihi.json")
    assert {(b.tensor, b.kind, b.direction, b.payload_bits) for b in loihi.boundaries} == {
        ("bn_in", "graded", "to_host", 18), ("lif_in", "spike", "to_host", 1), ("dta", "graded", "to_chip", 8)}
    shared = [l for l in loihi.layers if l.neuron == "lif_out"]
    assert len(shared) == 3 and len({l.scale for l in shared}) == 1  # a membrane shortcut: three inputs, one scale
    x = {"x": 3 * torch.rand(SAMPLES, T, 1, 8, 8).numpy()}

    graphs = target.graphs()
    lava = run_lava_manifest(target.manifest, target.export_dir, graphs, x, loihi=loihi)  # what --backend lava --mode loihi runs
    emulator = reference_backend.run(target, x, mode="loihi", device=torch.device("cpu"))
    assert sorted(lava.spikes) == sorted(emulator.spikes) and len(lava.spikes) == 6
    for name, counts in emulator.spikes.items():
        assert counts.sum() > 0, f"{name}: the comparison needs spikes"
        assert int((lava.spikes[name] != counts).sum()) == 0, name
    assert np.abs(lava.output - emulator.output).max() == 0.0 and np.abs(emulator.output).max() > 0
    record = simulate_export(target.manifest, target.export_dir, graphs, loihi, x)  # every neuron at every timestep, not only the counts
    for name, spikes in record.spikes.items():
        np.testing.assert_array_equal(lava.trains[name], spikes.numpy(), err_msg=name)
    np.testing.assert_array_equal(lava.trains["dta"], record.tensors["dta"].numpy())  # the gate's payload, as sent


@pytest.mark.parametrize("causal, buffer", [(False, T), (True, 0)])
def test_dta_export_in_lava_equals_the_reference_runtime(causal, buffer, tmp_path):
    """Every LIF layer spikes as in the reference runtime, timestep by timestep, and the logits
    agree; `delay` is the deepest path's synaptic stages (the encoder's conv, the identity into the
    first block's LIF, two blocks of two convolutions, the read-out) plus the gate's buffer."""
    model = _dta(causal)
    export_model(model, (1, 8, 8), T, tmp_path / "export", formats=("nir", "onnx"))
    target = Deployment.load(tmp_path / "export" / "manifest.json")
    assert [(p.kind, p.buffer_timesteps) for p in target.manifest.partitions] == [("neuromorphic", 0), ("host", buffer), ("neuromorphic", 0)]
    x = {"x": 3 * torch.rand(SAMPLES, T, 1, 8, 8).numpy()}

    lava = lava_backend.run(target, x, mode="float")
    reference = reference_backend.run(target, x, mode="float", device=torch.device("cpu"))
    assert lava.delay == 7 + buffer
    assert sorted(lava.spikes) == sorted(reference.spikes) and len(reference.spikes) == 6
    for name, counts in reference.spikes.items():
        assert counts.sum() > 0, f"{name}: the comparison needs spikes"
        np.testing.assert_array_equal(lava.spikes[name], counts, err_msg=name)
    with torch.no_grad():
        logits = model(torch.as_tensor(x["x"]).transpose(0, 1)).transpose(0, 1).numpy()
    np.testing.assert_allclose(reference.output, logits, rtol=0, atol=1e-4)
    np.testing.assert_allclose(lava.output, reference.output, rtol=0, atol=1e-4)
