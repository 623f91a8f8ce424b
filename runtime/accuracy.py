"""Task accuracy of the network a report judges, so that the price of deployment (fixed point,
the chip's arithmetic) is read beside its energy.

Run only when the target has labels: a run folder's test set, or an `--input` npz with a `labels`
key. The float accuracy comes from the reference runtime; the Loihi fixed-point one from the
reference runtime's Loihi mode (equal to Lava's fixed_pt, tests/test_runtime_loihi.py) when a chosen
profile quantizes as Loihi does and the target has a Loihi export (or is a lava-dl .net file, which
runs only in fixed point). The prediction is the arg-max of the read-out averaged over time, as
`spikeport simulate` and its parity check read it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeport.errors import UserError
from spikeport.hwprofiles.schema import Profile


def check_labels(labels: np.ndarray | None, inputs: dict[str, np.ndarray], source: str | Path | None) -> None:
    """One line naming the file when labels cannot be paired with the inputs, before any work."""
    if labels is None:
        return
    where = source or "the test set"
    n = len(next(iter(inputs.values())))
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise UserError(f"{where}: labels: must be a 1-D array of integers, got {labels.dtype} of shape {list(labels.shape)}")
    if len(labels) != n:
        raise UserError(f"{where}: labels: {len(labels)} labels for {n} input samples (one label per sample)")


def _quantizes_as_loihi(profiles: list[Profile]) -> bool:
    return any(profile.chip.startswith("Loihi") for profile in profiles)


def task_accuracy(deployment, inputs: dict[str, np.ndarray], labels: np.ndarray | None, device, profiles: list[Profile],
                  known: dict[str, np.ndarray] | None = None) -> dict | None:
    """{"float": {"accuracy", "samples"}, "loihi": {...}}: the modes that apply; None without labels.
    `known`: outputs [N, T, ...] by mode already computed on these inputs by the reference backend."""
    if labels is None:
        return None
    from spikeport.runtime import reference

    modes = [] if deployment.netx is not None else ["float"]
    has_loihi_export = deployment.netx is not None or (deployment.manifest is not None and "netx" in deployment.manifest.files)
    if has_loihi_export and (deployment.netx is not None or _quantizes_as_loihi(profiles)):
        modes.append("loihi")
    out = {}
    for mode in modes:
        output = (known or {}).get(mode)
        if output is None:
            output = reference.run(deployment, inputs, mode=mode, device=device).output
        predictions = np.asarray(output).mean(1).reshape(len(labels), -1).argmax(-1)
        out[mode] = {"accuracy": float((predictions == labels).mean()), "samples": int(len(labels))}
    return out
