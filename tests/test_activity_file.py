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


PEERS = {  # the NIR paper's networks: inputs of their shapes, the dt of their tools' convention, the profiles they are judged on
    "braille": ("peer-tests/nir/03_rnn/braille_noDelay_bias_zero.nir", (4, 60, 12), 0.1, "1e-4", "loihi2,xylo-audio2"),
    "braille-subtract": ("peer-tests/nir/03_rnn/braille_noDelay_noBias_subtract.nir", (4, 60, 12), 0.1, "1e-4", "loihi2,xylo-audio2"),
    "cnn": ("peer-tests/nir/02_cnn/cnn_sinabs.nir", (4, 10, 2, 34, 34), 0.15, "1", "loihi2,speck"),
    "lif": ("peer-tests/nir/01_lif/lif_norse.nir", (2, 200, 1), 0.05, "1e-4", "loihi2"),
}


@pytest.mark.parametrize("peer", PEERS)
def test_the_same_on_the_peer_networks(cli, tmp_path, peer):
    path, shape, rate, dt, profiles = PEERS[peer]
    network = needs_shared(path)
    x = (np.random.default_rng(0).random(shape) < rate).astype(np.float32)
    np.savez(tmp_path / "x.npz", input=x)
    assert cli("simulate", network, "--dt", dt, "--input", tmp_path / "x.npz", "--out", tmp_path / "sim")[0] == 0
    activity = tmp_path / "sim" / "sim" / "activity.json"
    args = ("--profiles", profiles, "--dt", dt)
    assert cli("report", network, "--activity", activity, "--out", tmp_path / "a", *args)[0] in (0, 3)
    assert cli("report", network, "--input", tmp_path / "x.npz", "--out", tmp_path / "b", *args)[0] in (0, 3)
    assert report_json(tmp_path / "a") == report_json(tmp_path / "b")
    assert sum(layer["spikes"] for layer in report_json(tmp_path / "a")["layers"]) > 0


def layers_of(activity) -> list[dict]:
    return json.loads(activity.read_text())["network"]["layers"]


@pytest.mark.lava
def test_every_backend_with_spike_trains_writes_the_activity_of_its_own_run(cli, run, tmp_path):
    """simulate writes sim/activity.json from the run it made, on the reference and Lava backends,
    float and Loihi fixed point: Lava's counts equal the reference runtime's in each mode (the two
    compute the same spikes, docs/runtime.md), and a report from Lava's file runs nothing: it
    succeeds with no Lava to run."""
    from lava_env import python_without_lava

    counted = {}
    for backend, mode in [("reference", "float"), ("reference", "loihi"), ("lava", "float"), ("lava", "loihi")]:
        out = tmp_path / f"{backend}-{mode}"
        code, _, err = cli("simulate", run, "--samples", "3", "--backend", backend, "--mode", mode, "--out", out)
        assert code == 0, err
        data = json.loads((out / "sim" / "activity.json").read_text())
        assert (data["measured"]["backend"], data["measured"]["mode"]) == (backend, mode)
        counted[backend, mode] = data["network"]["layers"]
        sim = np.load(out / "sim" / f"{backend}-{mode}.npz")  # the file counts the spikes of the run that wrote the npz
        total = sum(float(sim[k].sum()) for k in sim if k.startswith("spikes."))
        assert total > 0 and sum(layer["spikes"] for layer in data["network"]["layers"]) == pytest.approx(total / 3)
    for mode in ("float", "loihi"):
        assert counted["lava", mode] == counted["reference", mode], mode
    assert counted["reference", "float"] != counted["reference", "loihi"]  # the modes differ: the comparison would see a swap
    import os

    os.environ["SPIKEPORT_LAVA_PYTHON"], saved = str(python_without_lava(tmp_path)), os.environ.get("SPIKEPORT_LAVA_PYTHON")
    try:
        code, _, err = cli("report", run, "--activity", tmp_path / "lava-loihi" / "sim" / "activity.json", "--out", tmp_path / "r")
    finally:
        if saved is None:
            del os.environ["SPIKEPORT_LAVA_PYTHON"]
        else:
            os.environ["SPIKEPORT_LAVA_PYTHON"] = saved
    assert code in (0, 3), err
    assert json.loads((tmp_path / "r" / "report" / "report.json").read_text())["activity"].startswith("Lava, Loihi2SimCfg fixed_pt")


def test_onnx_gives_no_trains_so_no_activity_file_and_says_so(cli, run, tmp_path):
    code, _, err = cli("simulate", run, "--samples", "3", "--backend", "onnx", "--out", tmp_path)
    assert code == 0, err
    assert not (tmp_path / "sim" / "activity.json").exists()
    assert "no sim/activity.json: the onnx backend gives no spike trains" in err
    assert any("no sim/activity.json" in w for w in np.load(tmp_path / "sim" / "onnx-float.npz")["warnings"])


@pytest.mark.lava
def test_a_net_file_writes_its_activity_on_both_backends(cli, tmp_path):
    """lava-dl's tinynet (an input layer driven by its bias): the activity Lava's netx run counts
    equals the emulator's, layer by layer."""
    folder = needs_shared("peer-tests/lava-dl/tinynet")
    bias = np.load(folder / "input_bias.npy").transpose(2, 1, 0)  # Lava's (x, y, c) -> (c, y, x)
    np.savez(tmp_path / "in.npz", input=np.repeat(bias[None, None], 15, axis=1))
    for backend in ("reference", "lava"):
        code, _, err = cli("simulate", folder / "network.net", "--backend", backend, "--mode", "loihi", "--input", tmp_path / "in.npz",
                           "--out", tmp_path / backend)
        assert code == 0, err
    lava, reference = layers_of(tmp_path / "lava" / "sim" / "activity.json"), layers_of(tmp_path / "reference" / "sim" / "activity.json")
    assert lava == reference and sum(layer["spikes"] for layer in lava) > 0
    a, b = np.load(tmp_path / "lava" / "sim" / "lava-loihi.npz"), np.load(tmp_path / "reference" / "sim" / "reference-loihi.npz")
    assert sorted(a) == sorted(b)
    for key in a:
        if key != "warnings":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


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
