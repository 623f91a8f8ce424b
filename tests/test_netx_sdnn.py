"""Sigma-delta (SDNN) netx networks in the Loihi fixed-point emulator (runtime/loihi_fixed.py),
equal to lava-dl's own ground truth and to Lava's fixed_pt models bit for bit.

lava-dl's PilotNet SDNN (../shared/peer-tests/lava-dl/pilotnet_sdnn) is the case lava-dl itself
checks: input.npy drives `net.in_layer.neuron.a_in` for len(net.layers) steps in fixed_pt and the
output sink equals output.npy exactly. The tests marked `lava` run the same file (and a small
network that exercises the residue, negative deltas and changing inputs) in Lava through
spikeport's worker (runtime/lava/run.run_netx_fixed) and compare every layer at every step.
"""

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import needs_shared

from spikeport.errors import UserError
from spikeport.export.netx_read import read_netx
from spikeport.runtime.lava.run import run_netx_fixed
from spikeport.runtime.loihi_fixed import from_lava_order, simulate_netx

PILOTNET = "peer-tests/lava-dl/pilotnet_sdnn"


def _pilotnet_frame(folder):
    """input.npy [100, 33, 3, 1]: a RingBuffer's data (x, y, c, one step, sent every step) as (C, H, W)."""
    return from_lava_order(np.load(folder / "input.npy")[..., 0])


def test_pilotnet_sdnn_equals_lava_dls_ground_truth():
    """upstream test_hdf5.test_pilotnet_sdnn: the frame on in_layer.neuron.a_in for 9 steps; the
    output sink (the Sigma read-out's sigma) equals output.npy at every step."""
    folder = needs_shared(PILOTNET)
    net = read_netx(folder / "network.net")
    assert [b.neuron.model for b in net.blocks] == ["Delta", *["SigmaDelta"] * 7, "Sigma"]
    steps = len(net.blocks)
    a_in = np.repeat(_pilotnet_frame(folder)[None, None], steps, axis=1)
    (out,) = simulate_netx(net, a_in=a_in, steps=steps, record={steps - 1: ("s",)})
    truth = np.load(folder / "output.npy")  # [1, 9]: the sink's (x, steps)
    assert np.count_nonzero(truth) == 8
    np.testing.assert_array_equal(out.s[0].numpy().T, truth)


def test_pilotnet_sdnn_through_spikeport_simulate(cli, tmp_path):
    """`spikeport simulate network.net --input x.npz --mode loihi`: the frame as the input layer's
    a_in; output index j is the read-out at step K + 1 + j (K = 8 synaptic stages, delay 8), so
    the first output is output.npy's last step; spike counts are the non-zero messages."""
    folder = needs_shared(PILOTNET)
    frame = _pilotnet_frame(folder)
    truth = np.load(folder / "output.npy")[0]
    for steps in (1, 3):
        np.savez(tmp_path / "x.npz", input=np.repeat(frame[None, None], steps, axis=1).astype(np.float32))
        code, _, err = cli("simulate", folder / "network.net", "--mode", "loihi", "--input", tmp_path / "x.npz", "--out", tmp_path)
        assert code == 0, err
        sim = np.load(tmp_path / "sim" / "reference-loihi.npz")
        assert int(sim["delay"]) == 8 and sim["output"].shape == (1, steps, 1)
        assert sim["output"][0, 0, 0] == truth[-1]
        assert sim["spikes.layer/0"][0, 0] == np.count_nonzero(frame)  # the Delta sends every non-zero pixel once
    np.savez(tmp_path / "x.npz", input=np.full((1, 1, *frame.shape), 0.5))
    code, _, err = cli("simulate", folder / "network.net", "--mode", "loihi", "--input", tmp_path / "x.npz", "--out", tmp_path)
    assert code == 2 and "a_in: holds non-integer values" in err


def test_pilotnet_sdnn_activity_counts_messages_and_fits_loihi2(cli, tmp_path):
    """The activity file of an SDNN run counts the graded messages each layer sends (how many, not
    their sum, which can be negative), names the neurons SigmaDelta, and marks every layer behind
    a sigma-delta layer as reading graded input; Loihi 2 takes such neurons (lava-dl's SDNN)."""
    from spikeport.activity import read_activity

    folder = needs_shared(PILOTNET)
    frame = _pilotnet_frame(folder)
    np.savez(tmp_path / "x.npz", input=frame[None, None].astype(np.float32))
    code, _, err = cli("simulate", folder / "network.net", "--mode", "loihi", "--input", tmp_path / "x.npz", "--out", tmp_path)
    assert code == 0, err
    network, _ = read_activity(tmp_path / "sim" / "activity.json")
    sim = np.load(tmp_path / "sim" / "reference-loihi.npz")
    for layer in network.layers:
        assert layer.spikes >= 0 and layer.neuron_model == "SigmaDelta", layer.name
        assert layer.spikes == pytest.approx(float(sim[f"spikes.{layer.name}"].sum()))
    assert [layer.input_kind for layer in network.layers[1:]] == ["graded"] * (len(network.layers) - 1)
    code, _, err = cli("report", folder / "network.net", "--mode", "loihi", "--input", tmp_path / "x.npz", "--out", tmp_path,
                       "--profiles", "loihi2,loihi")
    assert code == 3, err  # Loihi 1 has neither sigma-delta neurons nor graded spikes
    profiles = json.loads((tmp_path / "report" / "report.json").read_text())["profiles"]
    assert profiles["loihi2"]["fits"] and profiles["loihi2"]["violations"] == []
    assert {v["constraint"] for v in profiles["loihi"]["violations"]} == {"neuron_model", "graded_input"}


@pytest.mark.lava
def test_pilotnet_sdnn_every_layer_equals_lava():
    """Lava fixed_pt on the unchanged file (spikeport's worker, netx's own loading): every layer's
    graded messages at every step, and the read-out's sigma, equal the emulator's."""
    folder = needs_shared(PILOTNET)
    path = folder / "network.net"
    steps = 9
    a_in = np.repeat(_pilotnet_frame(folder)[None, None], steps, axis=1)
    outputs, sigma = run_netx_fixed(path, a_in, steps, drive="a_in")
    records = simulate_netx(read_netx(path), a_in=a_in, steps=steps, record=("s", "u"))
    assert len(outputs) == len(records) == 9
    for lava, ours in zip(outputs, records):
        assert np.count_nonzero(lava) > 0, ours.name
        np.testing.assert_array_equal(lava, ours.s.numpy(), err_msg=ours.name)
    np.testing.assert_array_equal(sigma, records[-1].u.numpy())
    np.testing.assert_array_equal(sigma[0, :, 0], np.load(folder / "output.npy")[0])


def _sdnn_file(path, rng):
    """A small SDNN chain as lava-dl writes one: a Delta input layer with a threshold (so residues
    carry over), a conv and a dense SigmaDelta with biases and thresholds, a Sigma read-out."""
    with h5py.File(path, "w") as f:
        def neuron(group, vth, sigma=False):
            group.create_dataset("neuron/type", data="SDNN", dtype=h5py.string_dtype("ascii"))
            group.create_dataset("neuron/activation", data="relu", dtype=h5py.string_dtype("ascii"))
            group.create_dataset("neuron/vThMant", data=np.int64(vth))
            if sigma:
                group.create_dataset("neuron/sigma_output", data=True)

        g = f.create_group("layer/0")
        g.create_dataset("type", data=np.array([b"input"], dtype="S10"))
        g.create_dataset("shape", data=np.array([2, 6, 6]))
        neuron(g, 3)
        g = f.create_group("layer/1")
        g.create_dataset("type", data=np.array([b"conv"], dtype="S10"))
        g.create_dataset("shape", data=np.array([4, 4, 4]))
        for key, value in {"stride": [1, 1], "padding": [0, 0], "dilation": [1, 1]}.items():
            g.create_dataset(key, data=np.array(value))
        g.create_dataset("groups", data=np.int64(1))
        g.create_dataset("weight", data=rng.integers(-40, 41, (4, 2, 3, 3)).astype(np.float32))
        g.create_dataset("bias", data=rng.integers(-30, 31, 4).astype(np.float32))
        neuron(g, 2)
        g = f.create_group("layer/2")
        g.create_dataset("type", data=np.array([b"flatten"], dtype="S10"))
        g.create_dataset("shape", data=np.array([64, 1, 1]))
        g = f.create_group("layer/3")
        g.create_dataset("type", data=np.array([b"dense"], dtype="S10"))
        g.create_dataset("shape", data=np.array([12]))
        g.create_dataset("weight", data=rng.integers(-60, 61, (12, 64)).astype(np.float32))
        g.create_dataset("bias", data=rng.integers(-20, 21, 12).astype(np.float32))
        neuron(g, 5)
        g = f.create_group("layer/4")
        g.create_dataset("type", data=np.array([b"dense"], dtype="S10"))
        g.create_dataset("shape", data=np.array([3]))
        g.create_dataset("weight", data=rng.integers(-50, 51, (3, 12)).astype(np.float32))
        neuron(g, 0, sigma=True)


@pytest.mark.lava
def test_sigma_delta_chain_with_changing_input_equals_lava(tmp_path):
    """A changing, signed input (deltas of both signs, some below the threshold): Delta, conv and
    dense SigmaDelta, Sigma, every layer's messages and the sigma at every step, equal to Lava."""
    rng = np.random.default_rng(5)
    path = tmp_path / "sdnn.net"
    _sdnn_file(path, rng)
    steps = 14
    a_in = np.cumsum(rng.integers(-3, 4, (1, steps, 2, 6, 6)), axis=1)
    outputs, sigma = run_netx_fixed(path, a_in, steps, drive="a_in")
    records = simulate_netx(read_netx(path), a_in=a_in, steps=steps, record=("s", "u"))
    for lava, ours in zip(outputs, records):
        assert np.count_nonzero(lava) > 0, ours.name
        np.testing.assert_array_equal(lava, ours.s.numpy(), err_msg=ours.name)
    np.testing.assert_array_equal(sigma, records[-1].u.numpy())
    delta = records[0].s.numpy()
    assert (delta < 0).any() and (delta > 0).any()  # both signs crossed the input layer


def test_sigma_delta_files_that_netx_cannot_run_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "sdnn.net"
    _sdnn_file(path, rng)
    net = read_netx(path)
    with pytest.raises(UserError, match=r"sigma-delta, driven through its a_in; pass a_in="):
        simulate_netx(net, bias=np.zeros((1, 2, 6, 6)), steps=3)
    with pytest.raises(UserError, match=r"a_in: values beyond int32"):
        simulate_netx(net, a_in=np.full((1, 2, 2, 6, 6), 2**31), steps=2)
    with h5py.File(path, "a") as f:
        f["layer/4"].create_dataset("bias", data=np.ones(3, np.float32))
    with pytest.raises(UserError, match=r"sdnn\.net: layer/4/bias: a sigma_output neuron \(netx's Sigma\) takes no bias"):
        read_netx(path)
    _sdnn_file(path, rng)
    with h5py.File(path, "a") as f:
        f["layer/3/neuron"].create_dataset("delay", data=np.int64(2))
    with pytest.raises(UserError, match=r"layer/3/neuron/delay: axonal delays are not supported"):
        read_netx(path)
    _sdnn_file(path, rng)
    with h5py.File(path, "a") as f:  # graded messages of 2**24 (a_in 2**18 << 12 >> 6) into a conv: its sums leave int32
        del f["layer/0/neuron/vThMant"]
        f["layer/0/neuron"].create_dataset("vThMant", data=np.int64(0))
    net = read_netx(path)
    with pytest.raises(UserError, match=r"layer/1: conv sums reach \d+, beyond int32"):
        simulate_netx(net, a_in=np.full((1, 2, 2, 6, 6), 2**18), steps=2)


@pytest.mark.lava
def test_message_bits_are_refused_because_netx_cannot_load_them(tmp_path):
    """A neuron's messageBits: netx 0.6 reads the field as a group (a NetDict, where its blocks need
    a number of bits; a run of such a network fails in Lava's runtime, "setting an array element
    with a sequence"), so Lava runs no such file; the reader refuses it naming the field."""
    from lava_env import in_lava

    rng = np.random.default_rng(1)
    path = tmp_path / "sdnn.net"
    _sdnn_file(path, rng)
    with h5py.File(path, "a") as f:
        f["layer/3/neuron"].create_dataset("messageBits", data=np.int64(8))
    with pytest.raises(UserError, match=r"layer/3/neuron/messageBits: lava-dl's netx cannot load a file with this field"):
        read_netx(path)
    source = """
    from lava.lib.dl.netx import hdf5
    net = hdf5.Network(net_config=str(path))
    result["bits"] = np.array(type(net.layers[2].output_message_bits).__name__)
    """
    assert str(in_lava(source, path=np.array(str(path)))["bits"]) == "NetDict"  # not a number: Lava's run of it fails


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_pilotnet_sdnn_on_cuda_equals_cpu():
    folder = needs_shared(PILOTNET)
    net = read_netx(folder / "network.net")
    a_in = np.repeat(_pilotnet_frame(folder)[None, None], 9, axis=1)
    cpu = simulate_netx(net, a_in=a_in, steps=9, record=("s", "u", "v"))
    cuda = simulate_netx(net, a_in=a_in, steps=9, record=("s", "u", "v"), device="cuda")
    for a, b in zip(cpu, cuda):
        for state in ("s", "u", "v"):
            np.testing.assert_array_equal(getattr(a, state).numpy(), getattr(b, state).cpu().numpy(), err_msg=f"{a.name}.{state}")


def _both_backends(cli, path, x: np.ndarray, tmp_path) -> tuple[dict, dict]:
    """`spikeport simulate FILE.net --mode loihi` on the reference backend and on Lava (netx loading
    the unchanged file, driven as the emulator is: loihi_fixed.netx_drive), their npz files."""
    np.savez(tmp_path / "x.npz", input=x)
    results = []
    for backend in ("reference", "lava"):
        code, _, err = cli("simulate", path, "--backend", backend, "--mode", "loihi", "--input", tmp_path / "x.npz", "--out", tmp_path / backend)
        assert code == 0, err
        results.append(dict(np.load(tmp_path / backend / "sim" / f"{backend}-loihi.npz")))
    return results[0], results[1]


def _assert_bit_for_bit(reference: dict, lava: dict) -> None:
    assert sorted(reference) == sorted(lava) and any(k.startswith("spikes.") for k in reference)
    for key in reference:
        if key != "warnings":
            np.testing.assert_array_equal(lava[key], reference[key], err_msg=key)


@pytest.mark.lava
def test_pilotnet_sdnn_with_backend_lava_equals_the_reference_bit_for_bit(cli, tmp_path):
    """`--backend lava` on lava-dl's PilotNet SDNN (a sigma-delta input layer: its a_in): output,
    delay and every layer's message counts equal `--backend reference --mode loihi`, and the
    output is lava-dl's own output.npy at the steps it covers; two samples (each from a fresh network)."""
    folder = needs_shared(PILOTNET)
    frame = _pilotnet_frame(folder)
    x = np.stack([np.repeat(frame[None], 2, axis=0), np.repeat(np.roll(frame, 7, axis=-1)[None], 2, axis=0)]).astype(np.float32)
    reference, lava = _both_backends(cli, folder / "network.net", x, tmp_path)
    _assert_bit_for_bit(reference, lava)
    assert int(lava["delay"]) == 8 and lava["output"][0, 0, 0] == np.load(folder / "output.npy")[0, -1]
    assert not np.array_equal(lava["output"][0], lava["output"][1])  # the samples differ, and each ran fresh


@pytest.mark.lava
def test_slayer_net_without_input_layer_with_backend_lava_equals_the_reference_bit_for_bit(cli, slayer_net, tmp_path):
    """SLAYER's own export (conv -> conv -> flatten -> dense, no input layer): the spikes go into
    netx's `inp` with the shape of the input file; every layer's counts and the output equal."""
    rng = np.random.default_rng(3)
    x = (rng.random((2, 12, 2, 8, 8)) < 0.4).astype(np.float32)
    reference, lava = _both_backends(cli, slayer_net, x, tmp_path)  # test_runtime_loihi._SLAYER_NETWORK's file (conftest.py)
    _assert_bit_for_bit(reference, lava)
    assert int(lava["delay"]) == 2 and all(reference[k].sum() > 10 for k in reference if k.startswith("spikes."))
