"""Multi-step versions of the stateless torch layers.

Activations flow through a spiking network as [T, B, ...] tensors. A layer without state gives the
same answer for every timestep, so it runs once on all T*B samples (time folded into the batch)
instead of T times: this is most of the speed of the multi-step engine. Only the neurons
(`neuron.LIF`) loop over T.

The classes subclass the torch layers unchanged apart from the folding, so parameter names,
initialisation and `isinstance(m, nn.Conv2d)` checks (the exporter's) are the torch ones.
Batch norm computes its statistics over T*B samples, as the DTA code does.
`nn.Linear` needs no wrapper (it maps the last axis), and `Flatten` keeps T and B.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _FoldTime:
    """Run the wrapped torch layer on [T*B, ...] and give the result back as [T, B, ...].

    The batch size is left as -1 rather than read from x.shape: torch 2.3's ONNX exporter would
    otherwise freeze the example's batch size into the graph.
    """

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.flatten(0, 1)).unflatten(0, (x.shape[0], -1))


class Conv2d(nn.Conv2d):
    """Conv2d on [T, B, C, H, W], computed in channels-last memory layout.

    oneDNN (CPU) and cuDNN with mixed precision run convolutions on large batches faster in
    channels-last layout; batch norm, pooling and the neuron keep the layout they are given, so
    only the network's input is converted, once.
    """

    def forward(self, x: Tensor) -> Tensor:
        layout = torch.contiguous_format if self._strided_pointwise_few_channels() else torch.channels_last
        folded = x.flatten(0, 1).contiguous(memory_format=layout)
        return super().forward(folded).unflatten(0, (x.shape[0], -1))

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
