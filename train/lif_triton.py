"""The multi-step LIF neuron of `neuron.py` as two fused Triton kernels, for CUDA tensors.

`neuron._LIFMultiStep` runs the recurrence as a handful of whole-slice torch operations per
timestep: on a GPU each is a kernel launch that reads and writes the [B, ...] slice in global
memory, 4 launches per step forward and about 13 backward. Here one program owns a block of
neurons and loops over T with the membrane (forward) or dL/du (backward) in registers, so each
element of x, h, spikes and the gradients crosses global memory once: one launch per layer and
pass instead of 4 T forward and about 13 T backward. Only h is kept for the backward pass (the
spikes are h > threshold again, exactly, as in the CPU kernel), which halves what a layer keeps.

The kernels compute what `_LIFMultiStep` computes, operation for operation and in the same order,
each rounded to the tensors' dtype. Where torch rounds twice (beta * u, then + x) the kernels are
compiled without fusing the multiply and the add into one FMA (`enable_fp_fusion=False`); where
torch rounds once (its addcmul kernel is a fused multiply-add) they run PTX's fma.rn.f32
(`_fma`). The outputs and gradients are then the torch engine's bit for bit.
`tests/test_lif_triton.py` checks that on the CPU through Triton's interpreter (TRITON_INTERPRET=1,
which must be set before triton is imported), so it runs in CI without a GPU, and checks the
float instructions of the kernels compiled to PTX.

The kernels treat a [T, ...] tensor as T consecutive slices of N elements in memory, whatever the
layout inside a slice (the channels-last output of `layers.Conv2d` qualifies): every tensor a
kernel touches has x's strides, so element i of slice t is at the same offset in all of them.
"""

# No `from __future__ import annotations`: Triton reads `tl.constexpr` from the kernels' annotations,
# and its interpreter does not recognise them as strings.
import torch
import triton
import triton.language as tl
from torch import Tensor

from spikeport.train.neuron import SURROGATE_WIDTH, _like, _slices_in_memory

BLOCK = 1024  # neurons per program; a [T, B, C, H, W] layer has 10^4 to 10^7 of them per slice
NUM_WARPS = 4


FMA_F32 = tl.constexpr("fma.rn.f32 $0, $1, $2, $3;")  # a constexpr: Triton 3 kernels read no other globals


@triton.jit
def _fma(a, b, c):
    """a * b + c in float32, rounded once, subnormals kept: PTX's fma.rn.f32 itself, since
    `tl.math.fma` (libdevice's fmaf) compiles to fma.rn.ftz.f32 under Triton's default, which
    flushes subnormal operands and results to zero where torch keeps them."""
    return tl.inline_asm_elementwise(FMA_F32, "=r,r,r,r", [a, b, c], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def _lif_forward_kernel(x_ptr, h_ptr, s_ptr, u_ptr, n, beta, threshold, T: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    dtype = x_ptr.dtype.element_ty
    u = tl.zeros((BLOCK,), dtype)
    thr = tl.full((BLOCK,), threshold, dtype)
    for _ in range(T):  # pointers advance a slice per step (no t * n product to overflow int32)
        x = tl.load(x_ptr + offsets, mask=mask)
        # two roundings, as torch.mul(...).add_(x); the product in float32, as torch's opmath
        # computes a half tensor times a float (torch 2.14's Triton 3.8 would round beta to half first)
        h = (u.to(tl.float32) * beta).to(dtype) + x
        s = (h > thr).to(dtype)
        u = h - h * s  # exactly 0 or h, as torch.addcmul(h, h, s, value=-1)
        tl.store(h_ptr + offsets, h, mask=mask)
        tl.store(s_ptr + offsets, s, mask=mask)
        tl.store(u_ptr + offsets, u, mask=mask)
        x_ptr += n
        h_ptr += n
        s_ptr += n
        u_ptr += n


@triton.jit
def _lif_backward_kernel(
    h_ptr, gs_ptr, gm_ptr, gx_ptr, n, beta, threshold, width,
    T: tl.constexpr, HAS_GRAD_SPIKES: tl.constexpr, HAS_GRAD_MEM: tl.constexpr, BLOCK: tl.constexpr,
):
    """The pointers address the last slice (t = T - 1) and step back one slice per iteration."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    dtype = h_ptr.dtype.element_ty
    grad_u = tl.zeros((BLOCK,), dtype)
    thr = tl.full((BLOCK,), threshold, dtype)
    back = n * -1  # added, not subtracted: the interpreter cannot subtract from a pointer
    for _ in range(T):
        h = tl.load(h_ptr + offsets, mask=mask)
        s = (h > thr).to(dtype)  # the forward's spike, exactly: not kept, so not read
        if HAS_GRAD_MEM:
            grad_u = grad_u + tl.load(gm_ptr + offsets, mask=mask)
        # neuron.triangle_surrogate(h - threshold): max(0, width - |h - threshold|) / width**2
        triangle = width - tl.abs(h - thr)
        sg = (tl.where(triangle > 0, triangle, 0.0) / (width * width)).to(dtype)
        through_spike = -(grad_u * h)
        if HAS_GRAD_SPIKES:
            through_spike = through_spike + tl.load(gs_ptr + offsets, mask=mask)
        # torch.addcmul is a fused multiply-add in torch's kernels (one rounding, on the CPU as
        # on CUDA; checked against float64), computed in float32 for every dtype, as torch's
        # "opmath" does for half and bfloat16.
        g = _fma(through_spike.to(tl.float32), sg.to(tl.float32), grad_u.to(tl.float32)).to(dtype)
        g = g - grad_u * s  # s is 0 or 1: the product is exact, fused or not
        tl.store(gx_ptr + offsets, g, mask=mask)
        grad_u = (g.to(tl.float32) * beta).to(dtype)  # in float32, as in the forward
        h_ptr += back
        gs_ptr += back
        gm_ptr += back
        gx_ptr += back


class LIFMultiStepTriton(torch.autograd.Function):
    """`neuron._LIFMultiStep` with each pass one fused kernel launch."""

    @staticmethod
    def forward(ctx, x: Tensor, beta: float, threshold: float):
        if not _slices_in_memory(x):
            x = x.contiguous()
        pre_reset, spikes, mem = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
        t, n = x.shape[0], x[0].numel()
        if n:
            grid = (triton.cdiv(n, BLOCK),)
            _lif_forward_kernel[grid](
                x, pre_reset, spikes, mem, n, beta, threshold, T=t, BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=False
            )
        ctx.save_for_backward(pre_reset)  # the spikes are pre_reset > threshold again: half the memory kept
        ctx.beta, ctx.threshold = beta, threshold
        ctx.set_materialize_grads(False)
        return spikes, mem

    @staticmethod
    def backward(ctx, grad_spikes: Tensor | None, grad_mem: Tensor | None):
        (pre_reset,) = ctx.saved_tensors
        grad_x = torch.empty_like(pre_reset)
        t, n = pre_reset.shape[0], pre_reset[0].numel()
        if n and t:
            grad_spikes, grad_mem = _like(pre_reset, grad_spikes), _like(pre_reset, grad_mem)
            last = lambda g: g[t - 1] if g is not None else pre_reset[t - 1]  # noqa: E731 (unused pointer when absent)
            grid = (triton.cdiv(n, BLOCK),)
            _lif_backward_kernel[grid](
                last(pre_reset), last(grad_spikes), last(grad_mem), last(grad_x),
                n, ctx.beta, ctx.threshold, SURROGATE_WIDTH,
                T=t, HAS_GRAD_SPIKES=grad_spikes is not None, HAS_GRAD_MEM=grad_mem is not None,
                BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=False,
            )
        return grad_x, None, None


def lif_multistep_triton(x: Tensor, beta: float, threshold: float) -> tuple[Tensor, Tensor]:
    """`neuron.lif_multistep` through the fused kernels: (spikes, membrane after reset)."""
    return LIFMultiStepTriton.apply(x, float(beta), float(threshold))
