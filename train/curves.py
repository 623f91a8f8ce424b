"""Training curves people look at: the modality imbalance of an audio-visual run.

OGM-GE's picture of imbalance: the accuracy of each modality's half of the classifier per epoch.
The dominant modality (audio on CREMA-D and av-digits) races ahead while the weak one stays low;
a fusion that balances learning lifts the weak curve. The suppression coefficients k show when
and how strongly the dominant branch was held back.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt

from spikeport.io import atomic_open


def plot_modalities(history: list[dict], path: Path, title: str) -> None:
    """Fused / audio / visual test accuracy and k per epoch, from metrics.jsonl lines, to `path`."""
    epochs = [m["epoch"] for m in history]
    fig, (accuracy, suppression) = plt.subplots(1, 2, figsize=(10, 4))
    try:
        for key, label in (("acc_fused", "fused"), ("acc_audio", "audio half"), ("acc_visual", "visual half")):
            accuracy.plot(epochs, [m[key] for m in history], marker="o", label=label)
        accuracy.set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1), title="accuracy per modality")
        accuracy.legend()
        for key, label in (("k_audio", "k audio"), ("k_visual", "k visual")):
            suppression.plot(epochs, [m[key] for m in history], marker="o", label=label)
        suppression.set(xlabel="epoch", ylabel="mean k (1 = not suppressed)", ylim=(0, 1.05), title="suppression of the dominant modality")
        suppression.legend()
        fig.suptitle(title)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())
