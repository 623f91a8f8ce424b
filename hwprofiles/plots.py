"""The report's four plots, drawn from report.json data alone so that they can be redrawn from it.

Each plot is saved as plots/NAME.png and returned as PNG bytes for embedding in report.html.
Energies are drawn on a log axis (chips differ by orders of magnitude) with error bars from each
total's interval; unknown energies are left out of the bars and partial totals are hatched and
labelled, never drawn as if complete. Every energy component has one colour in every report, and
layer names are laid out one per row, so a network of any depth stays readable.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from spikeport.io import atomic_open

COMPONENT_COLOURS = {  # fixed, so that a component looks the same from one report to the next
    "synops": "tab:blue",
    "neuron_updates": "tab:orange",
    "spike_hops": "tab:green",
    "static": "tab:gray",
    "host_macs": "tab:red",
    "first_layer_macs": "tab:purple",
    "acs": "tab:cyan",
}


def _size(data: dict, name: str) -> tuple[float, float]:
    if name == "spikes_per_layer":
        return (7, max(3.0, 0.9 + 0.28 * len(data["layers"])))
    if name == "energy_breakdown":
        return (8, 4)
    return (7, 4)


def _spikes_per_layer(ax, data: dict) -> None:
    """Horizontal bars: one row per layer, input at the top, so names never overlap."""
    layers = data["layers"]
    names = [layer["name"] for layer in layers]
    ax.barh(range(len(names)), [layer["spikes"] for layer in layers], color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize="small" if len(names) <= 20 else "x-small")
    ax.invert_yaxis()
    ax.set(title="Spikes per layer (per sample)", xlabel="spikes")


def _firing_rate(ax, data: dict) -> None:
    rates = [r if r is not None else float("nan") for r in data["totals"]["firing_rate_per_step"]]
    ax.plot(range(len(rates)), rates, marker="o")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title="Firing rate per timestep (spiking neurons)", xlabel="timestep", ylabel="spikes / neuron")


def _energy_per_profile(ax, data: dict) -> None:
    names, totals, lows, highs, partial = [], [], [], [], []
    for name, entry in data["profiles"].items():
        e = entry["energy_j"]
        if e["total"] is not None:
            names.append(name)
            totals.append(e["total"])
            lows.append(e["total"] - e["low"])
            highs.append(e["high"] - e["total"])
            partial.append(e["partial"])
    bars = ax.bar(names, totals, color="tab:green", yerr=[lows, highs], capsize=4, ecolor="black")
    for bar, is_partial in zip(bars, partial):
        if is_partial:
            bar.set_hatch("//")
            bar.set_alpha(0.5)
    if any(t > 0 for t in totals):
        ax.set_yscale("log")
    ax.set(title="Energy per sample (bars: interval; hatched: partial)", ylabel="J")
    ax.tick_params(axis="x", labelrotation=45)


def _energy_breakdown(ax, data: dict) -> None:
    """Shares of each profile's central total: absolute terms differ by orders of magnitude."""
    names = [n for n, p in data["profiles"].items() if p["energy_j"]["total"]]
    present = {t for n in names for t, v in data["profiles"][n]["energy_j"]["terms"].items() if v and v["value"]}
    bottoms = [0.0] * len(names)
    for term in [t for t in COMPONENT_COLOURS if t in present]:
        energies = [data["profiles"][n]["energy_j"] for n in names]
        shares = [((e["terms"].get(term) or {}).get("value") or 0.0) / e["total"] for e in energies]
        ax.bar(names, shares, bottom=bottoms, label=term, color=COMPONENT_COLOURS[term])
        bottoms = [b + v for b, v in zip(bottoms, shares)]
    ax.set(title="Energy breakdown (share of the central total)", ylabel="share", ylim=(0, 1))
    if present:  # no profile with a known total: nothing to break down
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
        fig, ax = plt.subplots(figsize=_size(data, name))
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
