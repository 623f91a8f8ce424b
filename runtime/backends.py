"""The backends, by name: each one file with one signature,

    run(deployment, inputs {name: [N, T, *shape]}, *, mode, device, record) -> SimResult

and a MODES tuple. A backend is imported when it is picked: torch (reference), onnxruntime (onnx)
and the Lava planner take seconds to load, and a bad argument is refused before that.
"""

from __future__ import annotations

import importlib

from spikeport.errors import UserError

BACKENDS = {  # name -> (module, its MODES): the modes are here too, so a wrong one is refused before the import
    "reference": ("spikeport.runtime.reference", ("float", "loihi")),  # NIR in torch, host partitions in ONNX Runtime; Lava's arithmetic in loihi mode
    "onnx": ("spikeport.runtime.onnx", ("float",)),  # model.onnx, the whole model, in ONNX Runtime
    "lava": ("spikeport.runtime.lava.run", ("float", "loihi")),  # Lava's CPU simulator, in the Lava worker
}


def check_backend(backend: str, mode: str) -> None:
    """Refuse an unknown backend or a mode it lacks, importing nothing."""
    if backend not in BACKENDS:
        raise UserError(f"--backend: unknown backend {backend!r} (built: {', '.join(BACKENDS)})")
    modes = BACKENDS[backend][1]
    if mode not in modes:
        raise UserError(f"--mode {mode}: backend {backend} runs {', '.join(modes)} only")


def backend_module(backend: str, mode: str):
    """The backend's module (its `run` and `MODES`), refusing an unknown backend or a mode it lacks."""
    check_backend(backend, mode)
    name, modes = BACKENDS[backend]
    module = importlib.import_module(name)
    if tuple(module.MODES) != modes:
        raise RuntimeError(f"{name}.MODES is {module.MODES}, but runtime/backends.py says {modes}")
    return module
