"""TAAF's mechanisms, separated, on av-digits-seq (a task where time and alignment matter).

The arms (methods-spec section 2; docs/taaf.md), all under one optimiser recipe so that the seeds
pair up: concat fusion; concat plus TAAF's unimodal losses with k = 1 (the losses alone); TAAF
with uniform alpha (losses and k, no attention); full TAAF (losses, k and temporal attention);
OGM-GE (concat with gradient modulation: noise on both encoders, only in its epoch window).
Each arm is trained at visual_noise 0.2, 0.5 and 0.8 (the imbalance) for every seed, through the
same `spikeport.train.loop.train` as `spikeport train`, one torch thread per process (arm_runs.py).

Besides the fused accuracy and each classifier half's accuracy (OGM-GE's measure, which TAAF's
unimodal losses train directly), each modality is measured by a linear probe on its frozen
encoder: logistic regression on the features of all T steps, fitted on the training split,
scored on the test split. Alpha per timestep is logged, with the share of it on the steps that
show the image. Writes experiments/results/NAME.json and docs/images/NAME.png, and trains in
runs/NAME (dashes for underscores): NAME is taaf_temporal at the config's epochs and
taaf_temporal_<E>ep for --epochs E other than those (arm_runs.experiment_name), so no call
overwrites another's results or resumes another's runs.

    OMP_NUM_THREADS=1 python experiments/taaf_temporal.py --seeds 0 1 2 3 4 [--noise 0.5] [--arms TAAF ...]

Runs already in --runs are continued, never retrained, so the runs can be split over calls and a
last call with all the cells writes the summary of them all (`--sweep-arms` limits the arms at
0.2 and 0.8, where the budget allows fewer).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from arm_runs import arguments, experiment_name, folder, trained  # first: it sets the thread count

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from spikeport.config import config_from_dict, load_config
from spikeport.io import write_json
from spikeport.train import datasets
from spikeport.train.checkpoint import load_checkpoint, load_weights
from spikeport.train.loop import model_for, time_major

from stats import interval, paired, verdict

CONFIG = "configs/taaf-small-avdigits-seq.yaml"
NOISE = (0.2, 0.5, 0.8)
ARMS = {
    "concat": {"fusion": "concat"},
    "concat + unimodal losses (k=1)": {"fusion": "taaf", "attention": "uniform", "modulation_alpha": 0.0},
    "TAAF, uniform alpha": {"fusion": "taaf", "attention": "uniform"},
    "TAAF": {"fusion": "taaf", "attention": "timestep"},
    "OGM-GE": {"fusion": "ogm-ge"},
}
# (A, B, metric): the claim "A is higher than B in metric"; each isolates one mechanism
CLAIMS = [
    ("TAAF", "concat", "acc_fused"),
    ("TAAF", "concat", "probe_weak"),
    ("concat + unimodal losses (k=1)", "concat", "probe_weak"),
    ("concat + unimodal losses (k=1)", "concat", "acc_fused"),
    ("TAAF, uniform alpha", "concat + unimodal losses (k=1)", "probe_weak"),
    ("TAAF, uniform alpha", "concat + unimodal losses (k=1)", "acc_fused"),
    ("TAAF", "TAAF, uniform alpha", "acc_fused"),
    ("TAAF", "TAAF, uniform alpha", "probe_weak"),
    ("TAAF", "OGM-GE", "acc_fused"),
    ("OGM-GE", "concat", "probe_weak"),
]
METRICS = ("acc_fused", "val_acc", "acc_audio", "acc_visual", "probe_audio", "probe_visual", "alpha_on_image")


def arm_config(base: dict, arm: str, noise: float, seed: int, epochs: int | None) -> dict:
    config = copy.deepcopy(base)
    config["model"].update(ARMS[arm])
    config["data"]["options"]["visual_noise"] = noise
    config["train"]["seed"] = seed
    if epochs:  # OGM-GE's StepLR(70) of 100 epochs and its modulation in epochs 0-50, scaled
        config["train"].update(epochs=epochs, step_size=max(1, round(0.7 * epochs)))
    if arm == "OGM-GE":
        config["model"]["modulation_window"] = [0, config["train"]["epochs"] // 2]
    return config


def features(model, dataset) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Each frozen encoder's features of every step, flattened ([N, T*D]), the labels, and the
    model's alpha [N, T] with the mask of the steps that show the image."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=64)
    model.eval()
    out = {"audio": [], "visual": []}
    labels, alphas, shown = [], [], []
    with torch.no_grad():
        for x, y in loader:
            audio, visual = time_major(x, torch.device("cpu"))
            f_a, f_v = model.audio(audio), model.visual(visual)
            out["audio"].append(f_a.transpose(0, 1).flatten(1).numpy())
            out["visual"].append(f_v.transpose(0, 1).flatten(1).numpy())
            alphas.append(model.head(f_a, f_v).alpha_visual.T.numpy())
            shown.append((visual.flatten(2).abs().sum(-1) > 0).T.numpy())
            labels.append(y.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}, np.concatenate(labels), (np.concatenate(alphas), np.concatenate(shown))


def probe_and_alpha(config: dict, out: Path) -> dict:
    """Linear probes on the frozen encoders (fitted on train, scored on test) and alpha's share on
    the image's steps (uniform: visual_steps / T)."""
    cfg = config_from_dict(config)
    model = model_for(cfg)
    load_weights(model, load_checkpoint(out / "checkpoint.pt"), out / "checkpoint.pt")
    load = lambda split: datasets.load(cfg.data.name, cfg.data.root, split, cfg.data.timesteps, options=cfg.data.options)  # noqa: E731
    train_f, train_y, _ = features(model, load("train"))
    test_f, test_y, (alpha, shown) = features(model, load("test"))
    result = {}
    for modality in ("audio", "visual"):
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(train_f[modality], train_y)
        result[f"probe_{modality}"] = float(probe.score(test_f[modality], test_y))
    result["alpha_on_image"] = float((alpha * shown).sum(1).mean())
    result["alpha_mean"] = alpha.mean(0).round(5).tolist()
    result["alpha_var"] = alpha.var(0).round(7).tolist()
    return result


def main() -> None:
    parser = arguments(__doc__.split("\n")[0], list(ARMS))
    parser.add_argument("--noise", type=float, nargs="+", default=list(NOISE))
    parser.add_argument("--sweep-arms", nargs="+", default=None, choices=list(ARMS), help="the arms at the noise levels other than 0.5 (default: --arms)")
    args = parser.parse_args()
    base = load_config(CONFIG).to_dict()
    name = experiment_name("taaf_temporal", args.epochs, base["train"]["epochs"])
    runs_root = args.runs or Path("runs") / name.replace("_", "-")  # runs/taaf-temporal at the config's epochs
    runs: dict[float, dict[str, dict[int, dict]]] = {}
    for noise in args.noise:
        runs[noise] = {}
        for arm in args.arms if noise == 0.5 or args.sweep_arms is None else args.sweep_arms:
            runs[noise][arm] = {}
            for seed in args.seeds:
                config = arm_config(base, arm, noise, seed, args.epochs)
                out = folder(runs_root, arm, seed, prefix=f"noise{noise}-")
                started = time.perf_counter()
                history = trained(config, out, args.finished_only)
                if history is None:
                    continue
                last = history[-1]
                record = {key: last[key] for key in ("acc_fused", "val_acc", "acc_audio", "acc_visual", "rho")}
                probe_file = out / "probe.json"  # the probes of a finished run, measured once
                if probe_file.is_file():
                    probes = json.loads(probe_file.read_text())
                else:
                    probes = probe_and_alpha(config, out)
                    write_json(probe_file, probes)
                record |= probes | {"train_seconds": round(sum(m["seconds"] for m in history), 1)}
                runs[noise][arm][seed] = record
                print(f"noise {noise} {arm} seed {seed}: " + " ".join(f"{k} {record[k]:.3f}" for k in METRICS) + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    runs = {noise: {arm: per_seed for arm, per_seed in arms.items() if per_seed} for noise, arms in runs.items()}
    runs = {noise: arms for noise, arms in runs.items() if arms.get("concat")}
    summary, claims = {}, []
    for noise, arms in runs.items():
        # The weak modality: the one whose probe is lower on concat fusion (no balancing at all)
        concat = arms["concat"].values()  # every call includes concat: it defines the weak modality
        weak = "visual" if np.mean([r["probe_visual"] for r in concat]) < np.mean([r["probe_audio"] for r in concat]) else "audio"
        for per_seed in arms.values():
            for r in per_seed.values():
                r["probe_weak"] = r[f"probe_{weak}"]
        summary[str(noise)] = {"weak_modality": weak} | {
            arm: {key: interval([r[key] for r in per_seed.values()]) for key in METRICS + ("probe_weak", "rho", "train_seconds")}
            | {"alpha_mean": np.mean([r["alpha_mean"] for r in per_seed.values()], 0).round(4).tolist()}
            for arm, per_seed in arms.items()
        }
        for a, b, metric in (claim for claim in CLAIMS if claim[0] in arms and claim[1] in arms):
            difference = paired({s: r[metric] for s, r in arms[a].items()}, {s: r[metric] for s, r in arms[b].items()})
            claims.append({"visual_noise": noise, "claim": f"{a} > {b}", "metric": metric, "difference": difference, "verdict": verdict(difference)})
            low, high = difference["ci95"]
            print(f"noise {noise}: {a} - {b} [{metric}]: {difference['mean']:+.4f} [{low:+.4f}, {high:+.4f}] {verdict(difference)}", flush=True)
    write_json(
        Path(__file__).parent / "results" / f"{name}.json",
        {
            "dataset": base["data"]["name"], "config": CONFIG, "epochs": args.epochs or base["train"]["epochs"], "seeds": args.seeds,
            "torch_threads": torch.get_num_threads(), "noise": summary, "claims": claims,
            "runs": {str(n): {arm: {str(s): r for s, r in per.items()} for arm, per in arms.items()} for n, arms in runs.items()},
        },
    )
    _plot(summary, Path(__file__).parents[1] / "docs" / "images" / f"{name}.png", len(args.seeds))


def _plot(summary: dict, path: Path, seeds: int) -> None:
    """Fused accuracy and the weak modality's probe per arm against visual_noise (mean, 95% interval)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, metric, title in zip(axes, ("acc_fused", "probe_weak", "acc_visual"), ("fused test accuracy", "weak modality: linear probe on its frozen encoder", "visual half of the classifier")):
        for i, arm in enumerate(ARMS):
            noises = [n for n in map(float, summary) if arm in summary[str(n)]]
            if not noises:
                continue
            means = [summary[str(n)][arm][metric]["mean"] for n in noises]
            lows = [summary[str(n)][arm][metric]["ci95"][0] for n in noises]
            highs = [summary[str(n)][arm][metric]["ci95"][1] for n in noises]
            x = np.array(noises) + (i - 2) * 0.012
            ax.errorbar(x, means, yerr=[np.subtract(means, lows), np.subtract(highs, means)], fmt="o-", color=f"C{i}", capsize=3, label=arm)
        ax.set(xlabel="visual_noise", title=title, xticks=[float(n) for n in summary])
    axes[0].set_ylabel(f"test accuracy, {seeds} seeds, 95% interval")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
