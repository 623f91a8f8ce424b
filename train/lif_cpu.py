"""The spikes of the multi-step LIF neuron of `neuron.py`, one fused pass per direction, for
float32 CPU tensors in training.

`neuron._LIFMultiStep` runs the recurrence as a handful of whole-slice torch operations per
timestep, each streaming the [B, ...] slice through memory: 4 per step forward and 11 or 12
backward. Here (train/lif_cpu.cpp) each task owns a block of 512 neurons and runs all T steps on
it with the membrane (forward) or dL/du (backward) in L1, as the Triton kernels of
`lif_triton.py` do on CUDA. The forward reads x and writes the spikes, nothing else: a LIF layer
passes on its spikes only (`neuron.lif_spikes`), so the membranes are not written, and the node
keeps x rather than h. The backward computes each block's h again from x (the same float
operations, so the same bits) into a scratch of T x 512 floats, then runs the steps backwards. On
the 64/128/256 CNN of benchmarks/train_step.py both passes run at the speed of a copy of the layer
(memory-bound), so the forward's two arrays instead of four (x, h, spikes, membranes) halve its
time. The autograd node is C++ as well (`torch::autograd::Function`, registered as
`torch.ops.spikeport_lif_cpu.lif`): a Python `torch.autograd.Function` cost the digits CNN's step
about as much as its two kernels' runs.

Why a C++ kernel and not torch.compile of the two loops: inductor's C++ backend computes
`torch.addcmul` as a multiply and an add, rounded twice (it emits an FMA only for CUDA and XPU),
where torch's own CPU addcmul kernel rounds once, so compiled gradients differ from the engine's in
the last bits (docs/train.md, "Issue 18, third round: a fused CPU neuron", has the numbers); and it compiles once per
layer shape. The kernel here is built once per machine by `torch.utils.cpp_extension` (cached in
torch's extension folder, ~/.cache/torch_extensions) and needs a C++ compiler on the user's
machine; without one, or if the build fails, `neuron.lif_spikes` keeps the torch engine.

The kernel does the torch engine's float operations in its order, each rounded to float32: it is
compiled with -ffp-contract=off, so no multiply and add merge where torch rounds twice, and it
calls std::fma exactly where torch's addcmul rounds once. Whether that addcmul is fused depends on
how torch's CPU kernels were compiled, so `_addcmul_is_fused` asks torch.addcmul itself and the
kernel is built to match. `tests/test_lif_cpu.py` compares the spikes and input gradients with the
torch engine's by `torch.equal`.

Like the Triton kernels it treats a [T, ...] tensor as T consecutive slices of N elements, whatever
the layout inside a slice (the channels-last output of `layers.Conv2d` qualifies); other layouts
are copied first.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import sys
from pathlib import Path

import torch
from torch import Tensor

from spikeport.train.neuron import SURROGATE_WIDTH

SOURCE = Path(__file__).with_name("lif_cpu.cpp")
log = logging.getLogger(__name__)


def _addcmul_is_fused() -> bool | None:
    """True when torch's CPU addcmul rounds a + b * c once (an FMA), False when twice, None when it
    does either depending on where an element falls (vector body or tail): then no kernel matches.

    The probe: (1 + 2^-23)(1 - 2^-23) = 1 - 2^-46 rounds to 1 in float32, so -1 + that product is
    -2^-46 fused and 0 unfused."""
    e = 2.0**-23
    n = 67  # a vector body and a scalar tail at any vector width up to 64
    got = torch.addcmul(torch.full((n,), -1.0), torch.full((n,), 1 + e), torch.full((n,), 1 - e))
    fused = got == -(2.0**-46)
    return True if bool(fused.all()) else False if not bool(fused.any()) and bool((got == 0).all()) else None


def _machine_tag() -> str:
    """A short hash of the CPU's flags, the source and the compiler flags: the build uses
    -march=native, so a home folder shared by machines with other CPUs must not reuse it, nor one
    built from another source or with other flags."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    return hashlib.sha1(flags.encode() + SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:10]


# at::parallel_for runs its blocks on torch's threads only in a file compiled with OpenMP: without
# the flag its header falls back to one loop on the calling thread, and the kernel used one core
# where torch's own operators used two (docs/train.md, eighth round). The GOMP symbols this leaves
# undefined resolve, when the library loads, to the libgomp that libtorch_cpu already loaded, so
# torch.set_num_threads governs the kernel as it governs torch's operators.
_OPENMP = ["-fopenmp"] if torch.backends.openmp.is_available() else []
# -ffp-contract=off: no multiply and add merged where torch rounds twice; -fno-trapping-math: gcc
# vectorizes the loops (lif_cpu.cpp); neither changes a value.
CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", *_OPENMP]


@functools.cache
def kernel_ops():
    """`torch.ops.spikeport_lif_cpu`, built on first use; None where it cannot be (no compiler, a
    failed build, or a torch whose addcmul rounds inconsistently), logged once."""
    fused = _addcmul_is_fused()
    if fused is None:
        log.info("fused CPU LIF kernel not used: torch.addcmul rounds differently in its vector body and tail")
        return None
    try:
        from torch.utils import cpp_extension

        with _streams_for_the_build():
            cpp_extension.load(  # a build killed midway is redone: torch 2.14 locks the folder with flock
                name=f"spikeport_lif_cpu_{int(fused)}_{_machine_tag()}",
                sources=[str(SOURCE)],
                extra_cflags=[*CFLAGS, f"-DFUSED_ADDCMUL={int(fused)}"],
                is_python_module=False,
                verbose=False,
            )
    except Exception as error:  # no compiler, a failed build: the torch engine computes the same
        log.info("fused CPU LIF kernel not built (%s); using the torch engine", str(error).splitlines()[0] if str(error) else type(error).__name__)
        return None
    return torch.ops.spikeport_lif_cpu


@contextlib.contextmanager
def _streams_for_the_build():
    """sys.stdout and sys.stderr, where they are None, as os.devnull while the kernel builds.

    torch's build flushes both before it runs ninja, even when the library is already built, and
    fails where one is None: inside NeuroBench's quiet `Benchmark.run`, which runs the model under
    redirect_stdout(None), or in a process started without them. The first LIF call of the process
    builds the kernel, so without this a model first run there kept the torch engine for good
    (found when pytest-xdist happened to give a worker test_activity.py's NeuroBench test first)."""
    missing = [name for name in ("stdout", "stderr") if getattr(sys, name) is None]
    with open(os.devnull, "w") as devnull:
        for name in missing:
            setattr(sys, name, devnull)
        try:
            yield
        finally:
            for name in missing:
                setattr(sys, name, None)


def lif_spikes_cpu(x: Tensor, beta: float, threshold: float) -> Tensor:
    """`neuron.lif_spikes` through the fused kernel. Its autograd node is C++ too (lif_cpu.cpp), so
    that a call costs no Python beyond this line."""
    return kernel_ops().lif(x, beta, threshold)


assert SURROGATE_WIDTH == 1.0, "lif_cpu.cpp computes the triangle surrogate of width 1"
