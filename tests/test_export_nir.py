"""torch -> NIR: the file holds the model's layers and means what the model computes.

Meaning is checked by importing the file with snnTorch 1.0 (`snntorch.import_nir.import_from_nir`,
built on nirtorch) and comparing logits with our model on random spike trains. The imported
`snn.Leaky` already has our neuron's reset (reset_mechanism="zero", reset_delay=False); what it
lacks is dt: the importer computes beta = 1 - 1e-4/tau and divides the threshold by r * 1e-4/tau,
i.e. it assumes every file was written with dt = 1e-4 s. Files exported at dt = 1e-4 therefore
import as they are; at any other dt the test redoes those two lines with the file's own dt.
The imported graph runs one sample at a time with no batch axis, as NIR shapes are defined
(its Flatten counts dimensions in the per-sample shape).

nir.IF (beta == 1) is checked field by field only: snnTorch 1.0 imports it as a Leaky with
beta=0.9 and a subtractive reset, and only when r == 1.
"""

import os

import nir
import numpy as np
import pytest
import torch
from snntorch import utils as snn_utils
from snntorch.import_nir import import_from_nir
from torch import nn

from spikeport.errors import UserError
from spikeport.export.nir_graph import to_nir, write_nir
from spikeport.train import layers
from spikeport.train.models import spiking_cnn
from spikeport.train.neuron import LIF


def digits_cnn() -> nn.Module:
    """The configs/digits-cnn.yaml model, with batch norm statistics far from the identity."""
    torch.manual_seed(0)
    model = spiking_cnn((1, 8, 8), 10, channels=[16, 32], beta=0.5, threshold=1.0)
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.2, 0.5)
    return model.eval()


class Residual(nn.Module):
    """Two convolution branches summed into one LIF (a membrane shortcut), also setting the
    options the digits CNN leaves at their defaults: stride, dilation, groups, pool padding."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv_a = layers.Conv2d(2, 8, 3, stride=2, padding=2, dilation=2, groups=2)
        self.conv_b = layers.Conv2d(2, 8, 1, stride=2, bias=False)
        self.lif = LIF(beta=0.9, threshold=0.5)
        self.pool = layers.AvgPool2d(3, stride=2, padding=1)
        self.flatten = layers.Flatten()
        self.fc = nn.Linear(8 * 2 * 2, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.lif(self.conv_a(x) + self.conv_b(x)))))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_image = layers.Conv2d(1, 4, 3, padding=1)
        self.conv_events = layers.Conv2d(2, 4, 3, padding=1)
        self.lif = LIF(beta=1.0, threshold=1.0)
        self.flatten = layers.Flatten()
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, image, events):
        return self.fc(self.flatten(self.lif(self.conv_image(image) + self.conv_events(events))))


def test_digits_cnn_exports_reads_back_with_types_and_folded_batch_norm(tmp_path):
    model = digits_cnn()
    path = tmp_path / "model.nir"
    write_nir(to_nir(model, (1, 8, 8), dt=2e-3), path)
    assert os.listdir(tmp_path) == ["model.nir"]
    graph = nir.read(path, type_check=True)

    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == {
        "input": "Input", "conv1": "Conv2d", "lif1": "LIF", "pool1": "AvgPool2d",
        "conv2": "Conv2d", "lif2": "LIF", "pool2": "AvgPool2d", "flatten": "Flatten", "fc": "Affine", "output": "Output",
    }
    chain = ["input", "conv1", "lif1", "pool1", "conv2", "lif2", "pool2", "flatten", "fc", "output"]
    assert sorted(graph.edges) == sorted(zip(chain, chain[1:]))
    shapes = {"input": [1, 8, 8], "conv1": [16, 8, 8], "lif1": [16, 8, 8], "pool1": [16, 4, 4], "conv2": [32, 4, 4],
              "lif2": [32, 4, 4], "pool2": [32, 2, 2], "flatten": [128], "fc": [10], "output": [10]}
    for name, node in graph.nodes.items():
        assert list(node.output_type["output"]) == shapes[name], name
    assert list(graph.nodes["conv2"].input_type["input"]) == [16, 4, 4]
    assert graph.nodes["flatten"].start_dim == 0

    assert graph.metadata["dt"] == 2e-3
    assert graph.metadata["reset"] == "zero, immediate"
    assert graph.metadata["spike_condition"] == "v > v_threshold"
    assert graph.metadata["source"].startswith("spikeport ")
    lif = graph.nodes["lif1"]
    np.testing.assert_allclose(lif.tau, 2e-3 / (1 - 0.5))
    np.testing.assert_allclose(lif.r * 2e-3 / lif.tau, 1.0)  # input weight of the Euler step
    np.testing.assert_array_equal(lif.v_threshold, 1.0)
    np.testing.assert_array_equal(lif.v_reset, 0.0)
    np.testing.assert_array_equal(lif.v_leak, 0.0)

    for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):  # the convolutions have no bias of their own
        gamma, beta = getattr(model, bn).weight.detach().double(), getattr(model, bn).bias.detach().double()
        mean, var = getattr(model, bn).running_mean.double(), getattr(model, bn).running_var.double()
        scale = gamma / torch.sqrt(var + getattr(model, bn).eps)
        weight = getattr(model, conv).weight.detach().double() * scale.view(-1, 1, 1, 1)
        np.testing.assert_allclose(graph.nodes[conv].weight, weight.numpy(), rtol=1e-6, atol=1e-7, err_msg=conv)
        np.testing.assert_allclose(graph.nodes[conv].bias, ((0 - mean) * scale + beta).numpy(), rtol=1e-6, atol=1e-7, err_msg=conv)
    np.testing.assert_array_equal(graph.nodes["fc"].weight, model.fc.weight.detach().numpy())


def snntorch_run(graph: nir.NIRGraph, x: torch.Tensor, use_file_dt: bool = True) -> torch.Tensor:
    """Logits [T, B, K] of snnTorch's import of `graph` on x [T, B, ...], one sample at a time."""
    # nirtorch 2.6 never returns from a graph with two Output nodes (each re-queues the other).
    assert [type(node) for node in graph.nodes.values()].count(nir.Output) == 1
    net = import_from_nir(graph)
    dt = graph.metadata["dt"]
    if use_file_dt:  # import_from_nir's LIF branch, with the file's dt in place of its fixed 1e-4
        for name, node in graph.nodes.items():
            if isinstance(node, nir.LIF):
                leaky = net.get_submodule(name)
                leaky.beta.copy_(torch.from_numpy(1 - dt / node.tau))
                leaky.threshold.fill_(float(np.unique(node.v_threshold / (node.r * dt / node.tau))[0]))
    outputs = []
    with torch.no_grad():
        for b in range(x.shape[1]):
            snn_utils.reset(net)
            outputs.append(torch.stack([net(x[t, b])[0] for t in range(x.shape[0])]))
    return torch.stack(outputs, 1)


def spike_rates(model: nn.Module, x: torch.Tensor) -> list[float]:
    rates = []
    hooks = [m.register_forward_hook(lambda m, i, out: rates.append(out.mean().item())) for m in model.modules() if isinstance(m, LIF)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return rates


@pytest.mark.parametrize("dt", [1e-4, 1e-3])
@pytest.mark.parametrize("make_model,shape", [(digits_cnn, (1, 8, 8)), (lambda: Residual().eval(), (2, 8, 8))],
                         ids=["digits-cnn", "residual"])
def test_snntorch_import_of_the_file_computes_the_model(tmp_path, make_model, shape, dt):
    model = make_model()
    torch.manual_seed(2)
    x = (torch.rand(10, 3, *shape) < 0.3).float()
    # Every layer fires, but not always: spikes and resets both shape the logits compared below.
    assert all(0.02 < rate < 0.9 for rate in spike_rates(model, x))
    write_nir(to_nir(model, shape, dt=dt), tmp_path / "model.nir")
    graph = nir.read(tmp_path / "model.nir")
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(snntorch_run(graph, x), expected, atol=1e-5, rtol=1e-5)
    if dt != 1e-4:  # the correction is needed: the importer's own beta and threshold compute something else
        assert not torch.allclose(snntorch_run(graph, x, use_file_dt=False), expected, atol=1e-2)


def test_residual_sum_becomes_two_edges_into_the_lif():
    graph = to_nir(Residual(), (2, 8, 8))
    assert sorted(src for src, dst in graph.edges if dst == "lif") == ["conv_a", "conv_b"]
    assert sorted(dst for src, dst in graph.edges if src == "x") == ["conv_a", "conv_b"]
    np.testing.assert_array_equal(graph.nodes["conv_b"].bias, 0.0)
    conv_a = graph.nodes["conv_a"]  # groups=2, written dense: each output group sees only its inputs
    assert conv_a.groups == 1 and conv_a.weight.shape == (8, 2, 3, 3)
    np.testing.assert_array_equal(conv_a.weight[:4, 1], 0.0)
    np.testing.assert_array_equal(conv_a.weight[4:, 0], 0.0)
    np.testing.assert_allclose(graph.nodes["lif"].tau, 1e-3 / (1 - 0.9))


def test_two_inputs_become_two_input_nodes_and_beta_one_an_if_neuron(tmp_path):
    graph = to_nir(TwoInputs(), {"image": (1, 8, 8), "events": (2, 8, 8)}, dt=1e-3)
    write_nir(graph, tmp_path / "model.nir")
    graph = nir.read(tmp_path / "model.nir")
    inputs = {name: list(node.input_type["input"]) for name, node in graph.nodes.items() if isinstance(node, nir.Input)}
    assert inputs == {"image": [1, 8, 8], "events": [2, 8, 8]}
    assert sorted(graph.edges) == sorted([("image", "conv_image"), ("events", "conv_events"), ("conv_image", "lif"),
                                          ("conv_events", "lif"), ("lif", "flatten"), ("flatten", "fc"), ("fc", "output")])
    neuron = graph.nodes["lif"]  # dv/dt = R I stepped by dt: v += dt * r * I, so r = 1/dt
    assert isinstance(neuron, nir.IF)
    np.testing.assert_allclose(neuron.r * 1e-3, 1.0)
    np.testing.assert_array_equal(neuron.v_threshold, 1.0)
    np.testing.assert_array_equal(neuron.v_reset, 0.0)
    with pytest.raises(UserError, match="image, events"):
        to_nir(TwoInputs(), (1, 8, 8))


class Gate(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class Gated(nn.Module):
    def __init__(self, gate: nn.Module):
        super().__init__()
        self.conv = layers.Conv2d(1, 4, 3, padding=1)
        self.lif = LIF()
        self.gate = gate
        self.flatten = layers.Flatten()
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.gate(self.lif(self.conv(x)))))


@pytest.mark.parametrize("gate,named", [(nn.Sigmoid(), "model.gate (Sigmoid): no NIR primitive"),
                                        (Gate(), "model.gate (Gate), operation sigmoid: sigmoid has no NIR primitive")])
def test_a_module_without_nir_mapping_is_named_not_dropped(gate, named):
    with pytest.raises(UserError) as error:
        to_nir(Gated(gate), (1, 8, 8))
    assert str(error.value).startswith(named)
    assert "\n" not in str(error.value)


class SelfSum(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = layers.Conv2d(1, 2, 3, padding=1)
        self.lif = LIF()

    def forward(self, x):
        y = self.conv(x)
        return self.lif(y + y)


@pytest.mark.parametrize("model,message", [
    (nn.Sequential(layers.Conv2d(1, 4, 3), LIF(), layers.BatchNorm2d(4)),
     r"^model\.2 \(BatchNorm2d\): batch norm maps only folded into a Conv2d directly before it"),
    (SelfSum(), r"^model \(SelfSum\), operation add: sums a value with itself"),
    (nn.Sequential(layers.Conv2d(1, 4, 3), nn.Linear(6, 2)), r"^model\.1 \(Linear\): its input is \(4, 6, 6\) per sample"),
    (nn.Sequential(layers.Conv2d(1, 4, 3), nn.Flatten()), r"^model\.1 \(Flatten\): it flattens the time or batch axis"),
], ids=["batch-norm-after-lif", "self-sum", "linear-on-image", "flatten-batch"])
def test_layers_nir_cannot_hold_as_written_are_refused(model, message):
    with pytest.raises(UserError, match=message):
        to_nir(model, (1, 8, 8))
    assert model.training  # the export's shape run (in eval mode) left the model as it was
    assert all(m.num_batches_tracked == 0 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_write_nir_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "model.nir"
    write_nir(to_nir(Residual(), (2, 8, 8)), path)
    before = path.read_bytes()

    def broken_write(f, graph):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_nir(to_nir(digits_cnn(), (1, 8, 8)), path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.nir"]
    assert nir.read(path).metadata["dt"] == 1e-3


# --- the neuron constants: decoded in one place (export/neuron_constants.py) -----------------------


def _lif_graph(beta: float, dt: float) -> nir.NIRGraph:
    class One(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)
            self.lif = LIF(beta, 0.7)

        def forward(self, x):
            return self.lif(self.fc(x))

    return to_nir(One().eval(), (3,), dt=dt)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.9, 0.95, 0.99, 1.0])
@pytest.mark.parametrize("dt", [1e-3, 1e-4, 1.0])
def test_neuron_constants_give_back_the_trained_neuron(beta, dt):
    """What the exporter wrote (tau = dt / (1 - beta), r = tau / dt) decodes to the trained beta,
    gain 1 and the threshold; the reference runtime and the Loihi quantizer use exactly these."""
    from spikeport.export.loihi import _neuron_constants
    from spikeport.export.neuron_constants import neuron_constants
    from spikeport.runtime.reference import neuron_step_constants

    graph = _lif_graph(beta, dt)
    node = graph.nodes["lif"]
    c = neuron_constants(node, dt)
    assert c.kind == ("IF" if beta == 1 else "LIF")
    assert np.all(np.float32(c.beta) == np.float32(beta)) and np.allclose(c.gain, 1, rtol=0, atol=1e-12) and np.all(c.bias == 0)
    assert np.all(c.v_threshold == 0.7) and np.all(c.v_reset == 0)
    reference = neuron_step_constants(node, dt)
    assert reference.gain is None and reference.bias is None  # 1 and 0: not applied, as in training
    if beta < 1:
        assert torch.equal(reference.decay, torch.as_tensor(c.beta).float())
    assert _neuron_constants(graph, "lif") == (float(c.beta.flat[0]), float(c.gain.flat[0]), 0.7)


def test_neuron_constants_of_foreign_neurons():
    """Forward Euler of NIR's ODEs, for files other tools wrote: a leak towards v_leak, r that is
    not tau/dt, a CubaLIF's synaptic filter; what cannot be stepped is refused naming the node."""
    from spikeport.export.neuron_constants import neuron_constants

    dt, tau, r, leak = 1e-3, np.array([2e-3, 4e-3]), np.array([3.0, 5.0]), np.array([0.1, -0.2])
    c = neuron_constants(nir.LIF(tau=tau, r=r, v_leak=leak, v_threshold=np.ones(2), v_reset=np.zeros(2)), dt)
    assert np.allclose(c.beta, [0.5, 0.75]) and np.allclose(c.gain, dt / tau * r) and np.allclose(c.bias, dt / tau * leak)
    assert np.array_equal(c.leak, dt / tau) and np.array_equal(c.beta, 1 - c.leak)  # Lava's dv, and the decay 1 - dv it computes
    c = neuron_constants(nir.IF(r=np.array([2.0]), v_threshold=np.ones(1), v_reset=np.zeros(1)), dt)
    assert c.beta.tolist() == [1.0] and c.leak.tolist() == [0.0] and np.allclose(c.gain, 2e-3) and c.bias.tolist() == [0.0]
    cuba = nir.CubaLIF(tau_syn=np.array([5e-3]), tau_mem=np.array([1e-2]), r=np.array([10.0]), v_leak=np.zeros(1),
                       v_threshold=np.ones(1), v_reset=np.zeros(1), w_in=np.array([5.0]))
    c = neuron_constants(cuba, dt)
    assert np.allclose(c.synapse_decay, 0.8) and np.allclose(c.synapse_gain, 1.0) and np.allclose(c.beta, 0.9) and np.allclose(c.gain, 1.0)
    with pytest.raises(UserError, match=r"lif1 \(LIF\): tau must be positive"):
        neuron_constants(nir.LIF(tau=np.zeros(1), r=np.ones(1), v_leak=np.zeros(1), v_threshold=np.ones(1), v_reset=np.zeros(1)), dt, "lif1")
    with pytest.raises(UserError, match="dt must be a positive number"):
        neuron_constants(nir.IF(r=np.ones(1), v_threshold=np.ones(1), v_reset=np.zeros(1)), 0.0)
