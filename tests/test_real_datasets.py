"""The real datasets, read from tiny fixtures written in each dataset's real on-disk format.

No test touches the network: `no_downloads` turns every torchvision and tonic download entry into
a failure, so a code path that would fetch a dataset fails here instead of going online.
"""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from spikeport.errors import UserError
from spikeport.train import datasets, real_datasets

# --- fixture writers ---------------------------------------------------------------------------


def write_cifar10(root: Path, train_per_batch: int = 2, test: int = 4, seed: int = 0) -> dict:
    """cifar-10-batches-py with `train_per_batch` images in each of data_batch_1..5: the pickled
    dicts torchvision reads ({"data": uint8 [n, 3072] in CHW order, "labels": [...]})."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {"train": ([], []), "test": ([], [])}
    files = [(f"data_batch_{i}", train_per_batch, "train") for i in range(1, 6)] + [("test_batch", test, "test")]
    for name, n, split in files:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(folder / name, "wb") as f:
            names = [f"{i}.png" for i in range(n)]
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": names}, f)
        written[split][0].append(data)
        written[split][1].extend(labels)
    with open(folder / "batches.meta", "wb") as f:
        classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        pickle.dump({"label_names": classes, "num_cases_per_batch": train_per_batch, "num_vis": 3072}, f)
    return {split: (np.concatenate(d).reshape(-1, 3, 32, 32), labels) for split, (d, labels) in written.items()}


def write_cifar100(root: Path, train: int = 5, test: int = 3, seed: int = 1) -> dict:
    """cifar-100-python/{train,test,meta}: pickles with "data", "fine_labels", "coarse_labels"."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    written = {}
    for name, n in (("train", train), ("test", test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "fine_labels": fine, "coarse_labels": [v // 5 for v in fine]}, f)
        written[name] = (data.reshape(-1, 3, 32, 32), fine)
    with open(folder / "meta", "wb") as f:
        fine, coarse = [f"class{i}" for i in range(100)], [f"super{i}" for i in range(20)]
        pickle.dump({"fine_label_names": fine, "coarse_label_names": coarse}, f)
    return written


def nmnist_bin(x, y, t, p) -> bytes:
    """N-MNIST's 40-bit events: x, y, then polarity in bit 7 and a 23-bit microsecond timestamp."""
    x, y, t, p = (np.asarray(v, dtype=np.uint32) for v in (x, y, t, p))
    raw = np.stack([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF], axis=1)
    return raw.astype(np.uint8).tobytes()


def random_events(rng, n: int, width: int, height: int, duration_us: int):
    t = np.sort(rng.integers(0, duration_us, n))
    return rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n)


def write_nmnist(root: Path, per_digit: dict[str, int], seed: int = 2) -> dict:
    """NMNIST/Train|Test/<digit>/<id>.bin, as extracted from tonic's train.zip / test.zip."""
    rng = np.random.default_rng(seed)
    written = {}
    for folder, n in per_digit.items():
        for digit in range(10):
            (root / "NMNIST" / folder / str(digit)).mkdir(parents=True)
            for k in range(n):
                events = random_events(rng, 200, 34, 34, 300_000)
                (root / "NMNIST" / folder / str(digit) / f"{k:05d}.bin").write_bytes(nmnist_bin(*events))
                written[(folder, digit, k)] = events
    return written


def write_dvs_gesture(root: Path, seed: int = 3) -> dict:
    """DVSGesture/ibmGestureTrain|Test/userNN_<lighting>/<label>.npy: [N, 4] rows (x, y, p, t_ms)."""
    rng = np.random.default_rng(seed)
    written = {}
    layout = {"ibmGestureTrain": ["user01_fluorescent", "user02_led"], "ibmGestureTest": ["user24_lab"]}
    for folder, users in layout.items():
        for user in users:
            (root / "DVSGesture" / folder / user).mkdir(parents=True)
            for label in (0, 5, 10):
                x, y, t_us, p = random_events(rng, 300, 128, 128, 2_000_000)
                rows = np.stack([x, y, p, t_us // 1000], axis=1).astype(np.int64)
                np.save(root / "DVSGesture" / folder / user / f"{label}.npy", rows)
                written[(folder, user, label)] = rows
    return written


def aedat2(x, y, t, p) -> bytes:
    """An original CIFAR10-DVS AEDAT 2.0 recording whose decoded events are (x, y, t, p).

    The file stores raw sensor addresses, which spikingjelly's decoding transposes, mirrors and
    inverts: raw x = 127 - y, raw y = 127 - x, raw polarity = 1 - p.
    """
    x, y, t, p = (np.asarray(v, dtype=np.int64) for v in (x, y, t, p))
    address = ((127 - x) << 8) | ((127 - y) << 1) | (1 - p)
    body = np.stack([address, t], axis=1).astype(">u4").tobytes()
    header = (
        b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
        b"# Data format is int32 address, int32 timestamp (8 bytes total)\r\n"
    )
    return header + body


def write_cifar10dvs(root: Path, per_class: dict[str, int], seed: int = 4) -> dict:
    """CIFAR10DVS/<class>/cifar10_<class>_<k>.aedat, as in the original class archives."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, n in per_class.items():
        (root / "CIFAR10DVS" / name).mkdir(parents=True)
        for k in range(n):
            events = random_events(rng, 1000, 128, 128, 1_000_000)
            (root / "CIFAR10DVS" / name / f"cifar10_{name}_{k}.aedat").write_bytes(aedat2(*events))
            written[(name, k)] = events
    return written


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download a dataset")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", refuse)
    monkeypatch.setattr("tonic.dataset.download_and_extract_archive", refuse)


@pytest.fixture
def cifar_md5_by_existence(monkeypatch):
    """Let torchvision accept fixture CIFAR files, whose md5 cannot match the official ones.

    torchvision's CIFAR reader requires every file's md5 to equal the real file's, and no honest
    fixture can produce those digests. Only the digest is dropped: check_integrity still requires
    every file to exist, and torchvision's own parsing reads the fixture.
    """
    real = torchvision.datasets.cifar.check_integrity
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: real(path, None))


def normalised(images: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 [N, 3, 32, 32] images as the test transform should give them: scaled, then normalised."""
    return (torch.from_numpy(images).float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def stack(dataset) -> tuple[torch.Tensor, list[int]]:
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([x for x, _ in items]), [y for _, y in items]


# --- registry and missing data -----------------------------------------------------------------


def test_real_specs():
    specs = {name: datasets.spec(name) for name in real_datasets.NAMES}
    shapes = {name: (spec.input_shape, spec.num_classes) for name, spec in specs.items()}
    assert shapes == {
        "cifar10": ((3, 32, 32), 10),
        "cifar100": ((3, 32, 32), 100),
        "cifar10-dvs": ((2, 48, 48), 10),
        "nmnist": ((2, 34, 34), 10),
        "dvs-gesture": ((2, 128, 128), 11),
    }
    assert set(real_datasets.NAMES) <= set(datasets.dataset_names())


@pytest.mark.parametrize(
    "name, folder",
    [
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("cifar10-dvs", "CIFAR10DVS"),
        ("nmnist", "NMNIST/Train"),
        ("dvs-gesture", "DVSGesture/ibmGestureTrain"),
    ],
)
@pytest.mark.parametrize("call", ["load", "build"])
def test_missing_dataset_is_a_one_line_user_error(name, folder, call, tmp_path):
    with pytest.raises(UserError) as error:
        if call == "load":
            datasets.load(name, tmp_path, "train", 4)
        else:
            datasets.build(name, tmp_path)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / folder) in message
    assert "not downloaded automatically" in message
    assert not any(tmp_path.iterdir()), "a missing dataset must not create anything"


def test_corrupted_cifar_is_a_user_error(tmp_path):
    write_cifar10(tmp_path)  # real md5 check: the fixture files do not match
    with pytest.raises(UserError, match="cifar-10-batches-py: incomplete or corrupted") as error:
        datasets.load("cifar10", tmp_path, "test", 2)
    assert "\n" not in str(error.value)


# --- CIFAR ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("cifar_md5_by_existence")
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_items(name, tmp_path):
    written = (write_cifar10 if name == "cifar10" else write_cifar100)(tmp_path)
    mean, std = (
        (real_datasets.CIFAR10_MEAN, real_datasets.CIFAR10_STD)
        if name == "cifar10"
        else (real_datasets.CIFAR100_MEAN, real_datasets.CIFAR100_STD)
    )
    for split in ("train", "test"):
        dataset = datasets.load(name, tmp_path, split, 3)
        images, labels = written[split]
        x, y = stack(dataset)
        assert x.shape == (len(labels), 3, 3, 32, 32) and x.dtype == torch.float32
        assert y == labels
        assert torch.equal(x, x[:, :1].expand_as(x)), "direct encoding repeats the image"
        if split == "test":  # no augmentation: exactly the normalised image
            expected = normalised(images, mean, std)
            assert torch.allclose(x[:, 0], expected, atol=1e-5)
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    assert datasets.build(name, tmp_path) == tmp_path / folder


@pytest.mark.usefixtures("cifar_md5_by_existence")
def test_cifar_train_augmentation_is_random_but_seeded(tmp_path):
    images, _ = write_cifar10(tmp_path)["train"]
    train = datasets.load("cifar10", tmp_path, "train", 2)
    torch.manual_seed(0)
    first = stack(train)[0]
    torch.manual_seed(0)
    assert torch.equal(stack(train)[0], first)
    # crops and flips move pixels; each output is still a crop of the padded, maybe flipped image
    norm = normalised(images, real_datasets.CIFAR10_MEAN, real_datasets.CIFAR10_STD)
    assert not torch.allclose(first[:, 0], norm, atol=1e-5)
    padded_zero = -torch.tensor(real_datasets.CIFAR10_MEAN) / torch.tensor(real_datasets.CIFAR10_STD)
    for i in range(len(images)):
        candidates = []
        for image in (norm[i], norm[i].flip(-1)):
            padded = padded_zero[:, None, None].expand(3, 40, 40).clone()
            padded[:, 4:36, 4:36] = image
            candidates += [padded[:, r : r + 32, c : c + 32] for r in range(9) for c in range(9)]
        assert any(torch.allclose(first[i, 0], c, atol=1e-5) for c in candidates)


# --- N-MNIST and DVS Gesture ----------------------------------------------------------------------


def test_nmnist_items(tmp_path):
    written = write_nmnist(tmp_path, {"Train": 2, "Test": 1})
    train, test = (datasets.load("nmnist", tmp_path, split, 5) for split in ("train", "test"))
    assert (len(train), len(test)) == (20, 10)
    x, y = stack(train)
    assert x.shape == (20, 5, 2, 34, 34) and x.dtype == torch.float32
    assert y == [d for d in range(10) for _ in range(2)]
    # sample 3 is digit 1, file 00001.bin: every event lands in its own pixel of some bin
    ex, ey, t, p = written[("Train", 1, 1)]
    frames = x[3]
    counts = torch.zeros(2, 34, 34)
    np.add.at(counts.numpy(), (p, ey, ex), 1)
    last = t == t.max()  # tonic's equal-time bins end just before the last timestamp
    np.add.at(counts.numpy(), (p[last], ey[last], ex[last]), -1)
    assert torch.equal(frames.sum(0), counts)
    assert datasets.build("nmnist", tmp_path) == tmp_path / "NMNIST"


def test_dvs_gesture_items(tmp_path):
    write_dvs_gesture(tmp_path)
    train, test = (datasets.load("dvs-gesture", tmp_path, split, 4) for split in ("train", "test"))
    assert (len(train), len(test)) == (6, 3)
    x, y = stack(train)
    assert x.shape == (6, 4, 2, 128, 128) and x.dtype == torch.float32
    assert y == [0, 10, 5, 0, 10, 5], "sorted by path: user01 before user02, '10.npy' before '5.npy'"
    assert 280 <= x[0].sum() <= 300
    assert stack(test)[1] == [0, 10, 5]


# --- CIFAR10-DVS ---------------------------------------------------------------------------------


def test_cifar10dvs_decoding_round_trips(tmp_path):
    rng = np.random.default_rng(5)
    events = random_events(rng, 500, 128, 128, 10_000_000)
    path = tmp_path / "one.aedat"
    path.write_bytes(aedat2(*events))
    decoded = real_datasets.read_cifar10dvs_events(path)
    for field, expected in zip("xytp", events):
        assert np.array_equal(decoded[field], expected), field


def test_cifar10dvs_split_frames_and_labels(tmp_path):
    write_cifar10dvs(tmp_path, {"airplane": 11, "truck": 3})
    train = datasets.load("cifar10-dvs", tmp_path, "train", 4)
    test = datasets.load("cifar10-dvs", tmp_path, "test", 4)
    # per class the first ceil(90%) in file-name order train: airplane 10 of 11, truck 3 of 3

    def names(split):
        return [path.name for path, _ in split.samples]

    airplane = sorted(f"cifar10_airplane_{k}.aedat" for k in range(11))
    assert airplane[:3] == ["cifar10_airplane_0.aedat", "cifar10_airplane_1.aedat", "cifar10_airplane_10.aedat"]
    assert names(train) == airplane[:10] + [f"cifar10_truck_{k}.aedat" for k in range(3)]
    assert names(test) == airplane[10:]
    x, y = stack(test)
    assert x.shape == (1, 4, 2, 48, 48) and x.dtype == torch.float32 and y == [0]
    assert stack(train)[1] == [0] * 10 + [9] * 3
    # equal-count bins: 1000 events / 4 frames, and the antialiased resize keeps each frame's mass
    mass = x[0].sum((1, 2, 3)) * (128 / 48) ** 2
    assert torch.allclose(mass, torch.full((4,), 250.0), rtol=0.05)
    assert datasets.build("cifar10-dvs", tmp_path) == tmp_path / "CIFAR10DVS"


def test_cifar10dvs_train_augmentation_is_seeded_and_differs(tmp_path):
    write_cifar10dvs(tmp_path, {"cat": 3})
    train = datasets.load("cifar10-dvs", tmp_path, "train", 3)
    plain = copy.copy(train)
    plain.train = False  # the same recordings without augmentation
    torch.manual_seed(1)
    first = stack(train)[0]
    torch.manual_seed(1)
    assert torch.equal(stack(train)[0], first)
    assert first.shape == (3, 3, 2, 48, 48)
    reference = stack(plain)[0]
    changed = 0
    for seed in range(10):
        torch.manual_seed(seed)
        changed += not torch.equal(stack(train)[0], reference)
    assert changed >= 5


# --- SNNAugmentWide --------------------------------------------------------------------------------


def frames_of_one_image(t: int = 3) -> torch.Tensor:
    image = torch.rand(2, 20, 20, generator=torch.Generator().manual_seed(0))
    return image.expand(t, 2, 20, 20).clone()


def test_snn_augment_wide_same_op_for_every_frame():
    frames = frames_of_one_image()
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = real_datasets.snn_augment_wide(frames)
        assert out.shape == frames.shape
        assert all(torch.equal(out[0], out[k]) for k in range(1, 3)), "one op, applied to all frames alike"
        seen.add(torch.equal(out, frames))
    assert seen == {True, False}


def test_snn_augment_ops():
    frames = frames_of_one_image()
    op = real_datasets.apply_snn_augment_op
    assert torch.equal(op(frames, "Identity", 0.0), frames)
    shifted = op(frames, "TranslateX", 3.9)  # truncated to 3 pixels
    assert torch.equal(shifted[..., 3:], frames[..., :-3]) and not shifted[..., :3].any()
    shifted = op(frames, "TranslateY", -2.0)
    assert torch.equal(shifted[..., :-2, :], frames[..., 2:, :]) and not shifted[..., -2:, :].any()
    rotated = op(frames, "Rotate", 90.0)
    assert torch.equal(rotated, torch.rot90(frames, 1, (-2, -1)))
    assert torch.equal(op(frames, "ShearX", 0.0), frames)
    torch.manual_seed(0)
    erased = op(frames, "Cutout", 0.0)
    zeroed = (erased != frames).any(0).any(0)
    area = int(zeroed.sum())
    assert 0 < area <= 0.11 * 400 and not erased[:, :, zeroed].any()
    with pytest.raises(ValueError):
        op(frames, "Solarize", 1.0)


# --- CutMix and mixup ------------------------------------------------------------------------------


def test_cutmix_pastes_one_box_and_reports_its_share():
    x = torch.arange(4, dtype=torch.float32)[:, None, None, None, None].expand(4, 2, 3, 16, 16).clone()
    y = torch.tensor([0, 1, 2, 3])
    for seed in range(20):
        mixed, y_a, y_b, lam = real_datasets.cutmix(x, y, 1.0, np.random.default_rng(seed))
        assert torch.equal(y_a, y) and sorted(y_b.tolist()) == [0, 1, 2, 3]
        for i in range(4):
            own = (mixed[i] == x[i]).all(0).all(0)  # pixels still the sample's own, at every t and c
            other = (mixed[i] == float(y_b[i])).all(0).all(0)
            assert (own | other).all()
            if y_b[i] != y[i]:
                assert math.isclose(own.float().mean().item(), lam)
    again = real_datasets.cutmix(x, y, 1.0, np.random.default_rng(3))
    first = real_datasets.cutmix(x, y, 1.0, np.random.default_rng(3))
    assert torch.equal(again[0], first[0]) and again[3] == first[3]


def test_mixup_mixes_with_the_flipped_batch():
    x = torch.randn(4, 3, 2, 5, 5)
    y = torch.tensor([1, 2, 3, 4])
    mixed, y_a, y_b, lam = real_datasets.mixup(x, y, 0.5, np.random.default_rng(0))
    assert 0 < lam < 1 and torch.equal(y_a, y) and torch.equal(y_b, y.flip(0))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0))
    lams = [real_datasets.mixup(x, y, 0.5, np.random.default_rng(s), prob=0.5)[3] for s in range(40)]
    assert 5 < lams.count(1.0) < 35, "prob=0.5: about half the batches stay unmixed"
    unmixed = real_datasets.mixup(x, y, 0.5, np.random.default_rng(0), prob=0.0)
    assert unmixed[3] == 1.0 and torch.equal(unmixed[0], x)


def test_loader_batches_are_batch_major(tmp_path):
    write_nmnist(tmp_path, {"Train": 1, "Test": 1})
    loader = torch.utils.data.DataLoader(datasets.load("nmnist", tmp_path, "train", 3), batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 2, 34, 34) and y.dtype == torch.int64


def test_cifar10dvs_cannot_be_downloaded(tmp_path):
    with pytest.raises(UserError, match="cannot be downloaded by spikeport"):
        datasets.load("cifar10-dvs", tmp_path, "train", 4, download=True)
