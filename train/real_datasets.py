"""Real datasets, read from a local root in the on-disk format of their official distribution.

Nothing here downloads unless the caller passes `download=True`: the datasets are large (CIFAR10-DVS
is about 7 GB), training machines are often offline, and a run must not silently fetch gigabytes.
A missing dataset is a `UserError` naming the folder that was expected and where to get it.

Layout under the dataset root (the folders torchvision and tonic use, so an existing download works):

    ROOT/cifar-10-batches-py/       torchvision CIFAR10 (data_batch_1..5, test_batch, batches.meta)
    ROOT/cifar-100-python/          torchvision CIFAR100 (train, test, meta)
    ROOT/CIFAR10DVS/<class>/*.aedat the original CIFAR10-DVS recordings (AEDAT 2.0), one folder per class
    ROOT/NMNIST/Train|Test/<digit>/*.bin             tonic NMNIST, extracted
    ROOT/DVSGesture/ibmGestureTrain|Test/userNN_<lighting>/<label>.npy   tonic DVSGesture, extracted

The augmentation follows the DTA training recipes (methods-spec 1.5). CutMix and mixup mix whole
batches, so they are functions for the training loop (`cutmix`, `mixup`), not dataset transforms.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tonic
import torch
from tonic.io import get_aer_events_from_file, make_structured_array, read_aedat_header_from_file
from tonic.transforms import ToFrame

from spikeport.errors import UserError

if TYPE_CHECKING:  # torchvision is imported in the functions that use it: its import takes 1.7 s (torch._dynamo, sympy)
    import torchvision

# DTA's CIFAR-10 statistics (methods-spec 1.5). For CIFAR-100 the spec only says "its own
# statistics"; these are the commonly used per-channel mean and std of its training images.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)

CIFAR10DVS_SIZE = 48  # DTA resizes the 128x128 CIFAR10-DVS frames to 48x48
CIFAR10DVS_TRAIN_FRACTION = 0.9
CIFAR10DVS_URL = "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671"
CIFAR10DVS_FOLDER = "CIFAR10DVS"

NAMES = ("cifar10", "cifar100", "cifar10-dvs", "nmnist", "dvs-gesture")


def locate(name: str, root: str | Path, download: bool = False) -> Path:
    """The folder that holds `name` under `root`, checked to hold both splits (downloading them
    first only if `download`)."""
    root = Path(root)
    if name in _CIFAR:  # torchvision checks the md5 of every file of both splits
        _cifar(name, root, train=False, timesteps=1, download=download)
        return root / _cifar_class(name).base_folder
    if name == "cifar10-dvs":
        _cifar10dvs_files(root, download)
        return root / CIFAR10DVS_FOLDER
    for train in (True, False):
        dataset = _TONIC[name](str(root), allow_download=download, train=train)
    return Path(dataset.location_on_system)


def load(
    name: str, root: str | Path, split: str, timesteps: int, download: bool = False
) -> torch.utils.data.Dataset:
    """One split of `name`; item i is (x float32 [timesteps, *input_shape], int label).

    The train split carries the recipe's per-sample augmentation, drawn from torch's global RNG
    (so `torch.manual_seed` makes it repeatable, and DataLoader workers get their own streams).
    """
    root, train = Path(root), split == "train"
    if name in _CIFAR:
        return _cifar(name, root, train, timesteps, download)
    if name == "cifar10-dvs":
        return _CIFAR10DVSSplit(_cifar10dvs_files(root, download), train, timesteps)
    frames = ToFrame(sensor_size=_TONIC[name].sensor_size, n_time_bins=timesteps)
    return _TONIC[name](str(root), allow_download=download, train=train, transform=_ToTensor(frames))


# --- CIFAR-10 / CIFAR-100 (torchvision) ------------------------------------------------------


class _RepeatTimesteps:
    """Direct encoding: the normalised image is the input at every timestep."""

    def __init__(self, timesteps: int):
        self.timesteps = timesteps

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.repeat(self.timesteps, 1, 1, 1)


_CIFAR = {  # name -> torchvision.datasets' class, mean, std
    "cifar10": ("CIFAR10", CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": ("CIFAR100", CIFAR100_MEAN, CIFAR100_STD),
}


def _cifar_class(name: str) -> type[torchvision.datasets.CIFAR10]:
    import torchvision.datasets  # here, not at the top: importing torchvision takes 1.7 s

    return getattr(torchvision.datasets, _CIFAR[name][0])


def _cifar(name: str, root: Path, train: bool, timesteps: int, download: bool) -> torchvision.datasets.CIFAR10:
    """torchvision's CIFAR reader, md5 checks included; its errors become one-line UserErrors."""
    from torchvision import transforms  # here, not at the top: importing torchvision takes 1.7 s

    cls, (_, mean, std) = _cifar_class(name), _CIFAR[name]
    folder = root / cls.base_folder
    if not download and not folder.is_dir():
        raise UserError(
            f"{folder}: not found; {name} is not downloaded automatically: extract "
            f"{cls.filename} ({cls.url}) into {root}"
        )
    augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if train else []
    transform = transforms.Compose(
        [*augment, transforms.ToTensor(), transforms.Normalize(mean, std), _RepeatTimesteps(timesteps)]
    )
    try:
        dataset = cls(str(root), train=train, transform=transform, download=download)
    except RuntimeError as e:  # torchvision: a file is missing or fails its md5 check
        raise UserError(f"{folder}: incomplete or corrupted ({e}); extract {cls.filename} there again") from e
    return dataset


# --- N-MNIST and DVS Gesture (tonic) ---------------------------------------------------------


class _ToTensor:
    """Apply tonic's ToFrame and hand the [T, 2, H, W] counts over as float32."""

    def __init__(self, frames: ToFrame):
        self.frames = frames

    def __call__(self, events: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.frames(events).astype(np.float32))


class _LocalOnly:
    """Mixin for a tonic dataset: read the extracted folder, download only when allowed.

    tonic treats a dataset as present only if its archive (train.zip, ...) lies beside the
    extracted files and the folder holds a full dataset's worth of files; otherwise it downloads.
    An extracted copy without its archive is a complete dataset, so here any file of the right type
    in the extracted folder counts as present, and a missing one is a UserError unless the caller
    asked for a download. The subclasses keep tonic's class names, because tonic derives the folder
    (ROOT/<class name>) from them.
    """

    extension: str

    def __init__(self, save_to: str, allow_download: bool, **kwargs):
        self.allow_download = allow_download
        super().__init__(save_to, **kwargs)

    def _check_exists(self) -> bool:
        return self._folder_contains_at_least_n_files_of_type(1, self.extension)

    def download(self) -> None:
        if not self.allow_download:
            folder = Path(self.location_on_system, self.folder_name)
            raise UserError(
                f"{folder}: not found or holds no {self.extension} files; {type(self).__name__} is not "
                f"downloaded automatically: extract {self.filename} ({self.url}) into {self.location_on_system}"
            )
        super().download()


class NMNIST(_LocalOnly, tonic.datasets.NMNIST):
    """tonic's N-MNIST (2x34x34 events, its own train/test split) from ROOT/NMNIST."""

    extension = ".bin"


class DVSGesture(_LocalOnly, tonic.datasets.DVSGesture):
    """tonic's DVS Gesture (2x128x128 events, 11 classes) from ROOT/DVSGesture.

    tonic lists each user's recordings in directory order, which differs between file systems;
    they are sorted by path here so that sample i is the same recording on every machine.
    """

    extension = ".npy"

    def __init__(self, save_to: str, allow_download: bool, **kwargs):
        super().__init__(save_to, allow_download, **kwargs)
        order = sorted(range(len(self.data)), key=self.data.__getitem__)
        for field in ("data", "targets", "users", "lighting"):
            setattr(self, field, [getattr(self, field)[i] for i in order])


_TONIC = {"nmnist": NMNIST, "dvs-gesture": DVSGesture}


# --- CIFAR10-DVS (original AEDAT 2.0 recordings, DTA's spikingjelly pipeline) ----------------

CIFAR10DVS_CLASSES = tuple(tonic.datasets.CIFAR10DVS.classes)  # airplane .. truck, label order


def _cifar10dvs_files(root: Path, download: bool) -> list[tuple[Path, int]]:
    """(recording, label) for every .aedat under ROOT/CIFAR10DVS/<class>/, in split order.

    tonic 1.7 only reads its own AEDAT4 re-encoding of CIFAR10-DVS (through the `aedat` package);
    DTA trained on the original AEDAT 2.0 files through spikingjelly, so those are what is read
    here. Within a class the files are sorted by name, the order of spikingjelly's DatasetFolder,
    which DTA's first-90%-to-train split follows.
    """
    folder = root / CIFAR10DVS_FOLDER
    files = [
        (path, label)
        for label, name in enumerate(CIFAR10DVS_CLASSES)
        for path in sorted((folder / name).glob("*.aedat"))
    ]
    if not files:
        why = (
            "cannot be downloaded by spikeport (tonic's download is the AEDAT4 re-encoding)"
            if download
            else "is not downloaded automatically"
        )
        raise UserError(
            f"{folder}: not found or holds no <class>/*.aedat recordings; cifar10-dvs {why}: "
            f"extract the class archives from {CIFAR10DVS_URL} into {folder}"
        )
    return files


def read_cifar10dvs_events(path: str | Path) -> np.ndarray:
    """The events of one original CIFAR10-DVS recording, as a tonic structured array (x, y, t, p).

    tonic parses the AEDAT 2.0 container (header, big-endian address/timestamp pairs); the address
    is decoded as spikingjelly does for this dataset (x in bits 1-7, y in bits 8-14, polarity in bit
    0, then transposed, mirrored and polarity inverted), so frames match the ones DTA trained on.
    """
    version, start, _ = read_aedat_header_from_file(str(path))
    raw = get_aer_events_from_file(str(path), version, start)
    address = raw["address"].astype(np.int64)
    x, y, p = (address & 0xFE) >> 1, (address & 0x7F00) >> 8, address & 1
    return make_structured_array(127 - y, 127 - x, raw["timeStamp"].astype(np.int64), 1 - p)


class _CIFAR10DVSSplit(torch.utils.data.Dataset):
    """One split of CIFAR10-DVS as [T, 2, 48, 48] event-count frames.

    Frames: tonic ToFrame with n_event_bins=T, i.e. T slices of equal event count, which is
    spikingjelly's split_by='number'. One difference: spikingjelly puts the N mod T leftover events
    into the last frame, tonic drops them (fewer than T events of a whole recording).
    Split: per class, the first ceil(90%) of the recordings train and the rest test, as
    spikingjelly's split_to_train_test_set(0.9, random_split=False).
    Train augmentation: horizontal flip (p=0.5), then one SNNAugmentWide op (`snn_augment_wide`).
    """

    def __init__(self, files: list[tuple[Path, int]], train: bool, timesteps: int):
        by_class: dict[int, list[tuple[Path, int]]] = {}
        for path, label in files:
            by_class.setdefault(label, []).append((path, label))
        self.samples = []
        for recordings in by_class.values():
            cut = math.ceil(len(recordings) * CIFAR10DVS_TRAIN_FRACTION)
            self.samples += recordings[:cut] if train else recordings[cut:]
        self.train = train
        self.frames = ToFrame(sensor_size=(128, 128, 2), n_event_bins=timesteps)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.transforms.v2 import functional as F  # here, not at the top: importing torchvision takes 1.7 s

        path, label = self.samples[i]
        counts = torch.from_numpy(self.frames(read_cifar10dvs_events(path)).astype(np.float32))
        x = F.resize(counts, [CIFAR10DVS_SIZE, CIFAR10DVS_SIZE], antialias=True)
        if self.train:
            if torch.rand(1).item() < 0.5:
                x = F.horizontal_flip(x)
            x = snn_augment_wide(x)
        return x, label


# SNNAugmentWide (TrivialAugment-Wide restricted to DVS-safe ops): op -> largest magnitude. Each
# geometric op's magnitude is one of 31 evenly spaced values in [-max, max].
SNN_AUGMENT_OPS = {
    "Identity": 0.0, "ShearX": 0.3, "TranslateX": 5.0, "TranslateY": 5.0, "Rotate": 30.0, "Cutout": 0.0
}
SNN_AUGMENT_BINS = 31
CUTOUT_SCALE, CUTOUT_RATIO = (0.001, 0.11), (1.0, 1.0)


def snn_augment_wide(frames: torch.Tensor) -> torch.Tensor:
    """One random SNNAugmentWide op on a [T, C, H, W] sample, the same op for every frame.

    Frames are transformed as one tensor, so a shear, shift, rotation or erased square is identical
    across time and the motion in the recording is kept. Randomness comes from torch's global RNG.
    """
    names = list(SNN_AUGMENT_OPS)
    op = names[int(torch.randint(len(names), (1,)))]
    limit = SNN_AUGMENT_OPS[op]
    magnitude = float(torch.linspace(-limit, limit, SNN_AUGMENT_BINS)[int(torch.randint(SNN_AUGMENT_BINS, (1,)))])
    return apply_snn_augment_op(frames, op, magnitude)


def apply_snn_augment_op(frames: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    """Apply SNNAugmentWide's `op` with `magnitude` (Cutout draws its own square) to [..., H, W].

    As in the official op set: nearest-neighbour resampling, zero fill, the shear magnitude passed
    to affine as degrees(magnitude), translations truncated towards zero to whole pixels.
    """
    from torchvision import transforms  # here, not at the top: importing torchvision takes 1.7 s
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    nearest = InterpolationMode.NEAREST
    if op == "Identity":
        return frames
    if op == "ShearX":
        shear = [math.degrees(magnitude), 0.0]
        return F.affine(frames, 0.0, [0, 0], 1.0, shear, interpolation=nearest, fill=0.0)
    if op in ("TranslateX", "TranslateY"):
        shift = [int(magnitude), 0] if op == "TranslateX" else [0, int(magnitude)]
        return F.affine(frames, 0.0, shift, 1.0, [0.0, 0.0], interpolation=nearest, fill=0.0)
    if op == "Rotate":
        return F.rotate(frames, magnitude, interpolation=nearest, fill=0.0)
    if op == "Cutout":
        i, j, h, w, value = transforms.RandomErasing.get_params(
            frames, scale=CUTOUT_SCALE, ratio=CUTOUT_RATIO, value=[0.0]
        )
        return F.erase(frames, i, j, h, w, value)
    raise ValueError(f"unknown SNNAugmentWide op {op!r}")


# --- batch-level augmentation, for the training loop -----------------------------------------


def cutmix(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """CutMix a batch x [B, ..., H, W]: paste a box of a shuffled partner into every sample.

    Returns (mixed x, y_a = y, y_b = the partners' labels, lam = the fraction of each image that is
    still its own); the loss is lam * CE(out, y_a) + (1 - lam) * CE(out, y_b). As in the official
    CutMix code: lam0 ~ Beta(alpha, alpha) (DTA: alpha = 1), a box of side sqrt(1 - lam0) * size
    centred on a uniform pixel and clipped to the image, lam recomputed from the clipped box. The box
    covers the same pixels at every timestep. DTA decides once per EPOCH (probability 0.5) whether
    all of that epoch's batches are cut-mixed; that coin is the caller's.
    """
    height, width = x.shape[-2:]
    lam = generator.beta(alpha, alpha)
    partner = torch.from_numpy(generator.permutation(len(x))).to(x.device)
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(generator.integers(height)), int(generator.integers(width))
    top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x[partner][..., top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed, y, y[partner], float(lam)


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: np.random.Generator, prob: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup a batch as timm's Mixup(mode='batch') does: x * lam + x.flip(0) * (1 - lam).

    Returns (mixed x, y_a = y, y_b = y.flip(0), lam). With probability 1 - prob the batch is left
    unmixed (lam = 1); DTA's CIFAR10-DVS recipe uses alpha = 0.5, prob = 0.5. DTA then trains on the
    argmax of timm's smoothed soft label, which is y_a when lam > 0.5 and y_b when lam < 0.5; the
    loss is the caller's choice.
    """
    lam = float(generator.beta(alpha, alpha)) if generator.random() < prob else 1.0
    return x * lam + x.flip(0) * (1.0 - lam), y, y.flip(0), lam
