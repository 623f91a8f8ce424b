"""Activity and synaptic operations: equal to NeuroBench's own SynapticOperations counter."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import load_trained_model
from spikeport.export.exporter import export_model
from spikeport.runtime.measure import measure
from spikeport.deployment import Deployment
from spikeport.runtime.simulate import load_inputs
from spikeport.train import layers
from spikeport.train.neuron import LIF

neurobench = pytest.importorskip("neurobench", reason="neurobench is a test dependency (pip install -e '.[dev]')")
from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.workload import SynapticOperations  # noqa: E402
from neurobench.models import TorchModel  # noqa: E402


class BatchFirst(nn.Module):
    """NeuroBench feeds [B, T, ...]; spikeport models take [T, B, ...]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.transpose(0, 1)).mean(0)


def neurobench_sops(model: nn.Module, x: np.ndarray, labels: np.ndarray, batch_size: int) -> dict:
    loader = DataLoader(TensorDataset(torch.as_tensor(x), torch.as_tensor(labels)), batch_size=batch_size)
    benchmark = Benchmark(TorchModel(BatchFirst(model)), loader, [], [lambda out: out.argmax(1)], [[], [SynapticOperations]])
    results = benchmark.run(quiet=True)
    return next(v for k, v in results.items() if "Synaptic" in k)


def ours(target, inputs, batch_size):
    network = measure(target, inputs, torch.device("cpu"), batch_size=batch_size)
    return {
        "Dense": sum(layer.sops_dense for layer in network.layers),
        "Effective_ACs": sum(layer.sops_effective_ac for layer in network.layers),
        "Effective_MACs": sum(layer.sops_effective_mac for layer in network.layers),
    }, network


def test_digits_cnn_sops_equal_neurobench(trained_run):
    target = Deployment.load(trained_run)
    target, inputs, labels = load_inputs(target, None, 96)
    got, network = ours(target, inputs, batch_size=32)
    want = neurobench_sops(load_trained_model(trained_run), inputs["input"], labels, batch_size=32)
    assert got == pytest.approx(want, rel=1e-9)
    assert got["Effective_MACs"] > 0  # images and pooled spikes are graded inputs
    assert [layer.input_kind for layer in network.layers] == ["graded", "graded", "graded"]
    assert all(layer.spikes > 0 for layer in network.layers[:2]) and network.layers[2].spikes == 0


def test_spiking_inputs_count_as_accumulates(tmp_path):
    """Without pooling between neuron layers, the next layer's inputs are spikes: ACs, not MACs."""
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            conv=layers.Conv2d(2, 6, 3, padding=1),
            lif1=LIF(0.5, 0.5),
            flatten=layers.Flatten(),
            fc1=nn.Linear(6 * 8 * 8, 32),
            lif2=LIF(0.5, 0.5),
            fc2=nn.Linear(32, 5),
        )
    ).eval()
    export_model(model, (2, 8, 8), 5, tmp_path / "export")
    x = (torch.rand(40, 5, 2, 8, 8) < 0.3).float().numpy()  # spike input
    np.savez(tmp_path / "in.npz", input=x)
    target = Deployment.load(tmp_path / "export" / "manifest.json")
    target, inputs, _ = load_inputs(target, tmp_path / "in.npz", None)
    got, network = ours(target, inputs, batch_size=16)
    want = neurobench_sops(model, x, np.zeros(40, dtype=np.int64), batch_size=16)
    assert got == pytest.approx(want, rel=1e-9)
    assert got["Effective_MACs"] == 0 and got["Effective_ACs"] > 0
    assert [layer.input_kind for layer in network.layers] == ["spike", "spike", "spike"]
    assert network.pipeline_delay == 3
