"""Export a whole spiking model to one ONNX file, with the T timesteps unrolled.

The file maps `input` [T, B, *input_shape] to `logits` [T, B, num_classes]; T is fixed at export
time and B is a dynamic axis. Every neuron becomes plain ONNX ops, per timestep:

    h = beta * u + x[t]                  Mul, Add
    s = Cast(Greater(h - threshold, 0))  Sub, Greater, Cast
    u = h * (1 - s)                      Sub, Mul

so any ONNX runtime can run the file, and a GPU or an accelerator compiler sees ordinary ops.

`LIF` runs its loop inside an autograd.Function (`_LIFMultiStep`, for its hand-written backward).
The TorchScript exporter cannot see through that on its own terms: with autograd inlining (the
torch 2.3 default) it traces the Function's forward, whose results are written into preallocated
buffers, and silently exports the spikes as constants that do not depend on the input. So the
exporter works on a copy of the model in which each `LIF` is swapped for `_UnrolledLIF`, the same
recurrence in plain torch ops, and exports with autograd inlining off: any autograd.Function left
(a custom spike function, `lif_multistep` called outside a `LIF`) then fails loudly, and the
failure is reported as a `UserError` that names the module it lives in.
"""

from __future__ import annotations

import copy
import inspect
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import Tensor, nn

from spikeport.errors import UserError
from spikeport.io import atomic_open
from spikeport.readers import check_onnx_external
from spikeport.train.neuron import LIF, heaviside

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# What exporting a model that cannot be exported raises: an op without an ONNX translation, an
# autograd.Function or a tensor op that fails under tracing (RuntimeError), or a trace that froze
# a value computed from the input (TracerWarning, raised by `_export_bytes`).
_EXPORT_ERRORS = (RuntimeError, torch.jit.TracerWarning)


class _UnrolledLIF(nn.Module):
    """`LIF`'s forward written with plain torch ops, so tracing unrolls it into ONNX ops.

    The steps are those of `_LIFMultiStep.forward` in the same order, so the exported spikes
    are exactly the trained layer's.
    """

    def __init__(self, beta: float, threshold: float):
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, x: Tensor) -> Tensor:
        u = 0.0  # u[-1]: a number, not zeros shaped like x, so the file needs no shape ops here
        spikes = []
        for t in range(x.shape[0]):  # T is a Python int under tracing: the loop unrolls
            h = self.beta * u + x[t]
            s = heaviside(h - self.threshold)
            u = h * (1 - s)
            spikes.append(s)
        return torch.stack(spikes)


def _unroll_neurons(module: nn.Module) -> nn.Module:
    """Swap every `LIF` in `module` (in place) for an `_UnrolledLIF`; return the result.

    The type test is exact: a subclass of `LIF` may compute something else, so it is left alone
    and exports (or is refused) on its own merits.
    """
    if type(module) is LIF and module.resets_to_zero_at_once:  # snnTorch's other rules are plain torch ops already
        return _UnrolledLIF(module.beta, module.threshold)
    for name, child in module.named_children():
        setattr(module, name, _unroll_neurons(child))
    return module


# torch >= 2.9 exports through torch.export (dynamo) by default, which needs onnxscript and traces
# the neuron loops differently; spikeport's files come from the TorchScript tracer on every torch.
_TORCHSCRIPT_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def _export_bytes(module: nn.Module, args: tuple, **options) -> bytes:
    """Trace `module` on `args` into an ONNX model; raise the first TracerWarning, if any.

    A TracerWarning means the trace froze a value computed from the input (a Python `if` on a
    tensor, a round trip through NumPy), so the file would be silently wrong for other inputs.
    It is raised after the export rather than turned into an error by a warnings filter, since
    the tracer emits some of them from C++, which cannot propagate an exception.
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        torch.onnx.export(module, args, buffer, opset_version=OPSET, autograd_inlining=False, **_TORCHSCRIPT_EXPORTER, **options)
    for warning in caught:
        if isinstance(warning.message, torch.jit.TracerWarning):
            raise warning.message
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return buffer.getvalue()


def _unexportable(model: nn.Module, args: tuple, error: Exception) -> UserError:
    """Name the innermost module that fails to export by itself, else the model as a whole.

    A forward pass records each module's inputs; each module is then exported alone, children
    before their parents, and the first failure is the culprit. Only modules called with tensors
    alone are tried, so a module is not blamed for inputs it cannot be traced with.
    """
    inputs: dict[nn.Module, tuple] = {}

    def record(module: nn.Module, args: tuple) -> None:
        inputs.setdefault(module, args)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()]
    try:
        with torch.no_grad():
            model(*args)
    finally:
        for hook in hooks:
            hook.remove()
    where = f"the model ({type(model).__name__})"
    for name, module in reversed(list(model.named_modules())[1:]):
        args = inputs.get(module, ())
        if not args or not all(isinstance(a, Tensor) for a in args):
            continue
        try:
            _export_bytes(module, args)
        except _EXPORT_ERRORS as e:
            where, error = f"module '{name}' ({type(module).__name__})", e
            break
    reason = (str(error).strip() or type(error).__name__).splitlines()[0].split(". ")[0]
    return UserError(f"cannot export {where} to ONNX: {reason}")


def export_onnx(model: nn.Module, example_input: Tensor, path: str | Path) -> None:
    """Write `model` as one ONNX file at `path`, in inference mode, with T unrolled.

    `example_input` is [T, B, *input_shape]; its T is baked into the file and its B is not.
    The file's input is named `input` and its output `logits`.
    """
    export_onnx_graph(model, {INPUT_NAME: example_input}, [OUTPUT_NAME], path)


def export_onnx_graph(model: nn.Module, example_inputs: dict[str, Tensor], output_names: list[str], path: str | Path) -> None:
    """Write a module with named [T, B, ...] inputs and outputs (a host partition, say) as ONNX.

    The model is deep-copied first, so the caller's model (its modules, device and train/eval
    mode) is untouched. Batch norm exports with its running statistics, as in evaluation.
    """
    for name, x in example_inputs.items():
        if x.dim() < 3:
            raise UserError(f"example input {name!r} must be [T, B, *shape], got shape {tuple(x.shape)}")
    exportable = _unroll_neurons(copy.deepcopy(model)).cpu().eval()
    args = tuple(x.detach().cpu() for x in example_inputs.values())
    batch_axis = {name: {1: "batch"} for name in [*example_inputs, *output_names]}
    try:
        data = _export_bytes(exportable, args, input_names=list(example_inputs), output_names=output_names, dynamic_axes=batch_axis)
    except _EXPORT_ERRORS as e:
        raise _unexportable(exportable, args, e) from None
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    with atomic_open(path, "wb") as f:
        f.write(data)


def run_onnx(path: str | Path, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Run an exported file on `x` [T, B, *input_shape] with ONNX Runtime; return the logits.

    `device="cuda"` uses the CUDA execution provider where the installed onnxruntime has one
    (the onnxruntime-gpu wheel on a machine with a GPU) and falls back to the CPU otherwise, so
    the same call works on every machine; the plain onnxruntime wheel is CPU-only.
    """
    if device not in ("cpu", "cuda"):
        raise UserError(f"device must be cpu or cuda, got {device!r}")
    providers = ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    check_onnx_external(path)
    session = onnxruntime.InferenceSession(str(path), providers=providers)
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]
