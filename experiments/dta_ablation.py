"""DTA ablation: no attention / T-XA only / T-NA only / DTA / causal DTA, several seeds each.

Trains configs/dta-small-<dataset>.yaml with the attention option changed, through the same
`spikeport.train.loop.train` that `spikeport train` uses, and writes the final test accuracy of every
run and the mean +- std per variant to experiments/results/dta_ablation_<dataset>.json.

    python experiments/dta_ablation.py --dataset digits --seeds 0 1 2 --epochs 8 [--variants "no attention" DTA ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from spikeport.config import config_from_dict, load_config
from spikeport.io import write_json
from spikeport.train.loop import train

VARIANTS = {
    "no attention": {"attention": "none"},
    "T-XA only": {"attention": "txa"},
    "T-NA only": {"attention": "tna"},
    "DTA": {"attention": "both"},
    "DTA, causal": {"attention": "both", "causal": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits", choices=["digits", "event-digits"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--runs", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    base = load_config(f"configs/dta-small-{args.dataset}.yaml").to_dict()
    results = {}
    for variant in args.variants:
        options = VARIANTS[variant]
        accuracies = []
        for seed in args.seeds:
            config = json.loads(json.dumps(base))
            config["model"].update(options)
            config["train"].update(seed=seed, epochs=args.epochs)
            out = args.runs / f"{args.dataset}-{variant.replace(' ', '_').replace(',', '')}-seed{seed}"
            resume = (out / "checkpoint.pt").is_file()  # rerunning the script continues, never retrains
            history = train(config_from_dict(config), out, device="cpu", resume=resume)
            accuracies.append(history[-1]["test_acc"])
        results[variant] = {
            "test_acc": accuracies,
            "mean": statistics.mean(accuracies),
            "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
        }
        print(f"{variant}: {results[variant]['mean']:.4f} +- {results[variant]['std']:.4f}", flush=True)
    write_json(
        Path(__file__).parent / "results" / f"dta_ablation_{args.dataset}.json",
        {"dataset": args.dataset, "epochs": args.epochs, "seeds": args.seeds, "config": f"configs/dta-small-{args.dataset}.yaml", "variants": results},
    )


if __name__ == "__main__":
    main()
