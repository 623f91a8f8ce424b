"""The fused Triton LIF kernels (train/lif_triton.py) equal the torch engine bit for bit.

Run on the CPU through Triton's interpreter, so that CI checks the kernels without a GPU. The
interpreter is chosen when triton is imported (TRITON_INTERPRET=1), so the comparison runs in a
fresh Python process: this file run as a script, which prints one JSON line per case. The
interpreter cannot run inline PTX, which the kernels use for one instruction, fma.rn.f32, where
torch's addcmul fuses a multiply and an add; the script supplies it, rounded once (`_exact_fma`),
as the GPU computes it. On a machine with a CUDA device the same cases also run compiled, on the
GPU, against the torch engine there (`test_kernel_equals_the_torch_engine_on_cuda`; skipped
elsewhere).
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest


def _needs_triton() -> None:
    import importlib.util

    if importlib.util.find_spec("triton") is None:
        if os.environ.get("CI") == "true" and sys.platform == "linux" and platform.machine() == "x86_64":
            pytest.fail("triton is missing on CI: torch's x86_64 Linux wheels ship it")
        pytest.skip("triton is not installed (torch ships it on x86_64 Linux only)")


def _run_cases(*args: str, interpret: bool = True) -> dict[str, dict]:
    env = {**os.environ, "TRITON_INTERPRET": "1" if interpret else "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return {case["name"]: case for case in (json.loads(line) for line in done.stdout.splitlines() if line.startswith("{"))}


@pytest.fixture(scope="module")
def cases() -> dict:
    _needs_triton()
    return _run_cases()


@pytest.fixture(scope="module")
def cuda_cases() -> dict:
    """The same cases compiled for the GPU and run on it, against the torch engine on CUDA."""
    _needs_triton()
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the kernels run on the CPU through the interpreter only")
    return _run_cases("cuda", interpret=False)


CASE_NAMES = [
    "beta=0.5,thr=1.0", "beta=0.9,thr=0.3", "beta=1.0,thr=2.0",
    "channels-last", "spikes-only-loss", "membrane-only-loss", "strided-input", "grad-in-other-layout",
    "float16", "network",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_kernel_equals_the_torch_engine(cases, name):
    _assert_equal(cases[name], name)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_kernel_equals_the_torch_engine_on_cuda(cuda_cases, name):
    _assert_equal(cuda_cases[name], name)


def _assert_equal(case: dict, name: str) -> None:
    assert case["spikes"] > 0 and case["silent"] > 0, "the case must have spikes and silent neurons"
    assert case["gradient_nonzero"], "the gradient must not vanish"
    for what, equal in case["equal"].items():
        assert equal, f"{name}: {what} differs from the torch engine (max abs difference {case['max_diff'][what]})"


def test_compiled_kernels_round_as_torch(tmp_path):
    """What the interpreter cannot show: compiled for a GPU (sm_90 PTX, which needs no GPU), the
    kernels keep every multiply and add apart (no contraction into an FMA), flush no subnormals
    (no .ftz), and have exactly the fused multiply-adds of `_fma`, one per element of a thread."""
    _needs_triton()
    env = {**os.environ, "TRITON_CACHE_DIR": str(tmp_path), "TRITON_INTERPRET": "0"}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "ptx"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    ptx = {path.stem: path.read_text() for path in tmp_path.rglob("*.ptx")}
    assert set(ptx) == {"_lif_forward_kernel", "_lif_backward_kernel"}, sorted(ptx)
    for name, text in ptx.items():
        assert ".ftz" not in text, name
        arithmetic = [line.split()[0] for line in text.splitlines() if line.strip().startswith(("mul.", "add.", "sub.", "fma.")) and "f32" in line]
        assert arithmetic and all(op in ("mul.rn.f32", "add.rn.f32", "sub.rn.f32", "fma.rn.f32") for op in arithmetic), (name, set(arithmetic))
        per_thread = 1024 // (4 * 32)  # BLOCK elements over NUM_WARPS warps of 32 threads
        assert arithmetic.count("fma.rn.f32") == (per_thread if name == "_lif_backward_kernel" else 0), name


def test_cpu_tensors_use_the_torch_engine():
    import torch

    from spikeport.train.neuron import _LIFMultiStep, _engine

    assert _engine(torch.zeros(2, 3)) == _LIFMultiStep.apply


# --- the script, run with TRITON_INTERPRET=1 (or on a GPU with the argument `cuda`) -------------


def _exact_fma(a, b, c):
    """a * b + c rounded once to float32 (numpy float32 arrays): the float64 product is exact; the
    float64 sum is rounded, with its exact error from TwoSum, and that error decides the one case
    where rounding the float64 sum to float32 would round twice wrongly (a float32 midpoint)."""
    import numpy as np

    p = a.astype(np.float64) * b.astype(np.float64)
    c = np.broadcast_to(c, p.shape).astype(np.float64)
    s = p + c
    bp = s - c
    error = (p - bp) + (c - (s - bp))  # TwoSum: s + error == p + c exactly
    r = s.astype(np.float32)
    toward = np.where(s > r.astype(np.float64), np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
    other = np.nextafter(r, toward)
    midpoint = (r.astype(np.float64) + other.astype(np.float64)) / 2 == s
    fix = midpoint & (error != 0)
    upper, lower = np.maximum(r, other), np.minimum(r, other)
    return np.where(fix, np.where(error > 0, upper, lower), r).astype(np.float32)


def _install_interpreter_fma() -> None:
    """The kernels' one inline PTX instruction (lif_triton._fma), for the interpreter."""
    import triton.language as tl
    from triton.runtime.interpreter import TensorHandle

    from spikeport.train.lif_triton import FMA_F32

    def inline_asm_elementwise(asm, constraints, args, dtype, is_pure, pack, _builder=None):
        assert getattr(asm, "value", asm) == FMA_F32.value and dtype == tl.float32 and len(args) == 3, f"no interpreter version of {asm!r}"
        a, b, c = args
        return tl.core.tensor(TensorHandle(_exact_fma(a.handle.data, b.handle.data, c.handle.data), tl.float32), a.type)

    tl.inline_asm_elementwise = inline_asm_elementwise


def _compare(name, x, beta, threshold, loss, view=lambda leaf: leaf) -> dict:
    import torch

    from spikeport.train.lif_triton import LIFMultiStepTriton
    from spikeport.train.neuron import _LIFMultiStep

    results = {}
    for label, function in (("torch", _LIFMultiStep), ("triton", LIFMultiStepTriton)):
        xi = x.detach().clone().requires_grad_()
        spikes, mem = function.apply(view(xi), beta, threshold)
        loss(spikes, mem).backward()
        results[label] = {"spikes": spikes, "membrane": mem, "grad_x": xi.grad}
    return _summary(name, results["torch"], results["triton"], results["torch"]["spikes"])


def _summary(name, ours, theirs, spikes) -> dict:
    import torch

    return {
        "name": name,
        "spikes": int((spikes != 0).sum()),
        "silent": int((spikes == 0).sum()),
        "gradient_nonzero": bool(all(v.abs().sum() > 0 for k, v in ours.items() if k.startswith("grad"))),
        "equal": {k: bool(torch.equal(ours[k], theirs[k])) for k in ours},
        "max_diff": {k: float((ours[k].double() - theirs[k].double()).abs().max()) for k in ours},
    }


def _network_case() -> dict:
    """spiking_cnn's parameter gradients with every LIF on either implementation."""
    import torch

    from spikeport.train import neuron
    from spikeport.train.lif_triton import LIFMultiStepTriton
    from spikeport.train.models import spiking_cnn

    torch.manual_seed(3)
    model = spiking_cnn((1, 8, 8), 10, channels=[4, 8]).eval()
    for m in model.modules():  # make both LIF layers fire (8% and 25% of the neurons per step)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(1.0, 3.0)
            m.bias.data.uniform_(0.3, 1.0)
    x = torch.rand(4, 3, 1, 8, 8) * 2
    results, spikes = {}, []
    for label, function in (("torch", neuron._LIFMultiStep), ("triton", LIFMultiStepTriton)):
        neuron._engine = lambda _x, function=function: function.apply
        model.zero_grad(set_to_none=True)
        hook = model.lif2.register_forward_hook(lambda _m, _i, out: spikes.append(out))
        out = model(x)
        hook.remove()
        out.square().mean().backward()
        results[label] = {"logits": out.detach(), **{f"grad {n}": p.grad for n, p in model.named_parameters()}}
    return _summary("network", results["torch"], results["triton"], spikes[0])


def compile_to_ptx() -> None:
    """Compile both kernels (float32, all gradients) for sm_90 into TRITON_CACHE_DIR. Without a
    GPU driver the last stage, the host-side launcher, cannot be built; the PTX is written by then."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource

    from spikeport.train import lif_triton

    def source(kernel, constexprs: dict) -> ASTSource:
        """The kernel's signature by argument name (Triton 3.2+): pointers to float32, n an int32, the
        other runtime arguments float32, `constexprs` fixed."""
        types = {name: "constexpr" if name in constexprs else "*fp32" if name.endswith("_ptr") else "i32" if name == "n" else "fp32" for name in kernel.arg_names}
        return ASTSource(kernel, types, constexprs=constexprs)

    sources = [
        source(lif_triton._lif_forward_kernel, {"T": 6, "BLOCK": lif_triton.BLOCK}),
        source(lif_triton._lif_backward_kernel, {"T": 6, "HAS_GRAD_SPIKES": True, "HAS_GRAD_MEM": True, "BLOCK": lif_triton.BLOCK}),
    ]
    for kernel in sources:
        try:
            triton.compile(kernel, target=GPUTarget("cuda", 90, 32), options={"num_warps": lif_triton.NUM_WARPS, "enable_fp_fusion": False})
        except AssertionError as e:
            if "libcuda" not in str(e):
                raise


def main() -> None:
    import torch

    if sys.argv[1:] == ["ptx"]:
        compile_to_ptx()
        return
    if sys.argv[1:] == ["cuda"]:
        torch.set_default_device("cuda")  # every tensor and the network's parameters below
    else:
        assert os.environ.get("TRITON_INTERPRET") == "1"
        _install_interpreter_fma()
    torch.manual_seed(0)
    both = lambda s, m, ws, wm: (s * ws).sum() + (m * wm).sum()  # noqa: E731
    cases = []
    for beta, threshold in ((0.5, 1.0), (0.9, 0.3), (1.0, 2.0)):
        x = torch.randn(12, 5, 7) * 1.5
        ws, wm = torch.randn_like(x), torch.randn_like(x)
        cases.append((f"beta={beta},thr={threshold}", x, beta, threshold, lambda s, m, ws=ws, wm=wm: both(s, m, ws, wm)))
    # A layers.Conv2d output: [T*B, C, H, W] channels-last, unflattened; 2 x 3 x 8 x 9 x 11 neurons
    # per step, more than one program's block.
    cl = (torch.randn(6 * 2, 8, 9, 11) * 1.5).contiguous(memory_format=torch.channels_last).unflatten(0, (6, 2))
    w = torch.randn_like(cl)
    cases.append(("channels-last", cl, 0.75, 1.0, lambda s, m, w=w: both(s, m, w, w.flip(0))))
    x = torch.randn(8, 3, 700) * 1.5
    w = torch.randn_like(x)
    cases.append(("spikes-only-loss", x, 0.5, 1.0, lambda s, m, w=w: (s * w).sum()))
    cases.append(("membrane-only-loss", x, 0.5, 1.0, lambda s, m, w=w: (m * w).sum()))
    w = torch.randn(5, 15, 40)  # the neuron sees a strided view of its leaf: the kernel copies it
    strided = lambda leaf: leaf.transpose(1, 2)[:, ::2]  # noqa: E731
    cases.append(("strided-input", torch.randn(5, 40, 30) * 1.5, 0.5, 1.0, lambda s, m, w=w: both(s, m, w, w), strided))
    x = torch.randn(6, 4, 50) * 1.5
    wt = torch.randn(6, 50, 4)  # the gradients reach the neuron transposed
    cases.append(("grad-in-other-layout", x, 0.5, 1.0, lambda s, m: both(s.transpose(1, 2), m.transpose(1, 2), wt, wt.flip(0))))
    x16 = (torch.randn(10, 6, 33) * 1.5).half()
    w16 = torch.randn_like(x16)
    cases.append(("float16", x16, 0.8, 0.7, lambda s, m: both(s, m, w16, w16)))
    for case in cases:
        print(json.dumps(_compare(*case)), flush=True)
    print(json.dumps(_network_case()), flush=True)


if __name__ == "__main__":
    main()
