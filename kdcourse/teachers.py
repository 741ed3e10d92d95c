"""Pretrained teachers shipped with the package, loaded safely.

``kdcourse/assets/cifar10_teacher.pt`` is a CIFAR-10 :class:`~kdcourse.models.CifarResNet`
trained by ``scripts/train_cifar_teacher.py`` (the script's docstring documents the recipe; the
JSON sidecar ``cifar10_teacher.json`` records the architecture, epochs, seed, test accuracy,
training time, machine and the checkpoint's SHA-256).

Loading checks that the file is exactly the one that was trained: its SHA-256 must match the
digest recorded in the sidecar *and* the digest hard-coded here (:data:`CIFAR10_TEACHER_SHA256`),
so neither a damaged checkpoint nor a swapped pair of checkpoint and sidecar goes unnoticed.
The weights are read with ``torch.load(..., weights_only=True)``, which never runs pickled code.

Two CIFAR-10 teachers ship, of the same architecture and recipe, differing only in the length of
their schedule (the pretrained-vs-scratch study of lesson 08c): ``which="strong"`` (the default,
``cifar10_teacher.pt``, 60 epochs) and ``which="weak"`` (``cifar10_teacher_short.pt``, 3 epochs,
``scripts/train_cifar_teacher.py --epochs 3 --batch-size 256 --name cifar10_teacher_short``).
Each has its logits on every CIFAR-10 image shipped beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .models import CharTransformer, CifarResNet, CifarSpeedNet

__all__ = [
    "CIFAR10_TEACHERS",
    "CIFAR10_TEACHER_PATH",
    "CIFAR10_TEACHER_SHA256",
    "load_cifar10_teacher",
    "cifar10_teacher_info",
    "CIFAR10_LOGITS_PATH",
    "CIFAR10_LOGITS_SHA256",
    "shipped_cifar10_logits",
    "LM_TEACHER_PATH",
    "LM_TEACHER_SHA256",
    "load_lm_teacher",
    "lm_teacher_info",
    "lm_teacher_text",
]

ASSETS = Path(__file__).resolve().parent / "assets"
CIFAR10_TEACHER_PATH = ASSETS / "cifar10_teacher.pt"
"""The shipped checkpoint (a plain ``state_dict``)."""

CIFAR10_TEACHER_SHA256 = "85424b2e33d8af62c7175321068c27a26f1d34b431c7da2986d3f8d769996066"
"""SHA-256 of the shipped checkpoint (update it when the teacher is retrained into the assets)."""

CIFAR10_TEACHER_ARCH = {"widths": (32, 64, 128), "blocks": 2, "num_classes": 10}
"""``CifarResNet`` keyword arguments of the shipped teacher (also recorded in the sidecar)."""

CIFAR10_WEAK_TEACHER_PATH = ASSETS / "cifar10_teacher_short.pt"
"""The weak teacher: the same ``CifarResNet``, trained 3 epochs instead of 60."""

CIFAR10_WEAK_TEACHER_SHA256 = "1e53067b6761a8d6287699b60bd9c2d43def97716f651572965c3a6bb589198d"
"""SHA-256 of :data:`CIFAR10_WEAK_TEACHER_PATH`."""

CIFAR10_TEACHERS = ("strong", "weak")
"""The shipped CIFAR-10 teachers, by name (``which=`` of the functions below)."""


def _cifar_asset(which: str) -> tuple[Path, str, Path, str]:
    """``(checkpoint, its SHA-256, logits file, its SHA-256)`` of a shipped teacher (read at call time)."""
    if which == "strong":
        return CIFAR10_TEACHER_PATH, CIFAR10_TEACHER_SHA256, CIFAR10_LOGITS_PATH, CIFAR10_LOGITS_SHA256
    if which == "weak":
        return (CIFAR10_WEAK_TEACHER_PATH, CIFAR10_WEAK_TEACHER_SHA256, CIFAR10_WEAK_LOGITS_PATH,
                CIFAR10_WEAK_LOGITS_SHA256)
    raise ValueError(f"which must be one of {CIFAR10_TEACHERS} (the shipped CIFAR-10 teachers), got {which!r}")


_RESTORE = (
    "Restore the shipped files with `git checkout kdcourse/assets/` (or reinstall kdcourse), "
    "or re-create a teacher with "
    "`python scripts/train_cifar_teacher.py` (a few minutes on a GPU; see its docstring)."
)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cifar10_teacher_info(path: str | os.PathLike | None = None, which: str = "strong") -> dict:
    """The JSON sidecar of a teacher checkpoint (architecture, epochs, test accuracy, ...): the
    shipped teacher ``which`` when ``path`` is ``None``.

    Returns ``{}`` when the checkpoint has no sidecar next to it.
    """
    sidecar = _sidecar(Path(path) if path is not None else _cifar_asset(which)[0])
    if not sidecar.is_file():
        return {}
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError) as err:
        raise RuntimeError(f"the teacher's sidecar {sidecar} is corrupted or modified ({err}). {_RESTORE}") from err


def load_cifar10_teacher(path: str | os.PathLike | None = None, verify: bool = True,
                         which: str = "strong") -> CifarResNet | CifarSpeedNet:
    """The pretrained CIFAR-10 teacher, frozen: on the CPU, in ``eval()`` mode, no gradients.

    - ``path=None`` loads the checkpoint shipped in ``kdcourse/assets``: ``which="strong"`` (88 %
      on the test set, the default) or ``"weak"`` (the same network after a 3-epoch schedule); another ``path`` loads
      a checkpoint made by ``scripts/train_cifar_teacher.py`` (its network, ``CifarResNet`` or, from
      ``--recipe fast``, ``CifarSpeedNet``, and its architecture are read from the ``.json`` sidecar
      next to it when there is one).
    - ``verify=True`` compares the file's SHA-256 with the expected digest: for the shipped file
      both :data:`CIFAR10_TEACHER_SHA256` and the sidecar's ``sha256`` (which must agree); for
      another file its sidecar's digest, or :data:`CIFAR10_TEACHER_SHA256` when it has no sidecar
      (a copy of the shipped teacher).

    Raises ``FileNotFoundError`` when the file is missing and ``RuntimeError`` when it is
    corrupted or modified (a digest mismatch, or a file ``torch.load`` cannot read), each with
    instructions to restore or re-create it. The teacher expects inputs normalised as
    :func:`kdcourse.data.load_cifar10_data` returns them (``normalize=True``).
    """
    shipped_path, shipped_sha, _, _ = _cifar_asset(which)
    shipped = path is None or Path(path).resolve() == shipped_path
    path = shipped_path if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no teacher checkpoint at {path}. Restore the shipped one with `git checkout "
            "kdcourse/assets/cifar10_teacher.pt kdcourse/assets/cifar10_teacher.json` (or reinstall "
            "kdcourse), or train one with `python scripts/train_cifar_teacher.py` (set KDCOURSE_CIFAR10 "
            "to an offline CIFAR-10 archive or let torchvision download it) and pass path=..."
        )
    info = cifar10_teacher_info(path)

    if verify:
        actual = _sha256(path)
        recorded = info.get("sha256")
        if shipped:
            if recorded is not None and recorded != shipped_sha:
                raise RuntimeError(
                    f"the teacher's sidecar {_sidecar(path)} is modified: it records sha256 {recorded}, "
                    f"the package expects {shipped_sha}. {_RESTORE}"
                )
            expected = shipped_sha
        else:
            expected = recorded or shipped_sha
        if actual != expected:
            raise RuntimeError(
                f"the teacher checkpoint {path} is corrupted or modified: its SHA-256 is {actual}, "
                f"expected {expected}. {_RESTORE} (load_cifar10_teacher(..., verify=False) skips this "
                "check for a checkpoint you changed on purpose.)"
            )

    arch = info.get("architecture", CIFAR10_TEACHER_ARCH)
    if info.get("model") == "kdcourse.models.CifarSpeedNet":  # scripts/train_cifar_teacher.py --recipe fast
        model = CifarSpeedNet(widths=tuple(arch["widths"]), num_classes=int(arch.get("num_classes", 10)))
    else:
        model = CifarResNet(
            widths=tuple(arch["widths"]), blocks=int(arch["blocks"]), num_classes=int(arch.get("num_classes", 10))
        )
    return _load_frozen(model, path, _RESTORE)


def _load_frozen(model: torch.nn.Module, path: Path, restore: str) -> torch.nn.Module:
    """Load a ``state_dict`` with ``weights_only=True`` (no pickled code runs) and freeze the model."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as err:  # truncated zip, foreign pickle, wrong keys or shapes
        raise RuntimeError(f"the teacher checkpoint {path} is corrupted or modified and cannot be loaded "
                           f"({type(err).__name__}: {err}). {restore}") from err
    model.eval()
    model.requires_grad_(False)
    return model


# ------------------------------------------------------------------ the teacher's logits, shipped

CIFAR10_LOGITS_PATH = ASSETS / "cifar10_teacher_logits.npz"
"""The shipped teacher's logits on every CIFAR-10 image (``scripts/cifar10_teacher_logits.py``)."""

CIFAR10_LOGITS_SHA256 = "b6c0f8c817b97f8ebb9960db3d7dc6a8199579ad2a58fb52136371f6182a16a2"
"""SHA-256 of :data:`CIFAR10_LOGITS_PATH` (update it with the file)."""

CIFAR10_WEAK_LOGITS_PATH = ASSETS / "cifar10_teacher_short_logits.npz"
"""The weak teacher's logits on every CIFAR-10 image (``scripts/cifar10_teacher_logits.py --teacher weak``)."""

CIFAR10_WEAK_LOGITS_SHA256 = "f66689e5d5d4b6e10ac1d489bb9907d9d9d1bc5b78cc2a93d6398dd30a76d9f5"
"""SHA-256 of :data:`CIFAR10_WEAK_LOGITS_PATH`."""

_SHIPPED_LOGITS: dict[tuple[str, str], dict[str, torch.Tensor]] = {}


def shipped_cifar10_logits(data_sha256: str | None, which: str = "strong") -> dict[str, torch.Tensor] | None:
    """The shipped teacher ``which``'s logits ``{"train": (50000, 10), "test": (10000, 10)}``
    (float32, in the loader's row order), or ``None`` when they do not apply.

    They apply only to the copy of CIFAR-10 they were computed on: ``data_sha256`` (a
    :class:`~kdcourse.data.DataSplits`' ``source_sha256``) must equal the sidecar's
    ``data_sha256``, and the sidecar's ``teacher_sha256`` the shipped teacher's. Another copy (the
    official python batches differ from the JPEG re-encoding the course ships logits for) gets
    ``None``: compute them (the lessons then cache them on disk). A file whose SHA-256 does not
    match :data:`CIFAR10_LOGITS_SHA256` is reported with a warning and not used.
    Read with ``numpy.load(allow_pickle=False)``: arrays only, no code.
    """
    import warnings

    import numpy as np

    _, teacher_sha, logits_path, logits_sha = _cifar_asset(which)
    if data_sha256 is None or not logits_path.is_file():
        return None
    if (which, data_sha256) in _SHIPPED_LOGITS:
        return _SHIPPED_LOGITS[which, data_sha256]
    sidecar = cifar10_teacher_info(logits_path)
    if sidecar.get("data_sha256") != data_sha256 or sidecar.get("teacher_sha256") != teacher_sha:
        return None
    actual = _sha256(logits_path)
    if actual != logits_sha:
        warnings.warn(f"the shipped teacher logits {logits_path} are corrupted or modified (SHA-256 "
                      f"{actual}, expected {logits_sha}); the teacher is run instead. Restore the "
                      "file with `git checkout kdcourse/assets/` or re-create it with "
                      f"`python scripts/cifar10_teacher_logits.py --teacher {which}`.", RuntimeWarning, stacklevel=2)
        return None
    with np.load(logits_path, allow_pickle=False) as stored:
        logits = {split: torch.from_numpy(np.ascontiguousarray(stored[split], dtype=np.float32))
                  for split in ("train", "test")}
    _SHIPPED_LOGITS[which, data_sha256] = logits
    return logits


# ------------------------------------------------------------------ the character-level teacher (lesson 09)

LM_TEACHER_PATH = ASSETS / "lm_teacher.pt"
"""The shipped :class:`~kdcourse.models.CharTransformer` teacher (``scripts/train_lm_teacher.py``)."""

LM_TEACHER_SHA256 = "5fa4091f4919c0b5ef64333e0f69a74c719871173fe7cf7afa9409e5d1647345"
"""SHA-256 of :data:`LM_TEACHER_PATH` (update it when the teacher is retrained into the assets)."""

LM_TEXT_PATH = ASSETS / "lm_teacher_text.txt"
"""Text the shipped teacher generated (sequence-level distillation data); its SHA-256 is in the sidecar."""

_LM_RESTORE = (
    "Restore the shipped files with `git checkout kdcourse/assets/` (or reinstall kdcourse), or "
    "re-create them with `python scripts/train_lm_teacher.py` (about 15 minutes on a laptop CPU)."
)


def lm_teacher_info() -> dict:
    """The shipped character teacher's JSON sidecar (architecture, recipe, bits per character, ...)."""
    sidecar = _sidecar(LM_TEACHER_PATH)
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError) as err:
        raise RuntimeError(f"the teacher's sidecar {sidecar} is missing or corrupted ({err}). {_LM_RESTORE}") from err


def _verify(path: Path, expected: str, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} is missing. {_LM_RESTORE}")
    actual = _sha256(path)
    if actual != expected:
        raise RuntimeError(f"{what} {path} is corrupted or modified: its SHA-256 is {actual}, expected "
                           f"{expected}. {_LM_RESTORE}")


def load_lm_teacher() -> CharTransformer:
    """The pretrained character-level teacher of lesson 09, frozen (CPU, ``eval()``, no gradients).

    The checkpoint's SHA-256 must equal :data:`LM_TEACHER_SHA256` and the sidecar's digest; it is
    read with ``torch.load(..., weights_only=True)``, which never runs pickled code.
    """
    info = lm_teacher_info()
    if info.get("sha256") != LM_TEACHER_SHA256:
        raise RuntimeError(f"the teacher's sidecar {_sidecar(LM_TEACHER_PATH)} records sha256 "
                           f"{info.get('sha256')}, the package expects {LM_TEACHER_SHA256}. {_LM_RESTORE}")
    _verify(LM_TEACHER_PATH, LM_TEACHER_SHA256, "the teacher checkpoint")
    return _load_frozen(CharTransformer(**info["architecture"]), LM_TEACHER_PATH, _LM_RESTORE)


def lm_teacher_text() -> str:
    """The text the shipped teacher wrote (``lm_teacher_text.txt``), SHA-256-checked against the sidecar."""
    _verify(LM_TEXT_PATH, lm_teacher_info()["text"]["sha256"], "the teacher's text")
    return LM_TEXT_PATH.read_text(encoding="utf-8")
