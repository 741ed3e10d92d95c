"""The teacher's outputs, computed once: in memory (:func:`teacher_outputs`) or on disk as well
(:func:`cached_teacher_outputs`), the one teacher cache every training run and study reads.

Without augmentation a frozen teacher gives the same logits and features for an image in every
epoch, so they are computed once, in eval mode and in chunks, and handed to ``train`` as
``teacher_cache``. On disk the file name is a hash of everything the outputs depend on
(:func:`teacher_cache_key`), so a retrained teacher or another subset never reads stale numbers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import torch
from torch import nn

from . import config
from .models import feature_extractor

__all__ = ["teacher_outputs", "teacher_cache_key", "cached_teacher_outputs"]

Outputs = dict[str, torch.Tensor]

_CACHE_VERSION = 2  # 2: feature maps are stored as they are (version 1 stored their attention maps)


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, x: torch.Tensor, features: Sequence[str] = (),
                    batch_size: int = 1024) -> Outputs:
    """The teacher's logits (and ``features``) for every row of ``x``, computed once in eval mode.

    With un-augmented inputs these never change during training, so ``train`` computes them once
    instead of every epoch (pass the result as ``teacher_cache`` to reuse it across runs, e.g. in
    a sweep). The teacher is frozen (eval mode, no gradients); ``batch_size`` rows at a time go
    through it, so large feature maps are never all computed at once.
    """
    teacher.eval()
    teacher.requires_grad_(False)
    model = feature_extractor(teacher, tuple(features)) if features else None
    dev = next(teacher.parameters()).device
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(dev)
        out = dict(model(xb)) if model is not None else {"logits": teacher(xb)}
        for k, v in out.items():
            chunks.setdefault(k, []).append(v.cpu())
    return {k: torch.cat(v) for k, v in chunks.items()}


def teacher_cache_key(teacher_sha256: str, x: torch.Tensor, features: Sequence[str] = (), **params) -> str:
    """The cache key: the teacher checkpoint's SHA-256, the feature names, the subset parameters
    (``params``, e.g. ``train_size``, ``seed``) and a digest of the inputs themselves."""
    data_digest = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
    blob = json.dumps({
        "version": _CACHE_VERSION, "teacher": teacher_sha256, "features": sorted(features),
        "shape": list(x.shape), "data": data_digest, "params": params,
    }, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def cached_teacher_outputs(teacher: nn.Module, x: torch.Tensor, features: Sequence[str] = (), *,
                           teacher_sha256: str, cache: bool = True, prefix: str = "cifar10-teacher",
                           batch_size: int = 500, **params) -> tuple[Outputs, bool]:
    """:func:`teacher_outputs`, read from ``config.cache_dir()`` when computed before.

    Returns ``(outputs, from_cache)``. The file is ``{prefix}-{key}.pt`` with the key of
    :func:`teacher_cache_key`; it is read with ``weights_only=True`` (tensors only, nothing that
    runs code), written atomically, and a file that cannot be read or does not hold every row and
    feature (truncated, foreign) is computed again and overwritten.
    """
    key = teacher_cache_key(teacher_sha256, x, features, **params)
    path = config.cache_dir() / f"{prefix}-{key}.pt"
    if cache and path.exists():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if set(stored) >= {"logits", *features} and all(len(v) == len(x) for v in stored.values()):
                return stored, True
        except Exception:  # unreadable: recompute below
            pass
    outputs = teacher_outputs(teacher, x, features, batch_size=batch_size)
    if cache:
        tmp = path.with_name(f"{path.name}.tmp{id(outputs)}")
        try:
            torch.save(outputs, tmp)
            tmp.replace(path)  # atomic: a concurrent reader never sees half a file
        finally:
            tmp.unlink(missing_ok=True)
    return outputs, False
