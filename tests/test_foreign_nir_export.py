"""Foreign NIR files through `spikeport export` to Loihi integers and netx (issue 14, item 4).

The NIR paper's graphs, as Norse and sinabs wrote them (no dt in either file):

- 01_lif/lif_norse.nir: Affine (weight 1) -> LIF (tau 2.5 ms, r 1) at dt 1e-4 s: input gain
  dt r / tau = 0.04, which the export's lowering folds into the Affine (deployed.nir). On the
  paper's own input (1000 steps) the float export and its Loihi fixed point both spike at the
  steps Norse recorded (lif_norse.csv: 460, 510, 710, 760; the paper's Lava runs, one pipeline
  step later, at 461, 511, 711, 761).
- 02_cnn/cnn_sinabs.nir: Conv/IF, SumPool2d (folded into the next convolution), IF read-outs, at
  sinabs' one step per timestep (dt = 1). Its fixed point is compared with its float run, and with
  a float run of the same graph holding the integers back in float units (w_int / scale, vth /
  scale): what quantization changes, and what is left is the host layer's current rounding.
- the same CNN read out by its last Affine's current (its last IF dropped): a plain chain, so the
  export writes model.net, which Lava's netx runs bit for bit as the emulator does.

Refused, with one line naming the node and nothing written: recurrence (the NIR paper's braille
network), CubaLIF (rockpool's LIF), a LIF leaking towards v_leak != 0, a file without dt and no
--dt. snnTorch 1.0's own export_to_nir writes no file to try (tests/test_foreign_nir_lava.py)."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from conftest import needs_shared

LIF_SPIKES_NORSE = [460, 510, 710, 760]  # lif_norse.csv, column 2


def paper_lif_input() -> np.ndarray:
    table = np.loadtxt(needs_shared("peer-tests/nir/01_lif/lif_norse.csv"), delimiter=",")
    return table[:, 0].reshape(1, -1, 1).astype(np.float32)


def events(shape: tuple[int, ...], rate: float, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < rate).astype(np.float32)


def cnn_read_out(tmp_path) -> str:
    """cnn_sinabs.nir with its last IF dropped: Output reads the Affine '11' (logits)."""
    graph = nir.read(needs_shared("peer-tests/nir/02_cnn/cnn_sinabs.nir"))
    nodes = {k: v for k, v in graph.nodes.items() if k not in ("12", "output")}
    nodes["output"] = nir.Output(output_type={"output": np.array([10])})
    edges = [e for e in graph.edges if "12" not in e] + [("11", "output")]
    path = tmp_path / "cnn_read_out.nir"
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges, type_check=True))
    return str(path)


def export(cli, path, tmp_path, *options: str):
    code, out, err = cli("export", path, "--out", tmp_path, *options)
    assert code == 0, err
    return tmp_path / "export"


def simulate(cli, folder, x: np.ndarray, compare: str, tmp_path) -> dict:
    np.savez(tmp_path / "x.npz", input=x)
    code, _, err = cli("simulate", folder, "--compare", compare, "--input", tmp_path / "x.npz")
    assert code == 0, err
    a, b = compare.split(",")
    return json.loads((folder / "sim" / f"parity-{a}-vs-{b}.json").read_text())


def test_the_nir_papers_lif_exports_and_spikes_at_norses_steps_in_float_and_fixed_point(cli, tmp_path):
    x = paper_lif_input()
    np.savez(tmp_path / "paper.npz", input=x)
    folder = export(cli, needs_shared("peer-tests/nir/01_lif/lif_norse.nir"), tmp_path, "--dt", "1e-4", "--input", tmp_path / "paper.npz")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dt"] == 1e-4 and manifest["timesteps"] == 1000 and manifest["source"]["dt_from"] == "--dt"
    assert sorted(manifest["files"]) == ["loihi"]  # its output is the LIF's spikes: no read-out, no netx chain
    deployed = nir.read(folder / "deployed.nir")
    assert deployed.nodes["0"].weight.item() == pytest.approx(0.04, rel=1e-6)  # dt r / tau, folded
    from spikeport.export.neuron_constants import neuron_constants

    assert neuron_constants(deployed.nodes["1"], 1e-4).gain.item() == 1.0  # exactly: the chip adds its input unscaled
    assert neuron_constants(nir.read(folder / "model.nir").nodes["1"], 1e-4).gain.item() == pytest.approx(0.04)  # as the file says
    parity = simulate(cli, tmp_path, x, "reference-float,reference-loihi", tmp_path)
    for mode in ("reference-float", "reference-loihi"):
        output = np.load(tmp_path / "sim" / f"{mode}.npz")["output"]
        assert np.flatnonzero(output[0, :, 0]).tolist() == LIF_SPIKES_NORSE, mode
    assert parity["output_max_abs_diff"] == 0


def test_the_nir_papers_cnn_in_fixed_point_differs_from_float_by_what_its_integers_explain(cli, tmp_path):
    """On 32 samples of 10 steps of 15% events, the fixed point's spikes per layer are within 1.1% of
    the float run's, but which neuron spikes when differs more with depth (IF neurons never forget:
    a flip propagates; figures below). The same graph holding the integers in float units
    (w_int / scale, vth / scale) differs from the fixed point 10-25x less in the deeper layers:
    the integers explain the difference; what is left starts at the host layer's current, rounded to
    1/scale, which no float graph holds."""
    from spikeport.export.loihi import integers, read_loihi_json
    from spikeport.runtime.reference import NIRExecutor
    from spikeport.deployment import Deployment
    from spikeport.runtime.simulate import load_inputs
    from spikeport.runtime import reference as reference_backend

    import torch

    x = events((32, 10, 2, 34, 34), 0.15)
    np.savez(tmp_path / "x.npz", input=x)
    folder = export(cli, needs_shared("peer-tests/nir/02_cnn/cnn_sinabs.nir"), tmp_path, "--dt", "1", "--input", tmp_path / "x.npz")
    target = Deployment.load(tmp_path)
    target, inputs, _ = load_inputs(target, tmp_path / "x.npz", None)
    fixed = {k.split(".", 1)[1]: v for k, v in reference_backend.run(target, inputs, mode="loihi", device="cpu", record=True).trains.items()}
    deployed = nir.read(folder / "deployed.nir")
    model = read_loihi_json(folder / "loihi.json")
    nodes = dict(deployed.nodes)
    for layer in model.layers:
        node = nodes[layer.neuron]
        nodes[layer.neuron] = nir.IF(r=node.r, v_threshold=np.full_like(node.v_threshold, layer.vth / layer.scale), v_reset=node.v_reset)
        if layer.on_host:
            continue
        w_int, bias_mant = integers(deployed, layer)
        synapse = nodes[layer.synapse]
        values = {"weight": (w_int / layer.scale).astype(np.float32), "bias": (bias_mant / layer.scale).astype(np.float32)}
        if isinstance(synapse, nir.Conv2d):
            nodes[layer.synapse] = nir.Conv2d(input_shape=synapse.input_shape, stride=synapse.stride, padding=synapse.padding,
                                              dilation=synapse.dilation, groups=synapse.groups, **values)
        else:
            nodes[layer.synapse] = nir.Affine(**values)
    in_float_units = nir.NIRGraph(nodes=nodes, edges=deployed.edges, metadata=deployed.metadata, type_check=True)

    def spikes(graph: nir.NIRGraph) -> dict[str, np.ndarray]:
        seen = {}
        record = lambda node, _, y: seen.__setitem__(node, y.transpose(0, 1).numpy()) if isinstance(graph.nodes[node], nir.IF) else None  # noqa: E731
        with torch.no_grad():
            NIRExecutor(graph, dt=1.0)({"input": torch.as_tensor(x).transpose(0, 1)}, record)
        return seen

    floats, dequantized = spikes(deployed), spikes(in_float_units)
    assert sorted(fixed) == sorted(floats) == ["1", "10", "12", "3", "6"]
    quantization = {k: float(np.mean(floats[k] != fixed[k])) / max(float(fixed[k].mean()), 1e-9) for k in fixed}
    left = {k: float(np.mean(dequantized[k] != fixed[k])) / max(float(fixed[k].mean()), 1e-9) for k in fixed}
    # flipped spikes (neuron and step) per fixed-point spike, float vs fixed / integers-in-float-units vs fixed,
    # measured: layer 1 0.00079 / 0.00057, 3 0.062 / 0.0026, 6 0.18 / 0.0070, 10 0.40 / 0.040 (IF neurons never
    # forget, so a flip propagates); layer 1's rest is its host current rounded to 1/scale
    assert 0 < quantization["1"] < 0.005 and left["1"] <= quantization["1"], (left, quantization)
    for k in ("3", "6", "10"):
        assert left[k] < quantization[k] / 4, (k, left, quantization)
    total = {k: (float(floats[k].sum()), float(fixed[k].sum())) for k in fixed}
    # spikes per layer, float / fixed: 70648 / 70634, 95616 / 95252, 24758 / 24842, 4457 / 4409, 107 / 107
    assert all(abs(a - b) <= 0.02 * a for a, b in total.values()), total


def test_a_foreign_chain_with_a_read_out_gets_model_net(cli, tmp_path):
    """The sinabs CNN read out by its last Affine: loihi.json and model.net (netx); the emulator's run
    of model.net picks the float run's class on 30 of 32 samples (figures in the docstring above)."""
    x = events((32, 10, 2, 34, 34), 0.15)
    np.savez(tmp_path / "x.npz", input=x)
    folder = export(cli, cnn_read_out(tmp_path), tmp_path, "--dt", "1", "--input", tmp_path / "x.npz")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"] == {"loihi": "loihi.json", "netx": "model.net"}
    assert manifest["outputs"][0]["kind"] == "graded" and manifest["inputs"][0]["kind"] == "spike"
    parity = simulate(cli, tmp_path, x, "reference-float,reference-loihi", tmp_path)
    assert parity["prediction_agreement"] >= 0.9, parity
    for layer in parity["layers"].values():
        assert abs(layer["spikes_a"] - layer["spikes_b"]) <= 0.01 * layer["spikes_a"], parity


@pytest.mark.lava
@pytest.mark.parametrize("case", ["lif", "cnn", "cnn-read-out"])
def test_the_exported_integers_run_bit_exact_in_lava_fixed_pt(cli, case, tmp_path):
    """Lava's own fixed_pt models (Loihi2SimCfg, through the worker) on the export: every layer's
    spikes equal the emulator's (reference-loihi); the read-out chain's model.net also loaded by
    lava-dl's netx, whose logits equal the emulator's bit for bit."""
    if case == "lif":
        path, x, dt = needs_shared("peer-tests/nir/01_lif/lif_norse.nir"), paper_lif_input(), "1e-4"
    else:
        path = needs_shared("peer-tests/nir/02_cnn/cnn_sinabs.nir") if case == "cnn" else cnn_read_out(tmp_path)
        x, dt = events((3, 6, 2, 34, 34), 0.15), "1"
    np.savez(tmp_path / "x.npz", input=x)
    folder = export(cli, path, tmp_path, "--dt", dt, "--input", tmp_path / "x.npz")
    parity = simulate(cli, tmp_path, x, "reference-loihi,lava-loihi", tmp_path)
    assert parity["layers"] and all(layer["spike_count_mismatches"] == 0 for layer in parity["layers"].values()), parity
    assert sum(layer["spikes_a"] for layer in parity["layers"].values()) > 0
    if case == "cnn-read-out":
        assert parity["output_max_abs_diff"] == 0, parity
        import torch

        from spikeport.deployment import Deployment
        from spikeport.runtime.simulate import load_inputs
        from spikeport.runtime.lava import run as lava_backend

        target = Deployment.load(tmp_path)
        target, inputs, _ = load_inputs(target, tmp_path / "x.npz", None)
        netx = lava_backend.run_export_netx(target, inputs)
        emulated = np.load(tmp_path / "sim" / "reference-loihi.npz")
        assert np.array_equal(netx.output, emulated["output"])
        assert (folder / "model.net").is_file()


def _refused(cli, path, tmp_path, *options) -> str:
    code, _, err = cli("export", path, "--out", tmp_path / "out", *options)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out" / "export").exists()
    return err


def test_recurrence_cubalif_and_a_leak_towards_v_leak_are_refused_naming_the_node(cli, tmp_path):
    err = _refused(cli, needs_shared("peer-tests/nir/03_rnn/braille_noDelay_bias_zero.nir"), tmp_path, "--dt", "1e-4", "--timesteps", "4")
    assert "lif1.lif (CubaLIF): its recurrent input from lif1.w_rec" in err
    graph = nir.read(needs_shared("peer-tests/nir/01_lif/lif_norse.nir"))
    lif = graph.nodes["1"]
    nodes = {**graph.nodes, "1": nir.CubaLIF(tau_syn=lif.tau, tau_mem=lif.tau, r=lif.r, v_leak=lif.v_leak, v_threshold=lif.v_threshold, v_reset=lif.v_reset)}
    nir.write(tmp_path / "cuba.nir", nir.NIRGraph(nodes=nodes, edges=graph.edges, type_check=True))
    assert "1 (CubaLIF): its synaptic current (tau_syn)" in _refused(cli, tmp_path / "cuba.nir", tmp_path, "--dt", "1e-4", "--timesteps", "4")
    nodes = {**graph.nodes, "1": nir.LIF(tau=lif.tau, r=lif.r, v_leak=np.full_like(lif.v_leak, 0.05), v_threshold=lif.v_threshold, v_reset=lif.v_reset)}
    nir.write(tmp_path / "leak.nir", nir.NIRGraph(nodes=nodes, edges=graph.edges, type_check=True))
    assert "1 (LIF): v_leak" in _refused(cli, tmp_path / "leak.nir", tmp_path, "--dt", "1e-4", "--timesteps", "4")


def test_a_file_without_dt_needs_dt_and_timesteps(cli, tmp_path):
    path = needs_shared("peer-tests/nir/01_lif/lif_norse.nir")
    assert "no dt in its metadata: give the timestep length with --dt (snnTorch" in _refused(cli, path, tmp_path, "--timesteps", "4")
    assert "--timesteps" in _refused(cli, path, tmp_path, "--dt", "1e-4")
    assert "ONNX needs the torch model" in _refused(cli, path, tmp_path, "--dt", "1e-4", "--timesteps", "4", "--formats", "nir,onnx")


def test_a_dt_beyond_the_time_constant_is_warned_of_and_kept_in_the_manifest(cli, tmp_path):
    folder = export(cli, needs_shared("peer-tests/nir/01_lif/lif_norse.nir"), tmp_path, "--dt", "1e-2", "--timesteps", "4", "--quantize", "none",
                    "--formats", "nir")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert any("dt 0.01 s is at least its tau" in line for line in manifest["source"]["warnings"]), manifest["source"]
    assert manifest["files"] == {} and (folder / "deployed.nir").is_file()


def test_the_python_api_exports_a_nir_file_beside_it_by_default(tmp_path):
    import shutil

    import spikeport
    from spikeport.errors import UserError
    from spikeport.export.neuron_constants import neuron_constants

    path = tmp_path / "lif_norse.nir"
    shutil.copy(needs_shared("peer-tests/nir/01_lif/lif_norse.nir"), path)
    np.savez(tmp_path / "x.npz", input=events((4, 50, 1), 0.2))
    deployment = spikeport.export(nir=path, dt=1e-4, inputs=tmp_path / "x.npz")
    assert deployment.path == tmp_path / "export" and deployment.timesteps == 50
    assert neuron_constants(deployment.deployed().nodes["1"], 1e-4).gain.item() == 1.0
    sim = spikeport.simulate(target=deployment, mode="loihi", inputs=tmp_path / "x.npz")
    assert sim.output.shape == (4, 50, 1) and sim.output.sum() > 0
    with pytest.raises(UserError, match="give one of run="):
        spikeport.export(nir=path, run=tmp_path)
    with pytest.raises(UserError, match="input 'input' has shape \\[4, 50, 2\\]; expected \\[N, T, 1\\]"):
        np.savez(tmp_path / "wrong.npz", input=np.zeros((4, 50, 2), np.float32))
        spikeport.export(nir=path, dt=1e-4, inputs=tmp_path / "wrong.npz", out=tmp_path / "other")
    assert not (tmp_path / "other").exists()
