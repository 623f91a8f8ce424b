"""Built-in datasets that need no download: small enough to build in seconds, real enough to train on.

Each dataset is generated once from data bundled with scikit-learn and cached as one `.npz` under
`root/<name>/`, so every run trains on identical bytes and a fresh machine needs no network.
The cache holds the raw samples (images or events); turning them into `[timesteps, *input_shape]`
frames happens on access, so one cache serves any number of timesteps.

* `digits`: the 8x8 handwritten digits, shown as a static image at every timestep (direct encoding).
* `event-digits`: the same digits recorded by a simulated event camera, the way N-MNIST was made.
* `av-digits`: spoken digits (espeak-ng) paired with degraded digit images, for audio-visual
  fusion; its generator settings (the imbalance knob `visual_noise`) come from `data.options`.
* `event-digits-sparse`, `event-digits-order`, `av-digits-seq`: the same caches framed so that time
  matters (the digit in 1-2 of T frames among distractors; the label is the digit shown first;
  the spectrogram spread over time, the image at the loudest steps, the audio shifted).

Every dataset has a `val` split, a fixed stratified share of the training split (VALIDATION) that
`train` does not hold, for tuning.

The real datasets (cifar10, cifar100, cifar10-dvs, nmnist, dvs-gesture) are registered here too but
live in `real_datasets`: they are read from `root` in their official on-disk format and are never
downloaded unless the caller passes `download=True`. The real audio-visual datasets (cremad, ave)
live in `av_datasets`, read in the layout of OGM-GE's code; they cannot be downloaded at all.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tonic.io import make_structured_array
from tonic.transforms import ToFrame

from spikeport.errors import UserError
from spikeport.io import atomic_open
from spikeport.progress import stage
from spikeport.train import av_datasets, av_digits, real_datasets
from spikeport.train.dataset_specs import SPECS, DatasetSpec, dataset_names, spec  # noqa: F401 - the registry, re-exported


SPLITS = ("train", "val", "test")
# Part of every cache file name: bump it when a generator changes, so old caches are not reused.
CACHE_VERSION = 1
# The share of a generated dataset's official training split held out as `val` (stratified, fixed),
# for all tuning; `train` is the rest. data.options.validation changes it for any dataset; a real
# dataset holds out nothing unless asked, since the papers' recipes train on the whole split.
VALIDATION = 0.1


def build(name: str, root: str | Path, download: bool = False, options: dict | None = None) -> Path:
    """Generate `name` and cache it under `root/<name>/`, unless that cache already exists.

    Generation is deterministic, so an existing cache of this CACHE_VERSION (and these `options`,
    the generator's settings, part of the file name) is the right one; it is written atomically,
    so an existing cache is always complete. A real dataset is not generated: its folder under
    `root` is checked and returned (downloaded first only if `download`).
    """
    spec(name)
    options = _check_options(name, options)
    _check_root(root)
    if name in real_datasets.NAMES:
        return real_datasets.locate(name, root, download)
    if name in av_datasets.NAMES:
        return av_datasets.locate(name, root)
    options = _generator_options(name, options)
    if name in _VIEWS:  # a view of another dataset's cache, framed its own way: nothing to generate
        return build(_VIEWS[name], root, options=options)
    suffix = "".join(f"-{key}={value}" for key, value in sorted(options.items()))
    path = Path(root) / name / f"{name}-v{CACHE_VERSION}{suffix}.npz"
    if not path.exists():
        with stage(f"generating {name} into {path.parent}"):
            arrays = _BUILDERS[name](**options)
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)
    return path


def validation_fraction(name: str, options: dict | None) -> float:
    """The share of the official training split that `val` holds (0: the dataset has no `val`)."""
    default = 0.0 if name in real_datasets.NAMES or name in av_datasets.NAMES else VALIDATION
    return float((options or {}).get("validation", default))


def holdout(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) positions into `labels`: `fraction` of each class held out, drawn with a
    fixed seed, so `val` is the same samples in every run and never overlaps `train`."""
    rng = np.random.default_rng(seed)
    held = [rng.permutation(np.flatnonzero(labels == c))[: int(round(fraction * np.sum(labels == c)))] for c in np.unique(labels)]
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    return np.setdiff1d(np.arange(len(labels)), held), held


def load(
    name: str, root: str | Path, split: str, timesteps: int, download: bool = False, options: dict | None = None
) -> torch.utils.data.Dataset:
    """One split of `name` (building the cache if needed); item i is (x [timesteps, *shape], label),
    or ((audio, visual), label) for an audio-visual dataset.

    `download` only matters for a real dataset missing from `root`; `options` only for a
    generated dataset whose generator takes settings (av-digits).
    """
    spec(name)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} for dataset {name!r}; use one of: {', '.join(SPLITS)}")
    if not isinstance(timesteps, int) or timesteps < 1:
        raise UserError(f"timesteps must be a positive integer, got {timesteps!r}")
    _check_root(root)
    options = _check_options(name, options)
    fraction = validation_fraction(name, options)
    if split == "val" and fraction == 0:
        raise UserError(f"dataset {name!r} has no validation split: set data.options.validation (the share of the training split to hold out)")
    official = "train" if split == "val" else split
    if name in real_datasets.NAMES or name in av_datasets.NAMES:
        module = real_datasets if name in real_datasets.NAMES else av_datasets
        dataset = module.load(name, root, official, timesteps, *([download] if module is real_datasets else []))
        if official != "train" or fraction == 0:
            return dataset
        # Real datasets hold out a seeded share regardless of class: their labels are only known
        # by reading every sample.
        kept, held = holdout(np.zeros(len(dataset), dtype=np.int64), fraction)
        return torch.utils.data.Subset(dataset, held if split == "val" else kept)
    source = _VIEWS.get(name, name)
    arrays = read_cache(build(name, root, options=options), source)
    indices = arrays[official]
    if official == "train" and fraction:
        kept, held = holdout(arrays["labels"][indices], fraction)
        indices = indices[held if split == "val" else kept]
    framing = {key: value for key, value in options.items() if key in _FRAME_OPTIONS.get(name, ())}
    if name in _POOLED:
        framing["pool"] = indices
    return _Split(arrays, indices, partial(_FRAMERS[name], timesteps=timesteps, **framing))


def _check_root(root: str | Path) -> None:
    """The dataset root (data.root in a config, `data build --out`) is a folder, or is not there yet."""
    root = Path(root)
    if root.is_symlink() and not root.exists():
        raise UserError(f"data.root {root}: is a symbolic link to {os.readlink(root)}, which does not exist")
    if root.exists() and not root.is_dir():
        raise UserError(f"data.root {root}: is a file, not a folder of datasets")


def read_cache(path: Path, name: str) -> dict[str, np.ndarray]:
    """A generated dataset's cache, every array read and checked against what its builder writes:
    a truncated or damaged file, or one missing an array or with arrays that disagree (labels and
    samples, split indices out of range), is one line naming the file."""
    damaged = f"{path}: the cached dataset is damaged"
    remedy = "delete the file and it is generated again"
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"{damaged} ({_first_line(e)}); {remedy}") from None
    missing = [key for key in _CACHE_ARRAYS[name] if key not in arrays]
    if missing:
        raise UserError(f"{damaged} (no array {missing[0]!r}); {remedy}")
    labels = arrays["labels"]
    samples = len(arrays["offsets"]) - 1 if "offsets" in arrays else len(arrays[_CACHE_ARRAYS[name][0]])
    if labels.ndim != 1 or len(labels) != samples:
        raise UserError(f"{damaged} ({len(labels)} labels for {samples} samples); {remedy}")
    for split in ("train", "test"):  # the official split; `val` is held out of train on loading
        index = arrays[split]
        if index.ndim != 1 or index.dtype.kind not in "iu" or (index.size and not 0 <= index.min() <= index.max() < samples):
            raise UserError(f"{damaged} (split {split!r} does not index its {samples} samples); {remedy}")
    if "offsets" in arrays:
        offsets = arrays["offsets"]
        if offsets.dtype.kind not in "iu" or offsets[0] != 0 or offsets[-1] != len(arrays["events"]) or (np.diff(offsets) < 0).any():
            raise UserError(f"{damaged} (event offsets do not partition its {len(arrays['events'])} events); {remedy}")
    return arrays


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def _check_options(name: str, options: dict | None) -> dict:
    """The settings a dataset accepts: `validation` (any dataset), its generator's (av-digits
    takes av_digits.Settings' fields) and its framer's (the temporal variants)."""
    options = dict(options or {})
    allowed = {"validation": float, **_OPTIONS.get(name, {})}
    for key, value in options.items():
        if key not in allowed:
            accepted = f"accepted: {', '.join(allowed)}" if allowed else "it takes none"
            raise UserError(f"data.options.{key}: not an option of dataset {name!r} ({accepted})")
        numeric = (int, float) if allowed[key] is float else allowed[key]  # YAML writes 1.0 as 1
        if not isinstance(value, numeric) or isinstance(value, bool):
            raise UserError(f"data.options.{key}: expected {allowed[key].__name__}, got {value!r}")
    if not 0 <= options.get("validation", 0) < 1:
        raise UserError(f"data.options.validation: the share held out of the training split must lie in [0, 1), got {options['validation']!r}")
    for key in ("audio_shift", "visual_steps"):
        if options.get(key, 1) < 0:
            raise UserError(f"data.options.{key}: must be >= 0, got {options[key]!r}")
    return options


def _generator_options(name: str, options: dict) -> dict:
    """The options that change what `name`'s generator writes (the cache's name holds them)."""
    return {key: value for key, value in options.items() if key != "validation" and key not in _FRAME_OPTIONS.get(name, ())}


class _Split(torch.utils.data.Dataset):
    """The samples of one split, kept raw (images or events) and framed when an item is read."""

    def __init__(self, arrays: dict[str, np.ndarray], indices: np.ndarray, frame: Callable):
        self.arrays = arrays
        self.indices = indices
        self.frame = frame

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(self.indices[i])
        return self.frame(self.arrays, j), int(self.arrays["labels"][j])


def _digits_and_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 1797 digits (uint8, 0..16) with labels and a fixed stratified 75/25 train/test split.

    Both datasets share this split (random_state=0), so results on `digits` and `event-digits`
    are comparable sample for sample.
    """
    from sklearn.datasets import load_digits  # here, not at the top: importing sklearn takes 0.9 s, needed only to build a cache
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    train, test = train_test_split(
        np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=0
    )
    return images, labels, np.sort(train), np.sort(test)


def _build_digits() -> dict[str, np.ndarray]:
    images, labels, train, test = _digits_and_split()
    return {"images": images, "labels": labels, "train": train, "test": test}


def _frame_digits(arrays: dict[str, np.ndarray], j: int, timesteps: int) -> torch.Tensor:
    """Direct encoding: the image scaled to [0, 1], repeated at every timestep."""
    image = torch.from_numpy(arrays["images"][j].astype(np.float32) / 16.0)
    return image.repeat(timesteps, 1, 1, 1)


# --- event-digits: a simulated DVS camera doing N-MNIST's three saccades over each digit ---------

_SENSOR = 32  # sensor is _SENSOR x _SENSOR pixels
_UPSAMPLE = 3  # each 8x8 digit is drawn 24x24, centred with a 4-pixel margin for the motion
_MARGIN = (_SENSOR - 8 * _UPSAMPLE) / 2
# Saccade triangle (pixel offsets of the digit from centre, x right, y down): three 100 ms moves,
# down-right, left, up-right, back to the start. Diagonal legs make edges of every orientation fire.
_SACCADE_CORNERS = np.array([(0.0, -3.5), (3.5, 3.5), (-3.5, 3.5), (0.0, -3.5)])
_SACCADE_US = 100_000
_STEP_US = 1_000  # intensity is sampled every millisecond; events are placed between samples
_LOG_OFFSET = 0.5  # log(I + offset): a dim but nonzero background, as on N-MNIST's monitor
_THRESHOLD = 0.25  # mean contrast threshold in log-intensity units (real DVS: about 0.15 to 0.3)
_THRESHOLD_MISMATCH = 0.03  # std of the fixed per-pixel threshold, relative to the mean
_JITTER_US = 100.0  # std of the timestamp jitter
_EVENT_SEED = 0


def _saccade_offsets() -> np.ndarray:
    """(steps, 2) digit offsets along the triangle, eased so each saccade starts and stops smoothly."""
    steps_per_saccade = _SACCADE_US // _STEP_US
    s = np.arange(steps_per_saccade) / steps_per_saccade
    ease = ((1 - np.cos(np.pi * s)) / 2)[:, None]
    legs = [a + (b - a) * ease for a, b in zip(_SACCADE_CORNERS[:-1], _SACCADE_CORNERS[1:])]
    return np.concatenate(legs + [_SACCADE_CORNERS[-1:]])


def _interpolation_weights(shift: float) -> np.ndarray:
    """(_SENSOR, 8) linear-interpolation weights from one image axis to one sensor axis.

    Sensor pixel centres are mapped back into the 8x8 image (scaled by _UPSAMPLE, shifted by
    `shift`); outside the image counts as background. Rendering with these weights equals
    bilinearly upsampling the digit to 24x24 and moving it with sub-pixel precision.
    """
    position = (np.arange(_SENSOR) + 0.5 - _MARGIN - shift) / _UPSAMPLE - 0.5
    left = np.floor(position).astype(int)
    frac = position - left
    weights = np.zeros((_SENSOR, 8))
    for column, weight in ((left, 1 - frac), (left + 1, frac)):
        inside = (column >= 0) & (column < 8)
        weights[np.nonzero(inside)[0], column[inside]] = weight[inside]
    return weights


def _simulate_dvs(images: np.ndarray) -> tuple[np.ndarray, ...]:
    """Events (sample, x, y, t_us, polarity) for `images` (N, 8, 8) in [0, 1], all pixels at once.

    The DVS pixel model: each pixel keeps a reference log intensity and emits an event each time
    its log intensity moves one contrast threshold away from it, moving the reference by that
    threshold (so a large change gives several events). Event times are interpolated linearly
    between the millisecond samples, then jittered.
    """
    rng = np.random.default_rng(_EVENT_SEED)
    # One simulated sensor records every digit, so the threshold mismatch is fixed per pixel.
    mismatch = _THRESHOLD_MISMATCH * rng.standard_normal(_SENSOR * _SENSOR)
    threshold = (_THRESHOLD * (1 + mismatch)).astype(np.float32)
    flat = images.reshape(len(images), 64).astype(np.float32)

    def log_intensity(offset: np.ndarray) -> np.ndarray:
        render = np.kron(_interpolation_weights(offset[1]), _interpolation_weights(offset[0]))
        return np.log(flat @ render.T.astype(np.float32) + np.float32(_LOG_OFFSET))  # (N, pixels)

    offsets = _saccade_offsets()
    previous = log_intensity(offsets[0])
    # Each pixel was last reset at some arbitrary moment before the recording, so its reference
    # starts anywhere within half a threshold of the current level.
    reference = previous + threshold * rng.uniform(-0.5, 0.5, previous.shape).astype(np.float32)
    events = []
    for step, offset in enumerate(offsets[1:], start=1):
        current = log_intensity(offset)
        change = current - reference
        sample, pixel = np.nonzero(np.abs(change) >= threshold)
        n = (np.abs(change[sample, pixel]) // threshold[pixel]).astype(np.int64)
        sign = np.sign(change[sample, pixel])
        reference[sample, pixel] += sign * n * threshold[pixel]
        # k-th crossing (1..n) of this step: where the line previous -> current hits that level
        k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 1
        sample, pixel, sign = np.repeat(sample, n), np.repeat(pixel, n), np.repeat(sign, n)
        start = previous[sample, pixel]
        level = reference[sample, pixel] - sign * (np.repeat(n, n) - k) * threshold[pixel]
        fraction = (level - start) / (current[sample, pixel] - start)
        t = (step - 1 + fraction) * _STEP_US
        events.append((sample, pixel % _SENSOR, pixel // _SENSOR, t, sign > 0))
        previous = current
    sample, x, y, t, on = (np.concatenate(column) for column in zip(*events))
    t = np.rint(t + _JITTER_US * rng.standard_normal(len(t)))
    return sample, x, y, np.clip(t, 0, (len(offsets) - 1) * _STEP_US).astype(np.int64), on


def _build_event_digits() -> dict[str, np.ndarray]:
    """All samples' events in one tonic-style array, sorted by (sample, t), with per-sample offsets."""
    images, labels, train, test = _digits_and_split()
    sample, x, y, t, on = _simulate_dvs(images / 16.0)
    order = np.lexsort((t, sample))
    events = make_structured_array(x[order], y[order], t[order], on[order])
    bounds = np.concatenate([[0], np.cumsum(np.bincount(sample, minlength=len(labels)))])
    return {"events": events, "offsets": bounds, "labels": labels, "train": train, "test": test}


def _frame_events(arrays: dict[str, np.ndarray], j: int, timesteps: int) -> torch.Tensor:
    """Event counts per polarity and pixel in `timesteps` equal time bins: [T, 2, 32, 32]."""
    events = arrays["events"][arrays["offsets"][j] : arrays["offsets"][j + 1]]
    frames = ToFrame(sensor_size=(_SENSOR, _SENSOR, 2), n_time_bins=timesteps)(events)
    return torch.from_numpy(frames.astype(np.float32))


# --- av-digits: spoken digits paired with (degraded) images of the same digit -------------------


def _build_av_digits(visual_noise: float = 0.6, clips_per_digit: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    """espeak-ng clips and digit images (train/av_digits.py); the log-mels are standardised with
    the training clips' mean and std, so the first layer sees inputs of unit scale."""
    if not 0.0 <= visual_noise <= 1.0 or clips_per_digit < 4:
        raise UserError(f"data.options: visual_noise must lie in [0, 1] and clips_per_digit be >= 4, got {visual_noise}, {clips_per_digit}")
    images, labels, train, _ = _digits_and_split()
    image_split = np.zeros(len(labels), dtype=bool)
    image_split[train] = True
    settings = av_digits.Settings(clips_per_digit=clips_per_digit, visual_noise=float(visual_noise), seed=seed)
    arrays = av_digits.generate(images / 16.0, labels, image_split, settings, speak_fn=av_digits.speak)
    train_clips = arrays["audio"][arrays["train"]]
    audio = (arrays["audio"] - train_clips.mean()) / train_clips.std()
    return {
        "audio": audio.astype(np.float32),
        "visual": arrays["visual"],
        "labels": arrays["labels"],
        "train": np.flatnonzero(arrays["train"]),
        "test": np.flatnonzero(~arrays["train"]),
    }


def _frame_av(arrays: dict[str, np.ndarray], j: int, timesteps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Direct encoding of both modalities: the spectrogram and the image, repeated every timestep."""
    audio, visual = (torch.from_numpy(arrays[key][j]) for key in ("audio", "visual"))
    return audio.repeat(timesteps, 1, 1, 1), visual.repeat(timesteps, 1, 1, 1)


# --- temporal variants: tasks that need time ----------------------------------------------------
# In digits, event-digits and av-digits every timestep carries the whole sample, so temporal
# attention has nothing to select and time alignment nothing to align. These views of the same
# caches are framed so that time matters; every frame is a function of the sample, its split and
# `seed` alone, so a sample reads the same in every epoch and run.

_SMALL = 16  # the event variants' frames: the 32x32 sensor summed over 2x2 pixels, for small models
_TILE = 4  # distractors: the 16x16 frame cut into 4x4 tiles of 4x4 pixels, the tiles shuffled
_RECORDING_US = (len(_SACCADE_CORNERS) - 1) * _SACCADE_US


def _count_frames(events: np.ndarray, bins: int, tiles: np.ndarray | None = None) -> np.ndarray:
    """[bins, 2, 16, 16] event counts per polarity in `bins` equal time bins of the recording (as
    tonic's ToFrame with n_time_bins, at half the resolution; done with one bincount because a
    sample is framed many times per item). `tiles`, a permutation of the 16 tiles, scrambles the
    digit's shape while keeping its strokes and event count: a distractor, not a digit."""
    x, y = events["x"] // 2, events["y"] // 2
    if tiles is not None:
        moved = tiles[(y // _TILE) * (_SMALL // _TILE) + x // _TILE]
        x = (moved % (_SMALL // _TILE)) * _TILE + x % _TILE
        y = (moved // (_SMALL // _TILE)) * _TILE + y % _TILE
    step = np.minimum(events["t"].astype(np.int64) * bins // (_RECORDING_US + 1), bins - 1)
    index = ((step * 2 + events["p"].astype(np.int64)) * _SMALL + y) * _SMALL + x
    return np.bincount(index, minlength=bins * 2 * _SMALL * _SMALL).reshape(bins, 2, _SMALL, _SMALL).astype(np.float32)


def _events_of(arrays: dict[str, np.ndarray], j: int) -> np.ndarray:
    return arrays["events"][arrays["offsets"][j] : arrays["offsets"][j + 1]]


def _distractors(arrays, frames: np.ndarray, free: list[int], pool: np.ndarray, rng: np.random.Generator) -> None:
    """Fill timesteps `free` of `frames` with tile-scrambled recordings of other samples of the split."""
    for t in free:
        frames[t] = _count_frames(_events_of(arrays, int(rng.choice(pool))), 1, rng.permutation((_SMALL // _TILE) ** 2))[0]


def sparse_layout(rng: np.random.Generator, timesteps: int) -> tuple[int, int]:
    """(onset, frames) of the digit in an event-digits-sparse sample; the first draws of its generator."""
    shown = min(timesteps, 1 + int(rng.random() < 0.5))
    return int(rng.integers(0, timesteps - shown + 1)), shown


def order_layout(rng: np.random.Generator, timesteps: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((start, frames) of the first digit, (start, frames) of the second) in event-digits-order."""
    n_first, n_second = (1 + int(rng.random() < 0.5) for _ in range(2))
    start_first = int(rng.integers(0, timesteps - n_first - n_second + 1))
    start_second = int(rng.integers(start_first + n_first, timesteps - n_second + 1))
    return (start_first, n_first), (start_second, n_second)


def _frame_sparse(arrays: dict[str, np.ndarray], j: int, timesteps: int, pool: np.ndarray, seed: int = 0) -> torch.Tensor:
    """event-digits-sparse: the digit's recording squeezed into 1 or 2 consecutive frames at a
    random time; every other frame a distractor (a scrambled recording of the same event count)."""
    rng = np.random.default_rng([seed, j])
    onset, shown = sparse_layout(rng, timesteps)
    frames = np.empty((timesteps, 2, _SMALL, _SMALL), dtype=np.float32)
    frames[onset : onset + shown] = _count_frames(_events_of(arrays, j), shown)
    _distractors(arrays, frames, [t for t in range(timesteps) if not onset <= t < onset + shown], pool, rng)
    return torch.from_numpy(frames)


def _frame_order(arrays: dict[str, np.ndarray], j: int, timesteps: int, pool: np.ndarray, seed: int = 0) -> torch.Tensor:
    """event-digits-order: two digits of different classes, one after the other (1 or 2 frames
    each, at random times), distractors elsewhere; the label is the digit shown first, so a model
    that does not know the order of its frames can do no better than a coin between the two."""
    if timesteps < 4:
        raise UserError(f"data.timesteps: event-digits-order shows two digits of up to 2 frames each, so it needs >= 4 timesteps, got {timesteps}")
    rng = np.random.default_rng([seed, j])
    (start_first, n_first), (start_second, n_second) = order_layout(rng, timesteps)
    labels = arrays["labels"]
    second = int(rng.choice(pool[labels[pool] != labels[j]]))
    frames = np.empty((timesteps, 2, _SMALL, _SMALL), dtype=np.float32)
    frames[start_first : start_first + n_first] = _count_frames(_events_of(arrays, j), n_first)
    frames[start_second : start_second + n_second] = _count_frames(_events_of(arrays, second), n_second)
    busy = set(range(start_first, start_first + n_first)) | set(range(start_second, start_second + n_second))
    _distractors(arrays, frames, [t for t in range(timesteps) if t not in busy], pool, rng)
    return torch.from_numpy(frames)


_AUDIO_WINDOW = 8  # av-digits-seq: spectrogram columns per timestep


def audio_windows(spectrogram: np.ndarray, timesteps: int) -> np.ndarray:
    """[T, 1, MELS, 8]: the spectrogram's columns spread over T timesteps, window t starting at
    round(t (FRAMES - 8) / (T - 1)) (touching windows at T = 4, half-overlapping at T = 8)."""
    starts = np.rint(np.linspace(0, spectrogram.shape[-1] - _AUDIO_WINDOW, timesteps)).astype(int)
    return np.stack([spectrogram[..., s : s + _AUDIO_WINDOW] for s in starts])


def _frame_av_seq(arrays: dict[str, np.ndarray], j: int, timesteps: int, visual_steps: int = 2, audio_shift: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """av-digits-seq: the spectrogram spread over time (audio_windows), the image shown only at the
    `visual_steps` timesteps where the word is loudest (a face is seen while it speaks), blank
    elsewhere; `audio_shift` delays the audio by that many steps (its first window repeated in
    front, the last ones dropped), so the informative audio and visual steps no longer coincide."""
    windows = audio_windows(arrays["audio"][j], timesteps)
    shown = np.argsort(-windows.mean((1, 2, 3)), kind="stable")[:visual_steps]
    visual = np.zeros((timesteps, *arrays["visual"][j].shape), dtype=np.float32)
    visual[shown] = arrays["visual"][j]
    if audio_shift:
        windows = np.concatenate([np.repeat(windows[:1], min(audio_shift, timesteps), 0), windows])[:timesteps]
    return torch.from_numpy(np.ascontiguousarray(windows)), torch.from_numpy(visual)


_BUILDERS: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "digits": _build_digits,
    "event-digits": _build_event_digits,
    "av-digits": _build_av_digits,
}
_FRAMERS: dict[str, Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]] = {
    "digits": _frame_digits,
    "event-digits": _frame_events,
    "av-digits": _frame_av,
    "event-digits-sparse": _frame_sparse,
    "event-digits-order": _frame_order,
    "av-digits-seq": _frame_av_seq,
}
_VIEWS = {"event-digits-sparse": "event-digits", "event-digits-order": "event-digits", "av-digits-seq": "av-digits"}
_POOLED = ("event-digits-sparse", "event-digits-order")  # framers that draw other samples of the split
# Options that change only how samples are framed, not the cache (they are not in its name).
_FRAME_OPTIONS = {"event-digits-sparse": ("seed",), "event-digits-order": ("seed",), "av-digits-seq": ("visual_steps", "audio_shift")}
_CACHE_ARRAYS: dict[str, tuple[str, ...]] = {  # what each builder writes, samples first
    "digits": ("images", "labels", "train", "test"),
    "event-digits": ("events", "offsets", "labels", "train", "test"),
    "av-digits": ("audio", "visual", "labels", "train", "test"),
}
_OPTIONS: dict[str, dict[str, type]] = {
    "av-digits": {"visual_noise": float, "clips_per_digit": int, "seed": int},
    "event-digits-sparse": {"seed": int},
    "event-digits-order": {"seed": int},
    "av-digits-seq": {"visual_noise": float, "clips_per_digit": int, "seed": int, "visual_steps": int, "audio_shift": int},
}
