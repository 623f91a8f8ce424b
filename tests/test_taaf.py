"""TAAF's model and losses: attention weights, decomposed classifier, OGM-GE's coefficients."""

import math

import pytest
import torch

from spikeport.train.taaf import AudioVisualSNN, TemporalAttention, av_loss, modulate_gradients, modulation_coefficients


def tiny(fusion="taaf", attention="timestep", causal=False, t_audio=4, t_visual=4):
    torch.manual_seed(0)
    return AudioVisualSNN((1, 16, 16), (3, 16, 16), 5, t_audio, t_visual, [8, 16], 1, fusion, attention, causal, 8, 0.5, 0.5)


def inputs(t_audio=4, t_visual=4, batch=6):
    g = torch.Generator().manual_seed(1)
    return torch.rand(t_audio, batch, 1, 16, 16, generator=g) * 4, torch.rand(t_visual, batch, 3, 16, 16, generator=g) * 4


@pytest.mark.parametrize("fusion", ["taaf", "concat", "sum", "ogm-ge"])
def test_shapes_and_decomposed_logits(fusion):
    model = tiny(fusion)
    out = model(*inputs())
    assert out.logits.shape == (6, 5) and out.step_logits_audio.shape == (4, 6, 5)
    torch.testing.assert_close(out.logits, out.logits_audio + out.logits_visual)  # halves with b/2 each
    torch.testing.assert_close(out.alpha_audio.sum(0), torch.ones(6))


def test_time_alignment_starts_as_identity_and_maps_ta_to_tv():
    model = tiny()
    assert torch.equal(model.head.align.weight[..., 0], torch.eye(4))
    model = tiny(t_audio=6, t_visual=3)
    out = model(*inputs(6, 3))
    assert out.step_logits_audio.shape[0] == 3


def test_attention_weights():
    torch.manual_seed(0)
    attention = TemporalAttention(10, 4, causal=False)
    f = torch.randn(5, 3, 10)
    alpha = attention(f)
    fb = f.transpose(0, 1)
    scores = attention.query(fb) @ attention.key(fb).transpose(1, 2) / 2  # sqrt(d_k = 4)
    torch.testing.assert_close(alpha, scores.softmax(-1).mean(1).T)
    causal = TemporalAttention(10, 4, causal=True)
    causal.load_state_dict(attention.state_dict())
    a = causal(f)
    masked = scores.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(a, masked.softmax(-1).mean(1).T)
    # Only query 4 may attend to timestep 4; query 0 attends to timestep 0 alone.
    torch.testing.assert_close(a[4], masked.softmax(-1)[:, 4, 4] / 5)
    torch.testing.assert_close(a.sum(0), torch.ones(3))


def test_modulation_coefficients_by_hand():
    from spikeport.train.taaf import AVOutput

    y = torch.tensor([0, 1])
    la = torch.tensor([[4.0, 0.0], [0.0, 4.0]])  # audio confident and right
    lv = torch.zeros(2, 2)  # visual at chance
    out = AVOutput(la + lv, la, lv, la[None], lv[None], torch.ones(1, 2), torch.ones(1, 2))
    rho, k_a, k_v = modulation_coefficients(out, y, alpha=0.8)
    p = math.exp(4) / (math.exp(4) + 1)
    assert rho == pytest.approx(2 * p / 1.0)
    assert k_a == pytest.approx(1 - math.tanh(0.8 * rho)) and k_v == 1.0  # only the dominant one is suppressed
    loss = av_loss(out, y, "taaf", beta=1.0, modulation="loss", k_audio=k_a, k_visual=k_v)
    ce = torch.nn.functional.cross_entropy
    assert loss.item() == pytest.approx((k_a * ce(la, y) + ce(lv, y) + ce(la + lv, y)).item())
    baseline = av_loss(out, y, "concat", 1.0, "loss", k_a, k_v)
    assert baseline.item() == pytest.approx(ce(la + lv, y).item())


def test_attention_and_coefficients_are_detached_and_gradient_modulation_scales_the_dominant_encoder():
    model = tiny()
    out = model(*inputs())
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    loss = av_loss(out, y, "taaf", beta=1.0, modulation="gradient", k_audio=0.25, k_visual=1.0)
    loss.backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    modulate_gradients(model, 0.25, 1.0, noise=False)
    conv = "audio.stem.0.weight"
    torch.testing.assert_close(dict(model.named_parameters())[conv].grad, 0.25 * before[conv])
    torch.testing.assert_close(dict(model.named_parameters())["visual.stem.0.weight"].grad, before["visual.stem.0.weight"])
    assert model.head.attention.query.weight.grad is not None  # the fused loss trains the attention


@pytest.mark.parametrize("fusion, attention", [("taaf", "timestep"), ("taaf", "modality"), ("concat", "timestep"), ("sum", "timestep")])
def test_deployed_step_logits_average_to_the_fused_logits(fusion, attention):
    """The exported model reads out per timestep; the mean over T must be the trained fused logits."""
    from spikeport.train.taaf import DeployedAV

    model = tiny(fusion=fusion, attention=attention).eval()
    audio, visual = inputs()
    with torch.no_grad():
        fused = model(audio, visual).logits
        steps = DeployedAV(model)(audio, visual)
    assert steps.shape == (4, 6, 5)
    torch.testing.assert_close(steps.mean(0), fused, rtol=1e-5, atol=1e-5)


def test_ogm_ge_adds_noise_to_both_encoders_as_its_code_does():
    """OGM-GE's main.py: in the modulation window every 4-D gradient of both encoders gets
    N(0, std(g)); the suppressed one is scaled by k first, the other (k = 1) is not scaled."""
    model = tiny("ogm-ge")
    out = model(*inputs())
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    av_loss(out, y, "ogm-ge", 1.0, "loss", 1.0, 1.0).backward()
    params = dict(model.named_parameters())
    before = {n: p.grad.clone() for n, p in params.items() if p.grad is not None}
    modulate_gradients(model, 0.25, 1.0, noise=True, generator=torch.Generator().manual_seed(0))
    for name in ("audio.stem.0.weight", "visual.stem.0.weight"):
        scale = 0.25 if name.startswith("audio") else 1.0
        noise = params[name].grad - scale * before[name]
        assert noise.abs().max() > 0, f"{name}: no noise added"
        assert noise.std().item() == pytest.approx(before[name].std().item(), rel=0.5)
    torch.testing.assert_close(params["head.fc.weight"].grad, before["head.fc.weight"])  # 2-D: untouched


def test_ogm_ge_modulates_only_in_its_epoch_window():
    from spikeport.train.taaf import modulates_in

    model = tiny("ogm-ge")
    assert all(modulates_in(model, e) for e in (0, 50, 99))  # no window: every epoch
    model.modulation_window = (0, 50)  # OGM-GE's modulation_starts / modulation_ends
    assert modulates_in(model, 0) and modulates_in(model, 50) and not modulates_in(model, 51)


def test_uniform_attention_arm_has_no_attention_but_keeps_the_unimodal_losses():
    model = tiny("taaf", attention="uniform")
    assert not hasattr(model.head, "attention")
    out = model(*inputs())
    torch.testing.assert_close(out.alpha_audio, torch.full((4, 6), 0.25))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    fused_only = av_loss(out, y, "concat", 1.0, "loss", 1.0, 1.0)
    assert av_loss(out, y, "taaf", 1.0, "loss", 1.0, 1.0) > fused_only  # + L_a + L_v, k = 1


def test_ogm_ge_config_is_the_official_recipe():
    """configs/taaf-resnet18-cremad-ogmge.yaml: OGM-GE's main.py defaults (SGD 1e-3, momentum 0.9,
    weight decay 1e-4, StepLR(70, 0.1), 100 epochs, batch 64, alpha 0.8 for CREMA-D, modulation in
    epochs 0-50), which the training loop turns into that optimiser and schedule."""
    from pathlib import Path

    from spikeport.config import load_config
    from spikeport.train import loop

    config = load_config(Path(__file__).parents[1] / "configs" / "taaf-resnet18-cremad-ogmge.yaml")
    t = config.train
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.schedule, t.step_size, t.epochs) == ("sgd", 1e-3, 0.9, 1e-4, "step", 70, 100)
    assert config.data.batch_size == 64 and config.model["fusion"] == "ogm-ge"
    assert config.model["modulation_window"] == [0, 50] and config.model["modulation_alpha"] == 0.8
    optimizer = loop._make_optimizer(config, torch.nn.Linear(2, 2))
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["weight_decay"] == 1e-4
