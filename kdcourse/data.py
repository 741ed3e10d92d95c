"""Datasets: the embedded digits (default, offline) and CIFAR-10, plus transfer-set helpers.

Every loader returns a :class:`DataSplits` of ``TensorDataset`` objects holding the whole split
in memory as ``(inputs, labels)`` tensors: the datasets are small, and in-memory tensors make
CPU training and teacher-output caching simple and fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = [
    "DataSplits",
    "load_digits_data",
    "load_cifar10_data",
    "tensors",
    "subset",
    "hold_out_class",
    "make_loader",
]

DIGIT_CLASSES = [str(d) for d in range(10)]


@dataclass
class DataSplits:
    """Train / validation / test splits and the class names."""

    train: TensorDataset
    val: TensorDataset | None
    test: TensorDataset
    classes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        sizes = {k: (len(v) if v is not None else 0) for k, v in
                 (("train", self.train), ("val", self.val), ("test", self.test))}
        shape = tuple(self.train.tensors[0].shape[1:])
        return f"DataSplits({sizes}, input shape {shape}, {len(self.classes)} classes)"


def tensors(dataset: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(inputs, labels)`` tensors of a ``TensorDataset``."""
    if not isinstance(dataset, TensorDataset) or len(dataset.tensors) != 2:
        raise ValueError("expected a TensorDataset of (inputs, labels), as the course's loaders return")
    return dataset.tensors[0], dataset.tensors[1]


def make_loader(dataset: TensorDataset, batch_size: int = 64, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A ``DataLoader`` whose shuffling is seeded (same seed, same batch order)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


def load_digits_data(
    seed: int = 0,
    test_fraction: float = 0.25,
    val_fraction: float = 0.15,
    images: bool = False,
    loaders: bool = False,
    batch_size: int = 64,
):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), split and scaled.

    - Pixels are integers 0..16 in the original; they are divided by 16, so inputs lie in [0, 1].
    - The split is stratified and deterministic for a given ``seed`` (scikit-learn's
      ``train_test_split``): ``test_fraction`` of all images for test, ``val_fraction`` of all
      images for validation, the rest (about 60 %, 1,077 images) for training.
    - ``images=False`` gives inputs of shape ``(N, 64)`` (for MLPs); ``images=True`` gives
      ``(N, 1, 8, 8)`` (for CNNs).
    - ``loaders=True`` returns DataLoaders (train shuffled with a seeded generator) instead of
      datasets, in a :class:`DataSplits`.

    No download: the data ships inside scikit-learn.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 or test_fraction + val_fraction >= 1:
        raise ValueError(
            f"test_fraction ({test_fraction}) and val_fraction ({val_fraction}) must be in (0, 1) "
            "and leave some data for training"
        )
    digits = load_digits()
    x = digits.data.astype(np.float32) / 16.0
    y = digits.target.astype(np.int64)
    idx = np.arange(len(y))
    rest, test_idx = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    if val_fraction > 0:
        val_size = val_fraction / (1 - test_fraction)
        train_idx, val_idx = train_test_split(rest, test_size=val_size, stratify=y[rest], random_state=seed)
    else:
        train_idx, val_idx = rest, None

    def make(ix):
        xs = torch.from_numpy(x[ix])
        if images:
            xs = xs.reshape(-1, 1, 8, 8)
        return TensorDataset(xs, torch.from_numpy(y[ix]))

    splits = DataSplits(
        train=make(train_idx),
        val=make(val_idx) if val_idx is not None else None,
        test=make(test_idx),
        classes=list(DIGIT_CLASSES),
    )
    if loaders:
        return DataSplits(
            train=make_loader(splits.train, batch_size, shuffle=True, seed=seed),
            val=make_loader(splits.val, batch_size) if splits.val is not None else None,
            test=make_loader(splits.test, batch_size),
            classes=splits.classes,
        )
    return splits


def subset(dataset: TensorDataset, n: int, seed: int = 0, stratified: bool = True) -> TensorDataset:
    """A random subset of ``n`` examples (the same for the same ``seed``).

    With ``stratified=True`` every class keeps (as nearly as possible) its share of the
    examples, so a small transfer set still contains every class.
    """
    x, y = tensors(dataset)
    if not 0 < n <= len(y):
        raise ValueError(f"n must be between 1 and {len(y)} (the dataset's size), got {n}")
    rng = np.random.default_rng(seed)
    if not stratified:
        keep = rng.permutation(len(y))[:n]
    else:
        labels = y.numpy()
        classes, counts = np.unique(labels, return_counts=True)
        quota = np.floor(counts / counts.sum() * n).astype(int)
        # hand the remaining examples to the classes with the largest remainders
        remainder = counts / counts.sum() * n - quota
        for c in np.argsort(-remainder)[: n - quota.sum()]:
            quota[c] += 1
        keep = np.concatenate(
            [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
        )
        keep = rng.permutation(keep)
    keep = torch.from_numpy(np.sort(keep))
    return TensorDataset(x[keep], y[keep])


def hold_out_class(dataset: TensorDataset, label: int) -> TensorDataset:
    """The dataset without any example of class ``label`` (Hinton et al.'s "missing 3")."""
    x, y = tensors(dataset)
    if not (y == label).any():
        raise ValueError(f"class {label} does not occur in this dataset; labels present: {sorted(set(y.tolist()))}")
    keep = y != label
    return TensorDataset(x[keep], y[keep])


# ---------------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------------
#
# Sources, in this order: the ``root`` argument or the ``KDCOURSE_CIFAR10`` environment variable
# (an archive, an ImageFolder folder or a torchvision CIFAR-10 folder); otherwise torchvision's
# download into the cache folder. Whatever the source, the decoded uint8 images are cached once
# as an ``.npz`` in ``config.cache_dir()``, so every later load is a fast file read.

import hashlib  # noqa: E402  (the CIFAR-10 section keeps its imports together)
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pickle  # noqa: E402
import tarfile  # noqa: E402
from pathlib import Path, PurePosixPath  # noqa: E402

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
"""The CIFAR-10 class names in the official label order (also their alphabetical order)."""

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the CIFAR-10 training images (RGB, pixels scaled to [0, 1])."""

CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation of the CIFAR-10 training images (RGB, pixels in [0, 1])."""

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

__all__ += ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_BATCHES_DIR = "cifar-10-batches-py"
_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
_TEST_BATCH = "test_batch"
_CACHE_VERSION = 1


def _offline_message(where: Path, err: BaseException) -> str:
    return (
        f"CIFAR-10 is not available: torchvision could not download it into {where} "
        f"({type(err).__name__}: {err}).\n"
        "To get it:\n"
        "  - on a machine with internet, run once\n"
        '      python -c "from kdcourse.data import load_cifar10_data; load_cifar10_data()"\n'
        "    (it downloads about 170 MB into the cache folder, then works offline), or\n"
        f"  - download the 'CIFAR-10 python version' (cifar-10-python.tar.gz) from {CIFAR10_URL}\n"
        "    and point the course at it: export KDCOURSE_CIFAR10=/path/to/cifar-10-python.tar.gz\n"
        "    (an extracted folder, or an ImageFolder archive/folder with train/<class>/*.jpg and\n"
        "    test/<class>/*.jpg, work too; or pass load_cifar10_data(root=...)).\n"
        "The digits dataset (load_digits_data) ships with scikit-learn and works offline."
    )


def _is_batches_dir(path: Path) -> bool:
    return all((path / name).is_file() for name in [*_TRAIN_BATCHES, _TEST_BATCH])


def _resolve_cifar10_source(root) -> tuple[str, Path] | None:
    """``(kind, path)`` of the configured source, or ``None`` when nothing is configured.

    ``kind`` is ``"archive"`` (a tar/tar.gz file), ``"folder"`` (ImageFolder layout) or
    ``"batches"`` (the folder holding torchvision's ``data_batch_1`` ... ``test_batch``).
    """
    origin = "root argument"
    if root is None:
        root = os.environ.get("KDCOURSE_CIFAR10", "").strip() or None
        origin = "KDCOURSE_CIFAR10"
    if root is None:
        return None
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"CIFAR-10 source {str(path)!r} (from the {origin}) does not exist. Point it at a "
            "CIFAR-10 archive (.tar.gz) or folder, or unset KDCOURSE_CIFAR10 to let torchvision "
            f"download CIFAR-10 ({CIFAR10_URL})."
        )
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise ValueError(f"{path} (from the {origin}) is a file but not a tar / tar.gz archive")
        return "archive", path
    if (path / "train").is_dir() and (path / "test").is_dir():
        return "folder", path
    for candidate in (path, path / _BATCHES_DIR):
        if _is_batches_dir(candidate):
            return "batches", candidate
    raise FileNotFoundError(
        f"{path} (from the {origin}) holds no CIFAR-10 data: expected train/<class>/*.jpg and "
        f"test/<class>/*.jpg (ImageFolder layout) or torchvision's {_BATCHES_DIR}/ folder"
    )


def _download_cifar10() -> tuple[str, Path]:
    """Download CIFAR-10 with torchvision into the cache folder (once) and return its batches."""
    from . import config

    where = config.cache_dir() / "cifar10"
    batches = where / _BATCHES_DIR
    if not _is_batches_dir(batches):
        try:
            from torchvision.datasets import CIFAR10

            CIFAR10(root=str(where), train=True, download=True)  # fetches and extracts all splits
        except Exception as err:  # offline: URLError, socket errors, HTTP errors, ...
            raise RuntimeError(_offline_message(where, err)) from err
        if not _is_batches_dir(batches):
            raise RuntimeError(_offline_message(where, FileNotFoundError(f"{batches} is incomplete")))
    return "batches", batches


def _source_key(kind: str, path: Path) -> str:
    """An identity for the source: resolved path, sizes and modification times (no decoding).

    For a folder the split and class directories are used (their times change when files are
    added, removed or renamed); delete the cache file after editing an image in place.
    """
    path = path.resolve()
    if kind == "archive":
        entries = [path]
    elif kind == "batches":
        entries = [path / name for name in [*_TRAIN_BATCHES, _TEST_BATCH]]
    else:
        entries = [path / "train", path / "test"]
        entries += [d for split in ("train", "test") for d in sorted((path / split).iterdir()) if d.is_dir()]
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in entries]
    blob = json.dumps([_CACHE_VERSION, kind, str(path), stats]).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _class_index(name: str, source: Path) -> int:
    if name not in CIFAR10_CLASSES:
        raise ValueError(
            f"unknown class folder {name!r} in {source}; CIFAR-10 class folders are {CIFAR10_CLASSES}"
        )
    return CIFAR10_CLASSES.index(name)


def _decode_image(data: bytes) -> np.ndarray:
    """One encoded image (JPEG, PNG, ...) as a ``(3, 32, 32)`` uint8 array."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image.convert("RGB"))
    if array.shape != (32, 32, 3):
        raise ValueError(f"CIFAR-10 images are 32x32 RGB; found one of shape {array.shape}")
    return array.transpose(2, 0, 1)


def _stack_images(items: list[tuple[int, str, bytes]], split: str, source: Path):
    if not items:
        raise ValueError(f"{source} holds no {split} images ({split}/<class>/*.jpg)")
    items.sort(key=lambda item: (item[0], item[1]))  # class, then file name: deterministic order
    x = np.stack([_decode_image(data) for _, _, data in items])
    y = np.array([label for label, _, _ in items], dtype=np.int64)
    return x, y


def _unpickle_batch(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    # the official CIFAR-10 python batches are pickles (as torchvision reads them too)
    batch = pickle.loads(data, encoding="latin1")
    x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(batch.get("labels", batch.get("fine_labels")), dtype=np.int64)
    return x, y


def _join_batches(batches: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    x_train = np.concatenate([batches[name][0] for name in _TRAIN_BATCHES])
    y_train = np.concatenate([batches[name][1] for name in _TRAIN_BATCHES])
    x_test, y_test = batches[_TEST_BATCH]
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _decode_archive(path: Path) -> dict[str, np.ndarray]:
    images: dict[str, list] = {"train": [], "test": []}
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = PurePosixPath(member.name).parts
            if any(part.startswith(".") for part in parts if part not in (".", "..")):
                continue  # hidden files (macOS resource forks and the like)
            if len(parts) >= 2 and parts[-2] == _BATCHES_DIR and parts[-1] in [*_TRAIN_BATCHES, _TEST_BATCH]:
                batches[parts[-1]] = _unpickle_batch(tar.extractfile(member).read())
            elif len(parts) >= 3 and parts[-3] in images and parts[-1].lower().endswith(_IMAGE_SUFFIXES):
                label = _class_index(parts[-2], path)
                images[parts[-3]].append((label, member.name, tar.extractfile(member).read()))
    if len(batches) == len(_TRAIN_BATCHES) + 1:
        return _join_batches(batches)
    if not images["train"] and not images["test"]:
        raise ValueError(
            f"{path} holds no CIFAR-10 data: expected train/<class>/*.jpg and test/<class>/*.jpg "
            f"(ImageFolder layout) or torchvision's {_BATCHES_DIR}/ batches"
        )
    x_train, y_train = _stack_images(images["train"], "train", path)
    x_test, y_test = _stack_images(images["test"], "test", path)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _decode_folder(path: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for split in ("train", "test"):
        items = []
        for class_dir in sorted((path / split).iterdir()):
            if not class_dir.is_dir() or class_dir.name.startswith("."):
                continue
            label = _class_index(class_dir.name, path)
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() in _IMAGE_SUFFIXES and not file.name.startswith("."):
                    items.append((label, file.name, file.read_bytes()))
        arrays[f"x_{split}"], arrays[f"y_{split}"] = _stack_images(items, split, path / split)
    return arrays


def _decode_batches(path: Path) -> dict[str, np.ndarray]:
    return _join_batches(
        {name: _unpickle_batch((path / name).read_bytes()) for name in [*_TRAIN_BATCHES, _TEST_BATCH]}
    )


def _cifar10_arrays(kind: str, path: Path) -> dict[str, np.ndarray]:
    """The uint8 images ``(N, 3, 32, 32)`` and int64 labels, from the cache when it has them."""
    from . import config

    cache_file = config.cache_dir() / f"cifar10-{_source_key(kind, path)}.npz"
    keys = ("x_train", "y_train", "x_test", "y_test")
    if cache_file.exists():
        try:
            with np.load(cache_file) as stored:
                return {k: stored[k] for k in keys}
        except Exception:  # a truncated or foreign file: decode again and overwrite it
            pass
    decode = {"archive": _decode_archive, "folder": _decode_folder, "batches": _decode_batches}[kind]
    arrays = decode(path)
    tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: arrays[k] for k in keys})  # uncompressed: loading is one fast read
        os.replace(tmp, cache_file)  # atomic: a concurrent reader never sees half a file
    finally:
        tmp.unlink(missing_ok=True)
    return arrays


def _to_float(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    """uint8 ``(N, 3, 32, 32)`` -> float32, in [0, 1] or standardised per channel."""
    out = x.to(torch.float32)
    if normalize:
        # (x / 255 - mean) / std  ==  x * scale + shift, two passes over the data
        std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
        mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
        return out.mul_(1 / (255 * std)).add_(-mean / std)
    return out.div_(255)


def load_cifar10_data(
    root: str | os.PathLike | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    val_size: int = 0,
    normalize: bool = True,
) -> DataSplits:
    """CIFAR-10 (50,000 training and 10,000 test images, 10 classes) as in-memory tensors.

    Where the images come from, in this order:

    1. ``root``, or else the environment variable ``KDCOURSE_CIFAR10``, naming

       - a ``.tar.gz`` / ``.tar`` archive in ImageFolder layout (``train/<class>/*.jpg``,
         ``test/<class>/*.jpg``) or the official ``cifar-10-python.tar.gz``;
       - an extracted folder with that ImageFolder layout;
       - a torchvision CIFAR-10 root (holding ``cifar-10-batches-py/``) or that folder itself;

    2. otherwise torchvision's ``CIFAR10(download=True)`` into ``config.cache_dir()``. Offline,
       this raises a ``RuntimeError`` that explains how to get the data (the digits dataset,
       :func:`load_digits_data`, needs no download).

    The decoded uint8 images are cached as an ``.npz`` in ``config.cache_dir()``, keyed by the
    source's path, size and modification time: the first load decodes (about 7 s for the 60,000
    JPEGs), later loads read the cache (well under a second).

    - Inputs are float32 of shape ``(N, 3, 32, 32)``; with ``normalize=True`` each channel is
      standardised, ``(x - CIFAR10_MEAN[c]) / CIFAR10_STD[c]`` with ``x`` in [0, 1]; with
      ``normalize=False`` pixels are in [0, 1]. Labels are int64 in the official order
      :data:`CIFAR10_CLASSES`.
    - ``val_size`` images are set aside from the training set as a stratified validation split
      (``val_size=0``: no validation split). ``train_size`` / ``test_size`` then keep a
      stratified, deterministic subset (:func:`subset` with ``seed``) of the remaining training
      images / of the test images; ``None`` keeps them all.

    Memory: the full training set takes about 600 MB as float32; pass ``train_size`` for a
    smaller transfer set (the subset is taken before the conversion to float).
    """
    for name, value in (("train_size", train_size), ("test_size", test_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive number of images or None, got {value!r}")
    if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)) or val_size < 0:
        raise ValueError(f"val_size must be a non-negative number of images, got {val_size!r}")

    kind, path = _resolve_cifar10_source(root) or _download_cifar10()
    arrays = _cifar10_arrays(kind, path)
    x_train, y_train = torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"])
    x_test, y_test = torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"])

    val = None
    if val_size:
        if val_size >= len(y_train):
            raise ValueError(f"val_size ({val_size}) must be smaller than the {len(y_train)} training images")
        # stratified choice of indices: subset() on a dataset whose "inputs" are the indices
        chosen = subset(TensorDataset(torch.arange(len(y_train)), y_train), val_size, seed=seed).tensors[0]
        rest = torch.ones(len(y_train), dtype=torch.bool)
        rest[chosen] = False
        val = TensorDataset(x_train[chosen], y_train[chosen])
        x_train, y_train = x_train[rest], y_train[rest]
    train = TensorDataset(x_train, y_train)
    test = TensorDataset(x_test, y_test)
    if train_size is not None:
        train = subset(train, int(train_size), seed=seed)
    if test_size is not None:
        test = subset(test, int(test_size), seed=seed)

    def finish(ds: TensorDataset | None) -> TensorDataset | None:
        if ds is None:
            return None
        x, y = ds.tensors
        return TensorDataset(_to_float(x, normalize), y)

    return DataSplits(train=finish(train), val=finish(val), test=finish(test), classes=list(CIFAR10_CLASSES))
