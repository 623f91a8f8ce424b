"""The profile schema: one chip's figures, each carrying where it came from and how sure we are.

Every figure is a `Sourced` value so that a report can never show a number without its origin:
`value` is null when the figure was not found (the report then says "unknown"), `source` says where
it was read (or where it was looked for), and `confidence` is H (vendor code/docs or a primary
table), M (a secondary copy of a primary, or derived from one) or L (press/wiki); a range such as
"M-H" is recorded as its lower end. A figure known only within bounds carries `low` and `high`
(published figures that bound it) around its central `value`; a figure computed from a measurement
names it in `derived_from`, a key of the profile's `measurements`, so that the measurement a figure
was fitted on is known (benchmarks/validate_hardware.py does not count it as validated by it).
Units are part of field
names (`_pj`, `_w`, `_s`, `_bits`, `_entries`) so that a YAML file cannot be read in the wrong unit.
Validation is strict (no "3" for 3, no true for 1) and one error becomes one line naming the file
and the field (`errors.UserError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spikeport.errors import UserError

T = TypeVar("T")
NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Size2 = Annotated[list[PosInt], Field(min_length=2, max_length=2)]  # (height, width)


class _Strict(BaseModel):
    # allow_inf_nan=False: an infinite energy or step time passes every ge/gt bound and makes every
    # total infinite, and a NaN in an unbounded field (low, high, a measurement) passes any check.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class Sourced(_Strict, Generic[T]):
    """A figure with its provenance. `value` must be given explicitly, even when it is null.
    `low`/`high`: the interval the published figures allow (numbers only), the value inside it."""

    value: T | None
    source: str = Field(min_length=1)
    confidence: Literal["H", "M", "L"] | None
    low: float | None = None
    high: float | None = None
    derived_from: str | None = None  # a key of Profile.measurements

    @model_validator(mode="after")
    def _known_values_have_a_confidence(self):
        if self.value is not None and self.confidence is None:
            raise ValueError("confidence (H, M or L) is required when value is known")
        if (self.low is None) != (self.high is None):
            raise ValueError("an interval needs both low and high")
        if self.low is not None:
            if self.value is None or isinstance(self.value, (bool, list, str)):
                raise ValueError("an interval (low, high) needs a numeric central value")
            if self.low > self.high:
                raise ValueError(f"interval inverted: low {self.low:g} > high {self.high:g}")
            if not self.low <= self.value <= self.high:
                raise ValueError(f"value {self.value:g} lies outside its interval [{self.low:g}, {self.high:g}]")
        return self

    def interval(self) -> tuple[float, float] | None:
        """(low, high): the stated interval, or the value itself; None when unknown."""
        if self.value is None:
            return None
        return (self.low, self.high) if self.low is not None else (self.value, self.value)


class Measurement(_Strict):
    """A published measurement that profile figures are derived from (a network on the chip)."""

    value: float
    unit: str = Field(min_length=1)
    network: str = Field(min_length=1)
    source: str = Field(min_length=1)
    confidence: Literal["H", "M", "L"]


# What a profile file that leaves out a later field gets: unknown, so its check is listed as unchecked.
_UNSET = Sourced(value=None, source="not in this profile file (a field added later)", confidence=None)


class Capacity(_Strict):
    """Limits of one core and one chip. Null limits are reported as unchecked constraints."""

    cores_per_chip: Sourced[PosInt]
    chips_max: Sourced[PosInt]  # chips one network may span (1 where multi-chip is unsupported)
    neurons_per_core: Sourced[PosInt]
    synapse_memory_per_core_bits: Sourced[PosInt]  # memory_model synapse_bits
    neuron_memory_per_core_entries: Sourced[list[PosInt]]  # memory_model speck: one per core
    kernel_memory_per_core_entries: Sourced[list[PosInt]]  # memory_model speck: one per core
    memory_model: Sourced[Literal["synapse_bits", "speck", "loihi2_tiles"]]  # selects the packing in fit.py
    fan_in_max: Sourced[PosInt]  # nonzero synapses into one neuron
    fan_out_max: Sourced[PosInt]  # nonzero synapses out of one input
    input_size_max: Sourced[Size2]  # spatial input of a conv layer
    output_size_max: Sourced[Size2]  # spatial output of a conv layer
    channels_max: Sourced[PosInt]  # input or output channels of a conv layer
    kernel_size_max: Sourced[Size2]
    strides: Sourced[list[PosInt]]  # allowed strides
    dense_input_size_max: Sourced[PosInt]  # inputs of one dense layer
    network_inputs_max: Sourced[PosInt]  # inputs of the first layer
    network_outputs_max: Sourced[PosInt]  # neurons of the last layer
    # Added after the first profiles: optional, so a user's older profile still loads (unchecked).
    destinations_max: Sourced[PosInt] = _UNSET  # layers one neuron layer sends to
    padding_max: Sourced[NonNegInt] = _UNSET  # zero padding of a conv layer, per side
    hidden_neurons_max: Sourced[PosInt] = _UNSET  # neurons of all layers but the output one (Xylo)
    neuron_layers_min: Sourced[PosInt] = _UNSET  # synaptic layers with neurons a network must have


class Precision(_Strict):
    weight_bits_max: Sourced[PosInt]
    state_bits: Sourced[PosInt]
    graded_payload_bits: Sourced[NonNegInt]  # 0: binary spikes only
    input_layer_weight_bits_max: Sourced[PosInt] = _UNSET  # first layer, if it differs


class Support(_Strict):
    neuron_models: Sourced[list[Literal["LIF", "IF", "CubaLIF", "SigmaDelta"]]]  # SigmaDelta: lava-dl's SDNN neurons, graded messages
    leak: Sourced[bool]
    layer_types: Sourced[list[Literal["conv", "dense", "pool"]]]
    runs_host_partitions: Sourced[bool]  # can run the network's host partitions on chip


class Energy(_Strict):
    """Energy constants; `estimator` picks the formula in energy.py that combines them."""

    estimator: Sourced[Literal["components", "synop_all_in", "paper"]]
    energy_per_synop_pj: Sourced[NonNegFloat]
    energy_per_mac_pj: Sourced[NonNegFloat]  # a dense MAC off the spiking fabric (host, ANN engine)
    energy_per_neuron_update_pj: Sourced[NonNegFloat]
    energy_per_spike_hop_pj: Sourced[NonNegFloat]
    static_power_w: Sourced[NonNegFloat]


class Timing(_Strict):
    step_time_s: Sourced[PosFloat]
    # A step-time model (timing.py): the busiest core's synaptic ops and neuron updates, plus a barrier.
    time_per_synop_s: Sourced[PosFloat] = _UNSET
    time_per_neuron_update_s: Sourced[PosFloat] = _UNSET
    barrier_s: Sourced[PosFloat] = _UNSET


class Profile(_Strict):
    name: str = Field(min_length=1)
    chip: str = Field(min_length=1)
    vendor: str = Field(min_length=1)
    kind: Literal["chip", "baseline"]  # a baseline has no capacity model and is never "not fitting"
    description: str
    capacity: Capacity
    precision: Precision
    support: Support
    energy: Energy
    timing: Timing
    measurements: dict[str, Measurement] = {}


def sourced_fields(profile: Profile) -> dict[str, Sourced]:
    """Every figure of a profile by dotted name (`energy.static_power_w`), for listings and tests."""
    out = {}
    for section in ("capacity", "precision", "support", "energy", "timing"):
        model = getattr(profile, section)
        for name in type(model).model_fields:
            out[f"{section}.{name}"] = getattr(model, name)
    return out


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_profile(data: object, source: str | Path) -> Profile:
    """Validate a loaded YAML document; the first problem becomes a one-line UserError."""
    try:
        profile = Profile.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        # A field in another unit (`_nj` for `_pj`) is both unknown and missing: name the unknown one.
        error = next((error for error in errors if error["type"] == "extra_forbidden"), errors[0])
        field = ".".join(str(part) if str(part).isprintable() else repr(part) for part in error["loc"]) or "(top level)"
        got = "" if error["type"] == "missing" else f", got {_short(error['input'])}"
        raise UserError(f"{source}: {field}: {error['msg']}{got}") from None
    for name, figure in sourced_fields(profile).items():
        if figure.derived_from is not None and figure.derived_from not in profile.measurements:
            known = ", ".join(sorted(profile.measurements)) or "none"
            raise UserError(f"{source}: {name}: derived_from '{figure.derived_from}' names no entry of measurements (has: {known})")
    return profile
