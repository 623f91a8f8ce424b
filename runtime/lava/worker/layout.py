"""Lava's array layout, for both sides of the worker boundary.

Lava holds a map as (W, H, C) (X, Y, channel), NIR and torch as (C, H, W); vectors are the same in
both. numpy only: the core (runtime/lava/plan.py) and the worker (network.py, host.py) import it.
"""

from __future__ import annotations

import numpy as np


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """NIR's (C, H, W) shape as Lava's (W, H, C); a vector's stays."""
    return tuple(shape[::-1]) if len(shape) == 3 else tuple(shape)


def lava_order(array: np.ndarray) -> np.ndarray:
    """NIR's (C, H, W) as Lava's (W, H, C) (and back: the transpose is its own inverse); vectors stay."""
    return np.ascontiguousarray(array.transpose(2, 1, 0)) if array.ndim == 3 else array
