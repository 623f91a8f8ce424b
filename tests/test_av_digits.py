"""av-digits generation, with a stand-in voice (tests do not need espeak-ng)."""

import shutil

import numpy as np
import pytest

from spikeport.train import av_digits
from spikeport.train.datasets import _digits_and_split


def tone(word, voice, speed, pitch, folder):
    """A stand-in for espeak-ng: a tone whose frequency says the word, lengthened by slower speech."""
    digit = av_digits.WORDS.index(word)
    t = np.arange(int(av_digits.SAMPLE_RATE * 60 / speed)) / av_digits.SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * (200 + 150 * digit + pitch) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def small():
    images, labels, split = _digits_and_split_arrays()
    return av_digits.generate(images, labels, split, av_digits.Settings(clips_per_digit=4, visual_noise=0.5), speak_fn=tone)


def _digits_and_split_arrays():
    images, labels, train_idx, _ = _digits_and_split()
    split = np.zeros(len(labels), dtype=bool)
    split[train_idx] = True
    return images / 16.0, labels, split


def test_shapes_labels_and_split(small):
    assert small["audio"].shape == (40, 1, av_digits.MELS, av_digits.FRAMES)
    assert small["visual"].shape == (40, 1, av_digits.IMAGE_SIZE, av_digits.IMAGE_SIZE)
    assert np.bincount(small["labels"]).tolist() == [4] * 10
    assert small["train"].sum() == 30  # 3 of 4 clips per digit train
    assert np.isfinite(small["audio"]).all() and 0 <= small["visual"].min() and small["visual"].max() <= 1


def test_deterministic_and_audio_carries_the_digit(small):
    images, labels, split = _digits_and_split_arrays()
    again = av_digits.generate(images, labels, split, av_digits.Settings(clips_per_digit=4, visual_noise=0.5), speak_fn=tone)
    for key in small:
        assert np.array_equal(small[key], again[key]), key
    # The tone's pitch encodes the digit: the loudest mel band rises with it.
    peak = small["audio"][:, 0].mean(2).argmax(1)
    means = [peak[small["labels"] == d].mean() for d in range(10)]
    assert np.all(np.diff(means) >= 0) and means[-1] > means[0]


def test_visual_noise_degrades_the_images():
    rng = np.random.default_rng(0)
    image = np.zeros((32, 32))
    image[8:24, 12:20] = 1.0
    errors = [np.abs(av_digits.degrade(image, amount, rng) - image).mean() for amount in (0.0, 0.3, 0.9)]
    assert errors[0] == 0 and errors[0] < errors[1] < errors[2]


def test_missing_espeak_is_one_clear_line(monkeypatch, tmp_path):
    from spikeport.errors import UserError

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="apt-get install -y espeak-ng"):
        av_digits.speak("one", "en", 150, 50, tmp_path)
