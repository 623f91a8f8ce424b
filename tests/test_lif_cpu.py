"""The fused CPU LIF kernel (train/lif_cpu.py) equals the torch engine bit for bit.

Spikes, membranes and input gradients are compared with `torch.equal`, no tolerance, against
`neuron._LIFMultiStep` on the same input. The kernel is built once per machine (about 25 s, then
cached by torch.utils.cpp_extension); without a C++ compiler the tests skip with a reason.
"""

import shutil

import pytest
import torch
from torch.utils import cpp_extension

from spikeport.train import layers, lif_cpu, neuron
from spikeport.train.neuron import LIF, _LIFMultiStep


@pytest.fixture(scope="module")
def kernel():
    if shutil.which(cpp_extension.get_cxx_compiler()) is None:
        pytest.skip(f"no C++ compiler ({cpp_extension.get_cxx_compiler()}) to build train/lif_cpu.cpp")
    assert lif_cpu.kernel_ops() is not None, "a C++ compiler is there, but train/lif_cpu.cpp did not build (see the log)"
    return lif_cpu.lif_multistep_cpu


def _run(function, x, beta, threshold, grad_spikes, grad_mem):
    x = x.detach().clone().requires_grad_()
    spikes, mem = function(x, beta, threshold)
    outputs, grads = zip(*[(o, g) for o, g in ((spikes, grad_spikes), (mem, grad_mem)) if g is not None])
    torch.autograd.backward(outputs, grads)
    return spikes.detach(), mem.detach(), x.grad


def _assert_equal_to_engine(kernel, x, beta=0.5, threshold=1.0, grad_spikes=True, grad_mem=True):
    """grad_spikes, grad_mem: a tensor, True for a random one (row-major), False for none."""
    gen = torch.Generator().manual_seed(1)
    gs, gm = (torch.randn(x.shape, generator=gen) if g is True else g if g is not False else None for g in (grad_spikes, grad_mem))
    want = _run(_LIFMultiStep.apply, x, beta, threshold, gs, gm)
    got = _run(kernel, x, beta, threshold, gs, gm)
    for name, w, g in zip(("spikes", "membranes", "input gradient"), want, got):
        assert torch.equal(w, g), f"{name} differ: up to {(w - g).abs().max().item():.3g}"
    assert 0 < want[0].mean() < 1, "the case must fire some spikes and not all"


@pytest.mark.parametrize("beta, threshold", [(0.5, 1.0), (0.9, 0.1), (0.25, 0.7)])
def test_equal_to_the_engine_bit_for_bit(kernel, beta, threshold):
    # 6 x 1037 neurons per step: two full blocks of 512 and a tail that is no multiple of a vector
    x = torch.randn(6, 17, 61, generator=torch.Generator().manual_seed(0)) * threshold + 0.6 * threshold
    _assert_equal_to_engine(kernel, x, beta, threshold)


def test_blocks_spread_over_two_threads(kernel):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(5, 8, 1500, generator=torch.Generator().manual_seed(10)) + 0.8  # 24 blocks
        _assert_equal_to_engine(kernel, x)
    finally:
        torch.set_num_threads(threads)


def test_a_channels_last_convolution_output(kernel):
    conv = layers.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        x = conv(torch.randn(5, 4, 3, 20, 20, generator=torch.Generator().manual_seed(2)))
    assert x[0].is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    _assert_equal_to_engine(kernel, x * 3)


@pytest.mark.parametrize("loss_on", ["spikes", "membranes"])
def test_a_loss_on_one_output_only(kernel, loss_on):
    x = torch.randn(4, 3, 700, generator=torch.Generator().manual_seed(3)) + 0.8
    _assert_equal_to_engine(kernel, x, grad_spikes=loss_on == "spikes", grad_mem=loss_on == "membranes")


def test_a_strided_input_and_gradients_in_another_layout(kernel):
    base = torch.randn(6, 8, 300, generator=torch.Generator().manual_seed(4)) + 0.8
    x = base[:, ::2]  # not T dense slices: copied first
    assert not neuron._slices_in_memory(x)
    _assert_equal_to_engine(kernel, x)
    y = base.transpose(1, 2).contiguous().transpose(1, 2)  # dense slices, another order inside
    grads = torch.randn(6, 8, 300, generator=torch.Generator().manual_seed(5))  # row-major, unlike y
    _assert_equal_to_engine(kernel, y, grad_spikes=grads, grad_mem=-grads)


def test_the_addcmul_probe_says_what_torch_computes(kernel):
    a, b, c = (torch.rand(100_000, generator=torch.Generator().manual_seed(k)) - 0.5 for k in (6, 7, 8))
    once = (a.double() + b.double() * c.double()).float()  # exact product; its sum rounds once in float32
    twice = a + b * c
    fused = lif_cpu._addcmul_is_fused()
    assert torch.equal(torch.addcmul(a, b, c), once if fused else twice)


def test_the_engine_picks_the_kernel_for_float32_cpu_tensors_in_training(kernel):
    x = torch.zeros(3, requires_grad=True)  # in training, at every size (neuron.FUSED_CPU_FROM)
    assert neuron._engine(x) == kernel
    assert neuron._engine(x.double()) == _LIFMultiStep.apply
    assert neuron._engine(x.detach()) == _LIFMultiStep.apply  # inference (an export's calibration) neither
    with torch.no_grad():
        assert neuron._engine(x) == _LIFMultiStep.apply


def test_a_network_trains_to_the_engines_gradients(kernel, monkeypatch):
    """A conv/LIF/linear network's spikes and every parameter's gradient with the kernel used for
    every LIF layer. Only the deployment's rule (zero, at once, the reset not detached) has a fused
    multi-step function; snnTorch's other rules run `lif_steps` as plain operations either way."""

    def run(fused: bool):
        torch.manual_seed(0)
        net = torch.nn.Sequential(layers.Conv2d(2, 6, 3, padding=1), LIF(0.8, 0.5), layers.Flatten(), torch.nn.Linear(6 * 64, 4), LIF(0.5, 0.3))
        monkeypatch.setattr(neuron, "FUSED_CPU_FROM", 1 if fused else 1 << 62)
        out = net(torch.randn(5, 3, 2, 8, 8, generator=torch.Generator().manual_seed(9)) * 2)
        (out * torch.arange(4.0)).sum().backward()
        return [out.detach()] + [p.grad for p in net.parameters()]

    fused, eager = run(True), run(False)
    assert 0 < eager[0].mean() < 1
    for w, g in zip(eager, fused):
        assert torch.equal(w, g)
