"""Course-wide settings read from environment variables, in one place.

- ``KDCOURSE_PROFILE``: ``quick`` (default; laptops and CI, what the stored notebook outputs
  show) or ``full`` (more epochs and seeds; meant for a GPU or a patient learner).
- ``KDCOURSE_CACHE``: where decoded datasets and cached results go
  (default ``~/.cache/kdcourse``).
- ``KDCOURSE_CIFAR10``: an offline CIFAR-10 archive or folder (see :mod:`kdcourse.data`).
- ``KDCOURSE_PROGRESS``: set to ``0`` to silence every progress bar.
- ``KDCOURSE_TRAIN_MEMO``: set to ``1`` to put back trainings that already ran with the very same
  inputs instead of training again (:mod:`kdcourse.memo`; ``make test`` uses it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

__all__ = ["profile", "pick", "cache_dir", "progress_enabled", "device"]

PROFILES = ("quick", "full")
_V = TypeVar("_V")


def profile() -> str:
    """The active profile name, ``"quick"`` or ``"full"``."""
    name = os.environ.get("KDCOURSE_PROFILE", "quick").strip().lower() or "quick"
    if name not in PROFILES:
        raise ValueError(f"KDCOURSE_PROFILE must be one of {PROFILES}, got {name!r}")
    return name


def pick(quick: _V, full: _V) -> _V:
    """Return ``quick`` or ``full`` depending on the active profile.

    Notebooks write ``epochs = pick(quick=20, full=100)`` so a learner switches profile with one
    environment variable instead of editing cells.
    """
    return full if profile() == "full" else quick


def cache_dir() -> Path:
    """The cache folder (created on first use)."""
    path = Path(os.environ.get("KDCOURSE_CACHE", Path.home() / ".cache" / "kdcourse")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def progress_enabled(progress: bool = True) -> bool:
    """Whether to show a progress bar: ``progress`` unless ``KDCOURSE_PROGRESS=0``."""
    return progress and os.environ.get("KDCOURSE_PROGRESS", "1") != "0"


def device() -> str:
    """``"cuda"`` when the full profile runs on a machine with a GPU, else ``"cpu"``."""
    import torch

    return "cuda" if profile() == "full" and torch.cuda.is_available() else "cpu"
