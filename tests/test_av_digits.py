"""av-digits generation, with a stand-in voice (tests do not need espeak-ng)."""

import shutil

import numpy as np
import pytest
import torch

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


# --- av-digits-seq: the same clips over time ---------------------------------------------------

TONES = (300.0, 600.0, 1000.0, 1500.0, 2200.0)


def two_tones(word, voice, speed, pitch, folder):
    """A stand-in voice in which only the order says the digit: digit d (< 5) is tone d then tone
    d + 1, digit d + 5 the same two tones the other way round."""
    digit = av_digits.WORDS.index(word)
    low, high = TONES[digit % 5], TONES[(digit % 5 + 1) % 5]
    first, second = (low, high) if digit < 5 else (high, low)
    t = np.arange(int(av_digits.SAMPLE_RATE * 0.3)) / av_digits.SAMPLE_RATE
    return np.concatenate([0.5 * np.sin(2 * np.pi * f * t) for f in (first, second)]).astype(np.float32)


@pytest.fixture(scope="module")
def seq_root(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(av_digits, "speak", two_tones)
    root = tmp_path_factory.mktemp("data")
    from spikeport.train import datasets

    datasets.build("av-digits-seq", root, options={"clips_per_digit": 12})
    monkeypatch.undo()
    return root


def _seq(root, split, **options):
    from spikeport.train import datasets

    return datasets.load("av-digits-seq", root, split, 8, options={"clips_per_digit": 12, **options})


def test_seq_shapes_windows_image_steps_and_shift(seq_root):
    from spikeport.train import datasets

    plain = datasets.load("av-digits", seq_root, "test", 8, options={"clips_per_digit": 12})
    seq, shifted = _seq(seq_root, "test"), _seq(seq_root, "test", audio_shift=2, visual_steps=3)
    assert datasets.spec("av-digits-seq").input_shape == {"audio": (1, av_digits.MELS, 8), "visual": (1, 32, 32)}
    for i in (0, len(seq) - 1):
        (audio, visual), y = seq[i]
        (spectrogram, image), label = plain[i]
        assert audio.shape == (8, 1, av_digits.MELS, 8) and visual.shape == (8, 1, 32, 32) and y == label
        # the columns spread over time, not repeated: window t starts at round(t * 24 / 7)
        for t in range(8):
            start = round(t * (av_digits.FRAMES - 8) / 7)
            assert torch.equal(audio[t], spectrogram[0][..., start : start + 8])
        shown = visual.flatten(1).abs().sum(1) > 0
        assert shown.sum() == 2 and torch.equal(visual[shown][0], image[0])
        loudest = set(audio.mean((1, 2, 3)).argsort(descending=True)[:2].tolist())
        assert set(torch.nonzero(shown).flatten().tolist()) == loudest, "the image is shown where the word is loudest"
        (late, visual3), _ = shifted[i]
        assert torch.equal(late[2:], audio[:-2]) and torch.equal(late[0], audio[0]) and torch.equal(late[1], audio[0])
        assert int((visual3.flatten(1).abs().sum(1) > 0).sum()) == 3
        assert torch.equal(seq[i][0][0], audio), "deterministic"


def test_seq_audio_needs_its_order_of_timesteps(seq_root):
    """With two tones whose order alone says the digit, a small linear model on the audio steps
    reads the digit; with each clip's timesteps shuffled (the control) it cannot."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)

    def features(dataset, shuffle):
        xs, ys = [], []
        for i in range(len(dataset)):
            (audio, _), y = dataset[i]
            profile = audio.mean(-1).flatten(1).numpy()  # [T, MELS]: each step's spectrum
            xs.append((profile[rng.permutation(len(profile))] if shuffle else profile).ravel())
            ys.append(y)
        return np.array(xs), np.array(ys)

    train, test = _seq(seq_root, "train"), _seq(seq_root, "test")
    model = LogisticRegression(max_iter=2000).fit(*features(train, False))
    ordered = model.score(*features(test, False))
    shuffled_model = LogisticRegression(max_iter=2000).fit(*features(train, True))
    shuffled = shuffled_model.score(*features(test, True))
    assert ordered > 0.8 and shuffled < ordered - 0.25, (ordered, shuffled)
