"""`spikeport report --backend lava`: the report's activity comes from a Lava run.

Lava's fixed_pt run of the export's model.net and the reference runtime's loihi mode are the same
arithmetic, spike for spike (tests/test_runtime_lava.py), so every count in the two reports must be
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


def test_lava_float_is_refused_with_the_way_out(trained_run, cli, tmp_path):
    code, _, err = cli("report", trained_run, "--backend", "lava", "--mode", "float", "--samples", "2", "--out", tmp_path)
    assert code == 2 and "use --mode loihi" in err and not (tmp_path / "report").exists()
