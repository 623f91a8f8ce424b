"""CREMA-D and AVE, read from tiny fixtures written in OGM-GE's on-disk layout.

The fixtures are real files: csv / '&' split files, 16 kHz PCM wavs (soundfile), JPEG frames (PIL),
pickled spectrograms. The expected values are computed here the way OGM-GE's own code does it
(librosa calls, torchvision Compose transforms), not through av_datasets.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from torchvision import transforms

from spikeport.errors import UserError
from spikeport.train import av_datasets

IMAGENET = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
OGM_GE_TEST = transforms.Compose([transforms.Resize(size=(224, 224)), transforms.ToTensor(), IMAGENET])
OGM_GE_TRAIN = transforms.Compose(
    [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(), IMAGENET]
)

# --- fixture writers ---------------------------------------------------------------------------


def colour(k: int) -> tuple[int, int, int]:
    """Frame k's base colour: far enough from every other frame's to tell them apart after JPEG."""
    return (20 + 22 * k, 230 - 22 * k, 60 + 40 * (k % 3))


def write_frames(folder: Path, names: list[str]) -> None:
    """One 40x30 JPEG per name: frame k is colour(k) plus a horizontal ramp, so a crop shows."""
    folder.mkdir(parents=True)
    ramp = np.linspace(-20, 20, 40)[None, :, None]
    for k, name in enumerate(names):
        pixels = np.clip(np.array(colour(k))[None, None, :] + ramp, 0, 255).repeat(30, axis=0)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / name, quality=95)


def write_wav(path: Path, seconds: float, seed: int) -> None:
    """A loud 16 kHz 16-bit wav, as CREMA-D's AudioWAV: a square wave (resampling overshoots +-1)
    plus noise, so OGM-GE's tiling and clipping both matter."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    samples = 0.97 * np.sign(np.sin(2 * np.pi * 220 * t)) + 0.02 * rng.standard_normal(t.size)
    soundfile.write(path, np.clip(samples, -1, 1).astype(np.float32), 16000, subtype="PCM_16")


# clip -> (label, seconds of audio, number of frames)
CREMAD = {
    "train": {"1001_DFA_ANG_XX": ("ANG", 1.3, 2), "1002_IEO_HAP_HI": ("HAP", 3.5, 5)},
    "test": {"1003_ITS_SAD_XX": ("SAD", 2.2, 3), "1004_TIE_NEU_XX": ("NEU", 0.8, 1)},
}


def write_cremad(root: Path) -> Path:
    """ROOT/CREMA-D: AudioWAV/<clip>.wav, Image-01-FPS/<clip>/<frame number>.jpg (as OGM-GE's
    video_preprocessing.py names them), and OGM-GE's train.csv / test.csv (UTF-8 with BOM)."""
    folder = root / "CREMA-D"
    (folder / "AudioWAV").mkdir(parents=True)
    for split, clips in CREMAD.items():
        lines = []
        for seed, (clip, (label, seconds, frames)) in enumerate(clips.items()):
            write_wav(folder / "AudioWAV" / f"{clip}.wav", seconds, seed)
            write_frames(folder / "Image-01-FPS" / clip, [f"{30 * k:05d}.jpg" for k in range(frames)])
            lines.append(f"{clip},{label}\n")
        (folder / f"{split}.csv").write_text("".join(lines), encoding="utf-8-sig")
    return folder


# split -> lines of AVE's split file; VideoID -> number of frames
AVE_SPLITS = {
    "train": [
        "Category&VideoID&Quality&StartTime&EndTime",
        "Church bell&vidA&good&0&10",
        "Bark&vidB&good&2&8",
        "Cat&vidA&good&0&10",  # vidA again: OGM-GE keeps this last line, at this position
    ],
    "test": ["Violin, fiddle&vidC&good&0&10", "Accordion&vidD&bad&1&9"],
}
AVE_FRAMES = {"vidA": 10, "vidB": 2, "vidC": 10, "vidD": 1}


def write_ave(root: Path) -> Path:
    """ROOT/AVE: trainSet.txt / testSet.txt, audio_spec/<VideoID>.pkl (pickled [257, 1004] float32,
    as obtain_audio_spectrogram.py writes them), visual/<VideoID>/frame_%05d.jpg from 1."""
    folder = root / "AVE"
    (folder / "audio_spec").mkdir(parents=True)
    for split, lines in AVE_SPLITS.items():
        (folder / f"{split}Set.txt").write_text("\n".join(lines) + "\n")
    for seed, (video, frames) in enumerate(AVE_FRAMES.items()):
        spectrogram = np.random.default_rng(seed).standard_normal((257, 1004)).astype(np.float32)
        with open(folder / "audio_spec" / f"{video}.pkl", "wb") as f:
            pickle.dump(spectrogram, f)
        write_frames(folder / "visual" / video, [f"frame_{k + 1:05d}.jpg" for k in range(frames)])
    return folder


@pytest.fixture
def cremad(tmp_path) -> Path:
    write_cremad(tmp_path)
    return tmp_path


@pytest.fixture
def ave(tmp_path) -> Path:
    write_ave(tmp_path)
    return tmp_path


def shown_frames(visual: torch.Tensor) -> list[int]:
    """Which fixture frame each test-split timestep shows, by its mean colour."""
    mean, std = torch.tensor(IMAGENET.mean), torch.tensor(IMAGENET.std)
    rgb = (visual.mean(dim=(2, 3)) * std + mean) * 255  # [T, 3]
    colours = torch.tensor([colour(k) for k in range(10)], dtype=torch.float32)
    return torch.cdist(rgb, colours).argmin(dim=1).tolist()


# --- items ---------------------------------------------------------------------------------------


def test_shapes_match_ogm_ge():
    assert av_datasets.NAMES == ("cremad", "ave")
    assert av_datasets.SHAPES == {
        "cremad": ((1, 257, 188), (3, 224, 224), 6),
        "ave": ((1, 257, 1004), (3, 224, 224), 28),
    }


@pytest.mark.parametrize("split, labels", [("train", [5, 1]), ("test", [2, 0])])
def test_cremad_items(cremad, split, labels):
    dataset = av_datasets.load("cremad", cremad, split, timesteps=4)
    assert len(dataset) == 2
    for i, label in enumerate(labels):
        (audio, visual), y = dataset[i]
        assert audio.shape == (4, 1, 257, 188) and audio.dtype == torch.float32
        assert visual.shape == (4, 3, 224, 224) and visual.dtype == torch.float32
        assert y == label  # OGM-GE: NEU 0, HAP 1, SAD 2, FEA 3, DIS 4, ANG 5


def test_cremad_spectrogram_is_ogm_ge_recipe(cremad):
    """The spectrogram equals CramedDataset.py's recipe run with librosa here, at every timestep."""
    wav = cremad / "CREMA-D" / "AudioWAV" / "1001_DFA_ANG_XX.wav"  # 1.3 s: tiled to 3 s
    samples, _ = librosa.load(wav, sr=22050)
    resamples = np.tile(samples, 3)[: 22050 * 3]
    assert np.abs(resamples).max() > 1.0  # the clipping below changes something
    resamples[resamples > 1.0] = 1.0
    resamples[resamples < -1.0] = -1.0
    expected = np.log(np.abs(librosa.stft(resamples, n_fft=512, hop_length=353)) + 1e-7)

    (audio, _), _ = av_datasets.load("cremad", cremad, "train", timesteps=3)[0]
    for t in range(3):
        np.testing.assert_allclose(audio[t, 0].numpy(), expected, rtol=0, atol=1e-5)


def test_ave_items(ave):
    def spectrogram(video: str) -> torch.Tensor:
        with open(ave / "AVE" / "audio_spec" / f"{video}.pkl", "rb") as f:
            return torch.from_numpy(pickle.load(f))

    # train: vidA is listed twice, so it is one entry, at its last line, with that line's label
    train = av_datasets.load("ave", ave, "train", timesteps=3)
    assert len(train) == 2
    for i, (video, label) in enumerate([("vidB", 4), ("vidA", 6)]):  # sorted AVE classes: Bark 4, Cat 6
        (audio, visual), y = train[i]
        assert y == label
        assert audio.shape == (3, 1, 257, 1004) and audio.dtype == torch.float32
        assert all(torch.equal(audio[t, 0], spectrogram(video)) for t in range(3))
        assert visual.shape == (3, 3, 224, 224) and visual.dtype == torch.float32

    test = av_datasets.load("ave", ave, "test", timesteps=3)
    (audio, visual), labels = next(iter(torch.utils.data.DataLoader(test, batch_size=2)))
    assert labels.tolist() == [27, 0]  # Violin, fiddle 27, Accordion 0
    assert audio.shape == (2, 3, 1, 257, 1004) and visual.shape == (2, 3, 3, 224, 224)
    assert torch.equal(audio[1, 2, 0], spectrogram("vidD"))


# --- frames --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, index, timesteps, frames",
    [
        ("cremad", 0, 2, [0, 1]),  # 3 frames over 2 timesteps: t * 3 // 2
        ("cremad", 0, 5, [0, 0, 1, 1, 2]),  # 3 frames over 5 timesteps: repeated
        ("cremad", 1, 3, [0, 0, 0]),  # a single frame at every timestep
        ("ave", 0, 3, [0, 3, 6]),  # AVE's 10 frames, T=3: OGM-GE's frame_00001, 00004, 00007
        ("ave", 0, 4, [0, 2, 5, 7]),
    ],
)
def test_frames_spread_evenly_over_timesteps(request, name, index, timesteps, frames):
    root = request.getfixturevalue(name)
    (_, visual), _ = av_datasets.load(name, root, "test", timesteps)[index]
    assert shown_frames(visual) == frames


def test_test_split_is_ogm_ge_resize_and_deterministic(cremad):
    dataset = av_datasets.load("cremad", cremad, "test", timesteps=3)
    state = torch.get_rng_state()
    (_, first), _ = dataset[0]
    assert torch.equal(torch.get_rng_state(), state)  # the test split draws nothing
    torch.manual_seed(123)
    (_, again), _ = dataset[0]
    assert torch.equal(first, again)
    frames = sorted((cremad / "CREMA-D" / "Image-01-FPS" / "1003_ITS_SAD_XX").glob("*.jpg"))
    for t, frame in enumerate(frames):  # 3 frames, 3 timesteps
        assert torch.equal(first[t], OGM_GE_TEST(Image.open(frame).convert("RGB")))


def test_train_augmentation_is_ogm_ge_crop_once_per_clip(cremad):
    """The first timestep is OGM-GE's train Compose under the same seed; the crop and flip then hold
    for the whole clip (a repeated frame is identical), and the seed makes it repeatable."""
    dataset = av_datasets.load("cremad", cremad, "train", timesteps=4)  # clip 0: frames 0, 0, 1, 1
    frame = min((cremad / "CREMA-D" / "Image-01-FPS" / "1001_DFA_ANG_XX").glob("*.jpg"))
    for seed in range(4):
        torch.manual_seed(seed)
        (_, visual), _ = dataset[0]
        torch.manual_seed(seed)
        assert torch.equal(visual[0], OGM_GE_TRAIN(Image.open(frame).convert("RGB")))
        assert torch.equal(visual[0], visual[1]) and torch.equal(visual[2], visual[3])
        torch.manual_seed(seed)
        assert torch.equal(dataset[0][0][1], visual)
    torch.manual_seed(0)
    (_, a), _ = dataset[0]
    (_, b), _ = dataset[0]
    assert not torch.equal(a, b)  # a new crop on every read


# --- errors --------------------------------------------------------------------------------------


def one_line_error(call, *needles: str) -> str:
    with pytest.raises(UserError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message
    return message


@pytest.mark.parametrize(
    "name, folder, url",
    [
        ("cremad", "CREMA-D", "github.com/CheyneyComputerScience/CREMA-D"),
        ("ave", "AVE", "sites.google.com/view/audiovisualresearch"),
    ],
)
def test_missing_dataset_folder(tmp_path, name, folder, url):
    one_line_error(lambda: av_datasets.locate(name, tmp_path), str(tmp_path / folder), "not found", url)
    one_line_error(lambda: av_datasets.load(name, tmp_path, "train", 2), str(tmp_path / folder), url)


@pytest.mark.parametrize(
    "name, entry, hint",
    [
        ("cremad", "test.csv", "data/CREMAD/test.csv"),
        ("cremad", "Image-01-FPS", "video_preprocessing.py"),
        ("ave", "trainSet.txt", "audiovisualresearch"),
        ("ave", "audio_spec", "obtain_audio_spectrogram.py"),
    ],
)
def test_missing_split_file_or_folder(request, name, entry, hint):
    root = request.getfixturevalue(name)
    path = root / {"cremad": "CREMA-D", "ave": "AVE"}[name] / entry
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    one_line_error(lambda: av_datasets.locate(name, root), str(path), "not found", hint)


def test_missing_wav_or_frames_of_one_clip(cremad):
    wav = cremad / "CREMA-D" / "AudioWAV" / "1004_TIE_NEU_XX.wav"
    wav.rename(wav.with_suffix(".bak"))
    one_line_error(lambda: av_datasets.locate("cremad", cremad), str(wav), "not found", "test.csv")
    av_datasets.load("cremad", cremad, "train", 2)  # the train split is complete
    wav.with_suffix(".bak").rename(wav)

    frames = cremad / "CREMA-D" / "Image-01-FPS" / "1002_IEO_HAP_HI"
    frames.rename(frames.with_name("moved"))
    one_line_error(
        lambda: av_datasets.load("cremad", cremad, "train", 2), str(frames), "no .jpg frames", "train.csv"
    )


def test_corrupt_wav_or_frame_fails_on_read(cremad):
    wav = cremad / "CREMA-D" / "AudioWAV" / "1003_ITS_SAD_XX.wav"
    wav.write_bytes(b"RIFF\x00\x00\x00\x00not a wave file")
    dataset = av_datasets.load("cremad", cremad, "test", timesteps=2)
    dataset[1]  # the other clip still reads
    one_line_error(lambda: dataset[0], str(wav), "not a readable audio file")

    frame = cremad / "CREMA-D" / "Image-01-FPS" / "1004_TIE_NEU_XX" / "00000.jpg"
    frame.write_bytes(frame.read_bytes()[:100])  # a truncated JPEG
    one_line_error(lambda: dataset[1], str(frame), "not a readable image")


def test_bad_split_file_lines(cremad, ave):
    csv = cremad / "CREMA-D" / "train.csv"
    csv.write_text("1001_DFA_ANG_XX,ANG\n1002_IEO_HAP_HI,JOY\n")
    one_line_error(lambda: av_datasets.load("cremad", cremad, "train", 2), f"{csv}:2", "JOY")
    txt = ave / "AVE" / "testSet.txt"
    txt.write_text("Violin, fiddle&vidC&good&0&10\nDrum&vidD&good&0&10\n")
    one_line_error(lambda: av_datasets.load("ave", ave, "test", 2), f"{txt}:2", "Drum")


class RunsCode:
    """A pickle that would create `marker` when loaded by pickle.load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.mkdir, (self.marker,))


def test_bad_pickled_spectrograms(ave, tmp_path):
    dataset = av_datasets.load("ave", ave, "test", timesteps=2)
    spectrogram = ave / "AVE" / "audio_spec" / "vidC.pkl"
    marker = tmp_path / "marker"
    with open(spectrogram, "wb") as f:
        pickle.dump(RunsCode(marker), f)
    one_line_error(lambda: dataset[0], str(spectrogram), "not a pickled spectrogram", "pathlib")
    assert not marker.exists()

    with open(spectrogram, "wb") as f:
        pickle.dump(np.zeros((257, 188), np.float32), f)
    one_line_error(lambda: dataset[0], str(spectrogram), "[257, 1004]", "[257, 188]")
    spectrogram.write_bytes(b"\x80\x04truncated")
    one_line_error(lambda: dataset[0], str(spectrogram), "not a pickled spectrogram")
