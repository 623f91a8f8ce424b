"""`spikeport export`: partitions, manifest, and every file read back by its reference consumer."""

import os

import nir
import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

from spikeport.config import config_from_dict
from spikeport.errors import UserError
from spikeport.export import exporter
from spikeport.export.manifest import read_manifest
from spikeport.export.onnx import export_onnx_graph
from spikeport.export.partition import buffered_timesteps, partition
from spikeport.train import datasets, layers, loop
from spikeport.train.neuron import LIF


@pytest.fixture
def run_dir(trained_run):
    """The session's trained digits CNN (conftest.py); these tests export it again."""
    return trained_run


def test_export_digits_cnn(run_dir, cli):
    code, _, err = cli("export", run_dir)
    assert code == 0, err
    out = run_dir / "export"
    assert sorted(p.name for p in out.iterdir()) == [".written-by-spikeport.json", "deployed.nir", "loihi.json", "manifest.json", "model.net", "model.nir", "model.onnx"]
    manifest = read_manifest(out / "manifest.json")
    assert manifest.timesteps == 4 and manifest.dt == 1e-3
    assert [p.kind for p in manifest.partitions] == ["neuromorphic"]
    assert manifest.inputs[0].shape == [1, 8, 8] and manifest.outputs[0].shape == [10]

    graph = nir.read(out / "model.nir")  # type checking on
    assert graph.metadata["dt"] == 1e-3
    assert sum(isinstance(n, nir.LIF) for n in graph.nodes.values()) == 2
    assert manifest.files == {"onnx": "model.onnx", "loihi": "loihi.json", "netx": "model.net"}

    # ONNX Runtime on the whole model equals the trained torch model on real test samples.
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    config = config_from_dict(state["config"])
    model = loop.model_for(config)
    model.load_state_dict(state["model"])
    model.eval()
    test = datasets.load("digits", config.data.root, "test", 4)
    x = torch.stack([test[i][0] for i in range(64)]).transpose(0, 1)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run([manifest.outputs[0].name], {manifest.inputs[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(got - want).max() <= 1e-4
    assert (got.mean(0).argmax(1) == want.mean(0).argmax(1)).all()


def test_failed_export_keeps_the_previous_one(run_dir, cli, monkeypatch):
    assert cli("export", run_dir)[0] == 0
    before = {p.name: p.read_bytes() for p in (run_dir / "export").iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(exporter, "export_onnx_graph", broken)
    with pytest.raises(RuntimeError):
        exporter.export(run_dir)
    assert {p.name: p.read_bytes() for p in (run_dir / "export").iterdir()} == before
    assert not [p for p in os.listdir(run_dir) if p.startswith(".export")], "temporary folder left behind"


def test_export_bad_input(cli, run_dir, tmp_path):
    code, _, err = cli("export", tmp_path)
    assert code == 2 and "checkpoint.pt: no checkpoint there" in err
    code, _, err = cli("export", run_dir, "--formats", "nir,tflite")
    assert code == 2 and "unknown format tflite" in err
    code, _, err = cli("export", run_dir, "--quantize", "int4")
    assert code == 2 and "--quantize: must be one of loihi, none, got 'int4'" in err


def test_a_model_with_host_partitions_is_quantized_by_default(tmp_path):
    """Loihi fixed point for every model (docs/export.md): loihi.json names each layer's partition
    and each host boundary's payload; model.net only holds plain chains, so there is none."""
    from spikeport.export.loihi import read_loihi_json

    exporter.export_model(Gated().eval(), (1, 8, 8), 4, tmp_path / "export")
    files = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert "loihi.json" in files and "host.onnx" in files and "model.net" not in files
    loihi = read_loihi_json(tmp_path / "export" / "loihi.json")
    assert {layer.partition for layer in loihi.layers} == {"neuromorphic0", "neuromorphic1"}
    assert {b.direction for b in loihi.boundaries} == {"to_host", "to_chip"}


class Gated(nn.Module):
    """Spikes gated by a sigmoid of a second conv: the stand-in for attention."""

    def __init__(self, over_time: bool = False):
        super().__init__()
        self.over_time = over_time
        self.conv = layers.Conv2d(1, 4, 3, padding=1)
        self.lif = LIF(0.5, 0.5)
        self.gate_conv = layers.Conv2d(1, 4, 3, padding=1)
        self.flat = layers.Flatten()
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        s = self.lif(self.conv(x))
        g = self.gate_conv(x)
        if self.over_time:  # attention-like: every timestep sees the mean over all T
            g = g.mean(0, keepdim=True) + g * 0
        return self.fc(self.flat(s * torch.sigmoid(g)))


@pytest.mark.parametrize("over_time, buffer", [(False, 0), (True, 4)])
def test_gated_model_partitions(over_time, buffer, tmp_path):
    torch.manual_seed(0)
    model = Gated(over_time).eval()
    parts = partition(model, (1, 8, 8))
    assert [p.kind for p in parts.partitions] == ["neuromorphic", "host", "neuromorphic"]
    first, host, last = parts.partitions
    assert {b.kind for b in first.outputs} == {"spike", "graded"}
    assert [b.name for b in host.outputs] == [b.name for b in last.inputs]
    assert any("sigmoid" in op for op in host.host_ops)

    # Running the partitions in order gives the model's output.
    x = torch.rand(4, 3, 1, 8, 8) * 2
    values = {"x": x}
    for p in parts.partitions:
        out = p.module(*[values[b.name] for b in p.inputs])
        out = out if isinstance(out, tuple) else (out,)
        values.update({b.name: o for b, o in zip(p.outputs, out)})
    with torch.no_grad():
        assert torch.equal(values[parts.outputs[0].name], model(x))
        host_inputs = [values[b.name] for b in host.inputs]
    assert buffered_timesteps(host.module, host_inputs) == buffer

    # The host partition as ONNX equals torch.
    path = tmp_path / "host.onnx"
    export_onnx_graph(host.module, {b.name: values[b.name] for b in host.inputs}, [b.name for b in host.outputs], path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {b.name: values[b.name].detach().numpy() for b in host.inputs})[0]
    assert np.abs(got - values[host.outputs[0].name].detach().numpy()).max() < 1e-6


def test_two_input_and_residual_partition():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = layers.Conv2d(1, 4, 3, padding=1)
            self.b = layers.Conv2d(1, 4, 1)
            self.lif = LIF()
            self.flat = layers.Flatten()
            self.fc = nn.Linear(256, 10)

        def forward(self, x):
            return self.fc(self.flat(self.lif(self.a(x) + self.b(x))))

    parts = partition(Residual(), (1, 8, 8))
    assert [p.kind for p in parts.partitions] == ["neuromorphic"]

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.audio = nn.Linear(6, 8)
            self.visual = nn.Linear(5, 8)
            self.lif = LIF()
            self.fc = nn.Linear(8, 3)

        def forward(self, audio, visual):
            return self.fc(self.lif(self.audio(audio) + self.visual(visual)))

    parts = partition(Two(), {"audio": (6,), "visual": (5,)})
    assert [b.name for b in parts.inputs] == ["audio", "visual"]
    assert len(parts.partitions) == 1 and [b.name for b in parts.partitions[0].inputs] == ["audio", "visual"]


def test_the_deployed_graph_is_written_once_and_read_by_the_report(run_dir, tmp_path):
    """deployed.nir is model.nir as the chip runs it (the pools folded into the next layer), the
    manifest names it, and the report counts on it exactly what it counted lowering model.nir itself."""
    import json
    import shutil

    from spikeport.export.lower import fold_avgpool
    from spikeport.runtime.measure import measure
    from spikeport.deployment import Deployment
    from spikeport.runtime.simulate import load_inputs

    export = run_dir / "export"
    (entry,) = read_manifest(export / "manifest.json").partitions
    assert entry.deployed == "deployed.nir"
    deployed, folded = nir.read(export / "deployed.nir"), fold_avgpool(nir.read(export / "model.nir"))
    assert set(deployed.nodes) == set(folded.nodes) and not any(isinstance(n, nir.AvgPool2d) for n in deployed.nodes.values())
    for name, node in folded.nodes.items():
        if hasattr(node, "weight"):
            assert np.array_equal(deployed.nodes[name].weight, node.weight), name

    older = tmp_path / "older"
    shutil.copytree(run_dir / "export", older / "export")
    data = json.loads((older / "export" / "manifest.json").read_text())
    data["partitions"][0].pop("deployed")
    (older / "export" / "manifest.json").write_text(json.dumps(data))
    (older / "export" / "deployed.nir").unlink()
    networks = []
    for folder in (run_dir, older):
        target = Deployment.load(folder)
        target, inputs, _ = load_inputs(target, None, 16) if folder == run_dir else (target, inputs, None)
        networks.append(measure(target, inputs, torch.device("cpu"), name="digits"))
    new, old = networks
    assert new.lowering == old.lowering == "neuromorphic0: average pools pool1, pool2 folded into the next synaptic layer (export/lower.py)"
    assert [vars(layer) for layer in new.layers] == [vars(layer) for layer in old.layers]


def test_several_partitions_each_write_their_deployed_graph(tmp_path):
    """Every neuromorphic partition has its deployed file, named after it, whose inputs are the
    partition's (without the Loihi files too: deployed.nir is an NIR file)."""
    exporter.export_model(Gated().eval(), (1, 8, 8), 4, tmp_path / "export", formats=("nir", "onnx"), quantize="none")
    manifest = read_manifest(tmp_path / "export" / "manifest.json")
    chips = [p for p in manifest.partitions if p.kind == "neuromorphic"]
    assert [p.deployed for p in chips] == [f"deployed-{p.name}.nir" for p in chips] == ["deployed-neuromorphic0.nir", "deployed-neuromorphic1.nir"]
    for p in chips:
        graph = nir.read(tmp_path / "export" / p.deployed)
        assert sorted(n for n, v in graph.nodes.items() if isinstance(v, nir.Input)) == sorted(t.name for t in p.inputs)


def test_a_partition_that_does_not_lower_has_no_deployed_graph(tmp_path):
    """An overlapping pool has no folded form: the NIR and ONNX export stands, with no deployed file,
    and the Loihi export refuses it, naming the pool."""

    class Overlapping(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = layers.Conv2d(1, 4, 3, padding=1)
            self.lif = LIF(0.5, 0.5)
            self.pool = layers.AvgPool2d(2, stride=1)
            self.flat = layers.Flatten()
            self.fc = nn.Linear(4 * 7 * 7, 10)

        def forward(self, x):
            return self.fc(self.flat(self.pool(self.lif(self.conv(x)))))

    exporter.export_model(Overlapping().eval(), (1, 8, 8), 4, tmp_path / "export", formats=("nir", "onnx"), quantize="none")
    (entry,) = read_manifest(tmp_path / "export" / "manifest.json").partitions
    assert entry.deployed is None and not (tmp_path / "export" / "deployed.nir").exists() and (tmp_path / "export" / "model.nir").is_file()
    with pytest.raises(UserError, match=r"pool \(AvgPool2d\): kernel \(2, 2\), stride \(1, 1\)"):
        exporter.export_model(Overlapping().eval(), (1, 8, 8), 4, tmp_path / "again")
    assert not (tmp_path / "again").exists()
