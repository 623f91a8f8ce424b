"""av-digits: spoken digits paired with handwritten digits, a small imbalanced audio-visual dataset.

Real speech without a download: espeak-ng (a Debian package) speaks the ten digit words with many
voices, speeds and pitches; each clip gets background noise at a random signal-to-noise ratio and
becomes a log-mel spectrogram (librosa). Each clip is paired with a handwritten digit of the same
class from scikit-learn's bundled digits (the image split follows the `digits` dataset's, so no
test image is seen in training). The imbalance knob `visual_noise` degrades the images (pixel
noise and a random occluding block), so that audio dominates, as it does on CREMA-D.

Everything is drawn from one seeded generator: the same seed gives the same bytes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile
from scipy.ndimage import zoom

from spikeport.errors import UserError
from spikeport.train.dataset_specs import SPECS

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan")
VARIANTS = ("", "+m1", "+m3", "+f1", "+f2", "+f4", "+klatt", "+whisper")
SAMPLE_RATE = 16_000
SECONDS = 0.8  # every clip is cut or padded to this length
_, MELS, FRAMES = SPECS["av-digits"].input_shape["audio"]  # spectrogram rows; the columns are fixed by the hop to FRAMES
IMAGE_SIZE = SPECS["av-digits"].input_shape["visual"][1]


@dataclass(frozen=True)
class Settings:
    clips_per_digit: int = 60
    visual_noise: float = 0.6  # 0: clean images; 1: images mostly destroyed (audio dominates)
    snr_db: tuple[float, float] = (5.0, 30.0)
    seed: int = 0


def speak(word: str, voice: str, speed: int, pitch: int, folder: Path) -> np.ndarray:
    """One espeak-ng utterance as float32 samples at SAMPLE_RATE."""
    if shutil.which("espeak-ng") is None:
        raise UserError("av-digits needs espeak-ng to speak the digits: install it (Debian: apt-get install -y espeak-ng)")
    path = folder / "clip.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), word], check=True, capture_output=True)
    samples, rate = soundfile.read(path, dtype="float32")
    return librosa.resample(samples, orig_sr=rate, target_sr=SAMPLE_RATE)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """[MELS, FRAMES] log-mel spectrogram of a clip cut or padded to SECONDS."""
    length = int(SAMPLE_RATE * SECONDS)
    clip = np.zeros(length, dtype=np.float32)
    clip[: min(length, len(samples))] = samples[:length]
    hop = length // FRAMES
    mel = librosa.feature.melspectrogram(y=clip, sr=SAMPLE_RATE, n_fft=512, hop_length=hop, n_mels=MELS)[:, :FRAMES]
    return np.log(mel + 1e-6).astype(np.float32)


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(samples**2)) + 1e-12
    return samples + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), samples.shape).astype(np.float32)


def degrade(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Pixel noise and one occluding block, both growing with `amount` in [0, 1]; values in [0, 1]."""
    noisy = image + rng.normal(0.0, amount, image.shape)
    side = int(round(amount * image.shape[0] * 0.6))
    if side:
        top, left = rng.integers(0, image.shape[0] - side + 1, size=2)
        noisy[top : top + side, left : left + side] = rng.random()
    return np.clip(noisy, 0.0, 1.0)


def generate(images: np.ndarray, labels: np.ndarray, image_split: np.ndarray, settings: Settings, speak_fn=speak) -> dict[str, np.ndarray]:
    """Build the dataset arrays. `images` [N, 8, 8] in [0, 1] with `labels` and `image_split`
    (True = train) come from the digits split; `speak_fn` is espeak-ng, replaceable in tests."""
    rng = np.random.default_rng(settings.seed)
    audio, visual, targets, train = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for digit, word in enumerate(WORDS):
            for i in range(settings.clips_per_digit):
                voice = VOICES[rng.integers(len(VOICES))] + VARIANTS[rng.integers(len(VARIANTS))]
                samples = speak_fn(word, voice, int(rng.integers(110, 230)), int(rng.integers(20, 80)), Path(folder))
                samples = add_noise(samples, float(rng.uniform(*settings.snr_db)), rng)
                is_train = i < int(0.75 * settings.clips_per_digit)
                pool = np.flatnonzero((labels == digit) & (image_split == is_train))
                image = zoom(images[rng.choice(pool)], IMAGE_SIZE / images.shape[1], order=1)
                audio.append(log_mel(samples))
                visual.append(degrade(image, settings.visual_noise, rng))
                targets.append(digit)
                train.append(is_train)
    return {
        "audio": np.stack(audio)[:, None],  # [N, 1, MELS, FRAMES]
        "visual": np.stack(visual)[:, None].astype(np.float32),  # [N, 1, IMAGE_SIZE, IMAGE_SIZE]
        "labels": np.array(targets, dtype=np.int64),
        "train": np.array(train),
    }
