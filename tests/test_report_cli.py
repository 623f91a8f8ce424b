"""`spikeport report` and `spikeport profiles` end to end, on our own run and on foreign files."""

import json

import numpy as np

from conftest import needs_shared


def test_report_on_a_run(trained_run, cli, tmp_path):
    code, _, err = cli("report", trained_run, "--profiles", "loihi2,ann-45nm", "--samples", "40", "--out", tmp_path)
    assert code == 0, err
    folder = tmp_path / "report"
    assert sorted(p.name for p in folder.iterdir()) == [".written-by-spikeport.json", "plots", "report.html", "report.json", "report.md"]
    report = json.loads((folder / "report.json").read_text())
    totals = report["totals"]
    assert totals["samples"] == 40 and totals["timesteps"] == 4 and totals["spikes"] > 0
    assert totals["sops_dense"] >= totals["sops_effective_ac"] + totals["sops_effective_mac"] > 0
    assert [layer["name"] for layer in report["layers"]] == ["neuromorphic0.conv1", "neuromorphic0.conv2", "neuromorphic0.fc"]
    assert report["activity"] == "reference runtime, float (runtime/reference.py)"
    assert report["lowering"] == "neuromorphic0: average pools pool1, pool2 folded into the next synaptic layer (export/lower.py)"
    assert "Activity: reference runtime, float" in (folder / "report.md").read_text()
    loihi2 = report["profiles"]["loihi2"]
    assert loihi2["fits"] is True and loihi2["violations"] == [] and loihi2["cores"] >= 1
    e = loihi2["energy_j"]
    assert not e["partial"] and 0 < e["low"] <= e["total"] <= e["high"]
    assert "data:image/png;base64," in (folder / "report.html").read_text()
    # the run's test set has labels: the float and the Loihi fixed-point accuracy are in the report
    accuracy = report["accuracy"]
    assert set(accuracy) == {"float", "loihi"} and all(0.5 < a["accuracy"] <= 1 and a["samples"] == 40 for a in accuracy.values())
    assert "Task accuracy" in (folder / "report.md").read_text()


def test_budget_and_fit_failures_exit_3(trained_run, cli, tmp_path):
    code, _, _ = cli("report", trained_run, "--profiles", "loihi", "--samples", "20", "--budget-ms", "0.001", "--out", tmp_path)
    assert code == 3
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["profiles"]["loihi"]["budget_ok"] is False
    code, _, _ = cli("report", trained_run, "--profiles", "xylo-audio2", "--samples", "20", "--out", tmp_path)
    violations = json.loads((tmp_path / "report" / "report.json").read_text())["profiles"]["xylo-audio2"]["violations"]
    assert code == 3 and {"layer_type", "network_inputs"} <= {v["constraint"] for v in violations}


def test_labels_that_do_not_match_the_inputs_are_one_line_exit_2_nothing_written(cli, tmp_path):
    path = needs_shared("peer-tests/nir/02_cnn/cnn_sinabs.nir")
    x = np.zeros((4, 3, 2, 34, 34), dtype=np.float32)
    np.savez(tmp_path / "in.npz", input=x, labels=np.arange(3))
    code, _, err = cli("report", path, "--input", tmp_path / "in.npz", "--dt", "1e-3", "--profiles", "speck", "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "labels: 3 labels for 4 input samples" in err and "in.npz" in err
    assert not (tmp_path / "out").exists()
    np.savez(tmp_path / "in.npz", input=x, labels=np.zeros(4))
    code, _, err = cli("report", path, "--input", tmp_path / "in.npz", "--dt", "1e-3", "--profiles", "speck", "--out", tmp_path / "out")
    assert code == 2 and "labels: must be a 1-D array of integers" in err and not (tmp_path / "out").exists()


def test_report_on_the_nir_paper_cnn_fits_speck(cli, tmp_path):
    """The sinabs CNN of the NIR paper, deployed by its authors on Speck: it fits Speck's cores."""
    path = needs_shared("peer-tests/nir/02_cnn/cnn_sinabs.nir")
    x = (np.random.default_rng(0).random((4, 10, 2, 34, 34)) < 0.05).astype(np.float32)
    np.savez(tmp_path / "in.npz", input=x)
    code, _, err = cli("report", path, "--input", tmp_path / "in.npz", "--dt", "1", "--profiles", "speck", "--out", tmp_path)
    assert code == 0, err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["profiles"]["speck"]["fits"] is True
    assert len(report["layers"]) == 5 and report["totals"]["samples"] == 4


def test_profiles_commands(cli, tmp_path):
    code, out, _ = cli("profiles", "list", "--json")
    names = {p["name"] for p in json.loads(out)}
    assert code == 0 and {"loihi", "loihi2", "truenorth", "spinnaker2", "speck", "xylo-audio2", "akida-akd1000", "ann-45nm"} <= names
    code, out, _ = cli("profiles", "show", "speck")
    assert code == 0 and json.loads(out)["name"] == "speck"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: mychip\n")
    code, _, err = cli("profiles", "validate", bad)
    assert code == 2 and "bad.yaml" in err and err.count("\n") == 1
    code, _, err = cli("report", tmp_path, "--profiles", "loihi9")
    assert code == 2 and "unknown profile 'loihi9'" in err


def test_report_on_lava_dls_pilotnet(cli, tmp_path):
    """lava-dl's PilotNet LIF (.net, Loihi fixed point): a complete report, driven by its image."""
    folder = needs_shared("peer-tests/lava-dl/pilotnet_lif")
    image = np.load(folder / "image.npy").transpose(2, 1, 0)  # Lava's (x, y, c) -> (c, y, x): the input layer's bias
    np.savez(tmp_path / "in.npz", input=np.repeat(image[None, None], 8, axis=1))
    code, _, err = cli("report", folder / "network.net", "--input", tmp_path / "in.npz", "--profiles", "loihi2,ann-45nm", "--out", tmp_path)
    assert code == 0, err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert len(report["layers"]) == 10 and report["totals"]["timesteps"] == 8
    assert report["totals"]["sops_effective_ac"] > 0 and report["totals"]["spikes"] > 0
    loihi2 = report["profiles"]["loihi2"]
    assert loihi2["fits"] is True and loihi2["cores"] > 1 and loihi2["latency_s"] > 0
