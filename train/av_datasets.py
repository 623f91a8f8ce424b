"""Real audio-visual datasets (CREMA-D, AVE), read in the on-disk layout of the OGM-GE code.

OGM-GE (Peng et al., CVPR 2022, github.com/GeWu-Lab/OGM-GE_CVPR2022) is the pipeline the TAAF
numbers are compared against (methods-spec 2.2), so its folders, split files, labels and
preprocessing are reproduced here; every rule below names the OGM-GE file it comes from. Nothing is
downloaded: both datasets need a licence or registration, so a missing piece is a `UserError`
naming the path and where to get it.

Layout under the dataset root:

    ROOT/CREMA-D/                   the CREMA-D repository (github.com/CheyneyComputerScience/CREMA-D)
        AudioWAV/<clip>.wav         as distributed
        Image-01-FPS/<clip>/*.jpg   frames, 1 per second of video, written by OGM-GE's
                                    data/CREMAD/video_preprocessing.py from VideoFlash/<clip>.flv
        train.csv, test.csv         OGM-GE's split, copied from its data/CREMAD/: "<clip>,<LABEL>" lines
    ROOT/AVE/                       the AVE dataset (sites.google.com/view/audiovisualresearch)
        trainSet.txt, testSet.txt   AVE's own split files: "Category&VideoID&Quality&StartTime&EndTime"
        audio_spec/<VideoID>.pkl    pickled [257, 1004] spectrograms, written by OGM-GE's
                                    pre-processing/obtain_audio_spectrogram.py
        visual/<VideoID>/*.jpg      10 frames (frame_00001.jpg ..), one per second, written by OGM-GE's
                                    pre-processing/AVE&CREMAD/video2frame-1fps.py

Rules taken from OGM-GE:

* CREMA-D labels {NEU: 0, HAP: 1, SAD: 2, FEA: 3, DIS: 4, ANG: 5}, the csv read as UTF-8 with BOM,
  the wav at AudioWAV/<clip>.wav and the frames at Image-01-FPS/<clip>/ (dataset/CramedDataset.py).
* CREMA-D audio (dataset/CramedDataset.py): librosa.load at 22050 Hz, tiled and cut to 3 s
  (66150 samples), clipped to [-1, 1], STFT n_fft=512 hop=353, log(|S| + 1e-7): a [257, 188]
  spectrogram, not normalised.
* AVE (dataset/dataset.py, AVDataset): the spectrogram is the pickled array as it is (already
  log-scaled and standardised by obtain_audio_spectrogram.py); the label is the index of the
  category in the sorted class list; a VideoID listed twice keeps one entry, its last line's label,
  at its last position (the "delete repeated labels" rule as the current code does it; an earlier
  version of the file dropped such a VideoID).
* Frames (both loaders): train RandomResizedCrop(224) + RandomHorizontalFlip, test
  Resize((224, 224)); then ToTensor and ImageNet mean/std normalisation.

Time axis. OGM-GE feeds its visual ResNet `fps` frames per clip (CREMA-D, default 1) or 3 frames
(AVE, `pick_num`) as [3, frames, 224, 224]. Here the frames become the SNN's timesteps: timestep t
shows frame floor(t * n / T) of the clip's n frames (sorted by name), so frames are spread evenly
over the clip and each is repeated when the clip has fewer frames than T. For AVE's 10 frames and
T = 3 that is frames 1, 4, 7, exactly OGM-GE's pick. The spectrogram is the same at every timestep
(direct encoding, as for static images elsewhere in spikeport).

Deviations from OGM-GE, and why:

* OGM-GE drops a clip whose wav or frames folder is missing without a word; here it is an error, so
  a half-extracted dataset cannot silently train on fewer clips.
* CREMA-D audio: OGM-GE tiles every clip 3 times, which leaves a clip under 1 s short of 3 s (and
  its batch fails to stack); here a clip is tiled as often as it takes to fill 3 s, which gives the
  same samples as OGM-GE for every clip of 1 s or more.
* CREMA-D frames: OGM-GE takes the first `fps` entries of os.listdir (arbitrary order; the random
  pick it draws is unused). Here frames are sorted by name and spread as above.
* Train augmentation: OGM-GE draws a new crop and flip for every frame; here one crop and flip is
  drawn per clip and applied to all its timesteps, so the input does not jump between timesteps and
  a repeated frame stays identical. The draw uses torch's global RNG (as `real_datasets` does):
  `torch.manual_seed` makes it repeatable and DataLoader workers get their own streams. The test
  split draws nothing.
* AVE split files: OGM-GE reads its own my_train.txt / my_test.txt and stat.txt, which it does not
  publish; here AVE's trainSet.txt / testSet.txt are read (category and VideoID are their first two
  fields) and the 28 AVE categories are built in. A header line starting with "Category&" is skipped.
* librosa.load's resampler (soxr_hq) and stft's zero padding (pad_mode="constant") are librosa's
  defaults since 0.10 and 0.9; they are passed explicitly so a librosa upgrade cannot change the
  spectrogram. OGM-GE's code passes neither, so under librosa < 0.9 it would have resampled with
  resampy and reflect-padded the first and last frame.
* Pickled spectrograms are read by an unpickler that only rebuilds numpy arrays, so a .pkl file
  cannot run code (OGM-GE calls pickle.load).
"""

from __future__ import annotations

import csv
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile
import torch
from PIL import Image

from spikeport.errors import UserError
from spikeport.train.dataset_specs import SPECS

NAMES = ("cremad", "ave")
SPLITS = ("train", "test")

# name -> (audio per-timestep shape, visual per-timestep shape, number of classes)
SHAPES: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    name: (SPECS[name].input_shape["audio"], SPECS[name].input_shape["visual"], SPECS[name].num_classes) for name in NAMES
}

CREMAD_CLASSES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")  # label order of CramedDataset.py
# AVE's 28 event categories as spelled in its split files; the label is the index in sorted order.
AVE_CLASSES = tuple(
    sorted(
        [
            "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
            "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle",
            "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar",
            "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat",
            "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin",
        ]
    )
)

SAMPLE_RATE = 22050
CLIP_SAMPLES = 3 * SAMPLE_RATE
N_FFT, HOP = 512, 353
LOG_EPS = 1e-7
FRAME_SIZE = 224
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

CREMAD_URL = "https://github.com/CheyneyComputerScience/CREMA-D"
AVE_URL = "https://sites.google.com/view/audiovisualresearch"
OGM_GE_URL = "https://github.com/GeWu-Lab/OGM-GE_CVPR2022"


@dataclass(frozen=True)
class _Clip:
    audio: Path  # CREMA-D: the wav; AVE: the pickled spectrogram
    frames: tuple[Path, ...]  # sorted by name, at least one
    label: int


def locate(name: str, root: str | Path) -> Path:
    """The folder of `name` under `root`, checked to hold both splits with every clip's files."""
    folder = _folder(name, root)
    for split in SPLITS:
        _clips(name, folder, split)
    return folder


def load(name: str, root: str | Path, split: str, timesteps: int) -> torch.utils.data.Dataset:
    """One split of `name`; item i is ((audio, visual), label).

    audio: float32 [timesteps, *audio shape], the clip's spectrogram at every timestep;
    visual: float32 [timesteps, 3, 224, 224], frame floor(t * n / timesteps) of the n frames at t.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} for dataset {name!r}; use one of: {', '.join(SPLITS)}")
    clips = _clips(name, _folder(name, root), split)
    return _AVSplit(clips, _LAYOUTS[name].spectrogram, split == "train", timesteps)


# --- the folder and its split files -------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where one dataset keeps its files (module docstring), and how to read them."""

    folder: str  # under ROOT
    url: str  # where the dataset itself comes from
    split_files: dict[str, str]  # split -> file in the folder
    audio: str  # folder of <clip><audio_suffix>
    audio_suffix: str
    frames: str  # folder of <clip>/*.jpg
    rows: Callable[[Path], list[tuple[str, int]]]  # split file -> (clip, label) rows
    spectrogram: Callable[[Path], np.ndarray]  # audio file -> [F, W] float32
    sources: dict[str, str]  # entry of the folder -> how to get it when it is missing


def _folder(name: str, root: str | Path) -> Path:
    """ROOT/CREMA-D or ROOT/AVE, checked to hold the split files and the audio and frame folders."""
    if name not in NAMES:
        raise UserError(f"unknown audio-visual dataset {name!r}; known: {', '.join(NAMES)}")
    layout = _LAYOUTS[name]
    folder = Path(root) / layout.folder
    if not folder.is_dir():
        raise UserError(
            f"{folder}: not found; {name} is not downloaded automatically (it needs a licence or registration): "
            f"get it from {layout.url} and prepare it as OGM-GE does ({OGM_GE_URL})"
        )
    for entry, how in layout.sources.items():
        if not (folder / entry).exists():
            raise UserError(f"{folder / entry}: not found; {how}")
    return folder


def _clips(name: str, folder: Path, split: str) -> list[_Clip]:
    """Every clip of one split, with its files checked to exist."""
    layout = _LAYOUTS[name]
    split_file = folder / layout.split_files[split]
    clips = []
    for clip_id, label in layout.rows(split_file):
        where = f"clip {clip_id!r} of {split_file.name}"
        audio = folder / layout.audio / (clip_id + layout.audio_suffix)
        if not audio.is_file():
            raise UserError(f"{audio}: not found ({where})")
        frames = tuple(sorted((folder / layout.frames / clip_id).glob("*.jpg")))
        if not frames:
            raise UserError(f"{folder / layout.frames / clip_id}: no .jpg frames found ({where})")
        clips.append(_Clip(audio, frames, label))
    return clips


def _cremad_rows(path: Path) -> list[tuple[str, int]]:
    """(clip, label) per "<clip>,<LABEL>" line of OGM-GE's CREMA-D csv."""
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if len(row) != 2 or row[1] not in CREMAD_CLASSES:
                labels = ", ".join(CREMAD_CLASSES)
                raise UserError(f"{path}:{line}: expected '<clip>,<label>' with a label of {labels}, got {row}")
            rows.append((row[0], CREMAD_CLASSES.index(row[1])))
    return rows


def _ave_rows(path: Path) -> list[tuple[str, int]]:
    """(VideoID, label) per "Category&VideoID&..." line of an AVE split file; a VideoID listed
    again replaces its earlier entry and moves to the end, as in OGM-GE's AVDataset."""
    rows: dict[str, int] = {}
    with open(path, encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            fields = text.strip().split("&")
            if not text.strip() or (line == 1 and fields[0] == "Category"):
                continue
            if len(fields) < 2 or fields[0] not in AVE_CLASSES:
                raise UserError(
                    f"{path}:{line}: expected 'Category&VideoID&...' with one of AVE's 28 categories, "
                    f"got {text.strip()!r}"
                )
            rows.pop(fields[1], None)
            rows[fields[1]] = AVE_CLASSES.index(fields[0])
    return list(rows.items())


# --- audio --------------------------------------------------------------------------------------


def _cremad_spectrogram(path: Path) -> np.ndarray:
    """OGM-GE's CREMA-D spectrogram of one wav: [257, 188] float32 (dataset/CramedDataset.py)."""
    try:
        with soundfile.SoundFile(path) as f:
            samples, _ = librosa.load(f, sr=SAMPLE_RATE, res_type="soxr_hq")
    except soundfile.SoundFileError as e:
        raise UserError(f"{path}: not a readable audio file ({e})") from e
    if samples.size == 0:
        raise UserError(f"{path}: holds no audio samples")
    repeats = -(-CLIP_SAMPLES // samples.size)  # ceil: OGM-GE tiles 3 times (module docstring)
    samples = np.clip(np.tile(samples, repeats)[:CLIP_SAMPLES], -1.0, 1.0)
    stft = librosa.stft(samples, n_fft=N_FFT, hop_length=HOP, pad_mode="constant")
    return np.log(np.abs(stft) + LOG_EPS).astype(np.float32, copy=False)


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and nothing else: a pickle naming any other callable is refused
    instead of run. These are the names numpy 1.x and 2.x write for an array."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),  # protocols 0-4
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes, in protocols 0-2
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a pickled numpy array")
        return super().find_class(module, name)


def _ave_spectrogram(path: Path) -> np.ndarray:
    """The pickled AVE spectrogram as OGM-GE wrote it: [257, 1004], used as it is (dataset/dataset.py)."""
    expected = SHAPES["ave"][0][1:]
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e})") from e
    try:
        array = _ArrayUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # only numpy's own constructors can run, so any failure is a bad file
        raise UserError(f"{path}: not a pickled spectrogram ({type(e).__name__}: {e})") from e
    if not isinstance(array, np.ndarray) or array.shape != expected:
        what = list(array.shape) if isinstance(array, np.ndarray) else type(array).__name__
        raise UserError(f"{path}: expected a {list(expected)} spectrogram array, got {what}")
    return array.astype(np.float32)


_LAYOUTS = {
    "cremad": _Layout(
        folder="CREMA-D",
        url=CREMAD_URL,
        split_files={"train": "train.csv", "test": "test.csv"},
        audio="AudioWAV",
        audio_suffix=".wav",
        frames="Image-01-FPS",
        rows=_cremad_rows,
        spectrogram=_cremad_spectrogram,
        sources={
            "AudioWAV": f"it comes with CREMA-D ({CREMAD_URL}; not downloaded automatically)",
            "Image-01-FPS": f"extract it from VideoFlash with data/CREMAD/video_preprocessing.py of {OGM_GE_URL}",
            "train.csv": f"copy data/CREMAD/train.csv of {OGM_GE_URL} there",
            "test.csv": f"copy data/CREMAD/test.csv of {OGM_GE_URL} there",
        },
    ),
    "ave": _Layout(
        folder="AVE",
        url=AVE_URL,
        split_files={"train": "trainSet.txt", "test": "testSet.txt"},
        audio="audio_spec",
        audio_suffix=".pkl",
        frames="visual",
        rows=_ave_rows,
        spectrogram=_ave_spectrogram,
        sources={
            "trainSet.txt": f"it comes with AVE ({AVE_URL}; not downloaded automatically)",
            "testSet.txt": f"it comes with AVE ({AVE_URL}; not downloaded automatically)",
            "audio_spec": f"write it with pre-processing/obtain_audio_spectrogram.py of {OGM_GE_URL}",
            "visual": f"extract it with pre-processing/AVE&CREMAD/video2frame-1fps.py of {OGM_GE_URL}",
        },
    ),
}


# --- frames -------------------------------------------------------------------------------------


def _frame_indices(frames: int, timesteps: int) -> list[int]:
    """Which of a clip's `frames` each timestep shows: floor(t * frames / timesteps), so frames are
    spread evenly and repeated when there are fewer of them than timesteps."""
    return [t * frames // timesteps for t in range(timesteps)]


def _read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as e:
        raise UserError(f"{path}: not a readable image ({e})") from e


class _AVSplit(torch.utils.data.Dataset):
    """One split: the clips, read and transformed when an item is asked for."""

    def __init__(self, clips: list[_Clip], spectrogram: Callable[[Path], np.ndarray], train: bool, timesteps: int):
        self.clips = clips
        self.spectrogram = spectrogram
        self.train = train
        self.timesteps = timesteps

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
        clip = self.clips[i]
        audio = torch.from_numpy(self.spectrogram(clip.audio))[None].repeat(self.timesteps, 1, 1, 1)
        return (audio, self._visual(clip.frames)), clip.label

    def _visual(self, frames: tuple[Path, ...]) -> torch.Tensor:
        """[T, 3, 224, 224]: each picked frame read and transformed once, one crop and flip per clip."""
        picks = _frame_indices(len(frames), self.timesteps)
        images = {j: _read_image(frames[j]) for j in sorted(set(picks))}
        crop, flip = None, False
        if self.train:
            from torchvision import transforms  # here, not at the top: importing torchvision takes 1.7 s

            crop = transforms.RandomResizedCrop.get_params(images[picks[0]], (0.08, 1.0), (3 / 4, 4 / 3))
            flip = bool(torch.rand(1) < 0.5)
        tensors = {j: _frame_tensor(image, crop, flip) for j, image in images.items()}
        return torch.stack([tensors[j] for j in picks])


def _frame_tensor(image: Image.Image, crop: tuple[int, int, int, int] | None, flip: bool) -> torch.Tensor:
    """OGM-GE's frame transform: the crop (top, left, height, width) resized to 224x224 (train) or
    the whole frame resized (test), flipped if `flip`, then ToTensor and ImageNet normalisation."""
    from torchvision.transforms import functional as F  # here, not at the top: importing torchvision takes 1.7 s

    size = [FRAME_SIZE, FRAME_SIZE]
    if crop is None:
        image = F.resize(image, size, antialias=True)
    else:
        image = F.resized_crop(image, *crop, size, antialias=True)
    if flip:
        image = F.hflip(image)
    return F.normalize(F.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)
