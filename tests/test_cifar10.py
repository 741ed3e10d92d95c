"""CIFAR-10 loading: sources (archive, folder, torchvision batches), cache, subsets, offline error.

The synthetic tests build a tiny CIFAR-10 look-alike in ``tmp_path``; the last test loads the
real archive when ``KDCOURSE_CIFAR10`` points at it and is skipped otherwise.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kdcourse import data
from kdcourse.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, load_cifar10_data

N_TRAIN, N_TEST = 4, 2  # images per class


def _image(label: int, index: int) -> np.ndarray:
    """A flat-coloured 32x32 image whose colour encodes the class (survives JPEG)."""
    rng = np.random.default_rng(100 * label + index)
    colour = np.array([label * 25, 255 - label * 25, (label * 70) % 256], dtype=np.uint8)
    noise = rng.integers(-3, 4, size=(32, 32, 3))
    return np.clip(colour.astype(int) + noise, 0, 255).astype(np.uint8)


def _jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _write_folder(root: Path) -> Path:
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        for label, name in enumerate(CIFAR10_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{i:04d}.jpg").write_bytes(_jpeg(_image(label, i)))
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("KDCOURSE_CACHE", str(folder))
    monkeypatch.delenv("KDCOURSE_CIFAR10", raising=False)
    return folder


@pytest.fixture
def image_folder(tmp_path):
    return _write_folder(tmp_path / "cifar-folder")


@pytest.fixture
def archive(tmp_path, image_folder):
    path = tmp_path / "cifar10-tiny.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(image_folder / split, arcname=split)
    return path


def _check_splits(splits, n_train=10 * N_TRAIN, n_test=10 * N_TEST):
    assert splits.classes == CIFAR10_CLASSES
    x, y = splits.train.tensors
    assert x.dtype == torch.float32 and x.shape == (n_train, 3, 32, 32)
    assert y.dtype == torch.int64 and len(y) == n_train
    assert splits.test.tensors[0].shape == (n_test, 3, 32, 32)
    assert splits.val is None


def test_archive_source(cache, archive):
    splits = load_cifar10_data(root=archive, normalize=False)
    _check_splits(splits)
    x, y = splits.train.tensors
    assert 0 <= x.min() and x.max() <= 1
    assert torch.equal(torch.bincount(y), torch.full((10,), N_TRAIN))
    # the labels follow the class folders: each image's colour matches its class
    for label in range(10):
        mean_colour = x[y == label].mean(dim=(0, 2, 3)) * 255
        expected = torch.tensor(_image(label, 0).reshape(-1, 3).mean(0), dtype=torch.float32)
        assert torch.allclose(mean_colour, expected, atol=4)


def test_folder_source_matches_archive(cache, archive, image_folder):
    from_archive = load_cifar10_data(root=archive)
    from_folder = load_cifar10_data(root=image_folder)
    _check_splits(from_folder)
    for a, b in zip(from_archive.train.tensors + from_archive.test.tensors,
                    from_folder.train.tensors + from_folder.test.tensors):
        assert torch.equal(a, b)


def test_env_variable_is_used(cache, archive, monkeypatch):
    monkeypatch.setenv("KDCOURSE_CIFAR10", str(archive))
    _check_splits(load_cifar10_data())


def test_normalisation(cache, archive):
    raw = load_cifar10_data(root=archive, normalize=False).train.tensors[0]
    norm = load_cifar10_data(root=archive).train.tensors[0]
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    assert torch.allclose(norm, (raw - mean) / std, atol=1e-5)


def test_torchvision_batches_source(cache, tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "tv"
    batches = root / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name, n in [*((f"data_batch_{i}", 20) for i in range(1, 6)), ("test_batch", 30)]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": [i % 10 for i in range(n)]}
        (batches / name).write_bytes(pickle.dumps(batch))
    for source in (root, batches):
        splits = load_cifar10_data(root=source, normalize=False)
        _check_splits(splits, n_train=100, n_test=30)
    first = pickle.loads((batches / "data_batch_1").read_bytes())["data"][0]
    x0 = splits.train.tensors[0][0]
    assert torch.equal((x0 * 255).round().to(torch.uint8).flatten(), torch.from_numpy(first))


def test_second_load_reads_the_cache(cache, archive, monkeypatch):
    first = load_cifar10_data(root=archive)
    assert len(list(cache.glob("cifar10-*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("the second load decoded images instead of reading the cache")

    monkeypatch.setattr(data, "_decode_image", no_decoding)
    monkeypatch.setattr(data, "_decode_archive", no_decoding)
    second = load_cifar10_data(root=archive)
    assert torch.equal(first.train.tensors[0], second.train.tensors[0])
    assert torch.equal(first.test.tensors[1], second.test.tensors[1])


def test_changed_source_is_decoded_again(cache, archive, image_folder):
    load_cifar10_data(root=archive)
    stat = archive.stat()
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_cifar10_data(root=archive)
    assert len(list(cache.glob("cifar10-*.npz"))) == 2


def test_subsets_are_stratified_and_deterministic(cache, archive):
    a = load_cifar10_data(root=archive, train_size=20, test_size=10, seed=1)
    b = load_cifar10_data(root=archive, train_size=20, test_size=10, seed=1)
    c = load_cifar10_data(root=archive, train_size=20, test_size=10, seed=2)
    _check_splits(a, n_train=20, n_test=10)
    assert torch.equal(torch.bincount(a.train.tensors[1]), torch.full((10,), 2))
    assert torch.equal(torch.bincount(a.test.tensors[1]), torch.ones(10, dtype=torch.int64))
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])


def test_validation_split(cache, archive):
    splits = load_cifar10_data(root=archive, val_size=10, train_size=20)
    assert len(splits.val) == 10 and len(splits.train) == 20
    assert torch.equal(torch.bincount(splits.val.tensors[1]), torch.ones(10, dtype=torch.int64))
    # no image is in both splits
    train = {tuple(x.flatten()[:50].tolist()) for x in splits.train.tensors[0]}
    assert not any(tuple(x.flatten()[:50].tolist()) in train for x in splits.val.tensors[0])
    full = load_cifar10_data(root=archive, val_size=10)
    assert len(full.train) == 10 * N_TRAIN - 10


@pytest.mark.parametrize("kwargs", [{"train_size": 0}, {"test_size": 10**6}, {"val_size": -1},
                                    {"val_size": 10 * N_TRAIN}])
def test_bad_sizes(cache, archive, kwargs):
    with pytest.raises(ValueError):
        load_cifar10_data(root=archive, **kwargs)


def test_bad_sources(cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cifar10_data(root=tmp_path / "nowhere.tar.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no CIFAR-10 data"):
        load_cifar10_data(root=tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("not an archive")
    with pytest.raises(ValueError, match="not a tar"):
        load_cifar10_data(root=tmp_path / "notes.txt")
    bad = tmp_path / "bad"
    (bad / "train" / "giraffe").mkdir(parents=True)
    (bad / "test").mkdir()
    (bad / "train" / "giraffe" / "0.jpg").write_bytes(_jpeg(_image(0, 0)))
    with pytest.raises(ValueError, match="giraffe"):
        load_cifar10_data(root=bad)


def test_offline_error_says_how_to_get_the_data(cache, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(RuntimeError) as info:
        load_cifar10_data()
    message = str(info.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    assert "KDCOURSE_CIFAR10=" in message
    assert "run once" in message
    assert "digits" in message and "offline" in message


REAL = os.environ.get("KDCOURSE_CIFAR10")


@pytest.mark.skipif(not REAL, reason="set KDCOURSE_CIFAR10 to the CIFAR-10 archive to run")
def test_real_cifar10(tmp_path, monkeypatch):
    monkeypatch.setenv("KDCOURSE_CACHE", str(tmp_path))
    start = time.perf_counter()
    first = load_cifar10_data()
    first_seconds = time.perf_counter() - start
    assert (len(first.train), len(first.test)) == (50_000, 10_000)
    assert torch.equal(torch.bincount(first.train.tensors[1]), torch.full((10,), 5000))
    assert torch.equal(torch.bincount(first.test.tensors[1]), torch.full((10,), 1000))
    x = first.train.tensors[0]
    assert x.mean().abs() < 0.05 and (x.std() - 1).abs() < 0.05  # normalised
    del first, x
    start = time.perf_counter()
    second = load_cifar10_data()
    second_seconds = time.perf_counter() - start
    print(f"first load {first_seconds:.2f} s, second load {second_seconds:.2f} s")
    assert len(second.train) == 50_000
    assert second_seconds < 1.0
