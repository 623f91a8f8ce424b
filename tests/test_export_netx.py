"""model.net: lava-dl's netx loads it unchanged, and Lava's fixed-point simulation of it computes
what the float model computes on digits.

The network is the digits CNN (channels 4, 8), trained for 3 epochs in a fixture. Lava runs it with
`Loihi2SimCfg(select_tag="fixed_pt")`, one sample after another in one compiled network: netx's
reset_interval resets layer k at step k + 1 of each window of T + K steps (K chip layers after the
input layer), exactly when that layer's input for the sample's first timestep arrives after the
one-step-per-synapse pipeline delay. So within a window layer k holds timesteps 0..T-1 at steps
k+1..k+T, and the read-out's voltage at the window's last step is the sum over T of its input.
Lava runs in the Lava environment (tests/lava_env.py in_lava; the tests marked `lava`) and hands
back its raw arrays, compared here.
"""

import h5py
import nir
import numpy as np
import pytest
import torch

from spikeport.config import config_from_dict
from spikeport.errors import UserError
from spikeport.export import netx as netx_module
from spikeport.export.loihi import input_bias, quantize
from spikeport.export.lower import fold_avgpool
from spikeport.export.netx import write_netx
from spikeport.export.nir_graph import to_nir
from spikeport.train import datasets
from spikeport.train.checkpoint import load_checkpoint, load_weights
from spikeport.train.loop import model_for, train

from conftest import needs_shared
from lava_env import in_lava

T = 4
SAMPLES = 24


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, lowered graph, Loihi model, test set) of a digits CNN trained for 3 epochs."""
    tmp = tmp_path_factory.mktemp("netx")
    config = config_from_dict(
        {
            "model": {"name": "spiking-cnn", "channels": [4, 8]},
            "data": {"name": "digits", "root": str(tmp / "data"), "timesteps": T, "batch_size": 32},
            "train": {"epochs": 3, "optimizer": "adamw", "lr": 0.01, "seed": 0},
        }
    )
    train(config, tmp / "run", device="cpu")
    model = model_for(config)
    load_weights(model, load_checkpoint(tmp / "run" / "checkpoint.pt"), tmp / "run" / "checkpoint.pt")
    model.eval()
    graph = fold_avgpool(to_nir(model, (1, 8, 8)))
    return model, graph, quantize(graph), datasets.load("digits", str(tmp / "data"), "test", T)


def _layout(group) -> dict:
    """{path: (dtype kind, ndim)} of an HDF5 group's datasets."""
    out = {}
    group.visititems(
        lambda name, obj: out.__setitem__(name, (obj.dtype.kind, obj.ndim)) if isinstance(obj, h5py.Dataset) else None
    )
    return out


def test_model_net_holds_the_chain(trained, tmp_path):
    _, graph, q, _ = trained
    path = tmp_path / "model.net"
    write_netx(graph, q, path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.net"]  # no temporary file left
    with h5py.File(path) as ours:
        assert [ours[f"layer/{i}/type"][0] for i in range(4)] == [b"input", b"conv", b"flatten", b"dense"]
        assert ours["layer/1/weight"].shape == (8, 4, 6, 6) and list(ours["layer/1/stride"]) == [2, 2]
        assert ours["layer/3/neuron/vDecay"][()] == 0 and ours["layer/3/neuron/vThMant"][()] == 2**17 - 1


_LOAD_IN_LAVA = """
from lava.lib.dl.netx import hdf5

net = hdf5.Network(net_config=str(path))
result["layers"] = np.array([type(layer).__name__ for layer in net.layers])
result["vth"], result["du"] = net.layers[1].neuron.vth.init, net.layers[1].neuron.du.init
"""


@pytest.mark.lava
def test_netx_loads_it_unchanged(trained, tmp_path):
    _, graph, q, _ = trained
    path = tmp_path / "model.net"
    write_netx(graph, q, path)
    lava = in_lava(_LOAD_IN_LAVA, path=np.array(str(path)))
    assert lava["layers"].tolist() == ["Input", "Conv", "Dense"]
    assert lava["vth"] == q.layers[1].vth and lava["du"] == 4095


def test_layout_is_lava_dls(trained, tmp_path):
    """Every dataset we write sits where lava-dl's PilotNet has it, with the same integer/float kind."""
    _, graph, q, _ = trained
    path = tmp_path / "model.net"
    write_netx(graph, q, path)
    peer = needs_shared("peer-tests/lava-dl/pilotnet_lif/network.net")
    with h5py.File(path) as ours, h5py.File(peer) as theirs:
        for i, j in ((0, 0), (1, 1), (2, 6), (3, 9)):  # input, conv, flatten, dense in the peer network
            mine, reference = _layout(ours[f"layer/{i}"]), _layout(theirs[f"layer/{j}"])
            for key, kind in mine.items():
                assert key in reference and (kind[0] in "iu") == (reference[key][0] in "iu"), (i, key)


_SAMPLES_IN_LAVA = """
from lava.lib.dl.netx import hdf5
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.sink import RingBuffer

window = int(window)
net = hdf5.Network(net_config=str(path), reset_interval=window)
sinks = [RingBuffer(shape=layer.out.shape, buffer=window) for layer in net.layers[:-1]]
for layer, sink in zip(net.layers[:-1], sinks):
    layer.out.connect(sink.a_in)
net.in_layer.neuron.bias_mant.init = biases[0]
try:
    for n, bias in enumerate(biases):  # one window per sample; per layer its sink's window [..., window]
        if n:
            net.in_layer.neuron.bias_mant.set(bias)
        net.run(condition=RunSteps(num_steps=window), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        result.setdefault("readout", []).append(net.out_layer.neuron.v.get().copy())
        for k, sink in enumerate(sinks):
            result.setdefault(f"sink{k}", []).append(sink.data.get().copy())
finally:
    net.stop()
"""


@pytest.mark.lava
def test_lava_fixed_point_agrees_with_the_float_model(trained, tmp_path):

    model, graph, q, test_set = trained
    path = tmp_path / "model.net"
    write_netx(graph, q, path)
    x = torch.stack([test_set[i][0] for i in range(SAMPLES)])  # [B, T, 1, 8, 8], the same frame every step
    labels = np.array([test_set[i][1] for i in range(SAMPLES)])
    spikes = {}
    hooks = [
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: spikes.__setitem__(name, o))
        for name in ("lif1", "lif2")
    ]
    with torch.no_grad():
        logits = model(x.transpose(0, 1)).double().numpy()  # [T, B, 10]
    for hook in hooks:
        hook.remove()
    torch_counts = np.stack([spikes[name].sum((0, 2, 3, 4)).numpy() for name in ("lif1", "lif2")], 1)

    chip_layers = len(q.layers) - 1
    window = T + chip_layers
    biases = np.stack([_whc(input_bias(graph, q, x[n, 0].numpy())) for n in range(SAMPLES)])
    lava = in_lava(_SAMPLES_IN_LAVA, path=np.array(str(path)), biases=biases, window=np.array(window))
    readout = lava["readout"]  # [SAMPLES, 10]
    # layer k holds the sample's timesteps at steps k+1 .. k+T of the window
    lava_counts = np.array(
        [[int(lava[f"sink{k}"][n][..., k : k + T].sum()) for k in range(len(lava) - 1)] for n in range(SAMPLES)]
    )

    assert np.abs(readout).max() < 2**23 - 64  # the integrator did not saturate
    expected = logits.sum(0) * 64 * q.layers[-1].scale  # time-summed logits in the read-out's units
    relative = np.abs(readout - expected).max(1) / np.abs(expected).max(1)
    torch_pred, lava_pred = logits.mean(0).argmax(1), readout.argmax(1)
    agreement = (torch_pred == lava_pred).mean()
    print(
        f"agreement {agreement:.3f}; accuracy float {(torch_pred == labels).mean():.3f} lava {(lava_pred == labels).mean():.3f}; "
        f"read-out error median {np.median(relative):.4f}; spikes torch {torch_counts.sum(0)} lava {lava_counts.sum(0)}"
    )
    assert agreement >= 0.85
    assert np.median(relative) < 0.05
    # per layer, the spike counts of each sample differ by ~1% (rounded currents and thresholds), the totals by less
    assert (np.abs(lava_counts - torch_counts).mean(0) <= 0.03 * torch_counts.mean(0)).all()
    assert (np.abs(lava_counts.sum(0) - torch_counts.sum(0)) <= 0.02 * torch_counts.sum(0)).all()
    assert torch_counts.min() > 0  # every layer spikes


def test_refuses_non_chains_and_a_failed_write_keeps_the_old_file(trained, tmp_path, monkeypatch):
    _, graph, q, _ = trained
    path = tmp_path / "model.net"
    write_netx(graph, q, path)
    before = path.read_bytes()
    with pytest.raises(UserError, match=r"loihi model: layers \['conv1', 'conv2'\] do not match the graph's chain"):
        write_netx(graph, type(q)(layers=q.layers[:2], input_bound=q.input_bound, dt=q.dt), path)

    branching = nir.NIRGraph(
        nodes=dict(graph.nodes, conv2b=graph.nodes["conv2"]),
        edges=[*graph.edges, ("lif1", "conv2b"), ("conv2b", "lif2")],
        metadata=graph.metadata,
    )
    with pytest.raises(
        UserError, match=r"lif1 \(LIF\): branches or joins at conv2, conv2b; the Loihi export takes a plain chain"
    ):
        write_netx(branching, q, path)

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(netx_module, "integers", broken)  # fails after the file is opened
    with pytest.raises(RuntimeError, match="disk full"):
        write_netx(graph, q, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.net"]


def _whc(chw: np.ndarray) -> np.ndarray:
    """Lava's (x, y, channel) order of a (C, H, W) array."""
    return np.ascontiguousarray(chw.transpose(tuple(reversed(range(chw.ndim)))))
