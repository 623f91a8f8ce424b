"""The models spikeport trains, built from plain config data.

A model maps input [T, B, *input_shape] to logits [T, B, num_classes], one read-out per timestep;
the training loss uses their mean over T. The audio-visual model takes two inputs and returns an
AVOutput (train/taaf.py), which carries its own loss terms. Each builder is a function whose keyword arguments are
the `model:` section of a config file (besides `name`), so the signature is the schema: an unknown
key or a missing required one is reported with the allowed names.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections import OrderedDict
from typing import Callable

from torch import nn

from spikeport.errors import UserError
from spikeport.readers import memory_budget
from spikeport.train import layers
from spikeport.train.dta import ATTENTION, DEPTHS, MSResNetDTA
from spikeport.train.neuron import LIF
from spikeport.train.taaf import ATTENTIONS, FUSIONS, MODULATIONS, AudioVisualSNN


def spiking_cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    channels: list[int] = (16, 32),
    kernel_size: int = 3,
    pool: int = 2,
    beta: float = 0.5,
    threshold: float = 1.0,
    batch_norm: bool = True,
) -> nn.Module:
    """Stages of conv -> batch norm -> LIF -> average pool, then a linear read-out per timestep.

    The read-out is not spiking: its output is the logits, as in the DTA code's classifier head.
    Without batch norm the convolutions have a bias instead.
    """
    in_channels, height, width = input_shape
    stages: list[tuple[str, nn.Module]] = []
    for i, out_channels in enumerate(channels, start=1):
        stages.append((f"conv{i}", layers.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not batch_norm)))
        if batch_norm:
            stages.append((f"bn{i}", layers.BatchNorm2d(out_channels)))
        stages += [(f"lif{i}", LIF(beta, threshold)), (f"pool{i}", layers.AvgPool2d(pool))]
        in_channels, height, width = out_channels, height // pool, width // pool
    if height < 1 or width < 1:
        raise UserError(f"model: {len(channels)} pooling stages of {pool} leave nothing of a {input_shape[1:]} input")
    stages += [("flatten", layers.Flatten()), ("fc", nn.Linear(in_channels * height * width, num_classes))]
    return nn.Sequential(OrderedDict(stages))


def dta_msresnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    timesteps: int,
    depth: int = 18,
    stem_channels: int = 64,
    stages: list[list[int]] | None = None,
    attention: str = "both",
    causal: bool = False,
    beta: float = 0.5,
    threshold: float = 1.0,
) -> nn.Module:
    """MS-ResNet with one DTA block after the encoder (train/dta.py, methods-spec section 1).

    depth 18 is DTA_SNN_18 (CIFAR, DVS: 3x3 stem, stages 128x3, 256x3/2, 512x2/2); depth 34 is
    DTA_SNN_34 (ImageNet: 7x7/2 stem, no max pool, stages 64x3, 128x4, 256x6/2, 512x3/2).
    `stages` ([[channels, blocks, stride], ...]) and `stem_channels` shrink it for small data;
    `attention` is both | txa | tna | none (the official DTA_OFF baseline: the encoder's current,
    not its spikes, goes to the stages); `causal` makes it streamable.
    """
    if depth not in DEPTHS:
        raise UserError(f"model.depth: must be one of {', '.join(map(str, DEPTHS))}, got {depth!r}")
    if attention not in ATTENTION:
        raise UserError(f"model.attention: must be one of {', '.join(ATTENTION)}, got {attention!r}")
    plan = [tuple(stage) for stage in stages] if stages is not None else DEPTHS[depth]
    if any(len(stage) != 3 or min(stage) < 1 for stage in plan):
        raise UserError(f"model.stages: each stage is [channels, blocks, stride] of positive integers, got {stages!r}")
    stem_kernel, stem_stride = (7, 2) if depth == 34 else (3, 1)
    return MSResNetDTA(input_shape, num_classes, timesteps, stem_channels, stem_kernel, stem_stride, plan, attention, causal, beta, threshold)


def taaf_resnet(
    input_shape: dict[str, tuple[int, ...]],
    num_classes: int,
    timesteps: int,
    widths: list[int] = (64, 128, 256, 512),
    blocks: int = 2,
    fusion: str = "taaf",
    attention: str = "timestep",
    causal: bool = False,
    key_size: int = 128,
    modulation: str = "loss",
    modulation_alpha: float = 0.8,
    unimodal_weight: float = 1.0,
    modulation_window: list[int] | None = None,
    beta: float = 0.5,
    threshold: float = 1.0,
) -> nn.Module:
    """Audio-visual model: two spiking ResNet18s and a fusion head (train/taaf.py, methods-spec 2.3).

    Takes a two-input dataset (`audio` and `visual`, both T timesteps). The defaults are
    OGM-GE's ResNet18 and the spec's TAAF (d_k 128, alpha 0.8, beta 1); `widths` and `blocks`
    shrink it. `fusion` is taaf | concat | sum | ogm-ge, `modulation` (TAAF only) loss | gradient |
    gradient-ge, `attention` timestep | modality | uniform, `causal` masks attention to past
    timesteps. `modulation_window` [first, last] (0-based epochs, inclusive) limits gradient
    modulation (ogm-ge, or TAAF's gradient modes) to those epochs, as OGM-GE's code does with
    its 0 and 50; null modulates in every epoch.
    """
    if not isinstance(input_shape, dict) or set(input_shape) != {"audio", "visual"}:
        raise UserError(f"model.name: 'taaf-resnet' needs an audio-visual dataset (inputs audio and visual); this one has input {input_shape}")
    for key, value, allowed in (("fusion", fusion, FUSIONS), ("modulation", modulation, MODULATIONS), ("attention", attention, ATTENTIONS)):
        if value not in allowed:
            raise UserError(f"model.{key}: must be one of {', '.join(allowed)}, got {value!r}")
    if modulation_window is not None and (len(modulation_window) != 2 or not 0 <= modulation_window[0] <= modulation_window[1]):
        raise UserError(f"model.modulation_window: [first, last] epochs (0-based, first <= last) or null, got {modulation_window!r}")
    if not widths or min(widths) < 1 or blocks < 1:
        raise UserError(f"model.widths / model.blocks: positive integers needed, got {widths!r} / {blocks!r}")
    return AudioVisualSNN(
        tuple(input_shape["audio"]), tuple(input_shape["visual"]), num_classes, timesteps, timesteps, list(widths), blocks,
        fusion, attention, causal, key_size, beta, threshold, modulation, modulation_alpha, unimodal_weight,
        None if modulation_window is None else tuple(modulation_window),
    )


MODELS: dict[str, Callable[..., nn.Module]] = {
    "spiking-cnn": spiking_cnn,
    "dta-msresnet": dta_msresnet,
    "taaf-resnet": taaf_resnet,
}
SUPPLIED = ("input_shape", "num_classes", "timesteps")  # from the data section, not the model section


def build_model(model_config: dict, input_shape: tuple[int, ...], num_classes: int, timesteps: int, batch_size: int = 1) -> nn.Module:
    """Build the model named by `model_config["name"]` with the rest of the section as arguments,
    once it is known to fit in memory for training batches of `batch_size` (`check_fits`)."""
    options = dict(model_config)
    name = options.pop("name", None)
    if name not in MODELS:
        raise UserError(f"model.name: unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    builder = MODELS[name]
    parameters = inspect.signature(builder).parameters
    allowed = [p for p in parameters if p not in SUPPLIED]
    for key in options:
        if key not in allowed:
            raise UserError(f"model.{key}: unknown option for model {name!r} (allowed: {', '.join(allowed)})")
    hints = typing.get_type_hints(builder)
    for key, value in options.items():
        if not _fits(value, hints[key]):
            raise UserError(f"model.{key}: expected {_describe(hints[key])}, got {value!r}")
    for key in ("channels", "widths", "kernel_size", "pool", "blocks", "key_size", "stem_channels"):
        values = options.get(key, [])
        if any(v < 1 for v in (values if isinstance(values, list) else [values])):
            raise UserError(f"model.{key}: must be positive, got {values!r}")
    if not 0 <= options.get("beta", 0.5) <= 1:
        raise UserError(f"model.beta: the neuron's decay must lie in [0, 1], got {options['beta']!r}")
    if options.get("threshold", 1.0) <= 0:
        raise UserError(f"model.threshold: must be positive, got {options['threshold']!r}")
    if isinstance(input_shape, dict) and name != "taaf-resnet":  # several named inputs: only a multi-input model takes them
        raise UserError(f"model.name: {name!r} takes one input; this dataset has inputs {', '.join(input_shape)} (use taaf-resnet)")
    shape = input_shape if isinstance(input_shape, dict) else tuple(input_shape)

    def build(steps: int) -> nn.Module:
        return builder(shape, num_classes, **({"timesteps": steps} if "timesteps" in parameters else {}), **options)

    check_fits(build, input_shape, timesteps, batch_size)
    return build(timesteps)


def check_fits(build: Callable[[int], nn.Module], input_shape, timesteps: int, batch_size: int) -> None:
    """Refuse a model that would not fit in memory (`readers.memory_budget`) before allocating it:
    its input batch [T, B, *shape], then its parameters (float32 weights, gradients and two AdamW
    moments: 16 bytes each) counted on torch's meta device, which allocates nothing, then the
    values its layers keep for the backward pass, from a meta forward pass over a few timesteps
    scaled to T (8 bytes each: the value and its gradient). An absurd T or channel count is
    refused in milliseconds instead of failing in the allocator, or in the kernel's OOM killer."""
    import torch

    budget = memory_budget()
    shapes = list(input_shape.values()) if isinstance(input_shape, dict) else [input_shape]
    values = timesteps * batch_size * sum(math.prod(s) for s in shapes)
    if 4 * values > budget:
        raise UserError(f"data: a batch of {batch_size} samples over {timesteps} timesteps is {4 * values / 2**30:.1f} GiB of input alone, more than the {budget / 2**30:.1f} GiB free; refused")
    with torch.device("meta"):
        params = sum(p.numel() for p in build(timesteps).parameters())
        activations = 0
        if 16 * params <= budget:
            steps = min(timesteps, 4)
            activations = _activation_values(build(steps), shapes, steps, batch_size) * timesteps // steps
    need = 16 * params + 8 * activations
    if need > budget:
        counted = f"{params:,} parameters" + (f", {activations:,} activation values for a batch of {batch_size} over {timesteps} timesteps" if activations else "")
        raise UserError(f"model: needs about {need / 2**30:.1f} GiB ({counted}), more than the {budget / 2**30:.1f} GiB free; refused (fewer channels, timesteps or a smaller batch)")


def _activation_values(model: nn.Module, shapes: list[tuple], steps: int, batch_size: int) -> int:
    """Values the leaf modules of `model` (on the meta device) output for one training batch."""
    import torch

    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        total += sum(t.numel() for t in (output if isinstance(output, (tuple, list)) else [output]) if isinstance(t, torch.Tensor))

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        model.train()(*(torch.zeros(steps, batch_size, *s) for s in shapes))
    except NotImplementedError:  # an op without a meta kernel: the parameters and inputs are still bounded
        pass
    finally:
        for hook in hooks:
            hook.remove()
    return total


def _fits(value, hint) -> bool:
    """Whether a YAML value matches a builder's annotation (int, float, bool, str, list[...], X | None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return hint is type(None) and value is None or hint is not type(None) and isinstance(value, hint)


def _describe(hint) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "null") if typing.get_origin(hint) else hint.__name__


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per top-level module (modules without parameters are left out)."""
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    return {name: n for name, n in counts.items() if n}
