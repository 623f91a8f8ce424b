"""A deployment that cannot run is refused in one line naming what is wrong, exit 2 (UserError in
Python), with nothing written (issue 13's bad input): a deployment folder with a missing or a
foreign file, a deployment given to a backend that cannot run it (naming the partition and why),
an activity file of another deployment (tests/test_activity_file.py)."""

from __future__ import annotations

import json
import shutil

import nir
import pytest

import spikeport
from spikeport import Deployment, UserError


@pytest.fixture
def run(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns("sim", "report"))
    return copy


def refused(cli, run, *args) -> str:
    code, out, err = cli(*args)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (run / "sim").exists() and not (run / "report").exists()
    return err


@pytest.mark.parametrize("command", ["simulate", "report"])
def test_a_missing_file_is_named(cli, run, command):
    (run / "export" / "model.onnx").unlink()
    err = refused(cli, run, command, run, "--samples", "2")
    assert "manifest.json: names model.onnx, not in" in err and "export again" in err
    with pytest.raises(UserError, match="names model.onnx"):
        Deployment.load(run)


def test_a_foreign_file_is_named(cli, run):
    (run / "export" / "model.nir").write_text("not a NIR graph\n")
    err = refused(cli, run, "simulate", run, "--samples", "2")
    assert "model.nir: not a readable NIR file" in err


def test_a_deployed_file_of_another_deployment_is_named(cli, run, tmp_path):
    """deployed.nir replaced by another network's (the NIR paper's LIF, lowered): its inputs are not the partition's."""
    from spikeport.export.lower import deploy
    from conftest import needs_shared

    nir.write(run / "export" / "deployed.nir", deploy(nir.read(needs_shared("peer-tests/nir/01_lif/lif_norse.nir"))))
    err = refused(cli, run, "simulate", run, "--samples", "2")
    assert "deployed.nir" in err


def test_a_backend_that_cannot_run_the_deployment_names_the_partition_and_why(cli, run):
    """Lava's LIF resets to 0: a partition resetting elsewhere is refused naming the partition and
    the layer, before any Lava process starts; the reference backend runs the same deployment."""
    path = run / "export" / "model.nir"
    graph = nir.read(path)
    name = next(n for n, node in graph.nodes.items() if isinstance(node, nir.LIF))
    graph.nodes[name].v_reset[...] = 0.25
    nir.write(path, graph)
    err = refused(cli, run, "simulate", run, "--samples", "2", "--backend", "lava")
    assert f"partition neuromorphic0: {name} (LIF): v_reset must be 0" in err
    with pytest.raises(UserError, match=rf"^partition neuromorphic0: {name} \(LIF\)"):
        spikeport.simulate(target=Deployment.load(run), samples=2, backend="lava")
    assert not (run / "sim").exists()


def test_a_backend_without_the_file_it_runs_says_which(cli, run, tmp_path):
    export = tmp_path / "nir-only"
    shutil.copytree(run / "export", export)
    manifest = json.loads((export / "manifest.json").read_text())
    del manifest["files"]["onnx"]  # an export with --formats nir,lava
    (export / "manifest.json").write_text(json.dumps(manifest))
    assert Deployment.load(export).file("onnx") is None
    code, _, err = cli("simulate", export / "manifest.json", "--samples", "2", "--backend", "onnx")
    assert code == 2 and "--backend onnx needs an export with model.onnx" in err and err.count("\n") == 1, err
    assert not (export / "sim").exists()


def test_a_net_file_in_float_mode_is_refused_before_its_inputs_are_read(cli, run, tmp_path):
    err = refused(cli, run, "simulate", run / "export" / "model.net", "--input", tmp_path / "absent.npz")
    assert "a lava-dl .net file holds Loihi integers; it runs with --mode loihi" in err
    assert not (run / "export" / "sim").exists()


def test_a_mode_a_backend_lacks_is_refused_before_it_is_imported(cli, run):
    """runtime/backends.py holds each backend's modes, so a wrong one is refused at once; they are
    the modes each backend's module says it runs."""
    import importlib

    from spikeport.runtime.backends import BACKENDS

    for name, (module, modes) in BACKENDS.items():
        assert importlib.import_module(module).MODES == modes, name
    err = refused(cli, run, "simulate", run, "--samples", "2", "--backend", "onnx", "--mode", "loihi")
    assert "--mode loihi: backend onnx runs float only" in err


def test_a_manifest_that_is_not_a_regular_file_is_refused_without_reading_it(cli, tmp_path):
    import os

    os.mkfifo(tmp_path / "manifest.json")  # a read would block
    code, _, err = cli("simulate", tmp_path / "manifest.json", "--input", tmp_path / "x.npz")
    assert code == 2 and "manifest.json: not a regular file" in err and err.count("\n") == 1, err
    assert not (tmp_path / "sim").exists()
