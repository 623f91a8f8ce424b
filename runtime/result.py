"""What a backend's run gives (every backend returns one `SimResult`), and what `simulate` wrote.

    result = backend.run(deployment, inputs, mode="float", device="cpu", record=True)
    result.output    # [N, T, *output_shape], aligned to the input timesteps
    result.spikes    # neuron layer -> spike counts [N, T]
    result.trains    # with record: neuron layer -> spikes [N, T, *shape], and each tensor a host
                     # partition hands to a neuromorphic one ("partition.tensor", float units)
    SimResult.load("runs/dc/sim/reference-float.npz")  # .path, .labels, .accuracy, .activity

The trains are what a report counts (runtime/measure.py): the activity of a run is counted from
the run itself, on every backend that gives them (not ONNX, which runs the model as one graph).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeport.errors import UserError
from spikeport.readers import load_npz


@dataclass
class SimResult:
    output: np.ndarray  # [N, T, *output_shape], aligned to the input timesteps
    spikes: dict[str, np.ndarray]  # neuron layer -> spike counts [N, T]
    delay: int = 0  # pipeline steps the backend's output was shifted back by
    trains: dict[str, np.ndarray] | None = field(default=None, repr=False)  # with record (module docstring); None without
    labels: np.ndarray | None = None  # the class of each sample, when the inputs came with them
    path: Path | None = None  # the npz `simulate` wrote it to

    @property
    def predictions(self) -> np.ndarray:
        """Class per sample: the output averaged over time (the rate read-out)."""
        return self.output.reshape(*self.output.shape[:2], -1).mean(1).argmax(-1)

    @property
    def accuracy(self) -> float | None:
        return None if self.labels is None else float((self.predictions == self.labels).mean())

    @property
    def activity(self) -> dict[str, float]:
        """Spikes per sample in each neuron layer."""
        return {layer: float(counts.sum(1).mean()) for layer, counts in self.spikes.items()}

    @classmethod
    def load(cls, path: str | Path) -> SimResult:
        """A sim/<backend>-<mode>.npz as `simulate` wrote it (no trains: the npz holds counts)."""
        path = Path(path)
        _, data = load_npz(path)  # bounded like every npz spikeport reads (spikeport/readers.py)
        if "output" not in data:
            raise UserError(f"{path}: no 'output' array; not a spikeport simulation result")
        spikes = {key.removeprefix("spikes."): value for key, value in data.items() if key.startswith("spikes.")}
        return cls(data["output"], spikes, int(data["delay"]) if "delay" in data else 0, labels=data.get("labels"), path=path)
