"""Energy per sample, by the estimator a profile names; every term is reported on its own, as a
central value with the interval its figures allow.

Estimators (`energy.estimator` in a profile), all in joules per sample:
- `components`: SOPs x E_synop + neuron updates x E_neuron + spikes x E_hop (one hop per spike)
  + host MACs x E_mac + static power x active time. The active time is (T + host buffer steps) x
  step time: samples stream through the chip, so its pipeline delay overlaps the next sample (as in
  lava-dl's PilotNet measurement, 1 / fps = 16 steps); an event-driven chip without a step time is on
  for as long as its input lasts (T x dt).
- `synop_all_in`: SOPs x E_synop + host MACs x E_mac, for a per-synop figure that is a whole-chip
  average already including neuron updates, routing and static power (TrueNorth's 26 pJ).
- `paper`: the convention SNN papers compare with (Spikformer, Spike-driven Transformer):
  E_MAC x FLOPs of the first layer when its input is not spikes + E_AC x SOPs of the other layers
  (+ host MACs x E_MAC, zero for the papers' networks). E_AC is the profile's energy_per_synop_pj.
SOPs are NeuroBench effective ACs + effective MACs (nonzero weights only); for dense weights this
equals the papers' rate x T x FLOPs.

Each figure gives (low, value, high): its stated interval, or its value three times. A term is the
count times each of the three (static: power interval times active-time interval), and the total
sums the terms' lows, values and highs, since the figures' errors are not known to cancel. A term
whose figure is unknown (no value, no bound) is None, unless its count is zero (then it is 0:
nothing happens, whatever it would cost); the total then adds the known terms and is marked
partial, naming the unknown terms. `dominant` names the terms that make most of the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikeport.hwprofiles import timing
from spikeport.activity import Network
from spikeport.hwprofiles.schema import Profile, Sourced

PJ = 1e-12

FORMULAS = {
    "components": "SOPs*E_synop + neuron_updates*E_neuron + spikes*E_hop + host_MACs*E_mac + P_static*active time",
    "synop_all_in": "SOPs*E_synop (whole-chip average) + host_MACs*E_mac",
    "paper": "E_MAC*FLOPs(first, non-spiking-input layer) + E_AC*SOPs(other layers) + E_MAC*host_MACs",
}

CONSTANTS = {  # the profile figures each estimator reads (the report cites their sources)
    "components": [
        "energy_per_synop_pj", "energy_per_neuron_update_pj", "energy_per_spike_hop_pj",
        "energy_per_mac_pj", "static_power_w",
    ],
    "synop_all_in": ["energy_per_synop_pj", "energy_per_mac_pj"],
    "paper": ["energy_per_mac_pj", "energy_per_synop_pj"],
}

Interval = tuple[float, float, float]  # (low, value, high)


@dataclass
class EnergyEstimate:
    estimator: str
    terms: dict[str, Interval | None]  # joules per sample
    total: Interval | None
    partial: bool

    def dominant(self) -> list[str]:
        """The terms that together make at least two thirds of the total's interval, widest first."""
        widths = {name: t[2] - t[0] for name, t in self.terms.items() if t is not None and t[2] > t[0]}
        whole, out, covered = sum(widths.values()), [], 0.0
        for name in sorted(widths, key=widths.get, reverse=True):
            if covered >= 2 / 3 * whole:
                break
            out.append(name)
            covered += widths[name]
        return out

    def dynamic(self) -> Interval | None:
        """The total without the static term: what the network's own activity costs, which does not
        depend on how long a whole chip's leakage is charged to it."""
        if self.total is None or self.terms.get("static") is None:
            return self.total
        return tuple(t - s for t, s in zip(self.total, self.terms["static"]))

    def to_dict(self) -> dict:
        def triple(t):
            return None if t is None else {"low": t[0], "value": t[1], "high": t[2]}

        return {
            "estimator": self.estimator,
            "formula": FORMULAS[self.estimator],
            "terms": {name: triple(t) for name, t in self.terms.items()},
            "total": None if self.total is None else self.total[1],
            "low": None if self.total is None else self.total[0],
            "high": None if self.total is None else self.total[2],
            "partial": self.partial,
            "dynamic": triple(self.dynamic()),
            "unknown": [name for name, t in self.terms.items() if t is None],
            "dominant": self.dominant(),
        }


def _figure(figure: Sourced, scale: float) -> Interval | None:
    bounds = figure.interval()
    return None if bounds is None else (bounds[0] * scale, figure.value * scale, bounds[1] * scale)


def _term(count: float, figure: Sourced, scale: float = PJ) -> Interval | None:
    if count == 0:
        return (0.0, 0.0, 0.0)
    per_op = _figure(figure, scale)
    return None if per_op is None else tuple(count * v for v in per_op)


def active_time_s(network: Network, profile: Profile, layer_cores: dict[str, int] | None = None) -> Interval | None:
    """How long the chip is on for one sample when samples stream: its steps but the pipeline delay,
    or the input's duration (T x dt) for an event-driven chip without a step time; None when
    neither is known."""
    step = timing.step_time_s(network, profile, layer_cores)
    if step is not None:
        return tuple((timing.steps(network) - network.pipeline_delay) * s for s in step)
    if network.dt and network.dt > 0:
        duration = network.timesteps * network.dt
        return (duration, duration, duration)
    return None


def estimate(network: Network, profile: Profile, layer_cores: dict[str, int] | None = None) -> EnergyEstimate:
    """`layer_cores`: the fit's cores per layer, for a profile that models its step time."""
    e = profile.energy
    kind = e.estimator.value
    layers = network.layers
    host = _term(sum(part.macs for part in network.host), e.energy_per_mac_pj)
    if kind == "paper":
        encoder = layers[:1] if layers and layers[0].input_kind == "graded" else []
        others = layers[len(encoder):]
        terms = {
            "first_layer_macs": _term(sum(layer.flops for layer in encoder), e.energy_per_mac_pj),
            "acs": _term(_sops(others), e.energy_per_synop_pj),
            "host_macs": host,
        }
    else:
        terms = {"synops": _term(_sops(layers), e.energy_per_synop_pj)}
        if kind == "components":
            time = active_time_s(network, profile, layer_cores)
            power = _figure(e.static_power_w, 1.0)
            terms |= {
                "neuron_updates": _term(sum(layer.neuron_updates for layer in layers), e.energy_per_neuron_update_pj),
                "spike_hops": _term(sum(layer.spikes for layer in layers), e.energy_per_spike_hop_pj),
                "static": None if time is None or power is None else tuple(t * p for t, p in zip(time, power)),
            }
        terms["host_macs"] = host
    known = [t for t in terms.values() if t is not None]
    partial = len(known) < len(terms)
    total = tuple(sum(t[i] for t in known) for i in range(3))
    # a partial total made only of terms that are zero says nothing: unknown, not "0 J"
    if partial and not any(total):
        total = None
    return EnergyEstimate(kind, terms, total, partial)


def versus(estimate: dict, baseline: dict) -> dict | None:
    """Energy per sample as a ratio to the baseline's (the ANN paper convention), with its interval."""
    base = baseline["total"]
    if estimate["total"] is None or not base:
        return None
    return {"value": estimate["total"] / base, "low": estimate["low"] / base, "high": estimate["high"] / base}


def _sops(layers) -> float:
    return sum(layer.sops_effective_ac + layer.sops_effective_mac for layer in layers)
