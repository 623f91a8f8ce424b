"""`spikeport report --backend lava`: the report's activity comes from a Lava run.

Lava's fixed_pt run of spikeport's graph with loihi.json's integers and the reference runtime's
loihi mode are the same arithmetic, spike for spike (tests/test_runtime_lava.py), and so are Lava's
floating_pt run and the reference runtime's float mode: every count in the two reports must be
identical; only the line saying where the activity came from differs."""

import json
import shutil

import pytest


def report(cli, run, out, *options):
    code, _, err = cli("report", run, "--samples", "3", "--profiles", "loihi2,speck,ann-45nm", "--out", out, *options)
    assert code == 3, err  # speck runs IF neurons without leak: the fit check fails, the report is complete
    return json.loads((out / "report" / "report.json").read_text())


@pytest.mark.lava
def test_lava_activity_equals_the_reference_in_loihi_mode(trained_run, cli, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("sim", "report"))
    lava = report(cli, run, tmp_path / "lava", "--backend", "lava")
    reference = report(cli, run, tmp_path / "reference", "--mode", "loihi")

    assert lava["activity"].startswith("Lava, Loihi2SimCfg fixed_pt") and reference["activity"].startswith("reference runtime, Loihi")
    assert lava["totals"]["spikes"] > 0 and lava["totals"]["sops_effective_mac"] > 0
    assert [layer["name"] for layer in lava["layers"]] == ["neuromorphic0.conv1", "neuromorphic0.conv2", "neuromorphic0.fc"]
    assert lava["layers"] == reference["layers"]
    assert lava["totals"] == reference["totals"]
    assert lava["profiles"] == reference["profiles"]


@pytest.mark.lava
def test_lava_float_activity_equals_the_reference_in_float_mode(trained_run, cli, tmp_path):
    """Lava's floating_pt run records every neuron layer's spikes, so a float report counts them;
    they are the reference runtime's, spike for spike, so every count is the same."""
    run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("sim", "report"))
    lava = report(cli, run, tmp_path / "lava", "--backend", "lava", "--mode", "float")
    reference = report(cli, run, tmp_path / "reference")
    assert lava["activity"].startswith("Lava, Loihi2SimCfg floating_pt") and reference["activity"].startswith("reference runtime, float")
    assert lava["totals"]["spikes"] > 0
    assert lava["layers"] == reference["layers"] and lava["totals"] == reference["totals"] and lava["profiles"] == reference["profiles"]


def test_onnx_gives_no_activity_to_report(trained_run, cli, tmp_path):
    code, _, err = cli("report", trained_run, "--backend", "onnx", "--samples", "2", "--out", tmp_path)
    assert code == 2 and "gives no spike trains" in err and err.count("\n") == 1 and not (tmp_path / "report").exists()
