"""A small TAAF model's export in Lava: four partitions (the stems on the chip, their max pools on
the host, the residual stages on the chip, the fusion head on the host) with two inputs and two
tensors on most boundaries, identity and strided shortcuts, and a global average pool handed to the
host, compared with the reference runtime layer by layer."""

from __future__ import annotations

import numpy as np
import torch

from spikeport.export.exporter import export
from spikeport.runtime.simulate import resolve_target, run_in_lava, run_reference
from spikeport.train import datasets
from spikeport.train.loop import train
from test_taaf_pipeline import OPTIONS, av_config, av_root  # noqa: F401 - av_root is a fixture

SAMPLES = 3
GAIN = 3  # the inputs scaled up, so that every layer of a one-epoch model spikes


def test_taaf_export_in_lava_equals_the_reference_runtime(av_root, tmp_path):  # noqa: F811
    """Every neuron layer of both branches spikes as in the reference runtime, timestep by
    timestep; the logits agree; `delay` is the deepest path's 6 synaptic stages (stem conv, two
    residual stages of two convolutions, the pool's Dense) plus the head's buffer of T = 3."""
    run = tmp_path / "run"
    train(av_config(av_root, epochs=1), run, device="cpu")
    export(run, ("nir", "onnx"), "none")
    target = resolve_target(run)
    assert [(p.name, len(p.inputs), len(p.outputs), p.buffer_timesteps) for p in target.manifest.partitions] == [
        ("neuromorphic0", 2, 2, 0), ("host0", 2, 2, 0), ("neuromorphic1", 2, 2, 0), ("host1", 2, 1, 3)]
    test = datasets.load("av-digits", av_root, "test", 3, options=OPTIONS)
    (audio, visual), _ = torch.utils.data.default_collate([test[i] for i in range(SAMPLES)])
    inputs = {"audio": GAIN * audio.numpy(), "visual": GAIN * visual.numpy()}

    lava = run_in_lava(target, inputs, torch.device("cpu"))
    reference = run_reference(target, inputs, torch.device("cpu"))
    assert lava.delay == 6 + 3
    assert sorted(lava.spikes) == sorted(reference.spikes) and len(reference.spikes) == 10
    for name, counts in reference.spikes.items():
        assert counts.sum() > 0, f"{name}: the comparison needs spikes"
        np.testing.assert_array_equal(lava.spikes[name], counts, err_msg=name)
    assert lava.output.shape == (SAMPLES, 3, 10) and np.abs(reference.output).max() > 0.01
    np.testing.assert_allclose(lava.output, reference.output, rtol=0, atol=1e-4)
