"""DTA on MS-ResNet: the official parameter counts, the attention's arithmetic, and causality."""

import json

import pytest
import torch
import torch.nn.functional as F

from spikeport.train.dta import DTA, causal_in_time
from spikeport.train.models import build_model, parameter_counts


@pytest.mark.parametrize(
    "depth, input_shape, classes, timesteps, total, dta",
    [
        (18, (3, 32, 32), 10, 6, 12_993_336, 491_246),  # CIFAR-10
        (18, (3, 32, 32), 100, 6, 13_039_506, 491_246),  # CIFAR-100
        (18, (2, 48, 48), 10, 10, 13_795_512, 1_293_998),  # CIFAR10-DVS
        (34, (3, 224, 224), 1000, 6, 22_288_918, 491_246),  # ImageNet, DTA_SNN_34
    ],
)
def test_official_parameter_counts(depth, input_shape, classes, timesteps, total, dta):
    """The counts measured with the official code (methods-spec 1.4)."""
    model = build_model({"name": "dta-msresnet", "depth": depth}, input_shape, classes, timesteps)
    counts = parameter_counts(model)
    assert sum(counts.values()) == total
    assert counts["dta"] == dta


def test_branch_parameter_counts():
    model = build_model({"name": "dta-msresnet"}, (3, 32, 32), 10, 6)
    assert sum(p.numel() for p in model.dta.tna.parameters()) == 466_560
    assert sum(p.numel() for p in model.dta.txa.parameters()) == 24_686
    for attention, dta in (("txa", 24_686), ("tna", 466_560), ("none", 0)):
        counts = parameter_counts(build_model({"name": "dta-msresnet", "attention": attention}, (3, 32, 32), 10, 6))
        assert counts.get("dta", 0) == dta


def official_dta(block: DTA, x_bt, s_bt):
    """methods-spec 1.3 written out batch-first, op by op, with the block's weights."""
    b, t, c, h, w = x_bt.shape
    txa, tna = block.txa, block.tna
    # T-XA
    p = x_bt.mean((3, 4))  # [B, T, C]
    a = torch.sigmoid(F.conv1d(p, txa.conv_over_channels.weight, padding="same"))
    pad = F.pad(p.transpose(1, 2), (2, 3))  # even kernel 6, 'same': 2 left, 3 right
    bm = torch.sigmoid(F.conv1d(pad, txa.conv_over_time.weight)).transpose(1, 2)
    t_xa = (x_bt + txa.scale_a * a[..., None, None]) * (x_bt + txa.scale_b * bm[..., None, None])
    # T-NA on channel index t * C + c
    xr = x_bt.reshape(b, t * c, h, w)
    u = F.gelu(tna.proj_in(xr))
    assert tna.local.dilated.kernel_size == (1, 1)  # K=7 makes the dilated conv a per-channel scale
    local = tna.local.pointwise(tna.local.dilated(tna.local.depthwise(u)))
    assert tna.global_gate[0].out_features == 16
    g = tna.global_gate(u.mean((2, 3)))[..., None, None]
    t_na = (tna.proj_out(g * local * u) + xr).reshape(b, t, c, h, w)
    return torch.sigmoid(t_na * t_xa) * s_bt


def test_dta_block_equals_the_written_definition():
    torch.manual_seed(0)
    block = DTA(timesteps=6, channels=64).eval()
    for parameter in block.parameters():  # make every weight matter
        parameter.data.normal_(0, 0.2)
    x = torch.randn(6, 2, 64, 5, 5)  # [T, B, C, H, W]
    s = (torch.rand_like(x) < 0.3).float()
    with torch.no_grad():
        got = block(x, s)
        want = official_dta(block, x.transpose(0, 1), s.transpose(0, 1)).transpose(0, 1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert got[s == 0].abs().max() == 0, "the attention gates spikes: no spike, no output"


def depends_on_future(model, x, t):
    """Whether outputs before timestep t change when inputs from t on change."""
    y = model(x)
    changed = x.clone()
    changed[t:] = torch.randn_like(changed[t:])
    return not torch.allclose(model(changed)[:t], y[:t], atol=1e-6)


@pytest.mark.parametrize("attention", ["both", "txa", "tna"])
def test_causal_variant_streams(attention):
    torch.manual_seed(0)
    config = {"name": "dta-msresnet", "stem_channels": 8, "stages": [[8, 1, 1]], "attention": attention}
    plain = build_model(config, (1, 8, 8), 10, 5).eval()
    causal = build_model({**config, "causal": True}, (1, 8, 8), 10, 5).eval()
    causal.load_state_dict(plain.state_dict())  # the same parameters
    with torch.no_grad():
        for t in (1, 3):
            assert not depends_on_future(lambda v: causal.dta(v, torch.ones_like(v)), torch.randn(5, 2, 8, 4, 4), t)
            assert depends_on_future(lambda v: plain.dta(v, torch.ones_like(v)), torch.randn(5, 2, 8, 4, 4), t)


def test_causal_in_time_is_exact_for_causal_functions():
    x = torch.randn(3, 4, 6)
    cumulative = lambda v: v.cumsum(1)  # noqa: E731 - already causal along dim 1
    torch.testing.assert_close(causal_in_time(cumulative, x), cumulative(x))


def test_inspect_small_config(cli):
    code, out, _ = cli("inspect", "configs/dta-small-digits.yaml", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["timesteps"] == 4 and summary["modules"]["dta"] > 0
    assert summary["total_params"] == sum(summary["modules"].values())


@pytest.mark.parametrize("causal, buffer", [(False, 4), (True, 0)])
def test_dta_deploys_with_the_gate_on_the_host(causal, buffer, tmp_path):
    """NIR partitions before and after the DTA gate, the gate in ONNX on the host; the reference
    runtime running them in order gives the torch model's logits. The non-causal gate must buffer
    all T timesteps, the causal one none."""
    import numpy as np

    from spikeport.export.exporter import export_model
    from spikeport.export.manifest import read_manifest
    from spikeport.runtime.simulate import simulate

    torch.manual_seed(0)
    config = {"name": "dta-msresnet", "stem_channels": 8, "stages": [[16, 1, 1], [32, 1, 2]], "causal": causal}
    model = build_model(config, (1, 8, 8), 10, 4).eval()
    export = export_model(model, (1, 8, 8), 4, tmp_path / "export", formats=("nir", "onnx"))
    manifest = read_manifest(export / "manifest.json")
    assert [p.kind for p in manifest.partitions] == ["neuromorphic", "host", "neuromorphic"]
    host = manifest.partitions[1]
    assert host.buffer_timesteps == buffer and host.causal == (buffer == 0) and host.macs_per_sample > 0
    assert {t.kind for t in host.inputs} == {"graded", "spike"}  # the encoder's current and its spikes

    x = torch.rand(6, 4, 1, 8, 8) * 3
    np.savez(tmp_path / "in.npz", input=x.numpy())
    got = np.load(simulate(export / "manifest.json", input_file=tmp_path / "in.npz", out=tmp_path).path)
    with torch.no_grad():
        want = model(x.transpose(0, 1)).transpose(0, 1).numpy()
    assert np.abs(got["output"] - want).max() < 1e-4
    assert sum(got[k].sum() for k in got.files if k.startswith("spikes.")) > 0


@pytest.mark.parametrize("causal, buffer", [(False, 4), (True, 0)])
def test_dta_report_shows_the_gates_buffer_and_what_each_chip_cannot_hold(causal, buffer, cli, tmp_path):
    """`spikeport report` on a DTA export: the layers of both chip partitions, the gate as a host
    partition buffering T timesteps (none when causal), and per chip whether the rest fits."""
    import json

    import numpy as np

    from spikeport.export.exporter import export_model

    torch.manual_seed(0)
    config = {"name": "dta-msresnet", "stem_channels": 8, "stages": [[16, 1, 1], [32, 1, 2]], "causal": causal}
    model = build_model(config, (1, 8, 8), 10, 4).eval()
    export = export_model(model, (1, 8, 8), 4, tmp_path / "export", formats=("nir", "onnx"))
    np.savez(tmp_path / "in.npz", input=3 * torch.rand(5, 4, 1, 8, 8).numpy())
    code, _, err = cli("report", export / "manifest.json", "--input", tmp_path / "in.npz", "--profiles", "loihi2,xylo-audio2", "--out", tmp_path)
    assert code == 3, err  # Xylo cannot hold convolutions
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [(h["name"], h["buffer_timesteps"], h["causal"]) for h in report["host"]] == [("host0", buffer, causal)]
    assert report["host"][0]["macs"] > 0
    names = [layer["name"] for layer in report["layers"]]
    assert "neuromorphic0.conv_in" in names and "neuromorphic1.blocks_1_shortcut_0" in names and "neuromorphic1.fc" in names
    loihi2 = report["profiles"]["loihi2"]  # every chip layer fits; the gate is named as what runs on the host
    assert [(v["layer"], v["constraint"]) for v in loihi2["violations"]] == [("host0", "host_partition")]
    xylo = report["profiles"]["xylo-audio2"]
    assert xylo["fits"] is False and "layer_type" in {v["constraint"] for v in xylo["violations"]}


def test_no_attention_is_the_official_dta_off_the_current_goes_to_the_stages():
    """DTA_SNN.py's DTA_OFF: x = input_conv(x); x = layer1(x): no LIF after the encoder, so the
    first block receives the real-valued BN current (not spikes) and its shortcut adds it."""
    torch.manual_seed(0)
    model = build_model({"name": "dta-msresnet", "stem_channels": 8, "stages": [[16, 1, 2]], "attention": "none"}, (2, 16, 16), 10, 4)
    assert model.dta is None and model.lif_in is None
    seen = {}
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.setdefault("input", args[0]))
    x = torch.rand(4, 3, 2, 16, 16) * 3
    model.eval()(x)
    current = model.bn_in(model.conv_in(x))
    torch.testing.assert_close(seen["input"], current)
    assert not torch.all((seen["input"] == 0) | (seen["input"] == 1)), "real-valued, not spikes"


def test_parameter_matched_control_has_dtas_count_without_attention():
    """experiments/dta_temporal.py widens DTA_OFF's first stage until it has DTA's parameters."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "experiments" / "dta_temporal.py"
    import sys

    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location("dta_temporal", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    from spikeport.config import load_config

    base = load_config(Path(__file__).parents[1] / module.CONFIG).to_dict()
    dta = module.parameters(base | {"model": base["model"] | {"attention": "both"}})
    off = module.parameters(base | {"model": base["model"] | {"attention": "none"}})
    control = module.matched(base)
    matched = module.parameters(control)
    assert control["model"]["attention"] == "none" and off < dta <= matched
    assert (matched - dta) / dta < 0.02, (dta, matched)  # within 2% of DTA's count
