"""DTA on tasks that need time: which attention finds the informative frames of 8?

The arms (methods-spec section 1; docs/dta.md): the official DTA_OFF baseline (no attention, the
encoder's current goes to the stages), DTA_OFF widened to DTA's parameter count (so that a gain of
DTA is not just its extra weights), T-XA only, T-NA only, DTA, and causal DTA. Each arm trains
configs/dta-small-event-digits-sparse.yaml with its model options changed, on one of the two
temporal tasks (--dataset): event-digits-sparse (the digit in 1-2 of the 8 frames, the config's
own) or event-digits-order (two digits one after the other, the label the first). The runs go
through arm_runs.py (one torch thread per process, resumed, never retrained); the same seed gives
every arm the same batches. Writes every run's final test and validation accuracy, each arm's mean
with its 95% interval and the paired differences of the claims to experiments/results/NAME.json,
and a plot to docs/images/NAME.png: NAME is dta_temporal for event-digits-sparse at the config's
epochs, dta_temporal_order for event-digits-order, with _<E>ep added for --epochs E other than the
config's (so no experiment overwrites another's results or resumes another's runs).

    OMP_NUM_THREADS=1 python experiments/dta_temporal.py --seeds 0 1 2 3 4 [--dataset event-digits-order] [--arms DTA ...]

Runs can be split over calls (one seed at a time, say); a last call with every arm and seed
(--finished-only) writes the summary of them all; the claims are those whose two arms the call holds.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import arm_runs  # first: it sets the thread count
from arm_runs import arguments, folder, trained

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from spikeport.config import config_from_dict, load_config
from spikeport.io import write_json
from spikeport.train.loop import model_for

from stats import interval, paired, verdict

CONFIG = "configs/dta-small-event-digits-sparse.yaml"
DATASETS = ("event-digits-sparse", "event-digits-order")  # 16x16, 2 polarities, 10 classes: the same model reads both
BASELINE = "DTA_OFF"
ARMS = {
    BASELINE: {"attention": "none"},
    "DTA_OFF, parameter-matched": {"attention": "none", "matched": True},
    "T-XA": {"attention": "txa"},
    "T-NA": {"attention": "tna"},
    "DTA": {"attention": "both"},
    "DTA, causal": {"attention": "both", "causal": True},
}
# (A, B): the claim "A is more accurate than B"
CLAIMS = [
    ("DTA", BASELINE), ("DTA", "DTA_OFF, parameter-matched"), ("T-XA", BASELINE), ("T-NA", BASELINE),
    ("DTA", "T-XA"), ("DTA", "T-NA"), ("DTA", "DTA, causal"), ("DTA, causal", BASELINE),
]


def parameters(config: dict) -> int:
    return sum(p.numel() for p in model_for(config_from_dict(config)).parameters())


def matched(base: dict) -> dict:
    """DTA_OFF with its first stage widened until it has at least DTA's parameter count."""
    target = parameters(base | {"model": base["model"] | {"attention": "both", "causal": False}})
    config = copy.deepcopy(base)
    config["model"].update(attention="none", causal=False)
    while parameters(config) < target:
        config["model"]["stages"][0][0] += 1
    return config


def arm_config(base: dict, arm: str, seed: int, epochs: int | None, dataset: str = DATASETS[0]) -> dict:
    options = dict(ARMS[arm])
    config = matched(base) if options.pop("matched", False) else copy.deepcopy(base)
    config["model"].update(options)
    config["data"]["name"] = dataset
    config["train"]["seed"] = seed
    if epochs:
        config["train"]["epochs"] = epochs
    return config


def experiment_name(dataset: str, epochs: int | None, config_epochs: int) -> str:
    """dta_temporal for the config as it is; a suffix for the other dataset and for other epochs."""
    return arm_runs.experiment_name("dta_temporal" + ("" if dataset == DATASETS[0] else "_" + dataset.removeprefix("event-digits-")), epochs, config_epochs)


def main() -> None:
    parser = arguments(__doc__.split("\n")[0], list(ARMS))
    parser.add_argument("--dataset", default=DATASETS[0], choices=DATASETS)
    args = parser.parse_args()
    base = load_config(CONFIG).to_dict()
    name = experiment_name(args.dataset, args.epochs, base["train"]["epochs"])
    runs_root = args.runs or Path("runs") / name.replace("_", "-")  # runs/dta-temporal for the config as it is
    runs: dict[str, dict] = {}
    for arm in args.arms:
        runs[arm] = {}
        for seed in args.seeds:
            config = arm_config(base, arm, seed, args.epochs, args.dataset)
            started = time.perf_counter()
            history = trained(config, folder(runs_root, arm, seed), args.finished_only)
            if history is None:
                continue
            runs[arm][seed] = {
                "test_acc": history[-1]["test_acc"], "val_acc": history[-1]["val_acc"],
                "train_seconds": round(sum(m["seconds"] for m in history), 1), "parameters": parameters(config),
            }
            print(f"{arm} seed {seed}: test {history[-1]['test_acc']:.4f} val {history[-1]['val_acc']:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    runs = {arm: per_seed for arm, per_seed in runs.items() if per_seed}
    summary = {
        arm: {key: interval([r[key] for r in per_seed.values()]) for key in ("test_acc", "val_acc")}
        | {"parameters": next(iter(per_seed.values()))["parameters"], "train_seconds": interval([r["train_seconds"] for r in per_seed.values()])["mean"]}
        for arm, per_seed in runs.items()
    }
    claims = []
    for a, b in (claim for claim in CLAIMS if claim[0] in runs and claim[1] in runs):
        difference = paired({s: r["test_acc"] for s, r in runs[a].items()}, {s: r["test_acc"] for s, r in runs[b].items()})
        claims.append({"claim": f"{a} > {b}", "test_acc_difference": difference, "verdict": verdict(difference)})
        low, high = difference["ci95"]
        print(f"{a} - {b}: {difference['mean']:+.4f} [{low:+.4f}, {high:+.4f}] {verdict(difference)}", flush=True)
    write_json(
        Path(__file__).parent / "results" / f"{name}.json",
        {
            "dataset": args.dataset, "config": CONFIG, "runs_folder": str(runs_root), "epochs": args.epochs or base["train"]["epochs"], "seeds": args.seeds,
            "torch_threads": torch.get_num_threads(), "arms": summary, "claims": claims,
            "runs": {arm: {str(s): r for s, r in per_seed.items()} for arm, per_seed in runs.items()},
        },
    )
    _plot(summary, claims, Path(__file__).parents[1] / "docs" / "images" / f"{name}.png", len(args.seeds), args.dataset, args.epochs or base["train"]["epochs"])


def _plot(summary: dict, claims: list[dict], path: Path, seeds: int, dataset: str, epochs: int) -> None:
    """Left: each arm's test accuracy (mean, 95% interval, seeds as dots); right: the paired differences."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (arm, s) in enumerate(summary.items()):
        low, high = s["test_acc"]["ci95"]
        left.errorbar(i, s["test_acc"]["mean"], yerr=[[s["test_acc"]["mean"] - low], [high - s["test_acc"]["mean"]]], fmt="o", color=f"C{i}", capsize=4)
        left.scatter([i] * len(s["test_acc"]["values"]), s["test_acc"]["values"], color=f"C{i}", alpha=0.35, s=12)
    left.set_xticks(range(len(summary)), list(summary), rotation=25, ha="right", fontsize=8)
    left.set(ylabel="test accuracy", title=f"{dataset}, T=8, {epochs} epochs: {seeds} seeds, 95% interval")
    for i, c in enumerate(claims):
        d = c["test_acc_difference"]
        low, high = d["ci95"]
        right.errorbar(d["mean"], i, xerr=[[d["mean"] - low], [high - d["mean"]]], fmt="o", color="C2" if d["holds"] else "C3" if d["reversed"] else "C7", capsize=4)
    right.axvline(0, color="k", lw=0.8)
    right.set_yticks(range(len(claims)), [c["claim"] for c in claims], fontsize=8)
    right.set(xlabel="paired difference in test accuracy (same seeds)", title="claims: green holds, red reversed, grey not shown")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
