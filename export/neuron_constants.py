"""A NIR neuron node as the constants of one step: the one place NIR's neuron fields are decoded.

NIR gives a neuron as an ODE (nir.LIF: tau dv/dt = (v_leak - v) + r I). Every consumer of a NIR
file steps it by forward Euler with the graph's dt (ARCHITECTURE.md, "Semantics"):

    LIF:      v[t] = beta v[t-1] + bias + gain I[t]     beta = 1 - dt/tau, gain = (dt/tau) r, bias = (dt/tau) v_leak
    IF:       v[t] = v[t-1] + gain I[t]                 beta = 1,          gain = dt r,       bias = 0
    CubaLIF:  i[t] = alpha i[t-1] + w I[t], then v as a LIF driven by i
              alpha = 1 - dt/tau_syn, w = (dt/tau_syn) w_in, and beta, gain, bias from tau_mem
    spike where v[t] > v_threshold; then v[t] = v_reset, in the same step.

The reference runtime (runtime/reference.py), the Loihi quantizer (export/loihi.py) and the Lava
backend read these constants from `neuron_constants` rather than each dividing by tau itself, so
that they step one neuron, with one rounding (dt/tau first, in float64, then times r: what the
reference runtime has always computed). export/nir_graph.py writes the inverse: tau = dt / (1 - beta),
r = tau / dt, so that gain is 1 and beta comes back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np

from spikeport.errors import UserError

NEURON_NODES = (nir.LIF, nir.IF, nir.CubaLIF)


@dataclass(frozen=True)
class NeuronConstants:
    """Per-neuron constants of one Euler step (module docstring), float64 arrays of the layer's shape."""

    kind: str  # "LIF", "IF" or "CubaLIF"
    leak: np.ndarray  # dt/tau, the fraction of v lost per step (Lava's dv in float; 0 for IF)
    beta: np.ndarray  # membrane decay per step, 1 - leak (1 for IF)
    gain: np.ndarray  # input gain per step
    bias: np.ndarray  # constant drive per step (the leak towards v_leak; 0 for IF)
    v_threshold: np.ndarray
    v_reset: np.ndarray
    synapse_decay: np.ndarray | None = None  # CubaLIF: alpha = 1 - dt/tau_syn
    synapse_gain: np.ndarray | None = None  # CubaLIF: (dt/tau_syn) w_in


def neuron_constants(node: nir.NIRNode, dt: float, name: str = "neuron") -> NeuronConstants:
    """`node` (nir.LIF, nir.IF or nir.CubaLIF) stepped with `dt` seconds per step (module docstring).

    A time constant that is not positive has no Euler step: refused naming the node."""
    if not isinstance(node, NEURON_NODES):
        raise UserError(f"{name} ({type(node).__name__}): not a neuron node (LIF, IF or CubaLIF)")
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        dt = float("nan")
    if not 0 < dt < np.inf:
        raise UserError(f"{name} ({type(node).__name__}): dt must be a positive number of seconds per step")
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    threshold, reset = f64(node.v_threshold), f64(node.v_reset)
    if isinstance(node, nir.IF):
        gain = dt * f64(node.r)
        return NeuronConstants("IF", np.zeros_like(gain), np.ones_like(gain), gain, np.zeros_like(gain), threshold, reset)
    tau = f64(node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau)
    if np.any(tau <= 0):
        raise UserError(f"{name} ({type(node).__name__}): tau must be positive, got {tau.min():g}")
    ratio = dt / tau
    synapse_decay = synapse_gain = None
    if isinstance(node, nir.CubaLIF):
        tau_syn = f64(node.tau_syn)
        if np.any(tau_syn <= 0):
            raise UserError(f"{name} (CubaLIF): tau_syn must be positive, got {tau_syn.min():g}")
        synaptic = dt / tau_syn
        synapse_decay, synapse_gain = 1 - synaptic, synaptic * f64(node.w_in)
    return NeuronConstants(
        "CubaLIF" if isinstance(node, nir.CubaLIF) else "LIF",
        leak=ratio,
        beta=1 - ratio,
        gain=ratio * f64(node.r),
        bias=ratio * f64(node.v_leak),
        v_threshold=threshold,
        v_reset=reset,
        synapse_decay=synapse_decay,
        synapse_gain=synapse_gain,
    )
