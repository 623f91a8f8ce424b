"""A small TAAF model's export in Lava: four partitions (the stems on the chip, their max pools on
the host, the residual stages on the chip, the fusion head on the host) with two inputs and two
tensors on most boundaries, identity and strided shortcuts, and a global average pool handed to the
host, compared with the reference runtime layer by layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikeport.export.exporter import export
from spikeport.export.loihi import read_loihi_json
from spikeport.deployment import Deployment
from spikeport.runtime import reference as reference_backend
from spikeport.runtime.lava import run as lava_backend
from spikeport.train import datasets
from spikeport.train.loop import train
from test_taaf_pipeline import OPTIONS, av_config, av_root  # noqa: F401 - av_root is a fixture

pytestmark = pytest.mark.lava

SAMPLES = 3
GAIN = 3  # the inputs scaled up, so that every layer of a one-epoch model spikes


@pytest.fixture(scope="module")
def taaf_run(av_root, tmp_path_factory):  # noqa: F811
    run = tmp_path_factory.mktemp("taaf") / "run"
    train(av_config(av_root, epochs=1), run, device="cpu")
    return run


def _inputs(av_root):  # noqa: F811
    test = datasets.load("av-digits", av_root, "test", 3, options=OPTIONS)
    (audio, visual), _ = torch.utils.data.default_collate([test[i] for i in range(SAMPLES)])
    return {"audio": GAIN * audio.numpy(), "visual": GAIN * visual.numpy()}


def test_taaf_fixed_point_in_lava_equals_the_emulator_bit_for_bit(taaf_run, av_root):  # noqa: F811
    """`spikeport export` quantizes the two-branch model by default: the stems' first layers on the
    host, the max-pooled spikes from the host as exact integer payloads (scale 1), identity and
    strided shortcuts sharing their neuron's scale, the pooled features to the fusion head as
    currents; Lava's fixed_pt run and the reference runtime's loihi mode agree exactly on every
    layer and timestep, and on the head's logits."""
    export(taaf_run, ("nir", "onnx"))
    target = Deployment.load(taaf_run)
    loihi = read_loihi_json(taaf_run / "export" / "loihi.json")
    payloads = {b.tensor: b for b in loihi.boundaries}
    assert payloads["unflatten"].scale == 1.0 and payloads["audio_flatten"].direction == "to_host"
    assert all(b.saturated_fraction in (None, 0.0) for b in loihi.boundaries)
    inputs = _inputs(av_root)
    lava = lava_backend.run(target, inputs, mode="loihi")
    emulator = reference_backend.run(target, inputs, mode="loihi", device=torch.device("cpu"))
    assert sorted(lava.spikes) == sorted(emulator.spikes) and len(emulator.spikes) == 10
    for name, counts in emulator.spikes.items():
        assert int((lava.spikes[name] != counts).sum()) == 0, name
    assert sum(int(c.sum()) for c in emulator.spikes.values()) > 0
    assert np.abs(lava.output - emulator.output).max() == 0.0 and np.abs(emulator.output).max() > 0.01


def test_taaf_export_in_lava_equals_the_reference_runtime(taaf_run, av_root):  # noqa: F811
    """Every neuron layer of both branches spikes as in the reference runtime, timestep by
    timestep; the logits agree; `delay` is the deepest path's 6 synaptic stages (stem conv, two
    residual stages of two convolutions, the pool's Dense) plus the head's buffer of T = 3."""
    run = taaf_run
    export(run, ("nir", "onnx"), "none")
    target = Deployment.load(run)
    assert [(p.name, len(p.inputs), len(p.outputs), p.buffer_timesteps) for p in target.manifest.partitions] == [
        ("neuromorphic0", 2, 2, 0), ("host0", 2, 2, 0), ("neuromorphic1", 2, 2, 0), ("host1", 2, 1, 3)]
    inputs = _inputs(av_root)

    lava = lava_backend.run(target, inputs, mode="float")
    reference = reference_backend.run(target, inputs, mode="float", device=torch.device("cpu"))
    assert lava.delay == 6 + 3
    assert sorted(lava.spikes) == sorted(reference.spikes) and len(reference.spikes) == 10
    for name, counts in reference.spikes.items():
        assert counts.sum() > 0, f"{name}: the comparison needs spikes"
        np.testing.assert_array_equal(lava.spikes[name], counts, err_msg=name)
    assert lava.output.shape == (SAMPLES, 3, 10) and np.abs(reference.output).max() > 0.01
    np.testing.assert_allclose(lava.output, reference.output, rtol=0, atol=1e-4)
