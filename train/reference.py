"""The references the multi-step engine is measured against: snnTorch's `Leaky`, one timestep at a
time, and SpikingJelly's multi-step `LIFNode`.

`stepwise_snntorch(model)` returns a copy of a spikeport model, with the same weights, as an
snnTorch user would write it: plain torch layers (nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d,
nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear) and, for every `LIF`, an `snn.Leaky(beta, threshold,
reset_mechanism="zero", reset_delay=False)` with the same triangle surrogate; its forward pass
calls the network once per timestep on [B, ...]. The DTA MS-ResNet cannot be called one step at a
time as a whole, because its attention block mixes timesteps: its encoder runs per step, the DTA
block once on the stacked [T, B, ...] current and spikes, and the residual stages and head per step
again. Tests use these copies to prove the fast engine exact; the training-step benchmarks use them
as the baseline.

Batch norm in training mode sees T*B samples in the engine but only B per step here, so compare
the two with batch norm in eval mode.

`spikingjelly_multistep(model)` is the same copy in SpikingJelly 2.0 (a test and benchmark
dependency, imported only there), which folds time into the batch as the engine does:
`layer.SeqToANNContainer` around each stateless layer and `neuron.LIFNode` in multi-step mode.
Its neuron is configured to compute ours: `decay_input=False` and tau = 1 / (1 - beta), so that
u = u * (1 - 1/tau) + x (exactly beta * u + x for beta = 0.5, where 1 - 1/2 is exact; other betas
may differ in the last bit), hard reset to `v_reset=0` not detached, and the triangle surrogate.

Which of SpikingJelly's implementations runs depends on the spike function it is given. With any
callable, such as the engine's `neuron.TriangleSpike`, `LIFNode` runs its pure-torch neuron, every
timestep recorded by autograd. With one of its own surrogates it runs its registered `sj_lif`
op: on a GPU its CUDA or Triton kernels (the environment variable SJ_LIF_CUDA_IMPLEMENTATION
picks; by default CUDA first), on the CPU a loop of torch operations with a hand-written
backward. Its `surrogate.PiecewiseQuadratic(alpha=1)` has our gradient, max(0, 1 - |u -
threshold|), but fires at u >= threshold where ours fires at u > threshold, and in the DTA
MS-ResNet that is no corner case: the gate's sigmoid saturates to exactly 1.0, so a gated spike
arriving at a membrane at rest puts it exactly on the threshold (for one random batch through
tests/test_dta_reference.py's network, 107 of the 1655 gated spikes were exactly 1.0 in float32),
and the spikes and logits would differ (by up to 0.13 in the logits). So with its kernels
(`kernels=True`, the default for a model on a GPU) the copy's threshold is the next float32 above
ours: for a float32 membrane, u >= that is u > threshold, the same spikes; the surrogate is then
evaluated one float32 step off (the gradients agree to float32's precision; its backward sums in
another order). Without them (the default on the CPU, and in float64) the spike function is the
engine's own: on the CPU the pure-torch neuron took 0.96-0.97 times the time of the `sj_lif` op
per training step (digits CNN and 64/128/256 CNN, one thread, AMD EPYC Zen 3; docs/train.md,
ninth round), so each device gets SpikingJelly's faster.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import snntorch as snn
import torch
from torch import Tensor, nn

from spikeport.train import layers
from spikeport.train.dta import MSResNetDTA
from spikeport.train.neuron import LIF, TriangleSpike


class SnnTorchLIF(nn.Module):
    """snnTorch's Leaky with the project's neuron settings; keeps its membrane between calls."""

    def __init__(self, beta: float, threshold: float):
        super().__init__()
        self.leaky = snn.Leaky(
            beta=beta,
            threshold=threshold,
            spike_grad=TriangleSpike.apply,
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
    """The plain torch module computing what a stateless spikeport layer computes per step."""
    if isinstance(module, layers.Flatten):
        return nn.Flatten()
    if isinstance(module, layers.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool2d(module.output_size)
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


def _converted(model: nn.Module, convert: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    """A deep copy of `model` with every submodule that `convert` maps replaced by its image."""
    network = copy.deepcopy(model)
    for parent in list(network.modules()):
        for name, child in parent.named_children():
            replacement = convert(child)
            if replacement is not None:
                setattr(parent, name, replacement)
    return network


def _snntorch_layer(module: nn.Module) -> nn.Module | None:
    return SnnTorchLIF(module.beta, module.threshold) if isinstance(module, LIF) else _plain(module)


def _reset_snntorch(network: nn.Module) -> None:
    for m in network.modules():
        if isinstance(m, SnnTorchLIF):
            m.mem = None


class StepwiseModel(nn.Module):
    """Runs a network one timestep per call on [B, ...], with snnTorch neurons carrying the state."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        _reset_snntorch(self.network)
        return torch.stack([self.network(x[t]) for t in range(x.shape[0])])


class StepwiseMSResNetDTA(nn.Module):
    """The DTA MS-ResNet stepped as an snnTorch user must: per timestep except for the DTA block.

    The block's attention mixes timesteps, so it waits for the encoder's whole sequence; it is
    the engine's own module (copied with the rest), run on the stacked [T, B, ...] tensors.
    """

    def __init__(self, network: MSResNetDTA):
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        net = self.network
        _reset_snntorch(net)
        currents = torch.stack([net.bn_in(net.conv_in(x[t])) for t in range(x.shape[0])])
        # no attention: the current goes to the blocks (the official DTA_OFF; train/dta.py)
        y = currents if net.dta is None else net.dta(currents, torch.stack([net.lif_in(current) for current in currents]))
        return torch.stack([net.fc(net.flatten(net.pool(net.lif_out(net.blocks(y_t))))) for y_t in y])


def stepwise_snntorch(model: nn.Module) -> nn.Module:
    """A copy of `model` (same weights) in plain torch layers and snn.Leaky, run one step at a time."""
    network = _converted(model, _snntorch_layer)
    return StepwiseMSResNetDTA(network) if isinstance(model, MSResNetDTA) else StepwiseModel(network)


class SpikingJellyModel(nn.Module):
    """A SpikingJelly network in multi-step mode; resets the neurons' state before every sequence."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        from spikingjelly.activation_based import functional

        functional.reset_net(self.network)
        return self.network(x)


def spikingjelly_lif(beta: float, threshold: float, kernels: bool) -> nn.Module:
    """SpikingJelly's multi-step `LIFNode` computing our neuron (module docstring): with `kernels`
    its `sj_lif` op, the threshold one float32 step up; else its pure-torch neuron."""
    from spikingjelly.activation_based import neuron, surrogate

    # float32's next value above the threshold: SpikingJelly's kernels fire at u >= it, ours at u > threshold
    above = torch.nextafter(torch.tensor(threshold, dtype=torch.float32), torch.tensor(math.inf)).item()
    return neuron.LIFNode(
        tau=1.0 / (1.0 - beta),
        decay_input=False,
        v_threshold=above if kernels else threshold,
        v_reset=0.0,
        surrogate_function=surrogate.PiecewiseQuadratic(alpha=1.0) if kernels else TriangleSpike.apply,
        detach_reset=False,
        step_mode="m",
    )


def spikingjelly_multistep(model: nn.Module, kernels: bool | None = None) -> SpikingJellyModel:
    """A copy of `model` (same weights) in SpikingJelly's multi-step layers: with `kernels` its
    `sj_lif` op (its CUDA and Triton kernels on a GPU), else its pure-torch neuron; by default its
    kernels where the model's parameters are on a GPU (module docstring).

    The copy keeps the model's own forward: with every layer taking [T, B, ...], it runs unchanged.
    Keep its neurons in training mode to train it: in eval mode `LIFNode` switches to a scripted
    forward without the surrogate gradient, so put only the batch norms in eval mode.
    """
    from spikingjelly.activation_based import layer

    if kernels is None:
        kernels = next(model.parameters()).is_cuda

    def convert(module: nn.Module) -> nn.Module | None:
        if isinstance(module, LIF):
            return spikingjelly_lif(module.beta, module.threshold, kernels)
        plain = _plain(module)
        return None if plain is None else layer.SeqToANNContainer(plain)

    return SpikingJellyModel(_converted(model, convert))
