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
    "labeled_split",
    "transfer_set",
    "cifar10_labels",
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
    rows: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    """Per split, which rows of the source's split it holds (CIFAR-10; e.g. to look up shipped
    teacher outputs); empty when unknown."""
    source_sha256: str | None = None
    """:func:`arrays_sha256` of the source (CIFAR-10), ``None`` when unknown."""

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


def labeled_split(dataset: TensorDataset, labeled: int, unlabeled: int | None = None,
                  seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Split a training set into a labelled part and a disjoint unlabelled pool.

    Both are stratified and seeded (:func:`subset`): ``labeled`` examples, then ``unlabeled``
    of the others (``None``: all the others). The pool keeps its true labels, so a lesson can
    measure e.g. how often the teacher is right on it; :func:`transfer_set` hides them.
    """
    x, y = tensors(dataset)
    if not 0 < labeled < len(y):
        raise ValueError(f"labeled must be between 1 and {len(y) - 1} (the dataset has {len(y)} examples), "
                         f"got {labeled}")
    index = TensorDataset(torch.arange(len(y)), y)
    chosen = subset(index, labeled, seed=seed).tensors[0]
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[chosen] = False
    pool_index = TensorDataset(torch.arange(len(y))[rest], y[rest])
    if unlabeled is not None:
        if not 0 < unlabeled <= len(pool_index):
            raise ValueError(f"unlabeled must be between 1 and {len(pool_index)} (what is left after "
                             f"{labeled} labelled examples), got {unlabeled}")
        pool_index = subset(pool_index, unlabeled, seed=seed + 1)
    pool = pool_index.tensors[0]
    return TensorDataset(x[chosen], y[chosen]), TensorDataset(x[pool], y[pool])


def transfer_set(labeled: TensorDataset, pool: TensorDataset | None = None) -> TensorDataset:
    """The labelled examples followed by the pool with its labels replaced by ``-1`` (unlabelled).

    :func:`kdcourse.distill.train` reads ``-1`` as "no label": the cross-entropy skips those
    rows, the teacher's terms use them (Hinton et al. 2015's transfer set, which the teacher labels).
    """
    x, y = tensors(labeled)
    if pool is None:
        return TensorDataset(x, y)
    xp, yp = tensors(pool)
    if xp.shape[1:] != x.shape[1:]:
        raise ValueError(f"the pool's inputs {tuple(xp.shape[1:])} differ from the labelled ones {tuple(x.shape[1:])}")
    return TensorDataset(torch.cat([x, xp]), torch.cat([y, torch.full_like(yp, -1)]))


# ---------------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------------
#
# Sources, in this order: the ``root`` argument or the ``KDCOURSE_CIFAR10`` environment variable
# (an archive, an ImageFolder folder or a torchvision CIFAR-10 folder); otherwise torchvision's
# download into the cache folder. Whatever the source, the decoded uint8 images are cached once
# as an ``.npz`` in ``config.cache_dir()``, so every later load is a fast file read.

import hashlib  # noqa: E402  (the CIFAR-10 section keeps its imports together)
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pickle  # noqa: E402
import tarfile  # noqa: E402
import warnings  # noqa: E402
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

__all__ += ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10BatchError"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_BATCHES_DIR = "cifar-10-batches-py"
_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
_TEST_BATCH = "test_batch"
_CACHE_VERSION = 1
_CACHE_KEYS = ("x_train", "y_train", "x_test", "y_test")


class CIFAR10BatchError(ValueError):
    """A file read as an official CIFAR-10 python batch is not one; it was not loaded."""


def _c_array(array, dtype) -> np.ndarray:
    """``array`` as a C-contiguous, aligned, writable array of ``dtype`` (copied only if needed).

    Every CIFAR-10 array leaves this module in this one memory layout, whether freshly decoded
    or read from the cache: convolutions round differently on channels-last data, so a first
    run (decoding) and a later run (cache) would otherwise give slightly different numbers.
    """
    return np.require(array, dtype=dtype, requirements=["C_CONTIGUOUS", "ALIGNED", "WRITEABLE"])


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
    return np.ascontiguousarray(array.transpose(2, 0, 1))  # channels first in memory too


def _stack_images(items: list[tuple[int, str, bytes]], split: str, source: Path):
    if not items:
        raise ValueError(f"{source} holds no {split} images ({split}/<class>/*.jpg)")
    items.sort(key=lambda item: (item[0], item[1]))  # class, then file name: deterministic order
    x = _c_array(np.stack([_decode_image(data) for _, _, data in items]), np.uint8)
    y = np.array([label for label, _, _ in items], dtype=np.int64)
    return x, y


def _numpy_core_global(module: str, name: str):
    """``name`` from numpy's core ``module`` (``numpy._core`` since numpy 2, ``numpy.core`` before).

    Pickles name whichever package wrote them; this resolves both to the installed one without
    importing the deprecated ``numpy.core`` alias on numpy 2.
    """
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"this numpy has no {module}.{name}, which unpickling a numpy array needs")


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 python batch, resolving only numpy's array machinery.

    The official batches are Python 2 pickles of a dict of lists, strings and numpy arrays.
    A pickle can call any global it names (``os.system``, ``builtins.eval``, ...), so every
    global outside :attr:`ALLOWED` is refused with a :class:`CIFAR10BatchError`; dicts, lists,
    strings, bytes and numbers need no global.
    """

    ALLOWED = frozenset({
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *((f"{package}.multiarray", name) for package in ("numpy.core", "numpy._core")
          for name in ("_reconstruct", "scalar")),
        ("numpy.core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 with protocol 2 (latin-1 only, below)
    })

    def __init__(self, data: bytes, source: str):
        super().__init__(io.BytesIO(data), encoding="latin1")  # Python 2 str -> str, as numpy expects
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise CIFAR10BatchError(_not_a_batch(
                self.source, f"it asks to load the Python global {module}.{name}, which no CIFAR-10 "
                "batch contains; refusing to load it (unpickling it could run code)"))
        if module == "_codecs":
            return self._latin1_encode
        if module == "numpy":
            return getattr(np, name)
        return _numpy_core_global(module.rsplit(".", 1)[1], name)

    def _latin1_encode(self, text, encoding="latin1"):
        """``_codecs.encode`` restricted to what a protocol-2 pickle of bytes uses."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise CIFAR10BatchError(_not_a_batch(
                self.source, f"it asks for _codecs.encode with encoding {encoding!r}; refusing to load it"))
        return text.encode("latin1")


def _not_a_batch(source: str, why: str) -> str:
    return (
        f"{source} is not a CIFAR-10 python batch: {why}. Re-download the official "
        f"'CIFAR-10 python version' (cifar-10-python.tar.gz) from {CIFAR10_URL} and point "
        "KDCOURSE_CIFAR10 (or root=) at it, or unset KDCOURSE_CIFAR10 to let torchvision download it."
    )


def _unpickle_batch(data: bytes, source: str = "this file") -> tuple[np.ndarray, np.ndarray]:
    """One official CIFAR-10 python batch (a pickle) as uint8 ``(N, 3, 32, 32)`` and int64 labels.

    Read with :class:`_BatchUnpickler`, so a crafted file cannot run code; anything that is not
    such a batch raises :class:`CIFAR10BatchError` naming ``source``.
    """
    try:
        batch = _BatchUnpickler(data, source).load()
    except CIFAR10BatchError:
        raise
    except Exception as err:  # truncated or foreign files: UnpicklingError, EOFError, ...
        raise CIFAR10BatchError(_not_a_batch(source, f"unpickling failed ({type(err).__name__}: {err})")) from err
    labels = batch.get("labels", batch.get("fine_labels")) if isinstance(batch, dict) else None
    if labels is None or "data" not in batch:
        raise CIFAR10BatchError(_not_a_batch(source, "expected a dict with 'data' and 'labels'"))
    try:
        x = _c_array(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.uint8)
        y = _c_array(np.asarray(labels, dtype=np.int64).reshape(-1), np.int64)
    except (TypeError, ValueError) as err:
        raise CIFAR10BatchError(_not_a_batch(source, f"its data are not 32x32 RGB images ({err})")) from err
    if len(x) != len(y):
        raise CIFAR10BatchError(_not_a_batch(source, f"it holds {len(x)} images but {len(y)} labels"))
    return x, y


def _join_batches(batches: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    x_train = _c_array(np.concatenate([batches[name][0] for name in _TRAIN_BATCHES]), np.uint8)
    y_train = _c_array(np.concatenate([batches[name][1] for name in _TRAIN_BATCHES]), np.int64)
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
                data = tar.extractfile(member).read()
                batches[parts[-1]] = _unpickle_batch(data, f"{path} (member {member.name})")
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
        {name: _unpickle_batch((path / name).read_bytes(), str(path / name))
         for name in [*_TRAIN_BATCHES, _TEST_BATCH]}
    )


def _check_cifar10_arrays(arrays: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` unless ``arrays`` hold, per split, uint8 images ``(N, 3, 32, 32)``
    and ``N`` int64 labels in ``0..9``."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32) or len(x) == 0:
            raise ValueError(f"x_{split} is {x.dtype} of shape {x.shape}, expected uint8 (N, 3, 32, 32)")
        if y.dtype != np.int64 or y.shape != (len(x),):
            raise ValueError(f"y_{split} is {y.dtype} of shape {y.shape}, expected int64 ({len(x)},)")
        if y.min() < 0 or y.max() >= len(CIFAR10_CLASSES):
            raise ValueError(f"y_{split} holds labels {y.min()}..{y.max()}, expected 0..{len(CIFAR10_CLASSES) - 1}")


def _read_cache(cache_file: Path) -> dict[str, np.ndarray] | None:
    """The arrays stored in ``cache_file``, or ``None`` with a warning when it is unusable.

    A truncated or garbage file (an interrupted copy, a full disk, a foreign file) or one whose
    arrays have the wrong shapes, dtypes or labels is reported and then rebuilt by the caller.
    """
    try:
        # our own file handle: np.load leaks its handle when the zip directory is unreadable
        with open(cache_file, "rb") as f, np.load(f) as stored:  # allow_pickle=False: arrays only
            arrays = {}
            for key in _CACHE_KEYS:
                array = stored[key]
                arrays[key] = _c_array(array, array.dtype)
        _check_cifar10_arrays(arrays)
    except Exception as err:
        warnings.warn(
            f"the CIFAR-10 cache file {cache_file} was unreadable ({type(err).__name__}: {err}); "
            "it is being rebuilt from the source",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    return arrays


def _write_cache(cache_file: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``cache_file`` atomically: a temporary file, flushed, then renamed.

    A reader (another process, or a run after a crash) sees the old file or the complete new one,
    never half a file.
    """
    tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "xb") as f:
            np.savez(f, **{k: arrays[k] for k in _CACHE_KEYS})  # uncompressed: loading is one fast read
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, cache_file)
    finally:
        tmp.unlink(missing_ok=True)


def _cifar10_arrays(kind: str, path: Path) -> dict[str, np.ndarray]:
    """The uint8 images ``(N, 3, 32, 32)`` and int64 labels, from the cache when it has them.

    All arrays are C-contiguous (:func:`_c_array`), decoded or cached alike.
    """
    from . import config

    cache_file = config.cache_dir() / f"cifar10-{_source_key(kind, path)}.npz"
    if cache_file.exists():
        arrays = _read_cache(cache_file)
        if arrays is not None:
            return arrays
    decode = {"archive": _decode_archive, "folder": _decode_folder, "batches": _decode_batches}[kind]
    arrays = {k: _c_array(v, v.dtype) for k, v in decode(path).items()}
    try:
        _check_cifar10_arrays(arrays)
    except ValueError as err:
        raise ValueError(f"{path} does not hold usable CIFAR-10 data: {err}") from err
    _write_cache(cache_file, arrays)
    return arrays


def _to_float(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    """uint8 ``(N, 3, 32, 32)`` -> float32, in [0, 1] or standardised per channel."""
    out = x.to(torch.float32, memory_format=torch.contiguous_format)  # always a fresh, contiguous copy
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
    train_rows: torch.Tensor | None = None,
    test_rows: torch.Tensor | None = None,
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
    JPEGs), later loads read the cache (well under a second). The cache file is written
    atomically; an unreadable or inconsistent one is reported with a ``RuntimeWarning`` and
    rebuilt. The official python batches are unpickled with a restricted unpickler (numpy
    arrays only): a file that asks for anything else raises :class:`CIFAR10BatchError`.

    - Inputs are float32 of shape ``(N, 3, 32, 32)``; with ``normalize=True`` each channel is
      standardised, ``(x - CIFAR10_MEAN[c]) / CIFAR10_STD[c]`` with ``x`` in [0, 1]; with
      ``normalize=False`` pixels are in [0, 1]. Labels are int64 in the official order
      :data:`CIFAR10_CLASSES`. All tensors are C-contiguous (channels first in memory), the
      same on the first load and from the cache, so results do not depend on the cache.
    - ``val_size`` images are set aside from the training set as a stratified validation split
      (``val_size=0``: no validation split). ``train_size`` / ``test_size`` then keep a
      stratified, deterministic subset (:func:`subset` with ``seed``) of the remaining training
      images / of the test images; ``None`` keeps them all.

    - ``train_rows`` / ``test_rows`` (instead of the sizes): exactly these rows of the source's
      splits, in this order (e.g. chosen on :func:`cifar10_labels`).

    Memory: the full training set takes about 600 MB as float32; pass ``train_size`` or
    ``train_rows`` for a smaller transfer set (rows are chosen before the conversion to float).
    """
    if (train_rows is not None or test_rows is not None) and (train_size or test_size or val_size):
        raise ValueError("give train_rows / test_rows or the sizes (train_size, test_size, val_size), not both")
    for name, value in (("train_size", train_size), ("test_size", test_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive number of images or None, got {value!r}")
    if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)) or val_size < 0:
        raise ValueError(f"val_size must be a non-negative number of images, got {val_size!r}")

    kind, path = _resolve_cifar10_source(root) or _download_cifar10()
    arrays = _cifar10_arrays(kind, path)
    x_train, y_train = torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"])
    x_test, y_test = torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"])

    # every choice is made on row numbers, so the splits can say which source images they hold
    chosen_train, chosen_test = train_rows, test_rows
    train_rows, test_rows, val_rows = torch.arange(len(y_train)), torch.arange(len(y_test)), None
    if val_size:
        if val_size >= len(y_train):
            raise ValueError(f"val_size ({val_size}) must be smaller than the {len(y_train)} training images")
        val_rows = _stratified_rows(train_rows, y_train, val_size, seed)
        rest = torch.ones(len(y_train), dtype=torch.bool)
        rest[val_rows] = False
        train_rows = train_rows[rest]
    if train_size is not None:
        train_rows = _stratified_rows(train_rows, y_train[train_rows], int(train_size), seed)
    if test_size is not None:
        test_rows = _stratified_rows(test_rows, y_test, int(test_size), seed)
    if chosen_train is not None:
        train_rows = _checked_rows(chosen_train, len(y_train), "train_rows")
    if chosen_test is not None:
        test_rows = _checked_rows(chosen_test, len(y_test), "test_rows")

    def finish(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None) -> TensorDataset | None:
        if rows is None:
            return None
        if len(rows) != len(y) or not torch.equal(rows, torch.arange(len(y))):
            x, y = x[rows], y[rows]
        return TensorDataset(_to_float(x, normalize), y.contiguous())

    rows = {"train": train_rows, "test": test_rows, **({"val": val_rows} if val_rows is not None else {})}
    return DataSplits(train=finish(x_train, y_train, train_rows), val=finish(x_train, y_train, val_rows),
                      test=finish(x_test, y_test, test_rows), classes=list(CIFAR10_CLASSES),
                      rows=rows, source_sha256=_source_sha256(kind, path, arrays))


def _checked_rows(rows, n: int, name: str) -> torch.Tensor:
    rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
    if len(rows) == 0 or rows.min() < 0 or rows.max() >= n:
        raise ValueError(f"{name} must be row numbers between 0 and {n - 1}, got {len(rows)} rows "
                         f"from {int(rows.min()) if len(rows) else '-'} to {int(rows.max()) if len(rows) else '-'}")
    return rows


def cifar10_labels(root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The labels of all 50,000 training and 10,000 test images (no image converted to float):
    choose rows on them, then load only those with ``load_cifar10_data(train_rows=..., test_rows=...)``."""
    kind, path = _resolve_cifar10_source(root) or _download_cifar10()
    arrays = _cifar10_arrays(kind, path)
    return torch.from_numpy(arrays["y_train"].copy()), torch.from_numpy(arrays["y_test"].copy())


def _stratified_rows(rows: torch.Tensor, labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """The ``rows`` that :func:`subset` keeps of a dataset with these ``labels`` (sorted)."""
    return rows[subset(TensorDataset(torch.arange(len(labels)), labels), n, seed=seed).tensors[0]]


_SOURCE_SHA256: dict[str, str] = {}


def _source_sha256(kind: str, path: Path, arrays: dict[str, np.ndarray]) -> str:
    """:func:`arrays_sha256`, computed once per source and process (0.2 s for all of CIFAR-10)."""
    key = _source_key(kind, path)
    if key not in _SOURCE_SHA256:
        _SOURCE_SHA256[key] = arrays_sha256(arrays)
    return _SOURCE_SHA256[key]


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the decoded uint8 images and labels (train, then test): which CIFAR-10 copy this
    is (the official batches and the JPEG re-encoding differ), whatever file it came from."""
    digest = hashlib.sha256()
    for key in _CACHE_KEYS:
        digest.update(np.ascontiguousarray(arrays[key]).data)
    return digest.hexdigest()
