"""DTA on a task that needs time: which attention finds the 1-2 informative frames of 8?

The arms (methods-spec section 1; docs/dta.md): the official DTA_OFF baseline (no attention, the
encoder's current goes to the stages), DTA_OFF widened to DTA's parameter count (so that a gain of
DTA is not just its extra weights), T-XA only, T-NA only, DTA, and causal DTA. Each arm trains
configs/dta-small-event-digits-sparse.yaml with its model options changed, through the same
`spikeport.train.loop.train` that `spikeport train` uses, one torch thread per process, for every
seed; the same seed gives every arm the same batches. Writes every run's final test and
validation accuracy, each arm's mean with its 95% interval and the paired differences of the
claims to experiments/results/dta_temporal.json, and a plot to docs/images/dta_temporal.png.

    OMP_NUM_THREADS=1 python experiments/dta_temporal.py --seeds 0 1 2 3 4 [--arms DTA ...]

Runs already in --runs are continued, never retrained, so the runs can be split over calls (one
seed at a time, say) and a last call with every arm and seed writes the summary of them all; the
claims are those whose two arms the call holds.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

torch.set_num_threads(1)  # stated in the results: reductions, so the numbers, depend on it

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from spikeport.config import config_from_dict, load_config
from spikeport.io import write_json
from spikeport.train.loop import model_for, train

from stats import interval, paired, verdict

CONFIG = "configs/dta-small-event-digits-sparse.yaml"
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


def arm_config(base: dict, arm: str, seed: int, epochs: int | None) -> dict:
    options = dict(ARMS[arm])
    config = matched(base) if options.pop("matched", False) else copy.deepcopy(base)
    config["model"].update(options)
    config["train"]["seed"] = seed
    if epochs:
        config["train"]["epochs"] = epochs
    return config


def finished(out: Path, config: dict) -> bool:
    """Whether the run in `out` has trained all its epochs."""
    metrics = out / "metrics.jsonl"
    return metrics.is_file() and len(metrics.read_text().splitlines()) >= config["train"]["epochs"] and (out / "checkpoint.pt").is_file()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--runs", type=Path, default=Path("runs/dta-temporal"))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--finished-only", action="store_true", help="summarise the runs that have finished; train nothing")
    args = parser.parse_args()
    base = load_config(CONFIG).to_dict()
    runs: dict[str, dict] = {}
    for arm in args.arms:
        runs[arm] = {}
        for seed in args.seeds:
            config = arm_config(base, arm, seed, args.epochs)
            out = args.runs / f"{arm.replace(' ', '_').replace(',', '')}-seed{seed}"
            if args.finished_only and not finished(out, config):
                continue
            started = time.perf_counter()
            history = train(config_from_dict(config), out, device="cpu", resume=(out / "checkpoint.pt").is_file())
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
        Path(__file__).parent / "results" / "dta_temporal.json",
        {
            "dataset": base["data"]["name"], "config": CONFIG, "epochs": args.epochs or base["train"]["epochs"], "seeds": args.seeds,
            "torch_threads": torch.get_num_threads(), "arms": summary, "claims": claims,
            "runs": {arm: {str(s): r for s, r in per_seed.items()} for arm, per_seed in runs.items()},
        },
    )
    _plot(summary, claims, Path(__file__).parents[1] / "docs" / "images" / "dta_temporal.png", len(args.seeds))


def _plot(summary: dict, claims: list[dict], path: Path, seeds: int) -> None:
    """Left: each arm's test accuracy (mean, 95% interval, seeds as dots); right: the paired differences."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (arm, s) in enumerate(summary.items()):
        low, high = s["test_acc"]["ci95"]
        left.errorbar(i, s["test_acc"]["mean"], yerr=[[s["test_acc"]["mean"] - low], [high - s["test_acc"]["mean"]]], fmt="o", color=f"C{i}", capsize=4)
        left.scatter([i] * len(s["test_acc"]["values"]), s["test_acc"]["values"], color=f"C{i}", alpha=0.35, s=12)
    left.set_xticks(range(len(summary)), list(summary), rotation=25, ha="right", fontsize=8)
    left.set(ylabel="test accuracy", title=f"event-digits-sparse, T=8: {seeds} seeds, 95% interval")
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
