"""The reference the multi-step engine is measured against: snnTorch's `Leaky`, one timestep at a time.

`stepwise_snntorch(model)` returns a copy of a spikeport model, with the same weights, as an
snnTorch user would write it: plain torch layers (nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d,
nn.Flatten, nn.Linear) and, for every `LIF`, an `snn.Leaky(beta, threshold,
reset_mechanism="zero", reset_delay=False)` with the same triangle surrogate; its forward pass
calls the whole network once per timestep on [B, ...]. Tests use it to prove the fast engine exact; the
training-step benchmark uses it as the baseline.

Batch norm in training mode sees T*B samples in the engine but only B per step here, so compare
the two with batch norm in eval mode.
"""

from __future__ import annotations

import copy

import snntorch as snn
import torch
from torch import Tensor, nn

from spikeport.train import layers
from spikeport.train.neuron import LIF, heaviside, triangle_surrogate


class _TriangleSpike(torch.autograd.Function):
    """snnTorch spike_grad: Heaviside forward, the engine's triangle surrogate backward."""

    @staticmethod
    def forward(ctx, v: Tensor) -> Tensor:
        ctx.save_for_backward(v)
        return heaviside(v)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (v,) = ctx.saved_tensors
        return grad * triangle_surrogate(v)


class SnnTorchLIF(nn.Module):
    """snnTorch's Leaky with the project's neuron settings; keeps its membrane between calls."""

    def __init__(self, beta: float, threshold: float):
        super().__init__()
        self.leaky = snn.Leaky(
            beta=beta,
            threshold=threshold,
            spike_grad=_TriangleSpike.apply,
            reset_mechanism="zero",
            reset_delay=False,
        )
        self.mem: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, ...], one timestep."""
        if self.mem is None:
            self.mem = torch.zeros_like(x)
        spikes, self.mem = self.leaky(x, self.mem)
        return spikes


def _plain(module: nn.Module) -> nn.Module | None:
    """The plain torch (or snnTorch) module computing what a spikeport layer computes per step."""
    if isinstance(module, LIF):
        return SnnTorchLIF(module.beta, module.threshold)
    if isinstance(module, layers.Flatten):
        return nn.Flatten()
    plain: nn.Module
    if isinstance(module, layers.Conv2d):
        m = module
        plain = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups, m.bias is not None, m.padding_mode)
    elif isinstance(module, layers.BatchNorm2d):
        plain = nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
    elif isinstance(module, layers.AvgPool2d):
        m = module
        return nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)
    else:
        return None
    weight = module.weight
    plain.to(weight.device, weight.dtype).load_state_dict(module.state_dict())
    return plain.train(module.training)


class StepwiseModel(nn.Module):
    """Runs a network one timestep per call on [B, ...], with snnTorch neurons carrying the state."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        for m in self.network.modules():
            if isinstance(m, SnnTorchLIF):
                m.mem = None
        return torch.stack([self.network(x[t]) for t in range(x.shape[0])])


def stepwise_snntorch(model: nn.Module) -> StepwiseModel:
    """A copy of `model` (same weights) in plain torch layers and snn.Leaky, run one step at a time."""
    network = copy.deepcopy(model)
    for parent in list(network.modules()):
        for name, child in parent.named_children():
            plain = _plain(child)
            if plain is not None:
                setattr(parent, name, plain)
    return StepwiseModel(network)
