"""The report: one network's activity, and per profile its fit, energy and latency.

`build_report` makes the report.json document (a plain dict, `schema_version` bumped on any
incompatible change); `write_report` also renders report.md, report.html (plots embedded as base64
PNG) and plots/*.png, every file written atomically. All figures are per sample, averaged over the
samples the activity was measured on. Unknown values stay null in JSON and read "unknown" elsewhere.

The checks the CLI gates on (exit 3): every profile fits, and, when a budget is given, every chip's
latency is within it. A chip whose latency is unknown does not pass a budget: the check could not
be made. Baseline profiles (the ANN convention) have neither a capacity nor a timing model and take
part in no check.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from spikeport.hwprofiles import energy, fit, plots, render, timing
from spikeport.activity import Network
from spikeport.hwprofiles.registry import BUILTIN_DIR, load_profile
from spikeport.hwprofiles.schema import Profile, sourced_fields
from spikeport.io import write_json, write_text

SCHEMA_VERSION = 2  # 2: energy terms as {low, value, high}, verdicts with checked counts, cores per layer
PAPER_BASELINE = BUILTIN_DIR / "ann-45nm.yaml"  # constants of the paper convention


@dataclass
class Report:
    data: dict  # the report.json document
    passed: bool  # all requested checks passed
    out_dir: Path | None = None


def _plain(value):
    """Builtin types only: activity counts may arrive as numpy or torch scalars, which JSON rejects."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def _spiking_neurons(network: Network) -> int:
    return sum(layer.neurons for layer in network.layers if layer.neuron_model is not None)


def _rate(spikes: float, neurons: int, steps: int) -> float | None:
    return spikes / (neurons * steps) if neurons and steps else None


def _layers(network: Network) -> list[dict]:
    rows = []
    for layer in network.layers:
        spiking = layer.neuron_model is not None
        rows.append(
            {
                "name": layer.name,
                "kind": layer.kind,
                "neuron_model": layer.neuron_model,
                "neurons": layer.neurons,
                "input_kind": layer.input_kind,
                "weight_bits": layer.weight_bits,
                "spikes": layer.spikes,
                "spikes_per_step": list(layer.spikes_per_step),
                "firing_rate": _rate(layer.spikes, layer.neurons, network.timesteps) if spiking else None,
                "sops_dense": layer.sops_dense,
                "sops_effective_ac": layer.sops_effective_ac,
                "sops_effective_mac": layer.sops_effective_mac,
                "flops": layer.flops,
                "neuron_updates": layer.neuron_updates,
            }
        )
    return rows


def _totals(network: Network) -> dict:
    layers = network.layers
    spiking = [layer for layer in layers if layer.neuron_model is not None]
    neurons = _spiking_neurons(network)
    per_step = [sum(step) for step in zip(*(layer.spikes_per_step for layer in spiking))]
    spikes = sum(layer.spikes for layer in layers)
    return {
        "spikes": spikes,
        "sops_dense": sum(layer.sops_dense for layer in layers),
        "sops_effective_ac": sum(layer.sops_effective_ac for layer in layers),
        "sops_effective_mac": sum(layer.sops_effective_mac for layer in layers),
        "neuron_updates": sum(layer.neuron_updates for layer in layers),
        "host_macs": sum(part.macs for part in network.host),
        "timesteps": network.timesteps,
        "steps": timing.steps(network),
        "samples": network.samples,
        "firing_rate": _rate(spikes, neurons, network.timesteps),
        "firing_rate_per_step": [_rate(s, neurons, 1) for s in per_step],
    }


def _profile_entry(network: Network, profile: Profile, budget_ms: float | None, paper: dict) -> dict:
    result = fit.check_fit(network, profile)
    energy_j = energy.estimate(network, profile, result.layer_cores).to_dict()
    step = timing.step_time_s(network, profile, result.layer_cores)
    latency = timing.latency_s(network, profile, result.layer_cores)
    baseline = profile.kind == "baseline"
    used = [f"energy.{name}" for name in energy.CONSTANTS[profile.energy.estimator.value]] + ["timing.step_time_s"]
    if profile.timing.time_per_synop_s.value is not None:
        used += ["timing.time_per_synop_s", "timing.time_per_neuron_update_s", "timing.barrier_s"]
    if profile.capacity.memory_model.value == "loihi2_tiles":
        used += ["capacity.neurons_per_core", "capacity.synapse_memory_per_core_bits"]
    figures = sourced_fields(profile)
    return {
        "chip": profile.chip,
        "vendor": profile.vendor,
        "kind": profile.kind,
        **result.to_dict(),
        "energy_j": energy_j,
        "energy_vs_baseline": None if baseline else energy.versus(energy_j, paper),  # x the ANN paper convention
        "step_time_s": None if step is None else step[1],  # modelled from the busiest core where the profile can
        "step_time_interval_s": None if step is None else [step[0], step[2]],
        "latency_s": latency,
        "budget_ok": None if baseline else timing.budget_ok(latency, budget_ms),
        "figures": {name: figures[name].model_dump() for name in used},  # value, interval, source, confidence
        "measurements": {name: m.model_dump() for name, m in profile.measurements.items()},
    }


def build_report(
    network: Network, profiles: list[Profile], budget_ms: float | None = None, accuracy: dict | None = None
) -> Report:
    """`accuracy`: the task accuracy of the simulated network where the target has labels
    ({"float": ..., "loihi": ...}; a mode not run is absent), shown beside the energies."""
    baseline = energy.estimate(network, load_profile(PAPER_BASELINE)).to_dict()
    entries = {profile.name: _profile_entry(network, profile, budget_ms, baseline) for profile in profiles}
    chips = {name: entry for name, entry in entries.items() if entry["kind"] != "baseline"}
    fit_ok = all(entry["fits"] for entry in chips.values())
    budget_passed = None if budget_ms is None else all(entry["budget_ok"] is True for entry in chips.values())
    data = {
        "schema_version": SCHEMA_VERSION,
        "network": network.name,
        "activity": network.activity,
        "lowering": network.lowering,
        "dt_s": network.dt,
        "pipeline_delay": network.pipeline_delay,
        "warnings": network.warnings,
        "budget_ms": budget_ms,
        "totals": _totals(network),
        "layers": _layers(network),
        "host": [asdict(part) for part in network.host],
        "accuracy": accuracy,
        "paper_convention": baseline,
        "profiles": entries,
        "checks": {"fit": fit_ok, "budget": budget_passed},
    }
    return Report(_plain(data), passed=fit_ok and budget_passed is not False)


def write_report(
    network: Network,
    profiles: list[Profile],
    out_dir: str | os.PathLike,
    budget_ms: float | None = None,
    accuracy: dict | None = None,
) -> Report:
    """Write report.json, report.md, report.html and plots/*.png into out_dir; return the report."""
    out_dir = Path(out_dir)
    report = build_report(network, profiles, budget_ms, accuracy)
    report.out_dir = out_dir
    images = plots.save_plots(report.data, out_dir / "plots")
    write_json(out_dir / "report.json", report.data)
    write_text(out_dir / "report.md", render.markdown(report.data, [f"plots/{name}.png" for name in images]))
    write_text(out_dir / "report.html", render.html(report.data, images))
    return report
