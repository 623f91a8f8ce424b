"""TAAF: temporal-attention-guided adaptive fusion for imbalanced audio-visual spiking networks.

Shen et al., ACM MM 2025 (arXiv 2505.14535). The paper's body and code are not available; this
is the design of ../shared/methods-spec.md section 2.3, built on OGM-GE's confirmed machinery
(section 2.1), with its listed ambiguities as options. Activations are [T, B, ...].

    f_a, f_v = audio and visual spiking ResNet18 features after global pooling     [T, B, D]
    f_a = align(f_a)                       Conv1d over time (T_a -> T_v, k=1), identity at start
    F_t = [f_a,t ; f_v,t]                  [T, B, 2D]
    A = softmax(Q K^T / sqrt(d_k)),  Q = F W_q,  K = F W_k                          [B, T, T]
    alpha_t = mean_q A[:, q, t]            importance of timestep t, sums to 1 over t
    z = sum_t alpha_t F_t;  o = W_f z + b,  W_f = [W_a | W_v]                      fused logits
    o_u = W_u z_u + b / 2                  per-modality logits from the classifier's halves

    rho = sum_i softmax(o_a)[y_i] / sum_i softmax(o_v)[y_i]
    k_a = 1 - tanh(alpha rho) if rho > 1 else 1;   k_v = 1 - tanh(alpha / rho) if rho < 1 else 1
    L_u = sum_t alpha_t CE(W_u f_u,t + b / 2, y);  L = beta (k_a L_a + k_v L_v) + CE(o, y)

alpha (the attention) and k are detached, as OGM-GE detaches its coefficients. Options:
`modulation` "loss" (the formula above, default) or "gradient" (OGM-GE-style: the dominant
encoder's gradients scaled by k, plus Gaussian noise with "gradient-ge"); `attention`
"timestep" (over fused timesteps, default), "modality" (one Q/K head per modality, each
modality's own alpha) or "uniform" (alpha_t = 1/T: the ablation that keeps the unimodal losses
and k but has no attention); `causal` (a causal mask: each query attends to timesteps at or before its
own; alpha_t still averages every query, later ones included, so the read-out still needs all T
steps when deployed). Baseline fusions, trained on the fused cross-entropy alone: "concat", "sum" (OGM-GE's
ConcatFusion / SumFusion on time-averaged features) and "ogm-ge" (concat fusion with OGM-GE's
gradient modulation, the official recipe: noise on both encoders' conv gradients, only in the
epochs of `modulation_window`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeport.train import layers
from spikeport.train.neuron import LIF

FUSIONS = ("taaf", "concat", "sum", "ogm-ge")
MODULATIONS = ("loss", "gradient", "gradient-ge")
ATTENTIONS = ("timestep", "modality", "uniform")


class SpikingBasicBlock(nn.Module):
    """ResNet BasicBlock with ReLU replaced by LIF: LIF(BN(conv(LIF(BN(conv(x))))) + shortcut(x))."""

    def __init__(self, in_channels: int, channels: int, stride: int, beta: float, threshold: float):
        super().__init__()
        self.conv1 = layers.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.bn1 = layers.BatchNorm2d(channels)
        self.lif1 = LIF(beta, threshold)
        self.conv2 = layers.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = layers.BatchNorm2d(channels)
        self.shortcut = layers.projection(in_channels, channels, stride)
        self.lif2 = LIF(beta, threshold)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.lif1(self.bn1(self.conv1(x)))))
        return self.lif2(out + (x if self.shortcut is None else self.shortcut(x)))


class SpikingResNet(nn.Module):
    """OGM-GE's ResNet18 topology (7x7/2 stem, 3x3/2 max pool, 2-2-2-2 basic blocks) with LIF
    neurons and batch norm over T*B; `widths` shrinks it. Returns pooled features [T, B, D]."""

    def __init__(self, in_channels: int, widths: list[int], blocks: int, beta: float, threshold: float):
        super().__init__()
        self.stem = nn.Sequential(
            layers.Conv2d(in_channels, widths[0], 7, 2, padding=3, bias=False),
            layers.BatchNorm2d(widths[0]),
            LIF(beta, threshold),
            layers.MaxPool2d(3, 2, padding=1),
        )
        stages, channels = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(blocks):
                stages.append(SpikingBasicBlock(channels, width, 2 if (i and not j) else 1, beta, threshold))
                channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = layers.AdaptiveAvgPool2d(1)
        self.flatten = layers.Flatten()
        self.features = channels

    def forward(self, x: Tensor) -> Tensor:
        return self.flatten(self.pool(self.stages(self.stem(x))))


class TemporalAttention(nn.Module):
    """alpha_t = mean over queries of softmax(Q K^T / sqrt(d_k)): how much each timestep matters."""

    def __init__(self, features: int, key_size: int, causal: bool):
        super().__init__()
        self.query = nn.Linear(features, key_size, bias=False)
        self.key = nn.Linear(features, key_size, bias=False)
        self.causal = causal

    def forward(self, f: Tensor) -> Tensor:
        """f: [T, B, D] -> alpha [T, B] (sums to 1 over T)."""
        fb = f.transpose(0, 1)
        scores = self.query(fb) @ self.key(fb).transpose(1, 2) / math.sqrt(self.query.out_features)
        if self.causal:  # query q attends to keys t <= q
            steps = f.shape[0]
            scores = scores.masked_fill(torch.ones(steps, steps, dtype=torch.bool, device=f.device).triu(1), float("-inf"))
        return scores.softmax(-1).mean(1).transpose(0, 1)


@dataclass
class AVOutput:
    """What an audio-visual model returns; the loss and the metrics need all of it."""

    logits: Tensor  # fused [B, K]
    logits_audio: Tensor  # [B, K], from the classifier's audio half (OGM-GE's unimodal accuracy)
    logits_visual: Tensor  # [B, K]
    step_logits_audio: Tensor  # [T, B, K] per timestep, for L_a
    step_logits_visual: Tensor  # [T, B, K]
    alpha_audio: Tensor  # [T, B] timestep importance weighting L_a (uniform for the baselines)
    alpha_visual: Tensor  # [T, B]


class FusionHead(layers.TimeMixing):
    """Time alignment, temporal attention and the decomposed classifier: everything after the two
    encoders. It weighs all T timesteps at once, so it is one host operation when deployed
    (layers.TimeMixing); with `causal` each query sees only the timesteps up to its own."""

    def __init__(self, features: int, num_classes: int, timesteps_audio: int, timesteps_visual: int, fusion: str, attention: str, causal: bool, key_size: int):
        super().__init__()
        self.fusion, self.attention_mode = fusion, attention
        self.align = nn.Conv1d(timesteps_audio, timesteps_visual, 1, bias=False)
        with torch.no_grad():  # identity when T_a == T_v, else an even spread over time
            self.align.weight.copy_(torch.eye(timesteps_visual, timesteps_audio)[..., None] if timesteps_audio == timesteps_visual else torch.full_like(self.align.weight, 1 / timesteps_audio))
        if fusion == "taaf" and attention != "uniform":
            if attention == "timestep":
                self.attention = TemporalAttention(2 * features, key_size, causal)
            else:
                self.attention_audio = TemporalAttention(features, key_size, causal)
                self.attention_visual = TemporalAttention(features, key_size, causal)
        if fusion == "sum":
            self.fc_audio, self.fc_visual = nn.Linear(features, num_classes), nn.Linear(features, num_classes)
        else:
            self.fc = nn.Linear(2 * features, num_classes)

    def _halves(self, audio: Tensor, visual: Tensor) -> tuple[Tensor, Tensor]:
        """Per-modality logits from the classifier's halves, each with half the bias (OGM-GE)."""
        if self.fusion == "sum":
            return self.fc_audio(audio), self.fc_visual(visual)
        d = audio.shape[-1]
        w, b = self.fc.weight, self.fc.bias
        return audio @ w[:, :d].T + b / 2, visual @ w[:, d:].T + b / 2

    def _aligned_and_weights(self, f_a: Tensor, f_v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(aligned f_a [T, B, D], alpha_audio [T, B], alpha_visual [T, B])."""
        f_a = self.align(f_a.transpose(0, 1)).transpose(0, 1)
        if self.fusion == "taaf" and self.attention_mode == "timestep":
            alpha_a = alpha_v = self.attention(torch.cat([f_a, f_v], -1))
        elif self.fusion == "taaf" and self.attention_mode == "modality":
            alpha_a, alpha_v = self.attention_audio(f_a), self.attention_visual(f_v)
        else:
            alpha_a = alpha_v = torch.ones_like(f_v[..., 0]) / f_v.shape[0]
        return f_a, alpha_a, alpha_v

    def forward(self, f_a: Tensor, f_v: Tensor) -> AVOutput:
        """f_a [T_a, B, D] and f_v [T_v, B, D], the encoders' pooled features."""
        f_a, alpha_a, alpha_v = self._aligned_and_weights(f_a, f_v)
        z_a, z_v = (alpha_a[..., None] * f_a).sum(0), (alpha_v[..., None] * f_v).sum(0)
        logits_a, logits_v = self._halves(z_a, z_v)
        step_a, step_v = self._halves(f_a, f_v)
        return AVOutput(logits_a + logits_v, logits_a, logits_v, step_a, step_v, alpha_a, alpha_v)

    def step_logits(self, f_a: Tensor, f_v: Tensor) -> Tensor:
        """[T, B, K] logits per timestep whose mean over T is the fused logits: T alpha_t W F_t + b.
        This keeps the deployed model's contract (a read-out per timestep, averaged)."""
        f_a, alpha_a, alpha_v = self._aligned_and_weights(f_a, f_v)
        steps = f_v.shape[0]
        step_a, step_v = self._halves(steps * alpha_a[..., None] * f_a, steps * alpha_v[..., None] * f_v)
        return step_a + step_v


class AudioVisualSNN(nn.Module):
    """Two spiking ResNets and a fusion head (TAAF or a baseline)."""

    def __init__(
        self,
        audio_shape: tuple[int, ...],
        visual_shape: tuple[int, ...],
        num_classes: int,
        timesteps_audio: int,
        timesteps_visual: int,
        widths: list[int],
        blocks: int,
        fusion: str,
        attention: str,
        causal: bool,
        key_size: int,
        beta: float,
        threshold: float,
        modulation: str = "loss",
        modulation_alpha: float = 0.8,
        unimodal_weight: float = 1.0,
        modulation_window: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.fusion = fusion
        # How this model is trained (the loop reads them): see av_loss and modulate_gradients.
        self.modulation, self.modulation_alpha, self.unimodal_weight = modulation, modulation_alpha, unimodal_weight
        self.modulation_window = modulation_window
        self.audio = SpikingResNet(audio_shape[0], widths, blocks, beta, threshold)
        self.visual = SpikingResNet(visual_shape[0], widths, blocks, beta, threshold)
        self.head = FusionHead(self.audio.features, num_classes, timesteps_audio, timesteps_visual, fusion, attention, causal, key_size)

    def forward(self, audio: Tensor, visual: Tensor) -> AVOutput:
        return self.head(self.audio(audio), self.visual(visual))


class DeployedAV(nn.Module):
    """An AudioVisualSNN as the exporter sees it: two inputs in, logits per timestep out (their
    mean is the fused logits), the fusion head one host operation (`HeadStepLogits`)."""

    def __init__(self, model: AudioVisualSNN):
        super().__init__()
        self.audio, self.visual, self.head = model.audio, model.visual, HeadStepLogits(model.head)

    def forward(self, audio: Tensor, visual: Tensor) -> Tensor:
        return self.head(self.audio(audio), self.visual(visual))


class HeadStepLogits(layers.TimeMixing):
    """FusionHead.step_logits as a module, so that tracing keeps the head one node."""

    def __init__(self, head: FusionHead):
        super().__init__()
        self.fusion = head

    def forward(self, f_a: Tensor, f_v: Tensor) -> Tensor:
        return self.fusion.step_logits(f_a, f_v)


def modality_scores(out: AVOutput, y: Tensor) -> tuple[float, float]:
    """OGM-GE's scores: sum over the batch of each modality's softmax probability of the label.
    Plain numbers, so processes can add them up for the whole global batch."""
    with torch.no_grad():
        score_a = out.logits_audio.softmax(1).gather(1, y[:, None]).sum()
        score_v = out.logits_visual.softmax(1).gather(1, y[:, None]).sum()
    return float(score_a), float(score_v)


def coefficients(score_audio: float, score_visual: float, alpha: float) -> tuple[float, float, float]:
    """(rho, k_audio, k_visual): the contribution ratio and the suppression of the dominant
    modality only; plain numbers, so no gradient flows through them."""
    rho = score_audio / max(score_visual, 1e-12)
    k_a = 1 - math.tanh(alpha * rho) if rho > 1 else 1.0
    k_v = 1 - math.tanh(alpha / rho) if rho < 1 else 1.0
    return rho, k_a, k_v


def modulation_coefficients(out: AVOutput, y: Tensor, alpha: float) -> tuple[float, float, float]:
    """(rho, k_audio, k_visual) of one batch."""
    return coefficients(*modality_scores(out, y), alpha)


def unimodal_loss(step_logits: Tensor, alpha: Tensor, y: Tensor) -> Tensor:
    """sum_t alpha_t CE(step logits_t, y), alpha detached, averaged over the batch."""
    steps = step_logits.shape[0]
    ce = F.cross_entropy(step_logits.flatten(0, 1), y.repeat(steps), reduction="none").view(steps, -1)
    return (alpha.detach() * ce).sum(0).mean()


def av_loss(out: AVOutput, y: Tensor, fusion: str, beta: float, modulation: str, k_audio: float, k_visual: float) -> Tensor:
    """TAAF: L = beta (k_a L_a + k_v L_v) + L_f with loss modulation; with gradient modulation the
    unimodal terms are unweighted and k is applied to the encoders' gradients instead. The
    baselines: L_f alone."""
    fused = F.cross_entropy(out.logits, y)
    if fusion != "taaf":
        return fused
    weights = (k_audio, k_visual) if modulation == "loss" else (1.0, 1.0)
    loss_a = unimodal_loss(out.step_logits_audio, out.alpha_audio, y)
    loss_v = unimodal_loss(out.step_logits_visual, out.alpha_visual, y)
    return beta * (weights[0] * loss_a + weights[1] * loss_v) + fused


def gradient_noise(model: AudioVisualSNN) -> bool | None:
    """How `model` modulates gradients: None (it does not), False (OGM) or True (OGM-GE's noise)."""
    if model.fusion == "ogm-ge":
        return True
    if model.fusion == "taaf" and model.modulation != "loss":
        return model.modulation == "gradient-ge"
    return None


def modulates_in(model: AudioVisualSNN, epoch: int) -> bool:
    """Whether gradients are modulated in `epoch` (0-based): OGM-GE's code modulates while
    modulation_starts <= epoch <= modulation_ends (0 and 50 by default), not after."""
    window = model.modulation_window
    return window is None or window[0] <= epoch <= window[1]


def modulate_gradients(model: AudioVisualSNN, k_audio: float, k_visual: float, noise: bool, generator: torch.Generator | None = None) -> None:
    """OGM(-GE): scale the conv weight gradients of each encoder by its k (after backward, before
    the optimizer step); with `noise`, add N(0, std of the original gradient) to both encoders'
    conv gradients, the suppressed one and the other (k = 1), as OGM-GE's main.py does."""
    for encoder, k in ((model.audio, k_audio), (model.visual, k_visual)):
        if k == 1.0 and not noise:
            continue
        for p in encoder.parameters():
            if p.grad is None or p.dim() != 4:
                continue
            std = p.grad.std().item() + 1e-8
            p.grad.mul_(k)
            if noise:
                p.grad.add_(torch.randn(p.grad.shape, generator=generator, device=p.grad.device) * std)
