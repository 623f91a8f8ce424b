"""The DTA MS-ResNet's references compute what the engine computes, so the train-step benchmark
(benchmarks/dta_train_step.py) times the same function three ways.

In float64, with batch norm in eval mode (the stepped snnTorch copy normalises B samples per step,
the engine T*B), the logits and every parameter's gradient must agree with the engine's.
"""

import pytest
import torch
from torch import nn

from spikeport.train.models import dta_msresnet
from spikeport.train.neuron import LIF
from spikeport.train.reference import spikingjelly_multistep, stepwise_snntorch

TIMESTEPS = 4


def small_model(causal: bool = False, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A small DTA MS-ResNet (float64 unless said) whose batch norms hold the statistics of a random batch.

    With the initial statistics (mean 0, variance 1) most neurons stay silent; with real ones
    every layer fires, and a mismatch in spikes or surrogate gradients shows.
    """
    torch.manual_seed(0)
    model = dta_msresnet((3, 8, 8), 10, TIMESTEPS, stem_channels=8, stages=[[8, 1, 1], [16, 1, 2]], causal=causal)
    model.to(dtype)
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in batch_norms:
        m.momentum = 1.0  # the running statistics become the next batch's
    with torch.no_grad():
        model(torch.rand(TIMESTEPS, 8, 3, 8, 8, dtype=dtype) * 3)
    for m in batch_norms:  # only batch norm: SpikingJelly's LIFNode drops its surrogate in eval mode
        m.eval()
    return model


def logits_and_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The gradients in parameter order: the copies replace modules in place, so the order is the
    engine's, while the names are not (SpikingJelly's containers add a level)."""
    logits = model(x)
    nn.functional.cross_entropy(logits.mean(0), y).backward()
    return logits.detach(), [p.grad for p in model.parameters()]


def assert_same(engine: nn.Module, reference: nn.Module, dtype: torch.dtype = torch.float64, rtol: float = 1e-7, atol: float = 1e-9) -> None:
    torch.manual_seed(1)
    x = torch.rand(TIMESTEPS, 5, 3, 8, 8, dtype=dtype) * 3
    y = torch.randint(0, 10, (5,))
    rates = []  # every layer's firing rate, so that the test cannot pass on silent neurons
    for m in engine.modules():
        if isinstance(m, LIF):
            m.register_forward_hook(lambda m, i, out: rates.append(out.mean().item()))
    logits, grads = logits_and_gradients(engine, x, y)
    ref_logits, ref_grads = logits_and_gradients(reference, x, y)
    assert len(rates) == 6 and all(0.02 < rate < 0.98 for rate in rates), rates
    exact = 0.0 if dtype == torch.float32 else 1e-9  # float32: the same spikes give the same logits, bit for bit
    torch.testing.assert_close(ref_logits, logits, rtol=exact, atol=exact)
    names = [name for name, _ in engine.named_parameters()]
    assert len(ref_grads) == len(grads) == len(names)
    for name, grad, ref_grad in zip(names, grads, ref_grads):
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(ref_grad, grad, rtol=rtol, atol=atol, msg=lambda message: f"{name}: {message}")


@pytest.mark.parametrize("causal", [False, True])
def test_stepwise_snntorch_equals_the_engine(causal):
    engine = small_model(causal)
    assert_same(engine, stepwise_snntorch(engine))


def test_spikingjelly_multistep_equals_the_engine():
    pytest.importorskip("spikingjelly")
    engine = small_model()
    assert_same(engine, spikingjelly_multistep(engine))


def test_spikingjelly_with_its_kernels_fires_as_the_engine():
    """With its own surrogate, SpikingJelly runs its `sj_lif` op (on a GPU its CUDA or Triton
    kernels, here its CPU loop), which fires at u >= threshold; with the threshold one float32 step
    up, the copy's spikes and logits are the engine's exactly (the DTA gate puts membranes exactly
    on the threshold), and the surrogate, evaluated one step off, leaves the gradients equal to float32's
    precision."""
    pytest.importorskip("spikingjelly")
    engine = small_model(dtype=torch.float32)
    copy = spikingjelly_multistep(engine, kernels=True)
    with torch.profiler.profile() as profile:
        assert_same(engine, copy, torch.float32, rtol=1e-4, atol=1e-6)  # float32 sums in another order
    assert any(event.name == "sj_lif::forward" for event in profile.events())
    assert not any(event.name == "sj_lif::forward" for event in _profiled_names(spikingjelly_multistep(engine)))


def _profiled_names(model: nn.Module):
    with torch.profiler.profile() as profile:
        model(torch.rand(TIMESTEPS, 2, 3, 8, 8))
    return profile.events()
