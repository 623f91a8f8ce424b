"""The ONNX backend: the export's model.onnx (the whole model, T unrolled) in ONNX Runtime.

    run(deployment, inputs {name: [N, T, *shape]}, mode="float", device="cpu" | "cuda") -> SimResult

It runs the model as one graph, so it gives the output only: no spike counts, no trains (a
report cannot count its activity). The CUDA execution provider is used when installed and asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime

from spikeport.errors import UserError
from spikeport.readers import check_onnx_external
from spikeport.runtime.result import SimResult

if TYPE_CHECKING:
    from spikeport.deployment import Deployment

MODES = ("float",)


def run(deployment: Deployment, inputs: dict[str, np.ndarray], *, mode: str = "float", device="cpu", record: bool = False) -> SimResult:
    """`record` is accepted for the one signature and gives nothing: the graph shows no spikes."""
    if mode not in MODES:
        raise UserError(f"--mode {mode}: the onnx backend runs {', '.join(MODES)} only")
    path = deployment.file("onnx")
    if path is None:
        raise UserError(f"{deployment.path}: --backend onnx needs an export with model.onnx (spikeport export RUN --formats nir,onnx)")
    providers = ["CPUExecutionProvider"]
    wants_cuda = str(device).startswith("cuda") or (str(device) == "auto" and _cuda())
    if wants_cuda and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    feeds = {n: np.ascontiguousarray(np.swapaxes(x, 0, 1), dtype=np.float32) for n, x in inputs.items()}
    (output,) = session(path, providers).run([deployment.manifest.outputs[0].name], feeds)
    return SimResult(np.swapaxes(output, 0, 1), {})


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def session(path: Path, providers: list[str]) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session of an export's file; UserError naming the file when it is not one."""
    check_onnx_external(path)  # before onnxruntime reads any tensor stored outside the file
    try:
        return onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors (InvalidProtobuf, Fail, NoSuchFile ...) share no base but Exception
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a readable ONNX file ({first})") from None
