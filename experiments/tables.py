"""The markdown tables of docs/results.md from the experiments' JSON (experiments/results/).

    python experiments/tables.py dta_temporal | dta_temporal_order | dta_temporal_12ep | ... | taaf_temporal

Any dta_temporal* name is one results file of experiments/dta_temporal.py (its dataset and epochs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
    name = sys.argv[1]
    print(taaf_temporal() if name == "taaf_temporal" else dta_temporal(name))
