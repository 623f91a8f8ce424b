"""The built-in datasets: shapes, the fixed split, the cache, and whether the events carry the digit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from spikeport.errors import UserError
from spikeport.train import datasets

SENSOR_US = 300_000  # three 100 ms saccades


@pytest.fixture(scope="module")
def sklearn_digits():
    bunch = load_digits()
    return bunch.images, bunch.target


@pytest.fixture(scope="module")
def event_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    datasets.build("event-digits", root)
    return root


@pytest.fixture(scope="module")
def event_arrays(event_root):
    with np.load(datasets.build("event-digits", event_root)) as archive:
        return dict(archive)


def sample_events(arrays, j):
    return arrays["events"][arrays["offsets"][j] : arrays["offsets"][j + 1]]


def arrays_of(path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return dict(archive)


# --- registry and user errors ----------------------------------------------------------------


def test_registry():
    assert datasets.dataset_names()[:2] == ["digits", "event-digits"]
    digits, events = datasets.spec("digits"), datasets.spec("event-digits")
    assert (digits.name, digits.input_shape, digits.num_classes) == ("digits", (1, 8, 8), 10)
    assert (events.name, events.input_shape, events.num_classes) == ("event-digits", (2, 32, 32), 10)
    for spec in (digits, events):
        assert spec.description and "\n" not in spec.description


@pytest.mark.parametrize(
    "call",
    [
        lambda name, root: datasets.spec(name),
        datasets.build,
        lambda name, root: datasets.load(name, root, "train", 4),
    ],
)
def test_unknown_name_is_a_user_error(call, tmp_path):
    with pytest.raises(UserError, match="'mnist'") as error:
        call("mnist", tmp_path)
    assert "digits" in str(error.value) and "event-digits" in str(error.value)
    assert not any(tmp_path.iterdir())


def test_bad_split_and_timesteps_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="'validation'"):
        datasets.load("digits", tmp_path, "validation", 4)
    with pytest.raises(UserError, match="timesteps"):
        datasets.load("digits", tmp_path, "train", 0)
    assert not any(tmp_path.iterdir()), "a rejected call must not build anything"


# --- digits ----------------------------------------------------------------------------------


def test_digits_items(tmp_path, sklearn_digits):
    images, target = sklearn_digits
    train = datasets.load("digits", tmp_path, "train", 5)
    test = datasets.load("digits", tmp_path, "test", 5)
    assert (len(train), len(test)) == (1347 - 136, 450)  # 10% of the training split is `val`
    for split in (train, test):
        for i in (0, len(split) // 2, len(split) - 1):
            x, y = split[i]
            assert x.shape == (5, 1, 8, 8) and x.dtype == torch.float32
            assert torch.equal(x, x[:1].expand_as(x)), "direct encoding repeats the image"
            j = int(split.indices[i])
            assert torch.allclose(x[0, 0], torch.from_numpy(images[j] / 16).float())
            assert int(y) == target[j]
    x = torch.stack([test[i][0] for i in range(len(test))])
    assert x.min() == 0 and x.max() == 1
    assert sorted({int(test[i][1]) for i in range(len(test))}) == list(range(10))


def test_split_is_stratified_disjoint_and_complete(tmp_path, sklearn_digits):
    _, target = sklearn_digits
    arrays = arrays_of(datasets.build("digits", tmp_path))
    train, test = arrays["train"], arrays["test"]
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(target)))
    assert np.array_equal(arrays["labels"], target)
    per_class = np.bincount(target, minlength=10)
    assert np.all(np.abs(np.bincount(target[test], minlength=10) - per_class / 4) <= 1)


def test_builds_are_deterministic(tmp_path):
    first = arrays_of(datasets.build("digits", tmp_path / "a"))
    second = arrays_of(datasets.build("digits", tmp_path / "b"))
    assert first.keys() == second.keys() == {"images", "labels", "train", "test"}
    for key in first:
        assert first[key].dtype == second[key].dtype and np.array_equal(first[key], second[key])
    assert first["images"].dtype == np.uint8 and first["images"].shape == (1797, 8, 8)


def test_event_build_is_deterministic(event_arrays, tmp_path):
    again = arrays_of(datasets.build("event-digits", tmp_path))
    assert again.keys() == event_arrays.keys()
    for key in again:
        assert again[key].tobytes() == event_arrays[key].tobytes(), key


# --- the cache -------------------------------------------------------------------------------


def test_cache_is_reused(tmp_path, monkeypatch):
    path = datasets.build("digits", tmp_path)
    assert path == tmp_path / "digits" / f"digits-v{datasets.CACHE_VERSION}.npz"
    stamp = path.stat().st_mtime_ns

    def regenerate():
        raise AssertionError("the cache was regenerated")

    monkeypatch.setitem(datasets._BUILDERS, "digits", regenerate)
    assert datasets.build("digits", tmp_path) == path
    assert len(datasets.load("digits", tmp_path, "test", 2)) == 450
    assert path.stat().st_mtime_ns == stamp
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no stray temp files"


def test_a_cached_dataset_loads_without_sklearn_or_torchvision(tmp_path):
    """Their imports (0.9 s and 1.7 s) wait for the functions that use them: building a digits cache,
    reading CIFAR, augmenting; not every command that imports the datasets, nor a cached load."""
    datasets.build("digits", tmp_path)
    code = (f"import sys\nfrom spikeport.train import datasets\nx, y = datasets.load('digits', {str(tmp_path)!r}, 'test', 2)[0]\n"
            "print(sorted(m for m in ('sklearn', 'torchvision') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def crash(f, **arrays):
        f.write(b"half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(datasets.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        datasets.build("digits", tmp_path)
    assert list((tmp_path / "digits").iterdir()) == []
    monkeypatch.undo()
    assert datasets.build("digits", tmp_path).exists()


# --- event-digits ----------------------------------------------------------------------------


def test_event_archive_layout(event_arrays, tmp_path):
    events, offsets = event_arrays["events"], event_arrays["offsets"]
    assert events.dtype.names == ("x", "y", "t", "p")
    assert offsets[0] == 0 and offsets[-1] == len(events) and len(offsets) == 1797 + 1
    counts = np.diff(offsets)
    assert counts.min() > 500, "every digit gives a real recording"
    digits = arrays_of(datasets.build("digits", tmp_path))
    for key in ("labels", "train", "test"):
        assert np.array_equal(event_arrays[key], digits[key]), "both datasets share one split"


def test_events_are_valid_dvs_output(event_arrays):
    events, offsets = event_arrays["events"], event_arrays["offsets"]
    assert events["x"].min() >= 0 and events["x"].max() < 32
    assert events["y"].min() >= 0 and events["y"].max() < 32
    assert events["t"].min() >= 0 and events["t"].max() <= SENSOR_US
    sample = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    within = sample[1:] == sample[:-1]
    assert np.all(np.diff(events["t"])[within] >= 0), "each sample is sorted by time"
    # The path is closed, so every pixel ends where it started: per pixel, ON and OFF events
    # differ by at most one (the reference may end one threshold off its start).
    pixel = (sample * 32 + events["y"]) * 32 + events["x"]
    net = np.bincount(pixel, weights=np.where(events["p"], 1, -1), minlength=len(offsets) * 1024)
    assert np.abs(net).max() == 1
    on_fraction = np.bincount(sample, weights=events["p"]) / np.diff(offsets)
    assert on_fraction.min() > 0.4 and on_fraction.max() < 0.6
    # all three saccades move the digit, so each third of the recording has events
    thirds = np.bincount(np.minimum(events["t"] * 3 // SENSOR_US, 2), minlength=3) / len(events)
    assert thirds.min() > 0.25


@pytest.mark.parametrize("step_us", [1_000, 20_000])
def test_dvs_pixel_model(step_us, monkeypatch):
    """A white 8x8 square: sensor pixel (x=2, y=16) is dark until the second saccade (moving left)
    covers it and dark again after the third, so it sees one full rise and one full fall.

    Sampled every 20 ms instead of 1 ms, one sample's change spans several thresholds: the
    counts must not change.
    """
    monkeypatch.setattr(datasets, "_STEP_US", step_us)
    sample, x, y, t, on = datasets._simulate_dvs(np.ones((1, 8, 8)))
    assert len(t) > 0 and np.all(sample == 0)
    at = (x == 2) & (y == 16)
    rise_over_threshold = np.log(1 + datasets._LOG_OFFSET) - np.log(datasets._LOG_OFFSET)
    rise_over_threshold /= datasets._THRESHOLD  # about 4.4 thresholds
    ups, downs = t[at & on], t[at & ~on]
    # one event per threshold crossed: the reference starts within half a threshold of the level
    assert abs(len(ups) - rise_over_threshold) <= 1.5 and abs(len(downs) - rise_over_threshold) <= 1.5
    assert 100_000 <= ups.min() and ups.max() < downs.min() and downs.max() <= 300_000
    # events are placed where the level is crossed between two samples, not bunched at a sample
    assert np.diff(np.sort(ups)).min() > 500 and np.diff(np.sort(downs)).min() > 500
    # the square's interior never changes, so it never fires
    assert not np.any((abs(x - 16) <= 5) & (abs(y - 16) <= 5))


def test_event_frames(event_root, event_arrays):
    for timesteps in (1, 7):
        split = datasets.load("event-digits", event_root, "train", timesteps)
        assert len(split) == 1347 - 136  # 10% of the training split is `val`
        x, y = split[3]
        j = int(split.indices[3])
        assert x.shape == (timesteps, 2, 32, 32) and x.dtype == torch.float32
        assert int(y) == event_arrays["labels"][j]
        assert torch.equal(x, x.round()) and x.min() >= 0
        count = len(sample_events(event_arrays, j))
        # ToFrame bins span the first to the last event, so at most a few tail events fall out
        assert 0.99 * count <= x.sum() <= count
        assert x[:, 0].sum() > 0 and x[:, 1].sum() > 0, "both polarities"


def summed_image(x: torch.Tensor) -> np.ndarray:
    """All events of a [T, 2, 32, 32] sample on the 8x8 grid of the source digit (drawn 24x24)."""
    return x.sum((0, 1)).numpy()[4:28, 4:28].reshape(8, 3, 8, 3).mean((1, 3))


def test_event_frames_look_like_the_digit(event_root, sklearn_digits):
    images, target = sklearn_digits
    split = datasets.load("event-digits", event_root, "test", 4)
    rng = np.random.default_rng(0)
    own, other = [], []
    for i in range(0, len(split), 3):
        x, y = split[i]
        image = summed_image(x).ravel()
        own.append(np.corrcoef(image, images[split.indices[i]].ravel())[0, 1])
        stranger = rng.choice(np.flatnonzero(target != int(y)))
        other.append(np.corrcoef(image, images[stranger].ravel())[0, 1])
    # Events mark moving edges, not filled strokes, so r is moderate; it must beat other digits'.
    assert np.mean(own) > 0.5
    assert np.mean(own) > np.mean(other) + 0.05


def test_event_frames_tell_the_classes_apart(event_root):
    """Nearest class mean of the summed event images, fitted on train, scores far above chance."""

    def summed(split_name):
        split = datasets.load("event-digits", event_root, split_name, 1)
        xs, ys = zip(*(split[i] for i in range(len(split))))
        images = torch.stack(xs).sum((1, 2)).flatten(1).numpy()
        return images / images.sum(1, keepdims=True), np.array([int(y) for y in ys])

    train_x, train_y = summed("train")
    test_x, test_y = summed("test")
    means = np.stack([train_x[train_y == c].mean(0) for c in range(10)])
    predicted = np.argmin(((test_x[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == test_y).mean() > 0.6


# --- the validation split --------------------------------------------------------------------


def test_validation_is_a_fixed_stratified_share_of_the_training_split(tmp_path):
    arrays = arrays_of(datasets.build("digits", tmp_path))
    train, val = (datasets.load("digits", tmp_path, split, 2) for split in ("train", "val"))
    assert len(np.intersect1d(train.indices, val.indices)) == 0
    assert np.array_equal(np.sort(np.concatenate([train.indices, val.indices])), arrays["train"])
    per_class = np.bincount(arrays["labels"][arrays["train"]], minlength=10)
    assert np.all(np.abs(np.bincount(arrays["labels"][val.indices], minlength=10) - datasets.VALIDATION * per_class) <= 0.5)
    assert np.array_equal(datasets.load("digits", tmp_path, "val", 2).indices, val.indices), "the same samples every time"
    assert len(datasets.load("digits", tmp_path, "test", 2)) == 450, "the test split is untouched"
    wider = datasets.load("digits", tmp_path, "val", 2, options={"validation": 0.2})
    assert abs(len(wider) - 0.2 * len(arrays["train"])) <= 10
    whole = datasets.load("digits", tmp_path, "train", 2, options={"validation": 0.0})
    assert np.array_equal(whole.indices, arrays["train"])
    with pytest.raises(UserError, match="no validation split"):
        datasets.load("digits", tmp_path, "val", 2, options={"validation": 0.0})
    with pytest.raises(UserError, match="validation"):
        datasets.load("digits", tmp_path, "val", 2, options={"validation": 1.5})


def test_real_datasets_hold_out_nothing_unless_asked():
    assert datasets.validation_fraction("cifar10", {}) == 0.0 and datasets.validation_fraction("cremad", None) == 0.0
    assert datasets.validation_fraction("cifar10", {"validation": 0.1}) == 0.1
    assert datasets.validation_fraction("event-digits-sparse", {}) == datasets.VALIDATION


# --- temporal variants: the digit at a few steps, the order of two digits ---------------------


def _layout(name, j, timesteps, seed=0):
    rng = np.random.default_rng([seed, j])
    return (datasets.sparse_layout if name == "event-digits-sparse" else datasets.order_layout)(rng, timesteps)


def _small_frames(events, bins):
    """The recording in `bins` equal time bins at 16x16, counted independently of the framer."""
    x, y = events["x"] // 2, events["y"] // 2
    step = np.minimum(events["t"] * bins // (SENSOR_US + 1), bins - 1)
    frames = np.zeros((bins, 2, 16, 16), dtype=np.float32)
    np.add.at(frames, (step, events["p"].astype(int), y, x), 1)
    return frames


@pytest.mark.parametrize("name", ["event-digits-sparse", "event-digits-order"])
def test_temporal_variants_shapes_determinism_and_placement(name, event_root, event_arrays):
    train = datasets.load(name, event_root, "train", 8)
    test = datasets.load(name, event_root, "test", 8)
    assert datasets.spec(name).input_shape == (2, 16, 16)
    assert np.array_equal(test.indices, event_arrays["test"])
    for i in (0, 7, len(test) - 1):
        x, y = test[i]
        j = int(test.indices[i])
        assert x.shape == (8, 2, 16, 16) and x.dtype == torch.float32 and y == event_arrays["labels"][j]
        assert torch.equal(x, test[i][0]), "a sample reads the same every time"
        first = _layout(name, j, 8)[0] if name == "event-digits-order" else _layout(name, j, 8)
        start, frames = first
        expected = _small_frames(sample_events(event_arrays, j), frames)
        np.testing.assert_array_equal(x[start : start + frames].numpy(), expected)  # the labelled digit, where the layout says
        assert (x.sum((1, 2, 3)) > 0).all(), "no step is empty: distractors fill the others"
    other_seed = datasets.load(name, event_root, "test", 8, options={"seed": 1})
    assert not torch.equal(other_seed[0][0], test[0][0])
    onsets = [(_layout(name, int(j), 8)[0] if name == "event-digits-order" else _layout(name, int(j), 8))[0] for j in train.indices]
    assert len(set(onsets)) >= (5 if name == "event-digits-order" else 8), "the digit comes at many different times"


def _pooled(frames: torch.Tensor) -> np.ndarray:
    """The sum of `frames` [n, 2, 16, 16] pooled to 2x8x8, log-scaled: a small linear model's input."""
    return np.log1p(frames.numpy().reshape(-1, 2, 8, 2, 8, 2).sum((0, 3, 5)).ravel())


def _linear_accuracy(train, *tests) -> list[float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.1)).fit(*train)
    return [model.score(*test) for test in tests]


SAMPLES = 500  # per split: enough for a linear model to read a digit, quick to frame


def test_order_task_needs_the_order_of_frames(event_root):
    """A small linear model reads the label from the digit shown first. With each sample's frames
    shuffled (the control), the digit that now comes first is the other one half of the time, and
    the accuracy drops by about half: the label is in the order, not in the frames."""
    rng = np.random.default_rng(0)

    def first_digit(dataset, shuffle: bool):
        xs, ys = [], []
        for i in range(min(SAMPLES, len(dataset))):
            x, y = dataset[i]
            digits = _layout("event-digits-order", int(dataset.indices[i]), 8)
            position = rng.permutation(8) if shuffle else np.arange(8)  # where each frame ends up
            start, frames = min(digits, key=lambda d: position[d[0] : d[0] + d[1]].min())
            xs.append(_pooled(x[start : start + frames]))
            ys.append(y)
        return np.array(xs), np.array(ys)

    train = datasets.load("event-digits-order", event_root, "train", 8)
    test = datasets.load("event-digits-order", event_root, "test", 8)
    ordered, shuffled = _linear_accuracy(first_digit(train, False), first_digit(test, False), first_digit(test, True))
    assert ordered > 0.6 and shuffled < ordered - 0.2, (ordered, shuffled)


def test_sparse_task_hides_the_digit_among_distractors(event_root):
    """A small linear model on the digit's own frames reads the digit; on the whole sequence summed
    over time (where 6-7 distractors bury it) it does much worse: the informative steps must be found."""
    train = datasets.load("event-digits-sparse", event_root, "train", 8)
    test = datasets.load("event-digits-sparse", event_root, "test", 8)

    def features(dataset, located: bool):
        xs, ys = [], []
        for i in range(min(SAMPLES, len(dataset))):
            x, y = dataset[i]
            onset, frames = _layout("event-digits-sparse", int(dataset.indices[i]), 8)
            xs.append(_pooled(x[onset : onset + frames] if located else x))
            ys.append(y)
        return np.array(xs), np.array(ys)

    (at_the_digit,) = _linear_accuracy(features(train, True), features(test, True))
    (collapsed,) = _linear_accuracy(features(train, False), features(test, False))
    assert at_the_digit > 0.6 and collapsed < at_the_digit - 0.15, (at_the_digit, collapsed)
