"""Energy per sample, by the estimator a profile names; every term is reported on its own.

Estimators (`energy.estimator` in a profile), all in joules per sample:
- `components`: SOPs x E_synop + neuron updates x E_neuron + spikes x E_hop (one hop per spike)
  + host MACs x E_mac + static power x latency.
- `synop_all_in`: SOPs x E_synop + host MACs x E_mac, for a per-synop figure that is a whole-chip
  average already including neuron updates, routing and static power (TrueNorth's 26 pJ).
- `paper`: the convention SNN papers compare with (Spikformer, Spike-driven Transformer):
  E_MAC x FLOPs of the first layer when its input is not spikes + E_AC x SOPs of the other layers
  (+ host MACs x E_MAC, zero for the papers' networks). E_AC is the profile's energy_per_synop_pj.
SOPs are NeuroBench effective ACs + effective MACs (nonzero weights only); for dense weights this
equals the papers' rate x T x FLOPs.

A term whose constant is unknown is None, unless its count is zero (then it is 0: nothing happens,
whatever it would cost). The total adds the known terms and is marked partial when any is None;
a partial total whose known terms are all zero is None (unknown), never a misleading 0 J.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikeport.hwprofiles import timing
from spikeport.hwprofiles.network import Network
from spikeport.hwprofiles.schema import Profile

PJ = 1e-12
METADATA_KEYS = {"estimator", "formula", "total", "partial", "unknown"}  # the rest of to_dict() are terms

FORMULAS = {
    "components": "SOPs*E_synop + neuron_updates*E_neuron + spikes*E_hop + host_MACs*E_mac + P_static*latency",
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


@dataclass
class EnergyEstimate:
    estimator: str
    terms: dict[str, float | None]  # joules per sample
    total: float | None
    partial: bool

    def to_dict(self) -> dict:
        unknown = [name for name, value in self.terms.items() if value is None]
        return {
            "estimator": self.estimator,
            "formula": FORMULAS[self.estimator],
            **self.terms,
            "total": self.total,
            "partial": self.partial,
            "unknown": unknown,
        }


def _term(count: float, per_op: float | None, scale: float = PJ) -> float | None:
    if count == 0:
        return 0.0
    return None if per_op is None else count * per_op * scale


def estimate(network: Network, profile: Profile) -> EnergyEstimate:
    e = profile.energy
    kind = e.estimator.value
    layers = network.layers
    host = _term(sum(part.macs for part in network.host), e.energy_per_mac_pj.value)
    if kind == "paper":
        encoder = layers[:1] if layers and layers[0].input_kind == "graded" else []
        others = layers[len(encoder):]
        terms = {
            "first_layer_macs": _term(sum(layer.flops for layer in encoder), e.energy_per_mac_pj.value),
            "acs": _term(_sops(others), e.energy_per_synop_pj.value),
            "host_macs": host,
        }
    else:
        terms = {"synops": _term(_sops(layers), e.energy_per_synop_pj.value)}
        if kind == "components":
            latency = timing.latency_s(network, profile)
            static = None if latency is None or e.static_power_w.value is None else latency * e.static_power_w.value
            terms |= {
                "neuron_updates": _term(sum(layer.neuron_updates for layer in layers), e.energy_per_neuron_update_pj.value),
                "spike_hops": _term(sum(layer.spikes for layer in layers), e.energy_per_spike_hop_pj.value),
                "static": static,
            }
        terms["host_macs"] = host
    known = [value for value in terms.values() if value is not None]
    partial = len(known) < len(terms)
    # a partial total made only of terms that are zero says nothing: unknown, not "0 J"
    total = sum(known) if not partial or any(known) else None
    return EnergyEstimate(kind, terms, total, partial)


def _sops(layers) -> float:
    return sum(layer.sops_effective_ac + layer.sops_effective_mac for layer in layers)
