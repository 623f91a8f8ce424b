"""TAAF vs concat fusion vs OGM-GE on imbalanced av-digits, several seeds each.

The claim under test (methods-spec section 2): TAAF raises the weak modality's unimodal accuracy
and the fused accuracy over concat fusion. Trains configs/taaf-small-avdigits.yaml with `fusion`
changed, through the same `spikeport.train.loop.train` that `spikeport train` uses, and writes the
final fused / audio-half / visual-half test accuracy of every run, mean +- std per fusion, to
experiments/results/taaf_imbalance.json, and the mean accuracy curves of both halves per fusion to
docs/images/taaf_imbalance.png.

    python experiments/taaf_imbalance.py --seeds 0 1 2 --epochs 20 [--fusions taaf concat sum ogm-ge]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np

from spikeport.config import config_from_dict, load_config
from spikeport.io import write_json
from spikeport.train.loop import train
from spikeport.train.taaf import FUSIONS

CONFIG = "configs/taaf-small-avdigits.yaml"
METRICS = ("acc_fused", "acc_audio", "acc_visual")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--runs", type=Path, default=Path("runs/taaf"))
    parser.add_argument("--fusions", nargs="+", default=["taaf", "concat", "sum", "ogm-ge"], choices=FUSIONS)
    args = parser.parse_args()
    base = load_config(CONFIG).to_dict()
    results, curves = {}, {}
    for fusion in args.fusions:
        histories = []
        for seed in args.seeds:
            config = json.loads(json.dumps(base))
            config["model"]["fusion"] = fusion
            config["train"].update(seed=seed, epochs=args.epochs)
            out = args.runs / f"{fusion}-seed{seed}"
            resume = (out / "checkpoint.pt").is_file()  # rerunning the script continues, never retrains
            histories.append(train(config_from_dict(config), out, device="cpu", resume=resume))
        final = {key: [h[-1][key] for h in histories] for key in METRICS}
        results[fusion] = {
            key: {"runs": values, "mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
            for key, values in final.items()
        } | {"rho": statistics.mean(h[-1]["rho"] for h in histories)}
        curves[fusion] = {key: np.mean([[m[key] for m in h] for h in histories], axis=0) for key in ("acc_audio", "acc_visual")}
        line = "  ".join(f"{key} {results[fusion][key]['mean']:.4f} +- {results[fusion][key]['std']:.4f}" for key in METRICS)
        print(f"{fusion}: {line}", flush=True)
    write_json(
        Path(__file__).parent / "results" / "taaf_imbalance.json",
        {"dataset": "av-digits", "config": CONFIG, "epochs": args.epochs, "seeds": args.seeds, "fusions": results},
    )
    _plot(curves, Path(__file__).parents[1] / "docs" / "images" / "taaf_imbalance.png", len(args.seeds))


def _plot(curves: dict, path: Path, seeds: int) -> None:
    """Audio-half (dashed) and visual-half (solid) test accuracy per epoch, mean over seeds."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (fusion, curve) in enumerate(curves.items()):
        epochs = np.arange(1, len(curve["acc_visual"]) + 1)
        ax.plot(epochs, curve["acc_visual"], color=f"C{i}", label=f"{fusion}: visual (weak)")
        ax.plot(epochs, curve["acc_audio"], color=f"C{i}", linestyle="--", label=f"{fusion}: audio (dominant)")
    ax.set(xlabel="epoch", ylabel="unimodal test accuracy", ylim=(0, 1), title=f"av-digits, mean of {seeds} seeds")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
