"""The public API (docs/api.md): the notebook example runs as written, and its values are the files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import spikeport
from spikeport import Deployment, SimResult, UserError

ROOT = Path(__file__).resolve().parents[1]


def docs_example(section: str = "A notebook, start to end") -> str:
    (block,) = re.findall(rf"## {section}.*?```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    return block


def test_the_docs_notebook_runs_as_written(tmp_path, monkeypatch, capsys):
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "digits-cnn.yaml", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(docs_example(), "docs/api.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "test accuracy" in out and "loihi2 fits:" in out and "speck fits:" in out
    assert "deployed synaptic layers: ['conv1', 'conv2', 'fc']" in out  # the pools folded away
    run, deployment, sim, fixed, report = (namespace[k] for k in ("run", "deployment", "sim", "fixed", "report"))
    assert run.test_accuracy > 0.5 and len(run.metrics) == 2
    assert list(deployment.partitions) == ["neuromorphic0"] and deployment.timesteps == 4
    # The values are what the stages wrote: read back from the files, they are the same.
    again = SimResult.load(sim.path)
    assert np.array_equal(again.output, sim.output) and again.accuracy == sim.accuracy
    assert sim.accuracy == float((sim.output.mean(1).argmax(-1) == sim.labels).mean())
    assert abs(fixed.accuracy - sim.accuracy) < 0.05
    assert set(sim.activity) == set(sim.spikes) and all(v > 0 for v in sim.activity.values())
    assert set(report.profiles) == {"loihi2", "speck"} and (report.path / "report.json").is_file()
    assert Deployment.load("runs/api-demo") == Deployment.load("runs/api-demo/export/manifest.json") == deployment
    exec(compile(docs_example("The backends"), "docs/api.md", "exec"), namespace)  # a backend called as docs/api.md shows
    result = namespace["result"]
    assert "spikes of every neuron, per layer:" in capsys.readouterr().out and result.output.shape[:2] == (16, 4)
    assert {name: train.shape[:2] for name, train in result.trains.items()} == {name: (16, 4) for name in result.spikes}
    np.testing.assert_array_equal(result.spikes["neuromorphic0.lif1"], result.trains["neuromorphic0.lif1"].reshape(16, 4, -1).sum(-1))


def test_the_stage_packages_are_also_the_api_functions():
    import spikeport.train.loop  # binds spikeport.train to the package

    assert callable(spikeport.train) and callable(spikeport.export)
    assert spikeport.train.loop.train is not None


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda ws: Deployment.load(ws / "nothing"), "no deployment there"),
        (lambda ws: Deployment.load(ws / "x.nir"), "no such file"),
        (lambda ws: spikeport.train(config={"model": {"name": "nope"}}, out=ws / "r"), "config"),
        (lambda ws: spikeport.report(target=ws, samples=0), "samples: must be at least 1"),
    ],
)
def test_bad_input_raises_one_user_error(call, fragment, tmp_path):
    with pytest.raises(UserError, match=fragment):
        call(tmp_path)
    assert not (tmp_path / "r").exists()


def test_a_deployment_is_what_the_chip_runs_and_refuses_a_missing_file(trained_run, tmp_path):
    import nir

    deployment = Deployment.load(trained_run)
    graph = deployment.deployed()  # the only neuromorphic partition
    written = nir.read(trained_run / "export" / "deployed.nir")
    assert set(graph.nodes) == set(written.nodes) and not any(isinstance(n, nir.AvgPool2d) for n in graph.nodes.values())
    with pytest.raises(UserError, match="no neuromorphic partition 'host0'"):
        deployment.deployed("host0")
    bare = Deployment.load(trained_run / "export" / "model.nir")  # a single file: lowered on the fly
    assert set(bare.deployed().nodes) == set(graph.nodes)

    shutil.copytree(trained_run / "export", tmp_path / "export")
    (tmp_path / "export" / "deployed.nir").unlink()
    with pytest.raises(UserError, match=r"manifest.json: names deployed.nir, not in .*export; export again"):
        Deployment.load(tmp_path)


def test_compare_two_backends(trained_run, tmp_path):
    a = spikeport.simulate(target=trained_run, samples=6, out=tmp_path)
    b = spikeport.simulate(target=trained_run, samples=6, out=tmp_path, backend="onnx")
    parity = spikeport.api.compare(a=a, b=b)
    assert parity.path == tmp_path / "sim" / "parity-reference-float-vs-onnx-float.json" and parity.path.is_file()
    assert parity.output_max_abs_diff == float(np.abs(a.output - b.output).max()) < 1e-3
    assert parity.prediction_agreement == float((a.predictions == b.predictions).mean())
