"""The activity summary of one network over a data set: the input every report is built from.

hwprofiles/activity.py fills these from a simulation; reports only read them, so the hardware
side never depends on how the activity was measured. All counts are per sample, averaged over
`samples`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Layer:
    """One synaptic layer together with the neurons it feeds."""

    name: str  # NIR node name
    kind: str  # "conv" | "dense"
    neuron_model: str | None  # "LIF" | "IF" | "CubaLIF" | None for a non-spiking read-out
    leak: bool  # the neuron leaks (LIF with beta < 1)
    neurons: int  # output neurons
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    kernel_size: tuple[int, int] | None
    stride: tuple[int, int] | None
    padding: tuple[int, int] | None  # zero padding per side (conv)
    in_channels: int | None
    out_channels: int | None
    weights: int
    nonzero_weights: int
    weight_bits: int | None  # bits of the weights as exported (8 after Loihi quantization); None: float
    #                          weights, quantized to each chip's precision when deployed
    fan_in: int  # most nonzero synapses into one neuron
    fan_out: int  # most nonzero synapses out of one input
    destinations: int  # synaptic layers its neurons send to (0 for the read-out)
    input_kind: str  # "spike" | "graded": its input as the model computes it (NeuroBench's AC/MAC split)
    deployed_input_kind: str  # "spike" | "graded": its input on a chip, after lowering (what fit checks)
    spikes: float  # output spikes per sample (0 for a read-out)
    spikes_per_step: list[float]  # per timestep, per sample
    sops_dense: float  # per sample, NeuroBench definitions
    sops_effective_ac: float
    sops_effective_mac: float
    flops: float  # dense MAC count per timestep x T (for the paper convention)
    neuron_updates: float  # neurons x T


@dataclass
class HostPartition:
    """Work that runs on the host, outside the spiking fabric."""

    name: str
    macs: float
    buffer_timesteps: int
    causal: bool


@dataclass
class Network:
    name: str
    layers: list[Layer]
    host: list[HostPartition]
    timesteps: int
    dt: float
    samples: int
    pipeline_delay: int  # synaptic stages (Lava/Loihi adds one step each)
    activity: str = "given"  # where the spikes came from (a runtime and its arithmetic)
    lowering: str = "as given"  # what was done to the exported graph before its layers were counted
    warnings: list[str] = field(default_factory=list)  # what the runtime found suspicious (a dt beyond a tau)
