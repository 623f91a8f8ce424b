"""Models that users bring from snnTorch (issue 14): exported, run in the reference runtime, and
spiking as snnTorch's own forward does, neuron for neuron, in every layer, for each setting.

The models are written as the snnTorch tutorials write them: an `nn.Sequential` of layers and
`snn.Leaky(init_hidden=True)` stepped once per timestep, and a module whose `forward` loops over
the steps with the states passed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch import utils
from torch import nn

import spikeport
from spikeport.errors import UserError
from spikeport.export.from_snntorch import convert
from spikeport.runtime import reference as reference_backend

T = 6
SETTINGS = [
    {"reset_mechanism": "subtract"},  # snnTorch's default: subtract, with reset_delay=True
    {"reset_mechanism": "subtract", "reset_delay": False},
    {"reset_mechanism": "zero"},
    {"reset_mechanism": "zero", "reset_delay": False},  # the deployment's own rule
    {"reset_mechanism": "none"},
    {"reset_mechanism": "subtract", "learn_beta": True, "learn_threshold": True, "threshold": 0.7},
]


def sequential_cnn(**leaky) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), snn.Leaky(beta=0.8, init_hidden=True, **leaky),
        nn.AvgPool2d(2), nn.Dropout(0.2), nn.Flatten(), nn.Linear(6 * 4 * 4, 10),
        snn.Leaky(beta=0.9, init_hidden=True, output=True, **leaky),
    )
    net[1].running_mean.uniform_(-0.3, 0.3)
    net[1].running_var.uniform_(0.5, 1.5)
    return net.eval()


class TutorialMLP(nn.Module):
    """As in snnTorch's tutorial 5: a forward that loops over x's leading time axis."""

    def __init__(self, **leaky):
        super().__init__()
        torch.manual_seed(1)
        self.fc1 = nn.Linear(64, 40)
        self.lif1 = snn.Leaky(beta=0.85, **leaky)
        self.fc2 = nn.Linear(40, 10)
        self.lif2 = snn.Leaky(beta=0.85, **leaky)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spikes = []
        for step in range(x.shape[0]):
            cur1 = self.fc1(x[step].flatten(1))
            spk1, mem1 = self.lif1(cur1, mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spikes.append(spk2)
        return torch.stack(spikes)


def snntorch_states(model: nn.Module, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Per neuron module of the user's model, in call order: its spikes, and its `mem` and `syn`
    after every call, [T, B, ...], from the model's own forward."""
    neurons = [m for m in model.modules() if isinstance(m, snn.SpikingNeuron)]
    recorded = {m: {"spk": [], "mem": [], "syn": []} for m in neurons}

    def hook(m, args, out):
        recorded[m]["spk"].append((out[0] if isinstance(out, tuple) else out).clone())
        recorded[m]["mem"].append(m.mem.clone())
        if hasattr(m, "syn"):
            recorded[m]["syn"].append(m.syn.clone())

    handles = [m.register_forward_hook(hook) for m in neurons]
    utils.reset(model)
    with torch.no_grad():
        if isinstance(model, nn.Sequential):
            for t in range(x.shape[0]):
                model(x[t])
        else:
            model(x)
    for handle in handles:
        handle.remove()
    return [{k: torch.stack(v) for k, v in recorded[m].items() if v} for m in neurons]


def snntorch_spikes(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Each snnTorch neuron's spikes [T, B, ...] in the user's model, from its own forward."""
    return [states["spk"] for states in snntorch_states(model, x)]


def reference_spikes(deployment, x: torch.Tensor) -> list[torch.Tensor]:
    """Each neuron layer's spikes [T, B, ...] in the reference runtime running the exported graph."""
    trains = reference_backend.run(deployment, {"input": x.transpose(0, 1).numpy()}, mode="float", device="cpu", record=True).trains
    return [torch.as_tensor(s).float().transpose(0, 1) for name, s in trains.items() if name.split(".")[-1].startswith(("leaky", "lif"))]


def inputs(shape) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return (torch.rand(T, 16, *shape, generator=generator) < 0.35).float() * 1.6


@pytest.mark.parametrize("leaky", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("build, shape", [(sequential_cnn, (1, 8, 8)), (TutorialMLP, (1, 8, 8))], ids=["sequential-cnn", "tutorial-mlp"])
def test_exported_spikes_equal_snntorch_layer_by_layer(build, shape, leaky, tmp_path):
    model = build(**leaky)
    deployment = spikeport.export(model=model, input_shape=shape, timesteps=T, out=tmp_path / "run")
    x = inputs(shape)
    theirs, ours = snntorch_spikes(model, x), reference_spikes(deployment, x)
    assert len(theirs) == len(ours) == 2
    for layer, (a, b) in enumerate(zip(theirs, ours)):
        assert torch.equal(a, b.reshape(a.shape)), f"layer {layer}: {int((a != b.reshape(a.shape)).sum())} spikes differ"
    assert sum(float(a.sum()) for a in theirs) > 0  # the comparison saw spikes


def test_a_user_model_goes_through_simulate_and_report(tmp_path):
    model = sequential_cnn()  # snnTorch's defaults: subtractive reset with delay
    deployment = spikeport.export(model=model, input_shape=(1, 8, 8), timesteps=T, out=tmp_path / "run")
    assert {"model.nir", "model.onnx"} <= {p.name for p in deployment.path.iterdir()}
    assert not (deployment.path / "loihi.json").exists()  # no Loihi integers for a neuron Loihi does not compute
    x = inputs((1, 8, 8))
    np.savez(tmp_path / "in.npz", input=x.transpose(0, 1).numpy(), labels=np.arange(16) % 10)
    sim = spikeport.simulate(target=deployment, inputs=tmp_path / "in.npz")
    utils.reset(model)
    with torch.no_grad():
        expected = torch.stack([model(x[t])[0] for t in range(T)], 1).numpy()
    assert np.array_equal(sim.output, expected) and sim.accuracy is not None
    onnx = spikeport.simulate(target=deployment, backend="onnx", inputs=tmp_path / "in.npz")
    assert np.array_equal(onnx.output, expected)
    report = spikeport.report(target=deployment, inputs=tmp_path / "in.npz", profiles=["loihi2"])
    layers = [row["name"] for row in report.data["layers"]]
    assert any(name.endswith("conv2d_0") for name in layers) and any(name.endswith("linear_6") for name in layers), layers


def test_the_nir_file_keeps_the_reset_rule(tmp_path):
    import nir

    from spikeport.export.nir_graph import reset_rule

    deployment = spikeport.export(model=sequential_cnn(), input_shape=(1, 8, 8), timesteps=T, out=tmp_path / "run")
    graph = nir.read(deployment.path / "model.nir")
    rules = {name: reset_rule(node) for name, node in graph.nodes.items() if isinstance(node, (nir.LIF, nir.IF))}
    assert set(rules.values()) == {("subtract", True)}


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(64, 64), snn.Leaky(beta=0.8)
        self.fc2, self.lif2 = nn.Linear(64, 10), snn.Leaky(beta=0.8)

    def forward(self, x):
        mem1, mem2, out = self.lif1.init_leaky(), self.lif2.init_leaky(), []
        for step in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[step].flatten(1)), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1 + x[step].flatten(1)), mem2)
            out.append(spk2)
        return torch.stack(out)


@pytest.mark.parametrize(
    "model, fragment",
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), snn.Leaky(beta=0.5, init_hidden=True)), "2 (ReLU): no spikeport layer"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=torch.rand(10), init_hidden=True)), "2 (Leaky): beta has 10 values"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 10), snn.Alpha(alpha=0.6, beta=0.5, init_hidden=True)), "2 (Alpha): no spikeport neuron for it"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.5, init_hidden=True, graded_spikes_factor=2.0)), "graded_spikes_factor"),
        (Residual(), "fc2 (Linear): reads a tensor that the module before it did not produce"),
    ],
    ids=["relu", "per-neuron-beta", "alpha-neuron", "graded", "residual"],
)
def test_what_cannot_be_exported_is_refused_naming_the_module(model, fragment, tmp_path):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        spikeport.export(model=model, input_shape=(1, 8, 8), timesteps=T, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_subtractive_reset_is_refused_for_lava_naming_the_layer(tmp_path):
    with pytest.raises(UserError, match=r"leaky_2 \(snn.Leaky\): reset_mechanism='subtract', reset_delay=True has no Loihi equivalent"):
        spikeport.export(model=sequential_cnn(), input_shape=(1, 8, 8), timesteps=T, out=tmp_path / "run", formats=("nir", "lava"))
    assert not (tmp_path / "run").exists()


def test_a_zero_reset_model_gets_loihi_files(tmp_path):
    deployment = spikeport.export(model=sequential_cnn(reset_mechanism="zero"), input_shape=(1, 8, 8), timesteps=T, out=tmp_path / "run")
    assert (deployment.path / "loihi.json").exists()


def test_a_wrong_input_shape_is_one_line(tmp_path):
    with pytest.raises(UserError, match="input_shape"):
        convert(sequential_cnn(), (0, 8), T)
    with pytest.raises(UserError, match="fails on a step of shape"):
        convert(sequential_cnn(), (3, 8, 8), T)
    with pytest.raises(UserError, match="its forward fails on an input of shape"):
        convert(TutorialMLP(), (1, 7, 7), T)


def test_lava_and_loihi_refuse_a_subtractive_reset_in_a_nir_file(tmp_path):
    """NIR cannot say subtract-versus-zero: the rule spikeport keeps in the file stops every Loihi
    target from running the file as a zero-reset network."""
    import nir

    from spikeport.export.loihi import quantize
    from spikeport.runtime.lava.plan import plan_network

    deployment = spikeport.export(model=sequential_cnn(), input_shape=(1, 8, 8), timesteps=T, out=tmp_path / "run")
    graph = nir.read(deployment.path / "model.nir")
    with pytest.raises(UserError, match=r"\(LIF\): its reset 'subtract' with a delay has no Lava equivalent"):
        plan_network(graph)
    with pytest.raises(UserError, match="has no Loihi fixed-point equivalent"):
        quantize(graph)
