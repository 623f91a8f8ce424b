"""The backends, by name: each one file with one signature,

    run(deployment, inputs {name: [N, T, *shape]}, *, mode, device, record) -> SimResult

and a MODES tuple. A backend is imported when it is picked: torch (reference), onnxruntime (onnx)
and the Lava planner take seconds to load, and a bad argument is refused before that.
"""

from __future__ import annotations

import importlib

from spikeport.errors import UserError

BACKENDS = {
    "reference": "spikeport.runtime.reference",  # NIR in torch, host partitions in ONNX Runtime; Lava's arithmetic in loihi mode
    "onnx": "spikeport.runtime.onnx",  # model.onnx, the whole model, in ONNX Runtime
    "lava": "spikeport.runtime.lava.run",  # Lava's CPU simulator, in the Lava worker
}


def backend_module(backend: str, mode: str):
    """The backend's module (its `run` and `MODES`), refusing an unknown backend or a mode it lacks."""
    if backend not in BACKENDS:
        raise UserError(f"--backend: unknown backend {backend!r} (built: {', '.join(BACKENDS)})")
    module = importlib.import_module(BACKENDS[backend])
    if mode not in module.MODES:
        raise UserError(f"--mode {mode}: backend {backend} runs {', '.join(module.MODES)} only")
    return module
