"""What crosses between a host partition and the chip in fixed point: one pair of functions for
Lava's host process (host.py, in the worker) and the emulator (runtime/loihi_fixed.py, in the core).

A boundary is export/loihi.py's LoihiBoundary, or its fields as a dict (as the worker receives
them): `kind` ("spike" or "graded"), `payload_bits`, `scale` (integer units per float unit) and
`host_layer` (the current of a first layer computed on the host, its bias already in it).
numpy only, so both sides of the worker boundary import it.
"""

from __future__ import annotations

import numpy as np


def _field(boundary, name: str):
    return boundary[name] if isinstance(boundary, dict) else getattr(boundary, name)


def to_payload(values: np.ndarray, boundary) -> np.ndarray:
    """What a host partition sends the chip for float values: round(x * scale), saturated to the
    payload's signed bits (int32); spikes as 0/1."""
    if _field(boundary, "kind") == "spike":
        return (np.asarray(values) != 0).astype(np.int32)
    bound = 2 ** (_field(boundary, "payload_bits") - 1)
    scaled = np.round(np.asarray(values, dtype=np.float64) * _field(boundary, "scale"))
    return np.clip(scaled, -bound, bound - 1).astype(np.int32)


def from_payload(ints: np.ndarray, boundary, bias: np.ndarray | float = 0.0) -> np.ndarray:
    """What a host partition makes of a payload from the chip (float32, NIR's order): int / scale,
    plus the bias a synaptic layer leaves to the host (none for a first layer's current)."""
    if _field(boundary, "kind") == "spike":
        return (np.asarray(ints) != 0).astype(np.float32)
    values = np.asarray(ints, dtype=np.float64) / _field(boundary, "scale")
    return (values + (0.0 if _field(boundary, "host_layer") else np.asarray(bias, dtype=np.float64))).astype(np.float32)
