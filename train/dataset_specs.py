"""The registry of datasets: name, description, input shape and classes, nothing that loads data.

Kept apart from the loaders (datasets.py, real_datasets.py, av_datasets.py import torch, tonic,
librosa) so that a command can check a dataset name, or list the datasets, at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikeport.errors import UserError


@dataclass(frozen=True)
class DatasetSpec:
    """What a model needs to know about a dataset before seeing any of it."""

    name: str
    description: str  # one line, shown by `spikeport data list`
    input_shape: tuple[int, ...] | dict[str, tuple[int, ...]]  # per timestep, without batch and time;
    num_classes: int  # a dict of shapes by input name for a multi-input (audio-visual) dataset


SPECS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        "digits",
        "8x8 handwritten digits (scikit-learn), static image repeated every timestep",
        (1, 8, 8),
        10,
    ),
    "event-digits": DatasetSpec(
        "event-digits",
        "the same digits as DVS events from simulated N-MNIST-style saccades, 32x32 sensor",
        (2, 32, 32),
        10,
    ),
    "av-digits": DatasetSpec(
        "av-digits",
        "espeak-ng spoken digits (log-mel) paired with degraded digit images; audio dominates (options: visual_noise, clips_per_digit, seed)",
        {"audio": (1, 32, 32), "visual": (1, 32, 32)},  # av_digits reads its sizes from here
        10,
    ),
    "event-digits-sparse": DatasetSpec(
        "event-digits-sparse",
        "event-digits at 16x16 with the digit in only 1-2 of T frames at a random time, scrambled-digit distractors elsewhere (option: seed)",
        (2, 16, 16),
        10,
    ),
    "event-digits-order": DatasetSpec(
        "event-digits-order",
        "two event digits one after the other among distractors, 16x16; the label is the one shown first (option: seed)",
        (2, 16, 16),
        10,
    ),
    "av-digits-seq": DatasetSpec(
        "av-digits-seq",
        "av-digits over time: 8 spectrogram columns per timestep, the image at the loudest steps only (options: av-digits', visual_steps, audio_shift)",
        {"audio": (1, 32, 8), "visual": (1, 32, 32)},
        10,
    ),
    "cifar10": DatasetSpec(
        "cifar10", "CIFAR-10 from ROOT/cifar-10-batches-py (torchvision), image repeated every timestep", (3, 32, 32), 10
    ),
    "cifar100": DatasetSpec(
        "cifar100", "CIFAR-100 from ROOT/cifar-100-python (torchvision), image repeated every timestep", (3, 32, 32), 100
    ),
    "cifar10-dvs": DatasetSpec(
        "cifar10-dvs",
        "CIFAR10-DVS from ROOT/CIFAR10DVS/<class>/*.aedat, T equal-count frames resized to 48x48, 90/10 split",
        (2, 48, 48),
        10,
    ),
    "nmnist": DatasetSpec("nmnist", "N-MNIST from ROOT/NMNIST (tonic), T equal-time frames", (2, 34, 34), 10),
    "dvs-gesture": DatasetSpec(
        "dvs-gesture", "DVS128 Gesture from ROOT/DVSGesture (tonic), T equal-time frames", (2, 128, 128), 11
    ),
    "cremad": DatasetSpec(
        "cremad",
        "CREMA-D from ROOT/CREMA-D in OGM-GE's layout: spectrogram every timestep, T frames spread over the clip",
        {"audio": (1, 257, 188), "visual": (3, 224, 224)},
        6,
    ),
    "ave": DatasetSpec(
        "ave",
        "AVE from ROOT/AVE in OGM-GE's layout: spectrogram every timestep, T of the 10 frames",
        {"audio": (1, 257, 1004), "visual": (3, 224, 224)},
        28,
    ),
}



def dataset_names() -> list[str]:
    return list(SPECS)


def spec(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(SPECS)}")
    return SPECS[name]
