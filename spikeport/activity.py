"""The activity summary of one network over a data set: the input every report is built from.

runtime/measure.py fills these from a simulation, and `spikeport simulate` writes them to
sim/activity.json; reports only read them, so the hardware side (hwprofiles/) never depends on
how the activity was measured. All counts are per sample, averaged over `samples`.

The file also says what it was measured on: the deployment (a hash of its manifest, or of the
.nir/.net file), the backend and mode, and the inputs (a hash of the arrays), so that a report
given an activity file refuses one measured on another deployment.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spikeport.errors import UserError
from spikeport.io import write_json


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


FORMAT = "spikeport-activity-1"


@dataclass(frozen=True)
class Measured:
    """What an activity file was measured on."""

    deployment: str  # sha256 of the manifest.json, or of the single .nir / .net file
    backend: str
    mode: str
    inputs: str  # sha256 of the input arrays (names, shapes, dtypes and bytes)


def fingerprint(path: str | Path) -> str:
    """The deployment's identity: its manifest (which names every file) or its single file."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inputs_fingerprint(inputs: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(inputs):
        array = inputs[name]
        digest.update(f"{name}{tuple(array.shape)}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_activity(path: str | Path, network: Network, measured: Measured) -> None:
    write_json(path, {"format": FORMAT, "measured": asdict(measured), "network": asdict(network)})


def read_activity(path: str | Path) -> tuple[Network, Measured]:
    """An activity file written by `write_activity`; one line naming the file otherwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path}: not an activity file (not JSON)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not an activity file (expected format {FORMAT}; spikeport simulate writes sim/activity.json)")
    try:
        raw = dict(data["network"])
        layers = [Layer(**{**layer, **{k: tuple(v) if isinstance(v, list) else v for k, v in layer.items() if k in _TUPLES}}) for layer in raw.pop("layers")]
        host = [HostPartition(**part) for part in raw.pop("host")]
        return Network(layers=layers, host=host, **raw), Measured(**data["measured"])
    except (KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: malformed activity file ({type(e).__name__}: {e})") from None


_TUPLES = ("input_shape", "output_shape", "kernel_size", "stride", "padding")
