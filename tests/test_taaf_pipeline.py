"""Training audio-visual models through the loop on av-digits (built with a stand-in voice)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spikeport.config import config_from_dict
from spikeport.errors import UserError
from spikeport.train import av_digits, datasets
from spikeport.train.checkpoint import load_checkpoint
from spikeport.train.loop import train
from test_av_digits import tone

OPTIONS = {"clips_per_digit": 8, "visual_noise": 0.7}


@pytest.fixture(scope="module")
def av_root(tmp_path_factory):
    """av-digits with 8 clips per digit (60 train, 20 test), spoken by the test tone."""
    root = tmp_path_factory.mktemp("av")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(av_digits, "speak", tone)
        datasets.build("av-digits", root, options=OPTIONS)
    return root


def av_config(root, fusion="taaf", epochs=2, **model):
    return config_from_dict({
        "model": {"name": "taaf-resnet", "widths": [4, 8], "blocks": 1, "key_size": 4, "fusion": fusion, **model},
        "data": {"name": "av-digits", "root": str(root), "timesteps": 3, "batch_size": 16, "options": OPTIONS},
        "train": {"epochs": epochs, "lr": 0.01, "seed": 1},
    })


def test_av_digits_items_are_two_inputs_and_options_name_the_cache(av_root):
    train_set = datasets.load("av-digits", av_root, "train", 3, options=OPTIONS)
    (audio, visual), label = train_set[0]
    assert audio.shape == (3, 1, av_digits.MELS, av_digits.FRAMES) and visual.shape == (3, 1, 32, 32)
    assert torch.equal(audio[0], audio[2]) and 0 <= label < 10
    validation = datasets.load("av-digits", av_root, "val", 3, options=OPTIONS)  # held out of the 60 training clips, one per digit
    assert (len(train_set), len(validation)) == (50, 10) and len(datasets.load("av-digits", av_root, "test", 3, options=OPTIONS)) == 20
    assert (av_root / "av-digits" / "av-digits-v1-clips_per_digit=8-visual_noise=0.7.npz").is_file()
    with pytest.raises(UserError, match="data.options.noise: not an option of dataset 'av-digits'"):
        datasets.load("av-digits", av_root, "train", 3, options={"noise": 0.1})
    with pytest.raises(UserError, match="data.options.visual_noise: expected float, got 'high'"):
        datasets.build("av-digits", av_root, options={"visual_noise": "high"})
    with pytest.raises(UserError, match="visual_noise must lie in \\[0, 1\\]"):
        datasets.build("av-digits", av_root, options={"visual_noise": 2.0})


@pytest.mark.parametrize("fusion", ["taaf", "ogm-ge"])
def test_training_writes_the_modality_metrics_and_plot(av_root, tmp_path, fusion):
    history = train(av_config(av_root, fusion), tmp_path / "run", device="cpu")
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines == history and len(lines) == 2
    for m in lines:
        assert m["test_acc"] == m["acc_fused"] and all(0 <= m[k] <= 1 for k in ("acc_audio", "acc_visual"))
        assert len(m["alpha"]) == 3 and sum(m["alpha"]) == pytest.approx(1, abs=1e-5)
        assert m["rho"] > 0 and 0 < m["k_audio"] <= 1 and 0 < m["k_visual"] <= 1
        assert min(m["k_audio"], m["k_visual"]) < 1  # one modality dominated and was suppressed
    if fusion != "taaf":
        assert lines[-1]["alpha"] == [pytest.approx(1 / 3)] * 3  # baselines average time uniformly
    assert (tmp_path / "run" / "modalities.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_accuracy_halves_match_the_model(av_root, tmp_path):
    """acc_audio / acc_visual are the argmax accuracies of the classifier's halves on the test set."""
    from spikeport.train.checkpoint import load_weights
    from spikeport.train.loop import model_for

    config = av_config(av_root, epochs=1)
    history = train(config, tmp_path / "run", device="cpu")
    model = model_for(config)
    load_weights(model, load_checkpoint(tmp_path / "run" / "checkpoint.pt"), tmp_path / "run")
    model.eval()
    test = datasets.load("av-digits", av_root, "test", 3, options=OPTIONS)
    (audio, visual), labels = torch.utils.data.default_collate([test[i] for i in range(len(test))])
    with torch.no_grad():
        out = model(audio.transpose(0, 1), visual.transpose(0, 1))
    assert history[0]["acc_audio"] == pytest.approx((out.logits_audio.argmax(1) == labels).double().mean().item())
    assert history[0]["acc_visual"] == pytest.approx((out.logits_visual.argmax(1) == labels).double().mean().item())
    np.testing.assert_allclose(history[0]["alpha"], out.alpha_audio.mean(1).numpy(), atol=1e-5)


def test_resume_with_gradient_noise_equals_an_uninterrupted_run(av_root, tmp_path, request):
    """OGM-GE's noise is drawn from a generator seeded by (seed, epoch, step), so resuming replays it."""
    config = av_config(av_root, "ogm-ge", epochs=2)
    train(config, tmp_path / "whole", device="cpu")
    resume_normal_saving = request.getfixturevalue("interrupt_after_first_epoch")
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", device="cpu")
    resume_normal_saving()
    train(config, tmp_path / "cut", device="cpu", resume=True)
    whole, cut = (load_checkpoint(tmp_path / run / "checkpoint.pt") for run in ("whole", "cut"))
    for key, tensor in whole["model"].items():
        assert torch.equal(tensor, cut["model"][key]), key
    assert [m["k_audio"] for m in whole["metrics"]] == [m["k_audio"] for m in cut["metrics"]]


def test_models_and_datasets_must_agree_on_inputs(av_root, tmp_path):
    with pytest.raises(UserError, match="'spiking-cnn' takes one input; this dataset has inputs audio, visual"):
        train(config_from_dict({"model": {"name": "spiking-cnn"}, "data": {"name": "av-digits", "root": str(av_root), "options": OPTIONS}}), tmp_path / "a", device="cpu")
    with pytest.raises(UserError, match="'taaf-resnet' needs an audio-visual dataset"):
        train(config_from_dict({"model": {"name": "taaf-resnet"}, "data": {"name": "digits", "root": str(tmp_path / "d")}}), tmp_path / "b", device="cpu")
    with pytest.raises(UserError, match="model.fusion: must be one of taaf, concat, sum, ogm-ge, got 'late'"):
        train(av_config(av_root, "late"), tmp_path / "c", device="cpu")
    config = av_config(av_root)
    config.train.batch_augment = "cutmix"
    with pytest.raises(UserError, match="train.batch_augment: cutmix mixes images of one input; av-digits has several inputs"):
        train(config, tmp_path / "e", device="cpu")


@pytest.mark.parametrize("name", ["cremad", "ave"])
def test_the_real_dataset_configs_train_on_fixtures(name, tmp_path, cli, write_config):
    """configs/taaf-resnet18-{cremad,ave}.yaml, shrunk, train through the CLI on tiny fixtures
    written in OGM-GE's layout (tests/test_av_datasets.py)."""
    import yaml
    from test_av_datasets import write_ave, write_cremad

    (write_cremad if name == "cremad" else write_ave)(tmp_path / "data")
    config = yaml.safe_load(open(f"configs/taaf-resnet18-{name}.yaml"))
    config["model"].update(widths=[4, 8], blocks=1, key_size=4)
    config["data"].update(root=str(tmp_path / "data"), timesteps=2, batch_size=2)
    config["train"]["epochs"] = 1
    code, _, err = cli("train", write_config(config), "--out", tmp_path / "run")
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert {"acc_fused", "acc_audio", "acc_visual", "rho", "k_audio", "k_visual", "alpha"} <= set(metrics)


@pytest.mark.parametrize("causal", [False, True])
def test_a_small_taaf_model_goes_through_export_simulate_and_report(av_root, tmp_path, cli, causal):
    """Two inputs in NIR and ONNX; the fusion head is a host partition buffering all T steps, also
    with the causal mask: alpha_t averages the attention of every query, later ones included, so
    the read-out needs the whole sequence (the exporter measures it); the reference runtime
    through all partitions gives the trained model's fused logits."""
    from spikeport.export.manifest import read_manifest
    from spikeport.train.checkpoint import load_weights
    from spikeport.train.loop import model_for

    config = av_config(av_root, epochs=1, causal=causal)
    run = tmp_path / "run"
    train(config, run, device="cpu")
    code, _, err = cli("export", run, "--formats", "nir,onnx", "--quantize", "none")
    assert code == 0, err
    manifest = read_manifest(run / "export" / "manifest.json")
    assert [t.name for t in manifest.inputs] == ["audio", "visual"]
    head = [p for p in manifest.partitions if p.kind == "host"][-1]
    assert (head.causal, head.buffer_timesteps) == (False, 3)

    code, _, err = cli("simulate", run, "--backend", "reference", "--samples", "8")
    assert code == 0, err
    simulated = np.load(run / "sim" / "reference-float.npz")
    model = model_for(config)
    load_weights(model, load_checkpoint(run / "checkpoint.pt"), run)
    test = datasets.load("av-digits", av_root, "test", 3, options=OPTIONS)
    (audio, visual), _ = torch.utils.data.default_collate([test[i] for i in range(8)])
    with torch.no_grad():
        fused = model.eval()(audio.transpose(0, 1), visual.transpose(0, 1)).logits
    np.testing.assert_allclose(simulated["output"].mean(1), fused.numpy(), rtol=1e-4, atol=1e-4)
    assert {"spikes.neuromorphic1.audio_stages_0_lif1", "spikes.neuromorphic1.visual_stages_0_lif1"} <= set(simulated.files)

    code, _, err = cli("simulate", run, "--compare", "reference-float,onnx-float", "--samples", "8")
    assert code == 0 and "predictions agree on 100.0%" in err, err
    code, _, err = cli("report", run, "--samples", "8")
    assert code in (0, 3), err  # 3: some profile's fit check fails, which is a result, not an error
    report = (run / "report" / "report.md").read_text()
    assert f"| {head.name} | " in report and "| 3 | no |" in report


def test_cli_builds_av_digits_with_options_and_inspects_two_inputs(tmp_path, cli, monkeypatch, write_config):
    monkeypatch.setattr(av_digits, "speak", tone)
    code, _, err = cli("data", "build", "av-digits", "--out", tmp_path, "--option", "clips_per_digit=4", "--option", "visual_noise=0.25")
    assert code == 0, err
    assert (tmp_path / "av-digits" / "av-digits-v1-clips_per_digit=4-visual_noise=0.25.npz").is_file()
    code, _, err = cli("data", "build", "av-digits", "--out", tmp_path, "--option", "visual_noise")
    assert code == 2 and err.strip() == "spikeport: error: --option 'visual_noise': expected KEY=VALUE, e.g. visual_noise=0.8"
    config = write_config({"model": {"name": "taaf-resnet", "widths": [4, 8], "blocks": 1}, "data": {"name": "av-digits"}})
    code, out, err = cli("inspect", config, "--json")
    assert code == 0, err
    assert json.loads(out)["input_shape"] == {"audio": [1, 32, 32], "visual": [1, 32, 32]}
