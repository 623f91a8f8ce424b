"""Host partitions in Lava: an export split into NIR + ONNX + NIR runs in one Lava run, the host
partition as a Lava process running its ONNX file on buffered timesteps, and computes what the
reference runtime computes through the same partitions, spike for spike."""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import psutil
import pytest
import torch
from torch import nn

from lava_env import patched_worker
from spikeport.errors import UserError
from spikeport.export.exporter import export_model
from spikeport.runtime.lava.worker.group import SHARED_MEMORY
from spikeport.deployment import Deployment
from spikeport.runtime import reference as reference_backend
from spikeport.runtime.lava import run as lava_backend
from spikeport.train import layers
from spikeport.train.neuron import LIF

pytestmark = pytest.mark.lava

TIMESTEPS = 4
SAMPLES = 4


class MeanGate(layers.TimeMixing):
    """x * sigmoid(4 mean_T(x) - 1): the stand-in for attention, every output timestep depends on all T inputs."""

    def forward(self, x):
        return x * torch.sigmoid(4 * x.mean(0, keepdim=True) - 1)


class RunningMeanGate(layers.TimeMixing):
    """The causal variant: the mean over timesteps 0..t only, so nothing needs buffering."""

    def forward(self, x):
        count = torch.arange(1, x.shape[0] + 1, dtype=x.dtype).reshape(-1, *[1] * (x.dim() - 1))
        return x * torch.sigmoid(4 * x.cumsum(0) / count - 1)


def gated_net(gate: nn.Module) -> nn.Module:
    """conv -> LIF -> gate (host) -> linear -> LIF -> linear read-out: NIR, ONNX, NIR."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict([
        ("conv", layers.Conv2d(1, 4, 3, padding=1)),
        ("lif1", LIF(0.5, 0.5)),
        ("gate", gate),
        ("flat", layers.Flatten()),
        ("fc", nn.Linear(4 * 8 * 8, 16)),
        ("lif2", LIF(0.5, 0.3)),
        ("out", nn.Linear(16, 10)),
    ])).eval()
    with torch.no_grad():
        net.fc.weight *= 4  # lif2 spikes in about a fifth of its neuron-steps, so the logits depend on spikes
    return net


def exported(gate: nn.Module, run):
    """RUN/export of the gated net (NIR + ONNX, no quantization: there are host partitions) and an
    input file of random images."""
    export_model(gated_net(gate), (1, 8, 8), TIMESTEPS, run / "export", formats=("nir", "onnx"))
    x = torch.rand(SAMPLES, TIMESTEPS, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2
    np.savez(run / "in.npz", input=x.numpy())
    return {"input": x.numpy()}


@pytest.mark.parametrize("gate, buffer", [(MeanGate(), TIMESTEPS), (RunningMeanGate(), 0)])
def test_gated_export_in_lava_equals_the_reference_runtime(gate, buffer, tmp_path):
    """Both LIF layers spike as in the reference runtime (NIR in torch, the gate in ONNX Runtime),
    the logits agree, and the host partition's buffer is part of the reported delay: conv (1 stage),
    the gate's buffer, then fc and out (2 stages)."""
    inputs = exported(gate, tmp_path)
    target = Deployment.load(tmp_path)
    assert [(p.kind, p.buffer_timesteps) for p in target.manifest.partitions] == [("neuromorphic", 0), ("host", buffer), ("neuromorphic", 0)]
    lava = lava_backend.run(target, inputs, mode="float")
    reference = reference_backend.run(target, inputs, mode="float", device=torch.device("cpu"))

    assert lava.delay == 1 + buffer + 2
    assert sorted(lava.spikes) == sorted(reference.spikes) == ["neuromorphic0.lif1", "neuromorphic1.lif2"]
    for name, counts in reference.spikes.items():
        assert 0 < counts.sum() < counts.size * 64, f"{name}: the comparison needs some spikes and some silence"
        np.testing.assert_array_equal(lava.spikes[name], counts, err_msg=name)
    assert lava.output.shape == (SAMPLES, TIMESTEPS, 10) and np.abs(reference.output).max() > 0.1
    np.testing.assert_allclose(lava.output, reference.output, rtol=0, atol=1e-5)


def test_simulate_backend_lava_runs_an_export_with_a_host_partition(tmp_path, cli):
    exported(MeanGate(), tmp_path)
    code, _, err = cli("simulate", tmp_path, "--input", tmp_path / "in.npz", "--compare", "reference-float,lava-float")
    assert code == 0, err
    parity = json.loads((tmp_path / "sim" / "parity-reference-float-vs-lava-float.json").read_text())
    assert parity["output_max_abs_diff"] < 1e-5 and parity["prediction_agreement"] == 1.0
    assert set(parity["layers"]) == {"neuromorphic0.lif1", "neuromorphic1.lif2"}
    assert all(layer["spike_count_mismatches"] == 0 and layer["spikes_a"] > 0 for layer in parity["layers"].values())
    assert int(np.load(tmp_path / "sim" / "lava-float.npz")["delay"]) == 1 + TIMESTEPS + 2

    # Loihi fixed point too (issue 16): Lava's fixed_pt run equals the reference runtime's loihi mode exactly
    code, _, err = cli("simulate", tmp_path, "--input", tmp_path / "in.npz", "--compare", "reference-loihi,lava-loihi")
    assert code == 0, err
    parity = json.loads((tmp_path / "sim" / "parity-reference-loihi-vs-lava-loihi.json").read_text())
    assert parity["output_max_abs_diff"] == 0.0
    assert all(layer["spike_count_mismatches"] == 0 for layer in parity["layers"].values())


def test_a_failing_host_process_is_a_user_error_and_leaves_no_process(tmp_path, monkeypatch):
    """The host partition's ONNX step fails once its buffer is full (step 6: conv's stage, then T
    buffered steps): the run ends with that error, not at the timeout, and nothing of it is left."""
    inputs = exported(MeanGate(), tmp_path)
    target = Deployment.load(tmp_path)
    patched_worker(monkeypatch, tmp_path, """
        import host  # runtime/lava/worker/host.py, as the worker imports it
        def failing(self, frames):
            raise RuntimeError("provoked ONNX failure")
        host.PyHostPartitionModel._run = failing
    """)
    before = {p.name for p in SHARED_MEMORY.glob("psm_*")}
    with pytest.raises(UserError, match=r"PyHostPartitionModel failed in step 6: RuntimeError: provoked ONNX failure"):
        lava_backend.run(target, inputs, mode="float")
    assert psutil.Process().children(recursive=True) == []
    assert {p.name for p in SHARED_MEMORY.glob("psm_*")} <= before


def test_a_host_partition_reading_spikes_and_a_current_runs_in_lava(tmp_path):
    """The gated model of test_export.py hands its host partition two tensors: the LIF's spikes and a
    second convolution's current, which Lava's Conv sends without its bias; the host process adds
    it as the timestep arrives, so the logits agree with the reference runtime."""
    from test_export import Gated

    torch.manual_seed(0)
    export_model(Gated(over_time=True).eval(), (1, 8, 8), TIMESTEPS, tmp_path / "export", formats=("nir", "onnx"))
    target = Deployment.load(tmp_path)
    assert [len(p.outputs) for p in target.manifest.partitions] == [2, 1, 1]
    x = torch.rand(SAMPLES, TIMESTEPS, 1, 8, 8, generator=torch.Generator().manual_seed(1)).numpy() * 2
    lava = lava_backend.run(target, {"x": x}, mode="float")
    reference = reference_backend.run(target, {"x": x}, mode="float", device=torch.device("cpu"))
    assert lava.delay == 1 + TIMESTEPS + 1
    assert reference.spikes["neuromorphic0.lif"].sum() > 0
    np.testing.assert_array_equal(lava.spikes["neuromorphic0.lif"], reference.spikes["neuromorphic0.lif"])
    np.testing.assert_allclose(lava.output, reference.output, rtol=0, atol=1e-5)


def test_a_partition_lava_cannot_run_is_named_before_lava_starts(tmp_path):
    """A deployment whose second neuromorphic partition holds what Lava's LIF has not (a reset to a
    voltage other than 0): refused naming the partition and the layer, without starting the worker."""
    import nir

    inputs = exported(MeanGate(), tmp_path)
    target = Deployment.load(tmp_path)
    last = target.manifest.partitions[-1]
    path = tmp_path / "export" / last.file
    graph = nir.read(path)
    (name,) = [n for n, node in graph.nodes.items() if isinstance(node, nir.LIF)]
    graph.nodes[name].v_reset[:] = 0.25
    nir.write(path, graph)
    with pytest.raises(UserError, match=rf"^partition {last.name}: {name} \(LIF\): v_reset must be 0"):
        lava_backend.run(target, inputs, mode="float")
    assert psutil.Process().children(recursive=True) == []
