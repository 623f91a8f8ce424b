"""snnTorch's `Synaptic`, `RLeaky` and `RSynaptic` in users' models (issue 14): exported to NIR
(CubaLIF, recurrent Affine/Linear edges) and run by the reference runtime exactly as snnTorch's
own modules run, step by step: spikes, membranes and synaptic currents equal to the bit, for
every reset rule, on random inputs.

The oracle is the user's snnTorch model itself, run by its own forward; each neuron module's
state (`mem`, `syn`) is read after every call. The reference runtime's neuron layers are stepped
one timestep at a time with their state carried, and their state read the same way.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch import import_nir
from torch import nn

import spikeport
from spikeport.errors import UserError
from spikeport.export.from_snntorch import convert
from spikeport.export.nir_graph import reset_rule, to_nir
from spikeport.runtime.reference import NIRExecutor
from test_from_snntorch import snntorch_states  # the recorder of snnTorch's own forward

T, FEATURES, HIDDEN = 12, 32, 24
RESETS = [
    {},  # snnTorch's default: subtract, with reset_delay=True
    {"reset_mechanism": "subtract", "reset_delay": False},
    {"reset_mechanism": "zero"},  # delayed: the whole membrane after a spike is zeroed
    {"reset_mechanism": "zero", "reset_delay": False},
    {"reset_mechanism": "none"},
    {"learn_beta": True, "learn_threshold": True, "threshold": 0.6},
]
NEURONS = {  # one snnTorch neuron layer of `n` neurons, each kind and recurrent form
    "synaptic": lambda n, **kw: snn.Synaptic(alpha=0.75, beta=0.85, **kw),
    "rleaky-linear": lambda n, **kw: snn.RLeaky(beta=0.85, linear_features=n, **kw),
    "rleaky-V": lambda n, **kw: snn.RLeaky(beta=0.85, all_to_all=False, V=torch.linspace(-0.5, 0.8, n), **kw),
    "rleaky-scalar-V": lambda n, **kw: snn.RLeaky(beta=0.85, all_to_all=False, V=0.4, **kw),
    "rsynaptic-linear": lambda n, **kw: snn.RSynaptic(alpha=0.7, beta=0.85, linear_features=n, **kw),
    "rsynaptic-V": lambda n, **kw: snn.RSynaptic(alpha=0.7, beta=0.85, all_to_all=False, V=torch.linspace(0.6, -0.3, n), **kw),
}


def mlp(kind: str, **settings) -> nn.Sequential:
    """A tutorial-style Sequential, stepped once per timestep, with two neuron layers of one kind."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(FEATURES, HIDDEN), NEURONS[kind](HIDDEN, init_hidden=True, **settings),
        nn.Linear(HIDDEN, 10), NEURONS[kind](10, init_hidden=True, output=True, **settings),
    )
    for m in net.modules():  # recurrent weights strong enough to matter
        if isinstance(m, nn.Linear) and m.in_features == m.out_features:
            m.weight.data *= 3
    return net.eval()


class TutorialRSynaptic(nn.Module):
    """As snnTorch's RSynaptic docstring writes it: states passed by hand, a loop over x's steps."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.fc1, self.lif1 = nn.Linear(FEATURES, HIDDEN), snn.RSynaptic(alpha=0.8, beta=0.9, linear_features=HIDDEN)
        self.fc2, self.lif2 = nn.Linear(HIDDEN, 10), snn.RSynaptic(alpha=0.8, beta=0.9, all_to_all=False, V=0.5)

    def forward(self, x):
        spk1, syn1, mem1 = self.lif1.init_rsynaptic()
        spk2, syn2, mem2 = self.lif2.init_rsynaptic()
        out = []
        for step in range(x.shape[0]):
            spk1, syn1, mem1 = self.lif1(self.fc1(x[step].flatten(1)), spk1, syn1, mem1)
            spk2, syn2, mem2 = self.lif2(self.fc2(spk1), spk2, syn2, mem2)
            out.append(spk2)
        return torch.stack(out)


class SynapticCNN(nn.Module):
    """Conv -> Synaptic over [C, H, W] neurons -> pool -> Linear -> Synaptic, a tutorial forward."""

    def __init__(self, **settings):
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.lif1 = nn.Conv2d(1, 4, 3, padding=1), snn.Synaptic(alpha=0.6, beta=0.8, **settings)
        self.pool, self.fc, self.lif2 = nn.AvgPool2d(2), nn.Linear(4 * 4 * 4, 10), snn.Synaptic(alpha=0.6, beta=0.8, **settings)

    def forward(self, x):
        syn1, mem1 = self.lif1.init_synaptic()
        syn2, mem2 = self.lif2.init_synaptic()
        out = []
        for step in range(x.shape[0]):
            spk1, syn1, mem1 = self.lif1(self.conv(x[step]), syn1, mem1)
            spk2, syn2, mem2 = self.lif2(self.fc(self.pool(spk1).flatten(1)), syn2, mem2)
            out.append(spk2)
        return torch.stack(out)


def inputs(shape, seed=7) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(T, 16, *shape, generator=generator) < 0.35).float() * 1.6


def reference_states(graph: nir.NIRGraph, x: torch.Tensor, dt: float | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Per neuron node of `graph` in the reference runtime: its spikes, membrane and synaptic
    current after every step, [T, B, ...]. Each neuron layer is run one step at a time, its state
    (v, i) carried from step to step, which is also how a recurrent graph runs it."""
    executor = NIRExecutor(graph, dt)
    recorded: dict[str, dict[str, list]] = {}
    for name in executor.neurons:
        layer = executor.layers[name.replace(".", "_")]

        def stepwise(current, state, recurrent=None, run=layer.run, name=name):
            spikes = []
            for t in range(current.shape[0]):
                s, state = run(current[t : t + 1], state, None if recurrent is None else recurrent[t : t + 1])
                for key, value in zip(("spk", "mem", "syn"), (s[0], state[0], state[1])):
                    recorded.setdefault(name, {}).setdefault(key, []).append(value.clone())
                spikes.append(s)
            return torch.cat(spikes), state

        layer.run = stepwise
    with torch.no_grad():
        executor({"input": x})
    return {name: {k: torch.stack(v) for k, v in states.items()} for name, states in recorded.items()}


def assert_equal_states(model: nn.Module, shape: tuple[int, ...], x: torch.Tensor, dt: float = 1e-3) -> nir.NIRGraph:
    """Export `model`, run both, and require every neuron layer's spikes and states to be equal."""
    graph = to_nir(convert(model, shape, T), shape, dt=dt)
    theirs = snntorch_states(model, x)
    ours = reference_states(graph, x)
    assert len(theirs) == len(ours)
    for layer, (a, (name, b)) in enumerate(zip(theirs, ours.items())):
        for key in a:  # spk, mem, and syn for the current-based neurons
            got = b[key].reshape(a[key].shape)
            assert torch.equal(a[key], got), f"layer {layer} ({name}) {key}: {int((a[key] != got).sum())} of {got.numel()} differ, by up to {float((a[key] - got).abs().max()):.3g}"
        assert a["spk"].sum() > 0, f"layer {layer} never spiked: the comparison would be empty"
    return graph


@pytest.mark.parametrize("settings", RESETS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()) or "defaults")
@pytest.mark.parametrize("kind", list(NEURONS))
def test_the_reference_runtime_steps_as_snntorch(kind, settings):
    model = mlp(kind, **settings)
    if kind.startswith("rsynaptic") and settings.get("reset_delay") is False:
        # snnTorch 1.0.0's own forward fails here (it divides its spk argument, None with init_hidden)
        with pytest.raises(UserError, match=r"model \(Sequential\): fails on a step of shape"):
            convert(model, (FEATURES,), T)
        return
    graph = assert_equal_states(model, (FEATURES,), inputs((FEATURES,)))
    recurrent = [n for n in graph.nodes if n.endswith("_recurrent")]
    assert len(recurrent) == (2 if kind.startswith("r") else 0)


def test_rsynaptic_without_reset_delay_computes_the_delayed_rule():
    """snnTorch 1.0.0's RSynaptic with reset_delay=False resets the spk/mem arguments it was given,
    not its state: what it computes (with the spikes passed by hand) is the delayed reset, and so
    that is what the export keeps."""
    torch.manual_seed(4)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = nn.Linear(FEATURES, HIDDEN), snn.RSynaptic(alpha=0.7, beta=0.85, linear_features=HIDDEN, reset_delay=False)

        def forward(self, x):
            spk = syn = mem = torch.zeros(x.shape[1], HIDDEN)
            out = []
            for step in range(x.shape[0]):
                spk, syn, mem = self.lif(self.fc(x[step]), spk, syn, mem)
                out.append(spk)
            return torch.stack(out)

    graph = assert_equal_states(Net(), (FEATURES,), inputs((FEATURES,)))
    assert reset_rule(graph.nodes["lif"]) == ("subtract", True)


def test_a_tutorial_forward_with_states_passed_by_hand():
    assert_equal_states(TutorialRSynaptic(), (FEATURES,), inputs((FEATURES,)))


@pytest.mark.parametrize("dt", [1e-4, 1e-3, 0.5])
def test_the_states_do_not_depend_on_the_file_dt(dt):
    """tau = dt / (1 - decay) is written for the graph's dt, and the runtime's Euler step gives the
    decays back exactly at any dt (snnTorch's own files assume 1e-4 s)."""
    assert_equal_states(mlp("rsynaptic-linear"), (FEATURES,), inputs((FEATURES,)), dt=dt)


@pytest.mark.parametrize("settings", [{}, {"reset_mechanism": "zero", "reset_delay": False}], ids=["defaults", "zero-at-once"])
def test_a_synaptic_cnn(settings):
    assert_equal_states(SynapticCNN(**settings), (1, 8, 8), inputs((1, 8, 8)))


def test_snntorch_reads_the_neurons_back_as_it_wrote_them():
    """At snnTorch's dt (1e-4 s) its importer turns spikeport's CubaLIF back into the Synaptic it
    came from, and the flat recurrent edge pair into an RLeaky whose one-to-one V is the diagonal."""
    model = mlp("rleaky-V")
    model[4] = snn.Synaptic(alpha=0.75, beta=0.85, init_hidden=True, output=True)
    graph = to_nir(convert(model, (FEATURES,), T), (FEATURES,), dt=1e-4)
    synaptic = import_nir._nir_to_snntorch_module(graph.nodes["synaptic_4"])
    assert isinstance(synaptic, snn.Synaptic)
    assert float(synaptic.alpha) == pytest.approx(0.75, abs=1e-7) and float(synaptic.beta) == pytest.approx(0.85, abs=1e-7)
    grouped = import_nir._replace_rnn_subgraph_with_nirgraph(graph)
    rleaky = import_nir._nir_to_snntorch_module(grouped.nodes["rleaky_2"])
    assert isinstance(rleaky, snn.RLeaky) and not rleaky.all_to_all
    assert torch.equal(rleaky.recurrent.V, model[2].recurrent.V)


def test_a_recurrent_model_goes_through_export_simulate_and_report(tmp_path):
    model = mlp("rsynaptic-linear")
    deployment = spikeport.export(model=model, input_shape=(FEATURES,), timesteps=T, out=tmp_path / "run")
    assert {"model.nir", "model.onnx"} <= {p.name for p in deployment.path.iterdir()}
    assert not (deployment.path / "loihi.json").exists()  # no Loihi integers for neurons Loihi does not compute
    x = inputs((FEATURES,))
    np.savez(tmp_path / "in.npz", input=x.transpose(0, 1).numpy(), labels=np.arange(16) % 10)
    expected = snntorch_states(model, x)[-1]["spk"].transpose(0, 1).numpy()
    assert expected.sum() > 0
    for backend in ("reference", "onnx"):
        sim = spikeport.simulate(target=deployment, backend=backend, inputs=tmp_path / "in.npz")
        assert np.array_equal(sim.output, expected), backend
    report = spikeport.report(target=deployment, inputs=tmp_path / "in.npz", profiles=["loihi2"])
    layers = [row["name"] for row in report.data["layers"]]
    assert any(name.endswith("synaptic_2_recurrent") for name in layers), layers  # the recurrent synapses are a layer of their own


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("rleaky-linear", r"rleaky_2 \(snn.RLeaky\): a recurrent connection has no Loihi mapping"),
        ("synaptic", r"synaptic_2 \(snn.Synaptic\): a current-based \(CubaLIF\) neuron has no Loihi mapping"),
        ("rsynaptic-V", r"synaptic_2 \(snn.RSynaptic\): a current-based \(CubaLIF\) neuron has no Loihi mapping"),
    ],
)
def test_lava_formats_are_refused_naming_the_layer(kind, fragment, tmp_path):
    # the reset Loihi has (RSynaptic always delays it): what is refused is the neuron
    settings = {"reset_mechanism": "zero"} | ({} if kind.startswith("rsynaptic") else {"reset_delay": False})
    with pytest.raises(UserError, match=fragment):
        spikeport.export(model=mlp(kind, **settings), input_shape=(FEATURES,), timesteps=T, out=tmp_path / "run", formats=("nir", "lava"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("rleaky-linear", r"rleaky_2 \(LIF\): its recurrent input from rleaky_2_recurrent has no {target} mapping"),
        ("synaptic", r"synaptic_2 \(CubaLIF\): its synaptic current \(tau_syn\) has no {target} mapping"),
    ],
)
def test_the_nir_file_is_refused_by_lava_and_loihi_naming_the_node(kind, fragment):
    from spikeport.export.loihi import quantize
    from spikeport.runtime.lava.plan import plan_network

    graph = to_nir(convert(mlp(kind, reset_mechanism="zero", reset_delay=False), (FEATURES,), T), (FEATURES,))
    with pytest.raises(UserError, match=fragment.format(target="Lava")):
        plan_network(graph)
    with pytest.raises(UserError, match=fragment.format(target="Loihi fixed-point")):
        quantize(graph)


@pytest.mark.parametrize(
    "neuron, fragment",
    [
        (lambda: snn.Synaptic(alpha=torch.rand(HIDDEN), beta=0.8, init_hidden=True), r"2 \(Synaptic\): alpha has 24 values"),
        (lambda: snn.Synaptic(alpha=1.0, beta=0.8, init_hidden=True), r"2 \(Synaptic\): alpha=1"),
        (lambda: snn.RSynaptic(alpha=0.5, beta=1.0, linear_features=HIDDEN, init_hidden=True), r"2 \(RSynaptic\): beta=1"),
        (lambda: snn.RLeaky(beta=0.5, linear_features=HIDDEN, threshold=torch.rand(HIDDEN) + 0.5, init_hidden=True), r"2 \(RLeaky\): threshold has 24 values"),
    ],
    ids=["per-neuron-alpha", "alpha-1", "cuba-beta-1", "per-neuron-threshold"],
)
def test_what_cannot_be_exported_is_refused_naming_the_module(neuron, fragment, tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(FEATURES, HIDDEN), neuron(), nn.Linear(HIDDEN, 10), snn.Leaky(beta=0.5, init_hidden=True))
    with pytest.raises(UserError, match=fragment):
        spikeport.export(model=model, input_shape=(FEATURES,), timesteps=T, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


class RecurrentCNN(nn.Module):
    """Conv -> RLeaky with a convolutional recurrence -> pool -> Linear -> RSynaptic with one V."""

    def __init__(self, **settings):
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.lif1 = snn.RLeaky(beta=0.8, conv2d_channels=4, kernel_size=3, **settings)
        self.pool, self.fc = nn.AvgPool2d(2), nn.Linear(4 * 4 * 4, 10)
        self.lif2 = snn.RSynaptic(alpha=0.6, beta=0.8, all_to_all=False, V=0.7, reset_mechanism=settings.get("reset_mechanism", "subtract"))

    def forward(self, x):
        spk1, mem1 = self.lif1.init_rleaky()
        spk2, syn2, mem2 = self.lif2.init_rsynaptic()
        out = []
        for step in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.conv(x[step]), spk1, mem1)
            spk2, syn2, mem2 = self.lif2(self.fc(self.pool(spk1).flatten(1)), spk2, syn2, mem2)
            out.append(spk2)
        return torch.stack(out)


@pytest.mark.parametrize("settings", [{}, {"reset_mechanism": "zero", "reset_delay": False}], ids=["defaults", "zero-at-once"])
def test_a_convolutional_recurrence(settings):
    graph = assert_equal_states(RecurrentCNN(**settings), (1, 8, 8), inputs((1, 8, 8)))
    assert isinstance(graph.nodes["lif1_recurrent"], nir.Conv2d)


def test_one_v_over_a_convolutional_layer():
    """RSynaptic(all_to_all=False, V=...) over [C, H, W] neurons: V * s, as a 1x1 convolution."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), snn.RSynaptic(alpha=0.5, beta=0.8, all_to_all=False, V=-0.4, init_hidden=True, output=True))
    assert_equal_states(model, (1, 8, 8), inputs((1, 8, 8)))


def test_per_neuron_v_over_a_convolutional_layer_is_refused_naming_the_module(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), snn.RLeaky(beta=0.5, all_to_all=False, V=torch.rand(3, 1, 1), init_hidden=True))
    with pytest.raises(UserError, match=r"1 \(RLeaky\): V has 3 values over neurons of shape \(3, 8, 8\)"):
        spikeport.export(model=model, input_shape=(1, 8, 8), timesteps=T, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
