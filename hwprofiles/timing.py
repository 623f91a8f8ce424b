"""Latency per sample: the steps a chip runs, times its step time.

steps = T + host buffer timesteps (host partitions that wait for future steps, summed as they run
one after the other) + pipeline delay (one step per synaptic stage on Lava/Loihi).

The step time is modelled where the profile gives per-operation times and the fit says how many
cores each layer takes (Loihi 2): cores step in lock-step, so a step lasts as long as the busiest
core needs (its share of its layer's synaptic ops per step x time per synop + its neurons x time
per neuron update) plus the barrier that ends the step; otherwise it is the profile's fixed
step_time_s. Both come as (low, value, high). The latency is unknown (None) when neither is known;
a budget that cannot be checked is not "ok".
"""

from __future__ import annotations

from spikeport.activity import Network
from spikeport.hwprofiles.schema import Profile

Interval = tuple[float, float, float]


def steps(network: Network) -> int:
    return network.timesteps + sum(part.buffer_timesteps for part in network.host) + network.pipeline_delay


def _triple(figure) -> Interval | None:
    bounds = figure.interval()
    return None if bounds is None else (bounds[0], figure.value, bounds[1])


def step_time_s(network: Network, profile: Profile, layer_cores: dict[str, int] | None = None) -> Interval | None:
    t = profile.timing
    per_synop, per_update, barrier = _triple(t.time_per_synop_s), _triple(t.time_per_neuron_update_s), _triple(t.barrier_s)
    if layer_cores and network.layers and None not in (per_synop, per_update, barrier) and network.timesteps:
        busiest = [0.0, 0.0, 0.0]
        for layer in network.layers:
            cores = layer_cores.get(layer.name, 1)
            synops = (layer.sops_effective_ac + layer.sops_effective_mac) / network.timesteps / cores
            for i in range(3):
                busiest[i] = max(busiest[i], synops * per_synop[i] + layer.neurons / cores * per_update[i])
        return tuple(b + s for b, s in zip(barrier, busiest))
    return _triple(t.step_time_s)


def latency_s(network: Network, profile: Profile, layer_cores: dict[str, int] | None = None) -> float | None:
    step = step_time_s(network, profile, layer_cores)
    return None if step is None else steps(network) * step[1]


def budget_ok(latency: float | None, budget_ms: float | None) -> bool | None:
    """True/False against the budget; None when no budget was asked for or the latency is unknown."""
    if budget_ms is None or latency is None:
        return None
    return latency * 1e3 <= budget_ms
