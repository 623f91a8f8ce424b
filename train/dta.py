"""DTA: dual temporal-channel-wise attention on an MS-ResNet backbone (Kim, Kim and Yang, WACV 2025).

Follows the official code (github.com/MnJnKIM/DTA-SNN at ed74e95) as ../shared/methods-spec.md
section 1 transcribes it; the deviations are listed in docs/dta.md. Activations are [T, B, ...]
(the official code is batch-first); inside the attention, where T and C are reshaped together,
the layout is [B, T, C, H, W] so that the fused channel index is t*C + c, as in the official code.

    X = BN(conv(x))                   the encoder's current, real-valued
    S = LIF(X)
    DTA(X, S) = sigmoid(T_NA(X) * T_XA(X)) * S          one block, after the encoder, gating spikes

T-XA ("identical"): P = mean_{H,W}(X) [B, T, C];
    A = sigmoid(Conv1d(T -> T, k=3, 'same')(P))         T rows as conv channels, sliding over C
    Bm = sigmoid(Conv1d(C -> C, k=6, 'same')(P^T))^T     C rows as conv channels, sliding over T
    T_XA(X) = (X + s_t A) * (X + s_c Bm)                 s_t, s_c learnable scalars, init 1

T-NA ("non-identical"), on Xr = X as [B, T*C, H, W]:
    U = GELU(Conv1x1(Xr))
    LTCA(U) = Conv1x1(Conv_k1_dil3_dw(Conv5x5_dw(U)))    the dilated depthwise conv degenerates to
                                                         kernel 1 with the code's K=7 (spec 1.3)
    G = Linear(16 -> TC)(ReLU(Linear(TC -> 16)(GAP(U)))) no sigmoid; 16 = TC // max(TC // 16, 4)
    T_NA(X) = Conv1x1(G * LTCA(U) * U) + Xr

The causal variant (a config option) lets every output at timestep t see inputs at t' <= t only,
so the model can stream: each attention branch runs on T copies of its input, copy t with the
timesteps after t zeroed, and keeps timestep t of copy t. It has the same parameters and costs
T times the attention's arithmetic.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeport.train import layers
from spikeport.train.neuron import LIF


def causal_in_time(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """f applied to x [B, T, ...] so that output timestep t depends on input timesteps <= t only."""
    b, t = x.shape[:2]
    keep = torch.tril(torch.ones(t, t, device=x.device, dtype=x.dtype))  # copy i keeps timesteps <= i
    copies = keep.view(t, 1, t, *[1] * (x.dim() - 2)) * x.unsqueeze(0)  # [copy, B, T, ...]
    y = f(copies.flatten(0, 1)).unflatten(0, (t, b))
    return torch.stack([y[i, :, i] for i in range(t)], dim=1)


class TXA(nn.Module):
    """T-XA: temporal-channel cross attention from the spatial means, added to X in two branches."""

    def __init__(self, timesteps: int, channels: int):
        super().__init__()
        self.conv_over_channels = nn.Conv1d(timesteps, timesteps, 3, padding="same", bias=False)
        # Kernel 6 with the official 'same' padding: 2 steps before, 3 after (written out, which
        # also spares torch's warning about 'same' with an even kernel).
        self.conv_over_time = nn.Conv1d(channels, channels, 6, bias=False)
        self.scale_a = nn.Parameter(torch.ones(1))
        self.scale_b = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, T, C, H, W]."""
        p = x.mean((3, 4))
        a = torch.sigmoid(self.conv_over_channels(p))[..., None, None]
        b = torch.sigmoid(self.conv_over_time(F.pad(p.transpose(1, 2), (2, 3)))).transpose(1, 2)[..., None, None]
        return (x + self.scale_a * a) * (x + self.scale_b * b)


class TNA(nn.Module):
    """T-NA: local and global attention over the fused time-channel axis, with a residual."""

    def __init__(self, timesteps: int, channels: int, kernel_size: int = 7, dilation: int = 3):
        super().__init__()
        tc = timesteps * channels
        dw_kernel = 2 * dilation - 1
        dilated_kernel = kernel_size // dilation + ((kernel_size // dilation) % 2 - 1)
        hidden = tc // max(tc // 16, 4)
        self.proj_in = nn.Conv2d(tc, tc, 1)
        self.act = nn.GELU()
        self.local = nn.Sequential(
            OrderedDict(
                depthwise=nn.Conv2d(tc, tc, dw_kernel, padding=dw_kernel // 2, groups=tc),
                dilated=nn.Conv2d(tc, tc, dilated_kernel, padding=(dilated_kernel // 2) * dilation, dilation=dilation, groups=tc),
                pointwise=nn.Conv2d(tc, tc, 1),
            )
        )
        self.global_gate = nn.Sequential(nn.Linear(tc, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, tc, bias=False))
        self.proj_out = nn.Conv2d(tc, tc, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, T, C, H, W]."""
        xr = x.flatten(1, 2)
        u = self.act(self.proj_in(xr))
        g = self.global_gate(u.mean((2, 3)))[..., None, None]
        return (self.proj_out(g * self.local(u) * u) + xr).view_as(x)


class DTA(layers.TimeMixing):
    """sigmoid(T_NA(X) * T_XA(X)) * S, on [T, B, C, H, W] current X and spikes S."""

    def __init__(self, timesteps: int, channels: int, causal: bool = False, branches: str = "both"):
        super().__init__()
        self.causal = causal
        self.txa = TXA(timesteps, channels) if branches in ("both", "txa") else None
        self.tna = TNA(timesteps, channels) if branches in ("both", "tna") else None

    def attention(self, x: Tensor) -> Tensor:
        """The pre-sigmoid attention map of x [B, T, C, H, W]."""
        parts = [branch(x) for branch in (self.tna, self.txa) if branch is not None]
        return parts[0] if len(parts) == 1 else parts[0] * parts[1]

    def forward(self, x: Tensor, spikes: Tensor) -> Tensor:
        xb = x.transpose(0, 1)
        attention = causal_in_time(self.attention, xb) if self.causal else self.attention(xb)
        # The attention comes out [B, T]-major; the gate is computed in the spikes' memory layout,
        # the encoder's channels-last [T, B] one (memory order T, B, H, W, C), so that the gate, its
        # gradient and the residual stages work in one layout: 4-9% less CPU time per training step
        # of the benchmark's network in three paired comparisons (docs/train.md). The copy changes
        # no value, and exports to ONNX as two transposes.
        attention = attention.permute(1, 0, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        return torch.sigmoid(attention) * spikes


class BasicBlockMS(nn.Module):
    """Pre-activation residual block with a membrane shortcut: the sum is of currents, not spikes.

    out = BN(conv3x3(LIF(BN(conv3x3(LIF(x)))))) + shortcut(x), shortcut = x or BN(conv1x1(x)).
    """

    def __init__(self, in_channels: int, channels: int, stride: int, beta: float, threshold: float):
        super().__init__()
        self.lif1 = LIF(beta, threshold)
        self.conv1 = layers.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.bn1 = layers.BatchNorm2d(channels)
        self.lif2 = LIF(beta, threshold)
        self.conv2 = layers.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = layers.BatchNorm2d(channels)
        self.shortcut = layers.projection(in_channels, channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(self.lif1(x)))
        out = self.bn2(self.conv2(self.lif2(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


class MSResNetDTA(nn.Module):
    """Encoder conv + BN, LIF, the DTA block, residual stages, then LIF -> global pool -> linear per step.

    attention "none" is the official DTA_OFF baseline: no LIF after the encoder, the current goes
    to the residual stages."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        timesteps: int,
        stem_channels: int,
        stem_kernel: int,
        stem_stride: int,
        stages: list[tuple[int, int, int]],
        attention: str,
        causal: bool,
        beta: float,
        threshold: float,
    ):
        super().__init__()
        self.conv_in = layers.Conv2d(input_shape[0], stem_channels, stem_kernel, stem_stride, padding=stem_kernel // 2, bias=False)
        self.bn_in = layers.BatchNorm2d(stem_channels)
        self.dta = None if attention == "none" else DTA(timesteps, stem_channels, causal, attention)
        self.lif_in = None if self.dta is None else LIF(beta, threshold)
        blocks: list[nn.Module] = []
        channels = stem_channels
        for out_channels, count, stride in stages:
            for i in range(count):
                blocks.append(BasicBlockMS(channels, out_channels, stride if i == 0 else 1, beta, threshold))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.lif_out = LIF(beta, threshold)
        self.pool = layers.AdaptiveAvgPool2d(1)
        self.flatten = layers.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        current = self.bn_in(self.conv_in(x))
        # Without attention the blocks get the encoder's current, as the official DTA_OFF model
        # does (DTA_SNN.py, _forward_impl): their first LIF spikes on it, their shortcut adds it.
        y = current if self.dta is None else self.dta(current, self.lif_in(current))
        y = self.blocks(y)
        return self.fc(self.flatten(self.pool(self.lif_out(y))))


ATTENTION = ("both", "txa", "tna", "none")
DEPTHS = {
    18: [(128, 3, 1), (256, 3, 2), (512, 2, 2)],  # DTA_SNN_18, the CIFAR / DVS backbone
    34: [(64, 3, 1), (128, 4, 1), (256, 6, 2), (512, 3, 2)],  # DTA_SNN_34, ImageNet
}
