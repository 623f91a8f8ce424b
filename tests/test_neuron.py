"""The multi-step engine equals snnTorch's Leaky stepped in a loop: spikes, membranes, gradients."""

import pytest
import snntorch as snn
import torch
from torch import nn

from spikeport.train import layers
from spikeport.train.models import spiking_cnn
from spikeport.train.neuron import LIF, lif_multistep
from spikeport.train.neuron import TriangleSpike
from spikeport.train.reference import stepwise_snntorch


def snntorch_loop(x, beta, threshold):
    leaky = snn.Leaky(beta=beta, threshold=threshold, spike_grad=TriangleSpike.apply,
                      reset_mechanism="zero", reset_delay=False)
    mem = torch.zeros_like(x[0])
    spikes, mems = [], []
    for t in range(x.shape[0]):
        s, mem = leaky(x[t], mem)
        spikes.append(s)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


def hand_loop(x, beta, threshold):
    """ARCHITECTURE.md's three lines, written out without any autograd tricks."""
    u = torch.zeros_like(x[0])
    spikes = []
    for t in range(x.shape[0]):
        u = beta * u + x[t]
        s = (u > threshold).float()
        u = u * (1 - s)
        spikes.append(s)
    return torch.stack(spikes), u


@pytest.mark.parametrize("beta,threshold", [(0.5, 1.0), (0.9, 0.3), (1.0, 2.0)])
def test_neuron_equals_snntorch_forward_and_backward(beta, threshold):
    torch.manual_seed(0)
    x = (torch.randn(12, 5, 7) * 1.5).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    spikes, mem = lif_multistep(x, beta, threshold)
    spikes_ref, mem_ref = snntorch_loop(x_ref, beta, threshold)
    assert spikes.sum() > 0 and (spikes == 0).any()
    torch.testing.assert_close(spikes, spikes_ref, atol=0, rtol=0)
    torch.testing.assert_close(mem, mem_ref, atol=0, rtol=0)  # the same float operations
    # A loss that depends on both outputs exercises both gradient paths.
    w_s, w_m = torch.randn_like(spikes), torch.randn_like(mem)
    ((spikes * w_s).sum() + (mem * w_m).sum()).backward()
    ((spikes_ref * w_s).sum() + (mem_ref * w_m).sum()).backward()
    assert x.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-6, rtol=0)


def test_neuron_matches_the_written_semantics():
    torch.manual_seed(1)
    x = torch.randn(20, 64) * 2
    spikes, mem = lif_multistep(x, 0.5, 1.0)
    spikes_hand, last_u = hand_loop(x, 0.5, 1.0)
    assert torch.equal(spikes, spikes_hand)
    assert torch.equal(mem[-1], last_u)


def test_reset_is_not_detached():
    """The gradient through the reset (u = h * (1 - s)) reaches the input: compare with a detached reset."""
    x = torch.tensor([[1.2], [0.3]], requires_grad=True)
    _, mem = lif_multistep(x, 0.5, 1.0)
    mem[1].sum().backward()
    # h0 = 1.2 spikes, u0 = h0 (1 - s0): du0/dh0 = (1 - 1) - 1.2 * sg(0.2) = -0.96 (0 if detached).
    # h1 = 0.5 u0 + x1 = 0.3 stays silent, u1 = h1 (1 - s1): du1/dh1 = 1 - 0.3 * sg(-0.7) = 0.91.
    assert x.grad[0].item() == pytest.approx(0.91 * 0.5 * -0.96)
    assert x.grad[1].item() == pytest.approx(0.91)


def random_network(seed):
    g = torch.Generator().manual_seed(seed)
    channels = [int(c) for c in torch.randint(2, 6, (2,), generator=g)]
    # Multiples of 1/64: exact in float32, the dtype of snnTorch's beta and threshold buffers.
    beta = int(torch.randint(20, 65, (), generator=g)) / 64
    threshold = int(torch.randint(12, 64, (), generator=g)) / 64
    return nn.Sequential(
        layers.Conv2d(2, channels[0], 3, padding=1, bias=True),
        layers.BatchNorm2d(channels[0]),
        LIF(beta, threshold),
        layers.AvgPool2d(2),
        layers.Conv2d(channels[0], channels[1], 3, stride=2, padding=1),
        LIF(beta, threshold),
        layers.Flatten(),
        nn.Linear(channels[1] * 2 * 2, 16),
        LIF(beta, threshold),
        nn.Linear(16, 3),
    )


@pytest.mark.parametrize("seed", range(4))
def test_random_networks_equal_snntorch_stepwise(seed):
    torch.manual_seed(seed)
    model = random_network(seed)
    for m in model.modules():  # make the random nets fire: scale weights up
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data *= 3
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.weight.data.uniform_(0.5, 2.0)
    # Double precision: the engine's convolutions run on T*B samples in channels-last layout, the
    # reference's on B samples per step, and different conv algorithms round differently in float32.
    model.double().eval()  # eval: batch norm statistics, see train/reference.py
    reference = stepwise_snntorch(model)
    x = torch.rand(6, 4, 2, 8, 8, dtype=torch.float64) * 2

    spikes, spikes_ref = {}, {}
    for net, store in ((model, spikes), (reference.network, spikes_ref)):
        for name, m in net.named_children():
            m.register_forward_hook(lambda _m, _i, out, name=name, store=store: store.setdefault(name, []).append(out))
    out = model(x)
    out_ref = reference(x)
    for name in spikes:
        got, want = spikes[name][0], torch.stack(spikes_ref[name])
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0, msg=f"layer {name}")
    for lif in ("2", "5", "8"):
        assert 0 < spikes[lif][0].mean() < 1, f"LIF layer {lif} is silent or saturated"

    out.square().mean().backward()
    out_ref.square().mean().backward()
    grads = dict(model.named_parameters())
    for name, p in reference.network.named_parameters():
        assert grads[name].grad.abs().sum() > 0, name
        torch.testing.assert_close(grads[name].grad, p.grad, atol=1e-6, rtol=0, msg=f"grad of {name}")


def test_digits_cnn_shapes():
    model = spiking_cnn((1, 8, 8), 10)
    assert model(torch.rand(4, 3, 1, 8, 8)).shape == (4, 3, 10)


def test_traceable_loop_for_torch_compile_equals_the_engine():
    """What lif_multistep runs under torch.compile: the same spikes and membranes, bit for bit
    (the same float operations), and the gradient up to the order in which autograd sums it."""
    from spikeport.train.neuron import _lif_traceable

    torch.manual_seed(2)
    x = (torch.randn(10, 6, 9) * 1.5).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    spikes, mem = _lif_traceable(x, 0.75, 0.8)
    spikes_ref, mem_ref = lif_multistep(x_ref, 0.75, 0.8)
    assert spikes.sum() > 0 and (spikes == 0).any()
    assert torch.equal(spikes, spikes_ref) and torch.equal(mem, mem_ref)
    w_s, w_m = torch.randn_like(spikes), torch.randn_like(mem)
    ((spikes * w_s).sum() + (mem * w_m).sum()).backward()
    ((spikes_ref * w_s).sum() + (mem_ref * w_m).sum()).backward()
    assert x.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-6, rtol=0)
