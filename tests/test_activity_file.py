"""Activity is a file (issue 13): `simulate` writes sim/activity.json, and `report --activity` builds
the same report from it without running anything again; a file measured on another deployment is
refused in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import needs_shared


def report_json(folder) -> dict:
    data = json.loads((folder / "report" / "report.json").read_text())
    data.pop("accuracy", None)  # needs the labelled inputs, which an activity file does not hold
    return data


@pytest.fixture
def run(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns("sim", "report"))
    return copy


def test_a_report_from_the_activity_file_equals_one_measured_again(cli, run, tmp_path):
    assert cli("simulate", run, "--samples", "32")[0] == 0
    activity = run / "sim" / "activity.json"
    assert json.loads(activity.read_text())["measured"]["backend"] == "reference"
    code, _, err = cli("report", run, "--activity", activity, "--out", tmp_path / "from-file")
    assert code in (0, 3), err
    code, _, err = cli("report", run, "--samples", "32", "--out", tmp_path / "measured")
    assert code in (0, 3), err
    assert report_json(tmp_path / "from-file") == report_json(tmp_path / "measured")


def test_the_same_on_a_peer_network(cli, tmp_path):
    braille = needs_shared("peer-tests/nir/03_rnn/braille_noDelay_bias_zero.nir")
    x = (np.random.default_rng(0).random((4, 60, 12)) < 0.1).astype(np.float32)
    np.savez(tmp_path / "x.npz", input=x)
    assert cli("simulate", braille, "--dt", "1e-4", "--input", tmp_path / "x.npz", "--out", tmp_path / "sim")[0] == 0
    activity = tmp_path / "sim" / "sim" / "activity.json"
    args = ("--profiles", "loihi2,xylo-audio2", "--dt", "1e-4")
    assert cli("report", braille, "--activity", activity, "--out", tmp_path / "a", *args)[0] in (0, 3)
    assert cli("report", braille, "--input", tmp_path / "x.npz", "--out", tmp_path / "b", *args)[0] in (0, 3)
    assert report_json(tmp_path / "a") == report_json(tmp_path / "b")


def test_an_activity_file_of_another_deployment_is_refused(cli, run, tmp_path):
    assert cli("simulate", run, "--samples", "8")[0] == 0
    braille = needs_shared("peer-tests/nir/03_rnn/braille_noDelay_bias_zero.nir")
    code, _, err = cli("report", braille, "--dt", "1e-4", "--activity", run / "sim" / "activity.json", "--out", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1 and "measured on another deployment" in err, err
    assert not (tmp_path / "r").exists()


def test_a_file_that_is_not_an_activity_file_is_one_line(cli, run, tmp_path):
    bogus = tmp_path / "a.json"
    bogus.write_text('{"format": "something else"}')
    code, _, err = cli("report", run, "--activity", bogus, "--out", tmp_path / "r")
    assert code == 2 and "a.json: not an activity file" in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()
