"""Latency per sample: the steps a chip runs, times its step time.

steps = T + host buffer timesteps (host partitions that wait for future steps, summed as they run
one after the other) + pipeline delay (one step per synaptic stage on Lava/Loihi). The latency is
unknown (None) when the profile has no step time; a budget that cannot be checked is not "ok".
"""

from __future__ import annotations

from spikeport.hwprofiles.network import Network
from spikeport.hwprofiles.schema import Profile


def steps(network: Network) -> int:
    return network.timesteps + sum(part.buffer_timesteps for part in network.host) + network.pipeline_delay


def latency_s(network: Network, profile: Profile) -> float | None:
    step = profile.timing.step_time_s.value
    return None if step is None else steps(network) * step


def budget_ok(latency: float | None, budget_ms: float | None) -> bool | None:
    """True/False against the budget; None when no budget was asked for or the latency is unknown."""
    if budget_ms is None or latency is None:
        return None
    return latency * 1e3 <= budget_ms
