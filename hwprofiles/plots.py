"""The report's four plots, drawn from report.json data alone so that they can be redrawn from it.

Each plot is saved as plots/NAME.png and returned as PNG bytes for embedding in report.html.
Energies are drawn on a log axis (chips differ by orders of magnitude); unknown energies are left
out of the bars and partial totals are hatched and labelled, never drawn as if complete.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt

from spikeport.hwprofiles.energy import METADATA_KEYS
from spikeport.io import atomic_open


def _spikes_per_layer(ax, data: dict) -> None:
    layers = data["layers"]
    ax.bar([layer["name"] for layer in layers], [layer["spikes"] for layer in layers], color="tab:blue")
    ax.set(title="Spikes per layer (per sample)", ylabel="spikes")
    ax.tick_params(axis="x", labelrotation=45)


def _firing_rate(ax, data: dict) -> None:
    rates = [r if r is not None else float("nan") for r in data["totals"]["firing_rate_per_step"]]
    ax.plot(range(len(rates)), rates, marker="o")
    ax.set(title="Firing rate per timestep (spiking neurons)", xlabel="timestep", ylabel="spikes / neuron")


def _energy_per_profile(ax, data: dict) -> None:
    names, totals, partial = [], [], []
    for name, entry in data["profiles"].items():
        if entry["energy_j"]["total"] is not None:
            names.append(name)
            totals.append(entry["energy_j"]["total"])
            partial.append(entry["energy_j"]["partial"])
    bars = ax.bar(names, totals, color="tab:green")
    for bar, is_partial in zip(bars, partial):
        if is_partial:
            bar.set_hatch("//")
            bar.set_alpha(0.5)
    if any(t > 0 for t in totals):
        ax.set_yscale("log")
    ax.set(title="Energy per sample (hatched: partial, terms unknown)", ylabel="J")
    ax.tick_params(axis="x", labelrotation=45)


def _energy_breakdown(ax, data: dict) -> None:
    """Shares of each profile's known total: absolute terms differ by orders of magnitude."""
    names = [n for n, p in data["profiles"].items() if p["energy_j"]["total"]]
    terms = []
    for name in names:
        terms += [t for t in data["profiles"][name]["energy_j"] if t not in METADATA_KEYS and t not in terms]
    bottoms = [0.0] * len(names)
    for term in terms:
        energies = [data["profiles"][n]["energy_j"] for n in names]
        shares = [(e.get(term) or 0.0) / e["total"] for e in energies]
        ax.bar(names, shares, bottom=bottoms, label=term)
        bottoms = [b + v for b, v in zip(bottoms, shares)]
    ax.set(title="Energy breakdown (share of the known total)", ylabel="share", ylim=(0, 1))
    if terms:  # no profile with a known total: nothing to break down
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    ax.tick_params(axis="x", labelrotation=45)


PLOTS = {
    "spikes_per_layer": _spikes_per_layer,
    "firing_rate_per_step": _firing_rate,
    "energy_per_profile": _energy_per_profile,
    "energy_breakdown": _energy_breakdown,
}


def save_plots(data: dict, folder: Path) -> dict[str, bytes]:
    images = {}
    for name, draw in PLOTS.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        try:
            draw(ax, data)
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=100)
        finally:
            plt.close(fig)
        images[name] = buffer.getvalue()
        with atomic_open(folder / f"{name}.png", "wb") as f:
            f.write(images[name])
    return images
