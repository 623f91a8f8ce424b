"""The markdown tables of docs/results.md from the experiments' JSON (experiments/results/).

    python experiments/tables.py dta_temporal | dta_temporal_order_8ep | dta_temporal_12ep | ... | taaf_temporal
    python experiments/tables.py dta_temporal dta_temporal_12ep    # what the second's training changes

Any dta_temporal* name is one results file of experiments/dta_temporal.py (its dataset and epochs).
Given two, the table pairs their runs by arm and seed (the same data and initial weights, another
number of epochs, say): each arm's change in test accuracy from the first to the second, and the
change of each claim's paired difference, with 95% intervals over the seeds both files hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stats import paired, verdict

RESULTS = Path(__file__).parent / "results"


def _ci(s: dict) -> str:
    return f"{s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"


def _difference(d: dict) -> str:
    return f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"


def dta_temporal(name: str = "dta_temporal") -> str:
    data = json.loads((RESULTS / f"{name}.json").read_text())
    lines = ["| arm | parameters | test accuracy, mean [95% interval] | val accuracy | per seed (test) | train s per run |", "|---|---|---|---|---|---|"]
    for arm, s in data["arms"].items():
        lines.append(f"| {arm} | {s['parameters']:,} | {_ci(s['test_acc'])} | {_ci(s['val_acc'])} | {', '.join(f'{v:.3f}' for v in s['test_acc']['values'])} | {s['train_seconds']:.0f} |")
    lines += ["", "| claim (paired, same seeds) | test accuracy difference [95% interval] | verdict |", "|---|---|---|"]
    lines += [f"| {c['claim']} | {_difference(c['test_acc_difference'])} | {c['verdict']} |" for c in data["claims"]]
    return "\n".join(lines)


def dta_change(first: str, second: str) -> str:
    """How each arm and each claim changes from results file `first` to `second` (paired by seed)."""
    a, b = (json.loads((RESULTS / f"{name}.json").read_text()) for name in (first, second))
    accuracy = {name: {arm: {int(s): r["test_acc"] for s, r in per.items()} for arm, per in data["runs"].items()} for name, data in ((first, a), (second, b))}
    lines = [f"| arm | test accuracy, {a['epochs']} epochs | {b['epochs']} epochs | change, paired [95% interval] | seeds |", "|---|---|---|---|---|"]
    for arm in (arm for arm in b["arms"] if arm in a["arms"]):
        change = paired(accuracy[second][arm], accuracy[first][arm])
        lines.append(f"| {arm} | {_ci(a['arms'][arm]['test_acc'])} | {_ci(b['arms'][arm]['test_acc'])} | {_difference(change)} ({verdict(change)}) | {len(change['seeds'])} |")
    lines += ["", f"| claim (paired, same seeds) | difference, {a['epochs']} epochs | {b['epochs']} epochs | change [95% interval] |", "|---|---|---|---|"]
    for claim in (c for c in b["claims"] if any(c["claim"] == d["claim"] for d in a["claims"])):
        high, low = claim["claim"].split(" > ")
        per_file = [{s: accuracy[name][high][s] - accuracy[name][low][s] for s in accuracy[name][high] if s in accuracy[name][low]} for name in (first, second)]
        change = paired(per_file[1], per_file[0])
        before = next(d for d in a["claims"] if d["claim"] == claim["claim"])
        lines.append(f"| {claim['claim']} | {_difference(before['test_acc_difference'])} ({before['verdict']}) | {_difference(claim['test_acc_difference'])} ({claim['verdict']}) | {_difference(change)} |")
    return "\n".join(lines)


def taaf_temporal() -> str:
    data = json.loads((RESULTS / "taaf_temporal.json").read_text())
    lines = []
    for noise, cell in data["noise"].items():
        weak = cell.pop("weak_modality")
        lines += [f"visual_noise {noise} (weak modality by the concat arm's probes: {weak})", ""]
        lines += ["| arm | fused | visual half | audio half | visual probe | audio probe | alpha on the image steps | rho |", "|---|---|---|---|---|---|---|---|"]
        for arm, s in cell.items():
            lines.append(
                f"| {arm} | {_ci(s['acc_fused'])} | {_ci(s['acc_visual'])} | {_ci(s['acc_audio'])} | {_ci(s['probe_visual'])} | {_ci(s['probe_audio'])} | {s['alpha_on_image']['mean']:.3f} | {s['rho']['mean']:.2f} |"
            )
        lines.append("")
    lines += ["| visual_noise | claim (paired, same seeds) | metric | difference [95% interval] | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {c['visual_noise']} | {c['claim']} | {c['metric']} | {_difference(c['difference'])} | {c['verdict']} |" for c in data["claims"]]
    return "\n".join(lines)


if __name__ == "__main__":
    names = sys.argv[1:]
    print(taaf_temporal() if names == ["taaf_temporal"] else dta_temporal(*names) if len(names) == 1 else dta_change(*names))
