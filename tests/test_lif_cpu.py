"""The fused CPU LIF kernel (train/lif_cpu.py) equals the torch engine bit for bit.

Its spikes and input gradients are compared with `torch.equal`, no tolerance, against
`neuron._LIFMultiStep` on the same input (the kernel computes no membranes: a LIF layer passes on
its spikes only). The kernel is built once per machine (about 25 s, then
cached by torch.utils.cpp_extension); without a C++ compiler the tests skip with a reason.
"""

import shutil
import subprocess
import sys
from pathlib import Path

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
    return lif_cpu.lif_spikes_cpu


def _run(spikes_of, x, beta, threshold, grad_spikes):
    x = x.detach().clone().requires_grad_()
    spikes = spikes_of(x, beta, threshold)
    spikes.backward(grad_spikes)
    return spikes.detach(), x.grad


def _engine_spikes(x, beta, threshold):
    return _LIFMultiStep.apply(x, beta, threshold)[0]


def _assert_equal_to_engine(kernel, x, beta=0.5, threshold=1.0, grad_spikes=None):
    """grad_spikes: dL/ds, a random one (row-major) by default."""
    if grad_spikes is None:
        grad_spikes = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    want = _run(_engine_spikes, x, beta, threshold, grad_spikes)
    got = _run(kernel, x, beta, threshold, grad_spikes)
    for name, w, g in zip(("spikes", "input gradient"), want, got):
        assert torch.equal(w, g), f"{name} differ: up to {(w - g).abs().max().item():.3g}"
    assert 0 < want[0].mean() < 1, "the case must fire some spikes and not all"


@pytest.mark.parametrize("beta, threshold", [(0.5, 1.0), (0.9, 0.1), (0.25, 0.7)])
def test_equal_to_the_engine_bit_for_bit(kernel, beta, threshold):
    # 6 x 1037 neurons per step: two full blocks of 512 and a tail that is no multiple of a vector
    x = torch.randn(6, 17, 61, generator=torch.Generator().manual_seed(0)) * threshold + 0.6 * threshold
    _assert_equal_to_engine(kernel, x, beta, threshold)


def test_blocks_spread_over_two_threads(kernel):
    # at::parallel_for runs the blocks on torch's threads only in a file compiled with OpenMP; the
    # kernel was once built without it and ran on one thread under any torch.set_num_threads
    if torch.backends.openmp.is_available() and Path("/proc/self/maps").exists():
        library = _loaded_library()
        calls_openmp = b"GOMP_parallel" in library.read_bytes()
        assert calls_openmp, f"{library} was built without OpenMP: its blocks run on one thread"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(5, 8, 1500, generator=torch.Generator().manual_seed(10)) + 0.8  # 24 blocks
        _assert_equal_to_engine(kernel, x)
    finally:
        torch.set_num_threads(threads)


def _loaded_library() -> Path:
    (library,) = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "spikeport_lif_cpu_" in line}
    return Path(library)


def test_the_step_loops_are_vectorized(kernel):
    """Each step's loop must compile to packed float instructions: a scalar build with branches
    ran 4.8 ns per neuron and step on random input against 0.2 vectorized (AMD EPYC Zen 3), and
    its speed depended on how predictable the spikes were. Read from the loaded library's code."""
    if shutil.which("objdump") is None or not Path("/proc/self/maps").exists():
        pytest.skip("needs objdump and /proc to read the built kernel's instructions")
    kernel(torch.randn(2, 3), 0.5, 1.0)  # loaded
    import subprocess

    listing = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", str(_loaded_library())], capture_output=True, text=True, check=True).stdout
    for step in ("forward_step", "recompute_step", "backward_step"):
        bodies = [body for body in listing.split("\n\n") if f"::{step}(" in body.split("\n", 1)[0]]
        assert bodies, f"no {step} in the built library"
        packed = [line for body in bodies for line in body.splitlines() if "ps " in line and ("mul" in line or "add" in line or "sub" in line)]
        assert packed, f"{step} compiled to scalar code: no packed float multiply, add or subtract"


def test_a_channels_last_convolution_output(kernel):
    conv = layers.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        x = conv(torch.randn(5, 4, 3, 20, 20, generator=torch.Generator().manual_seed(2)))
    assert x[0].is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    _assert_equal_to_engine(kernel, x * 3)


def test_a_long_sequence(kernel):
    """T = 300: the backward's scratch of h (T x 512 floats per task) outgrows L1 and L2."""
    x = torch.randn(300, 2, 700, generator=torch.Generator().manual_seed(3)) * 0.6 + 0.4
    _assert_equal_to_engine(kernel, x)


def test_the_input_is_kept_for_the_backward_and_guarded(kernel):
    """The node keeps x itself (not a copy), so writing into x before the backward is refused."""
    x = (torch.randn(4, 3, 700, generator=torch.Generator().manual_seed(3)) + 0.8).requires_grad_()
    y = x * 1.0
    spikes = kernel(y, 0.5, 1.0)
    y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        spikes.sum().backward()


def test_a_strided_input_and_gradients_in_another_layout(kernel):
    base = torch.randn(6, 8, 300, generator=torch.Generator().manual_seed(4)) + 0.8
    x = base[:, ::2]  # not T dense slices: copied first
    assert not neuron._slices_in_memory(x)
    _assert_equal_to_engine(kernel, x)
    y = base.transpose(1, 2).contiguous().transpose(1, 2)  # dense slices, another order inside
    grads = torch.randn(6, 8, 300, generator=torch.Generator().manual_seed(5))  # row-major, unlike y
    _assert_equal_to_engine(kernel, y, grad_spikes=grads)


def test_the_addcmul_probe_says_what_torch_computes(kernel):
    a, b, c = (torch.rand(100_000, generator=torch.Generator().manual_seed(k)) - 0.5 for k in (6, 7, 8))
    once = (a.double() + b.double() * c.double()).float()  # exact product; its sum rounds once in float32
    twice = a + b * c
    fused = lif_cpu._addcmul_is_fused()
    assert torch.equal(torch.addcmul(a, b, c), once if fused else twice)


def test_a_process_whose_output_streams_are_none_builds_it(kernel):
    """NeuroBench's quiet Benchmark.run runs the model under redirect_stdout(None): the first LIF
    call of a process there builds the kernel, where torch's build flushes sys.stdout and
    sys.stderr. In a fresh process, whose kernel is not yet loaded."""
    script = (
        "import contextlib, sys\n"
        "from spikeport.train import lif_cpu\n"
        "sys.stderr = None\n"
        "with contextlib.redirect_stdout(None):\n"
        "    ops = lif_cpu.kernel_ops()\n"
        "assert sys.stdout is sys.__stdout__ and sys.stderr is None\n"
        "print(ops is not None)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split() == ["True"], (done.stdout, done.stderr[-500:])


def test_the_kernel_is_used_for_float32_cpu_tensors_in_training(kernel):
    x = torch.zeros(3, requires_grad=True)  # in training, at every size (neuron.FUSED_CPU_FROM)
    assert neuron._cpu_training(x)
    assert not neuron._cpu_training(x.double())
    assert not neuron._cpu_training(x.detach())  # inference (an export's calibration) neither
    with torch.no_grad():
        assert not neuron._cpu_training(x)


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
