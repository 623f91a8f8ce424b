"""Multi-step versions of the stateless torch layers.

Activations flow through a spiking network as [T, B, ...] tensors. A layer without state gives the
same answer for every timestep, so it runs once on all T*B samples (time folded into the batch)
instead of T times: this is most of the speed of the multi-step engine. Only the neurons
(`neuron.LIF`) loop over T.

The classes subclass the torch layers unchanged apart from the folding, so parameter names,
initialisation and `isinstance(m, nn.Conv2d)` checks (the exporter's) are the torch ones.
Batch norm computes its statistics over T*B samples, as the DTA code does.
`nn.Linear` needs no wrapper (it maps the last axis), and `Flatten` keeps T and B.

Folding makes every activation T times larger than a per-timestep loop's, and on the CPU that
crosses a line in glibc's malloc, which torch's CPU allocator calls: a block above its mmap
threshold (which follows the largest freed block, up to 32 MiB on 64-bit) is a fresh mmap, so its
pages are faulted in and zeroed by the kernel every time, and returned at every free. The 64/128/256
CNN of benchmarks/train_step.py has [T*B, 64, 32, 32] activations of 48 MiB: 89,000 page faults per
training step, none in the snnTorch loop, whose per-step slices stay on the heap. Below that line
the heap's top is still given back at a free once it exceeds the trim threshold (twice the mmap
threshold), and faulted in again at the next step: the small DTA MS-ResNet of
benchmarks/dta_train_step.py ([96, 32, 32, 32] activations, 12 MiB) had 12,000-45,000 page faults
per step. So the first fold of a training step on the CPU raises glibc's thresholds once for the
process (`keep_large_blocks_on_the_heap`): blocks up to 1 GiB are then reused from the heap, as
torch's caching allocator reuses them on CUDA (docs/train.md has the measurements: the small DTA's
step then had none, and took 549-560 ms against 579-612 ms). Freed memory then stays with the
process for the next step (malloc_trim(0) gives it back).
"""

from __future__ import annotations

import ctypes
import functools
import platform

import torch
from torch import Tensor, nn

HEAP_BLOCKS_UP_TO = 2**30


@functools.cache
def keep_large_blocks_on_the_heap() -> bool:
    """Let glibc's malloc serve blocks up to HEAP_BLOCKS_UP_TO from its heap and keep as much freed
    memory there (mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD), once per process; False where the
    C library is not glibc (nothing is changed there)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(libc.mallopt(m_mmap_threshold, HEAP_BLOCKS_UP_TO)) and bool(libc.mallopt(m_trim_threshold, HEAP_BLOCKS_UP_TO))


def _tracing(y) -> bool:
    """An export (jit or fx tracing: y is then a Proxy, not a tensor) or a compilation: no step runs."""
    return not isinstance(y, Tensor) or torch.jit.is_tracing() or torch.compiler.is_compiling()


def _unfold(y: Tensor, timesteps: int) -> Tensor:
    """y [T*B, ...] as [T, B, ...]; the first time a training step on the CPU folds an activation,
    large blocks are kept on the heap from then on."""
    if not _tracing(y) and y.is_cpu and torch.is_grad_enabled():
        keep_large_blocks_on_the_heap()
    return y.unflatten(0, (timesteps, -1))


def _one_channel_as_channels_last(x: Tensor) -> Tensor:
    """x [N, 1, H, W] with channels-last strides. With one channel the standard strides count as
    channels-last too, so `contiguous(memory_format=channels_last)` keeps them, and oneDNN then
    writes the convolution's output in the standard layout, where the layers after it are slower
    (the digits CNN's first average pool: 0.43 against 0.07 ms on [128, 16, 8, 8])."""
    n, _, h, w = x.shape
    return torch.empty_strided(x.shape, (h * w, 1, w, 1), dtype=x.dtype, device=x.device).copy_(x)


class _FoldTime:
    """Run the wrapped torch layer on [T*B, ...] and give the result back as [T, B, ...].

    The batch size is left as -1 rather than read from x.shape: torch 2.3's ONNX exporter would
    otherwise freeze the example's batch size into the graph.
    """

    def forward(self, x: Tensor) -> Tensor:
        return _unfold(super().forward(x.flatten(0, 1)), x.shape[0])


class Conv2d(nn.Conv2d):
    """Conv2d on [T, B, C, H, W], computed in channels-last memory layout.

    oneDNN (CPU) and cuDNN with mixed precision run convolutions on large batches faster in
    channels-last layout; batch norm, pooling and the neuron keep the layout they are given, so
    only the network's input is converted, once.
    """

    def forward(self, x: Tensor) -> Tensor:
        layout = torch.contiguous_format if self._strided_pointwise_few_channels() else torch.channels_last
        folded = x.flatten(0, 1).contiguous(memory_format=layout)
        if not _tracing(folded) and layout == torch.channels_last and self.in_channels == 1:
            folded = _one_channel_as_channels_last(folded)
        return _unfold(super().forward(folded), x.shape[0])

    def _strided_pointwise_few_channels(self) -> bool:
        """torch 2.3.1's CPU backward of a strided 1x1 convolution in channels-last layout corrupts
        the heap when it has 2 to 7 input channels (a residual shortcut of a small network; see
        tests/test_layers.py), so such a convolution runs in the standard layout. torch 2.14.1 runs
        that test's script without the workaround (three runs); the releases in between, which
        pyproject.toml allows from 2.6, were not tried, so it stays."""
        return self.kernel_size == (1, 1) and max(self.stride) > 1 and 1 < self.in_channels < 8


class BatchNorm2d(_FoldTime, nn.BatchNorm2d):
    pass


class AvgPool2d(_FoldTime, nn.AvgPool2d):
    pass


class AdaptiveAvgPool2d(_FoldTime, nn.AdaptiveAvgPool2d):
    pass


class MaxPool2d(_FoldTime, nn.MaxPool2d):
    pass


class Flatten(nn.Flatten):
    """Flatten everything after the time and batch axes."""

    def __init__(self):
        super().__init__(start_dim=2)


class TimeMixing(nn.Module):
    """Base class of modules that mix information across timesteps (attention over T).

    Such a module needs the [T, B, ...] sequence as a whole, and no neuromorphic core runs it: the
    exporter keeps it as one operation of a host partition (export/partition.py).
    """


def projection(in_channels: int, channels: int, stride: int) -> nn.Module | None:
    """A residual block's shortcut: None (identity) when the shape is kept, else BN(conv1x1)."""
    if stride == 1 and in_channels == channels:
        return None
    return nn.Sequential(Conv2d(in_channels, channels, 1, stride, bias=False), BatchNorm2d(channels))
