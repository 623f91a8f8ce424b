"""The reference runtime and `spikeport simulate`: equal to the trained model, to ONNX Runtime, to NIR's ground truth."""

import numpy as np
import nir
import pytest
import torch

from conftest import closest_to_threshold, load_trained_model, needs_shared
from spikeport.export.exporter import export_model
from spikeport.runtime.reference import NIRExecutor
from spikeport.runtime.simulate import simulate
from spikeport.train import datasets
from test_export import Gated


LIFS = ("lif1", "lif2")


def test_reference_float_equals_the_trained_model(trained_run, cli):
    """The exported graph has each batch norm folded into its convolution, so its currents differ from
    the model's in the last bits, and a neuron whose membrane lies that close to the threshold can
    fire in one and not in the other: a tie, which then changes that sample's later spikes and
    logits (seen on an Intel Xeon with AVX-512, a membrane of exactly 1.0 against the threshold 1.0;
    on an AMD EPYC there was none). So every sample whose spike counts are the model's has its
    logits to 1e-5, at most 1% of the samples differ, and each of those first differs where the
    model had a membrane within 1e-5 of the threshold."""
    model = load_trained_model(trained_run)
    currents, fired = {}, {}  # each LIF layer's input and spikes on the test set
    for name in LIFS:
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: currents.update({name: i[0]}) or fired.update({name: o}))
    code, _, err = cli("simulate", trained_run, "--compare", "reference-float,onnx-float")
    assert code == 0, err
    sim = np.load(trained_run / "sim" / "reference-float.npz")
    test = datasets.load("digits", trained_run.parent / "data", "test", 4)
    assert sim["output"].shape == (len(test), 4, 10) and sim["delay"] == 0
    x = torch.stack([test[i][0] for i in range(len(test))]).transpose(0, 1)
    with torch.no_grad():
        want = model(x).transpose(0, 1).numpy()
    counts = {name: fired[name].flatten(2).sum(2).transpose(0, 1).numpy() for name in LIFS}  # [B, T]
    assert all(0 < c.mean() for c in counts.values())
    differs = {name: sim[f"spikes.neuromorphic0.{name}"] != counts[name] for name in LIFS}
    same = ~np.logical_or.reduce([d.any(1) for d in differs.values()])
    assert same.sum() >= 0.99 * len(same), f"{(~same).sum()} of {len(same)} samples fire otherwise"
    assert np.abs(sim["output"][same] - want[same]).max() <= 1e-5
    for sample in np.flatnonzero(~same):
        step, name = min((int(np.flatnonzero(differs[n][sample])[0]), n) for n in LIFS if differs[n][sample].any())
        gap = closest_to_threshold(getattr(model, name), currents[name][:, sample], step)
        assert gap <= 1e-5, f"sample {sample}: {name} fires otherwise at step {step}, its closest membrane {gap} from the threshold"
    assert np.array_equal(sim["labels"], [test[i][1] for i in range(len(test))])

    parity = (trained_run / "sim" / "parity-reference-float-vs-onnx-float.json").read_text()
    assert '"prediction_agreement": 1.0' in parity


def test_manifest_with_a_host_partition(tmp_path):
    """Partitions run in order, the host one from its ONNX file: the result is the model's."""
    torch.manual_seed(0)
    model = Gated(over_time=True).eval()
    export_model(model, (1, 8, 8), 4, tmp_path / "export", formats=("nir", "onnx"))
    x = torch.rand(5, 4, 1, 8, 8) * 2
    np.savez(tmp_path / "in.npz", input=x.numpy())
    path = simulate(tmp_path / "export" / "manifest.json", input_file=tmp_path / "in.npz", out=tmp_path).path
    with torch.no_grad():
        want = model(x.transpose(0, 1)).transpose(0, 1).numpy()
    got = np.load(path)["output"]
    assert np.abs(got - want).max() < 1e-5


def test_nir_paper_lif_ground_truth():
    """NIR paper 01_lif: the exact solution spikes at steps 460, 510, 710, 760; Lava's CSVs one step later."""
    folder = needs_shared("peer-tests/nir/01_lif")
    graph = nir.read(folder / "lif_norse.nir")
    data = np.loadtxt(folder / "lif_exact.csv", delimiter=",")
    executor = NIRExecutor(graph, dt=1e-4)  # the paper's dt; the file does not record it
    result = executor({"input": torch.tensor(data[:, 0], dtype=torch.float32).reshape(-1, 1, 1)})
    spikes = np.flatnonzero(result.outputs["output"].flatten().numpy())
    assert spikes.tolist() == [460, 510, 710, 760] == np.flatnonzero(data[:, 2]).tolist()
    # Lava's Dense -> LIF takes one step to deliver the input: its spikes come one step later.
    lava = np.loadtxt(folder / "lif_lava_cpu_float.csv", delimiter=",")
    assert np.flatnonzero(lava[:, 2]).tolist() == (spikes + 1).tolist()


def test_simulate_a_foreign_nir_file(tmp_path, cli):
    path = needs_shared("peer-tests/nir/02_cnn/cnn_sinabs.nir")
    x = (np.random.default_rng(0).random((3, 5, 2, 34, 34)) < 0.1).astype(np.float32)
    np.savez(tmp_path / "in.npz", input=x)
    code, _, err = cli("simulate", path, "--input", tmp_path / "in.npz", "--dt", "1", "--out", tmp_path)
    assert code == 0, err
    sim = np.load(tmp_path / "sim" / "reference-float.npz")
    assert sim["output"].shape == (3, 5, 10)
    assert sorted(k for k in sim.files if k.startswith("spikes.")) == [f"spikes.{n}" for n in ("1", "10", "12", "3", "6")]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--backend", "loihi2"], "unknown backend 'loihi2'"),
        (["--samples", "0"], "--samples: must be at least 1"),
        (["--backend", "onnx", "--mode", "loihi"], "--mode loihi: backend onnx runs float only"),
    ],
)
def test_simulate_bad_options(trained_run, cli, args, fragment):
    code, _, err = cli("simulate", trained_run, *args)
    assert code == 2 and fragment in err, err


def test_simulate_bad_inputs(trained_run, cli, tmp_path):
    np.savez(tmp_path / "shape.npz", input=np.zeros((2, 4, 1, 9, 9), np.float32))
    code, _, err = cli("simulate", trained_run, "--input", tmp_path / "shape.npz", "--out", tmp_path)
    assert code == 2 and "shape.npz: input 'input' has shape [2, 4, 1, 9, 9]; expected [N, 4, 1, 8, 8]" in err
    np.savez(tmp_path / "key.npz", data=np.zeros((2, 4, 1, 8, 8), np.float32))
    code, _, err = cli("simulate", trained_run, "--input", tmp_path / "key.npz", "--out", tmp_path)
    assert code == 2 and "missing key 'input'" in err
    (tmp_path / "junk.nir").write_bytes(b"not hdf5 at all")
    code, _, err = cli("simulate", tmp_path / "junk.nir")
    assert code == 2 and "junk.nir: not a readable NIR file" in err
    assert not (tmp_path / "sim").exists()
    code, _, err = cli("simulate", tmp_path)
    assert code == 2 and "no export/manifest.json" in err


def test_simulate_a_lava_dl_netx_file(cli, tmp_path):
    """lava-dl's tinynet through `spikeport simulate`: bias from input_bias.npy for 15 steps (a window
    of 17 with its two synaptic stages, the reset interval upstream uses), output equal to output.npy."""
    folder = needs_shared("peer-tests/lava-dl/tinynet")
    bias = np.load(folder / "input_bias.npy").transpose(2, 1, 0)  # Lava's (x, y, c) -> (c, y, x)
    np.savez(tmp_path / "in.npz", input=np.repeat(bias[None, None], 15, axis=1))
    code, _, err = cli("simulate", folder / "network.net", "--mode", "loihi", "--input", tmp_path / "in.npz", "--out", tmp_path)
    assert code == 0, err
    sim = np.load(tmp_path / "sim" / "reference-loihi.npz")
    reference = np.load(folder / "output.npy")[0][..., 1:]  # (c, y, x, steps); upstream drops step 0
    assert reference.sum() > 50 and int(sim["delay"]) == 2
    np.testing.assert_array_equal(np.moveaxis(sim["output"][0], 0, -1), reference)
    code, _, err = cli("simulate", folder / "network.net", "--input", tmp_path / "in.npz", "--out", tmp_path)
    assert code == 2 and "a lava-dl .net file holds Loihi integers; it runs with --mode loihi" in err
