"""A teacher cache for augmented training: the teacher's logits for K fixed views of each image.

Without augmentation the teacher's outputs never change, so :func:`kdcourse.distill.train`
computes them once. With random augmentation (``augment=``) every batch is new and the teacher
runs on every batch, several times the cost of the student's own step. This module sits in
between: each image gets ``K`` *fixed* augmented views (crops of the zero-padded image and
horizontal flips, a :class:`ViewRecipe`), the teacher's logits for all of them are computed once
(:func:`teacher_view_outputs`, on disk with :func:`cached_teacher_views`), and each epoch draws
one view per image. The student and the teacher see the *same* view, as consistent teaching
asks (Beyer et al. 2022, "Knowledge distillation: a good teacher is patient and consistent");
the teacher's part of a step is a cache read, as in FKD (Shen & Xing 2022, "A fast knowledge
distillation framework for visual recognition"), which stores soft labels of region crops.

The price: only ``K`` views per image instead of a fresh random one each epoch, and logits only
(no feature maps, so hint / AT / RKD / SP still need the live teacher).

    >>> views = TeacherViews.from_teacher(teacher, x_train, DEFAULT_VIEWS, teacher_sha256=digest)
    >>> history = train(student, data.train, teacher=teacher, method="kd", teacher_views=views)
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import config

__all__ = [
    "ViewRecipe",
    "DEFAULT_VIEWS",
    "TEN_CROP",
    "apply_views",
    "teacher_view_outputs",
    "views_cache_key",
    "cached_teacher_views",
    "TeacherViews",
]

_CACHE_VERSION = 1


@dataclass(frozen=True)
class ViewRecipe:
    """A fixed set of augmented views: crops of the zero-padded image, each with or without a flip.

    The image is padded with ``pad`` zeros on every side and cropped back to its size at an
    offset ``(dy, dx)`` of ``offsets`` (each in ``0..2*pad``; ``(pad, pad)`` is the original
    image; the default, ``None``, takes the four diagonal shifts by ``pad // 2``), then flipped
    horizontally when the view's entry of ``flips`` is ``True``. The views
    are the product ``offsets x flips``, numbered so that view ``v`` is
    ``(offsets[v // len(flips)], flips[v % len(flips)])``; ``len(recipe)`` is their number K.
    """

    pad: int = 4
    offsets: tuple[tuple[int, int], ...] | None = None  # None: shifts of pad // 2, (+-h, +-h)
    flips: tuple[bool, ...] = (False, True)

    def __post_init__(self):
        if int(self.pad) != self.pad or self.pad < 0:
            raise ValueError(f"pad must be an integer >= 0, got {self.pad!r}")
        if self.offsets is None:
            lo, hi = self.pad - self.pad // 2, self.pad + self.pad // 2
            offsets = tuple(dict.fromkeys(((lo, lo), (lo, hi), (hi, lo), (hi, hi))))
        else:
            offsets = tuple((int(dy), int(dx)) for dy, dx in self.offsets)
        flips = tuple(bool(f) for f in self.flips)
        if not offsets or not flips:
            raise ValueError("a ViewRecipe needs at least one offset and one flip setting")
        bad = [o for o in offsets if not (0 <= o[0] <= 2 * self.pad and 0 <= o[1] <= 2 * self.pad)]
        if bad:
            raise ValueError(f"crop offsets must lie in 0..{2 * self.pad} (2 * pad), got {bad}")
        object.__setattr__(self, "pad", int(self.pad))
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "flips", flips)

    def __len__(self) -> int:
        return len(self.offsets) * len(self.flips)

    def view(self, v: int) -> tuple[tuple[int, int], bool]:
        """View ``v`` as ``((dy, dx), flipped)``."""
        if not 0 <= v < len(self):
            raise IndexError(f"view {v} out of range for {len(self)} views")
        return self.offsets[v // len(self.flips)], self.flips[v % len(self.flips)]

    def describe(self) -> str:
        """A one-line human description, e.g. for a benchmark's output."""
        shifts = ", ".join(f"({dy - self.pad:+d},{dx - self.pad:+d})" for dy, dx in self.offsets)
        flips = " / ".join("flipped" if f else "as is" for f in self.flips)
        return (f"{len(self)} views: {len(self.offsets)} crops of the {self.pad}-pixel zero-padded image "
                f"(shifts dy,dx {shifts}) x {flips}")

    def key(self) -> str:
        """A stable string naming the recipe (part of the cache key)."""
        return json.dumps({"pad": self.pad, "offsets": [list(o) for o in self.offsets],
                           "flips": list(self.flips)}, sort_keys=True, separators=(",", ":"))


DEFAULT_VIEWS = ViewRecipe()
"""K = 8: shifts of 2 pixels in both directions, (+-2, +-2), each as is and flipped.

A 2-pixel shift per axis is about the mean shift of the usual random 4-pixel crop (uniform over
-4..4: mean absolute shift 20/9, about 2.2 pixels); the flip is the larger part of CIFAR
augmentation. Eight views keep the one-off teacher cost at 8 passes over the training set."""

TEN_CROP = ViewRecipe(offsets=((4, 4), (0, 0), (0, 8), (8, 0), (8, 8)))
"""K = 10: the centre crop and the four corner crops, each as is and flipped (Krizhevsky et
al. 2012's ten crops, here of the 4-pixel padded image)."""


def apply_views(x: torch.Tensor, view_ids: torch.Tensor, recipe: ViewRecipe = DEFAULT_VIEWS) -> torch.Tensor:
    """Each image of ``x`` ``(B, C, H, W)`` under its view ``view_ids[i]`` of ``recipe``.

    The image is zero-padded by ``recipe.pad`` (zero is the mean colour after normalisation),
    cropped to ``H x W`` at the view's offset and flipped horizontally if the view says so.
    Vectorised (one gather for the whole batch, like :func:`kdcourse.capstone.random_crop_flip`),
    on ``x``'s device, deterministic; returns a contiguous tensor.
    """
    if x.dim() != 4:
        raise ValueError(f"expected a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    dev = x.device
    view_ids = torch.as_tensor(view_ids, device=dev)
    if view_ids.shape != (b,) or view_ids.is_floating_point() or view_ids.dtype == torch.bool:
        raise ValueError(f"view_ids must be {b} integers (one per image), got {view_ids.dtype} {tuple(view_ids.shape)}")
    view_ids = view_ids.long()
    if b and (int(view_ids.min()) < 0 or int(view_ids.max()) >= len(recipe)):
        raise ValueError(f"view ids must lie in 0..{len(recipe) - 1}, got {int(view_ids.min())}..{int(view_ids.max())}")
    n_flips = len(recipe.flips)
    offsets = torch.tensor(recipe.offsets, device=dev)[view_ids // n_flips]  # (B, 2)
    flipped = torch.tensor(recipe.flips, device=dev)[view_ids % n_flips]  # (B,)
    p = recipe.pad
    padded = F.pad(x, (p, p, p, p))
    rows = (offsets[:, 0, None] + torch.arange(h, device=dev))[:, :, None]  # (B, H, 1)
    j = torch.arange(w, device=dev)
    cols = (offsets[:, 1, None] + torch.where(flipped[:, None], w - 1 - j, j))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=dev)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def teacher_view_outputs(teacher: nn.Module, x: torch.Tensor, recipe: ViewRecipe = DEFAULT_VIEWS,
                         batch_size: int = 500) -> torch.Tensor:
    """The teacher's logits for every image of ``x`` under every view: ``(K, N, classes)``, float32.

    Runs in eval mode (restored afterwards) under ``no_grad`` on the teacher's device, in chunks
    of ``batch_size`` images; the result is on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    was_training = teacher.training
    teacher.eval()
    dev = next(teacher.parameters()).device
    out: torch.Tensor | None = None
    try:
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].to(dev)
            for v in range(len(recipe)):
                ids = torch.full((len(xb),), v, dtype=torch.long, device=dev)
                logits = teacher(apply_views(xb, ids, recipe)).float().cpu()
                if out is None:
                    out = torch.empty(len(recipe), len(x), logits.shape[1])
                out[v, start:start + len(xb)] = logits
    finally:
        teacher.train(was_training)
    if out is None:
        raise ValueError("x holds no images")
    return out


def views_cache_key(teacher_sha256: str, x: torch.Tensor, recipe: ViewRecipe = DEFAULT_VIEWS) -> str:
    """The cache key: SHA-256 of a format version, the teacher's digest, a digest of the input
    bytes, their shape and dtype, and :meth:`ViewRecipe.key`."""
    data_digest = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
    blob = json.dumps({
        "version": _CACHE_VERSION, "teacher": teacher_sha256, "data": data_digest,
        "shape": list(x.shape), "dtype": str(x.dtype), "recipe": recipe.key(),
    }, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _load_views(path, recipe: ViewRecipe, n: int) -> torch.Tensor:
    stored = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(stored, dict) or set(stored) != {"logits", "recipe"}:
        keys = sorted(map(str, stored)) if isinstance(stored, dict) else type(stored).__name__
        raise ValueError(f"unexpected contents {keys}")
    if stored["recipe"] != recipe.key():
        raise ValueError("it was written for another view recipe")
    logits = stored["logits"]
    if (not isinstance(logits, torch.Tensor) or logits.dtype != torch.float32 or logits.dim() != 3
            or tuple(logits.shape[:2]) != (len(recipe), n) or logits.shape[2] < 1):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits of shape {shape}, expected ({len(recipe)}, {n}, classes) float32")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("non-finite logits")
    return logits


def cached_teacher_views(teacher: nn.Module, x: torch.Tensor, recipe: ViewRecipe = DEFAULT_VIEWS, *,
                         teacher_sha256: str, cache: bool = True,
                         batch_size: int = 500) -> tuple[torch.Tensor, bool]:
    """:func:`teacher_view_outputs`, read from ``config.cache_dir()`` when computed before.

    Returns ``(logits (K, N, classes), from_cache)``. The file is
    ``teacher-views-<key>.pt`` with the key of :func:`views_cache_key` (``teacher_sha256``
    names the teacher's weights, e.g. :data:`kdcourse.teachers.CIFAR10_TEACHER_SHA256`). It is
    written atomically (a temporary file, then ``os.replace``) and read with
    ``torch.load(..., weights_only=True)``; a file that cannot be read or does not hold what
    this call expects (truncated, foreign, wrong shape, non-finite values) is reported with a
    warning, recomputed and overwritten. ``cache=False`` neither reads nor writes the file.
    """
    path = config.cache_dir() / f"teacher-views-{views_cache_key(teacher_sha256, x, recipe)}.pt"
    if cache and path.exists():
        try:
            return _load_views(path, recipe, len(x)), True
        except Exception as err:  # truncated zip, random bytes, foreign pickle, wrong contents
            reason = f"{type(err).__name__}: {err}"
            reason = reason if len(reason) <= 200 else reason[:197] + "..."
            warnings.warn(f"the teacher-views cache file {path} was unreadable ({reason}); recomputing",
                          RuntimeWarning, stacklevel=2)
    logits = teacher_view_outputs(teacher, x, recipe, batch_size=batch_size)
    if cache:
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}-{id(logits)}")
        try:
            torch.save({"logits": logits, "recipe": recipe.key()}, tmp)
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        finally:
            tmp.unlink(missing_ok=True)
    return logits, False


@dataclass
class TeacherViews:
    """A :class:`ViewRecipe` and the teacher's logits for every image under each of its views.

    ``logits`` is ``(K, N, classes)`` (:func:`cached_teacher_views`), row ``n`` the ``n``-th
    training image; it may be ``None`` for a run without a teacher that only wants the same
    fixed-view augmentation (:meth:`inputs`). Pass it to
    :func:`kdcourse.distill.train` as ``teacher_views=``.
    """

    recipe: ViewRecipe = DEFAULT_VIEWS
    logits: torch.Tensor | None = None
    from_cache: bool = False

    def __post_init__(self):
        if self.logits is not None and (self.logits.dim() != 3 or self.logits.shape[0] != len(self.recipe)):
            raise ValueError(f"logits must be (K={len(self.recipe)}, N, classes), got {tuple(self.logits.shape)}")

    @classmethod
    def from_teacher(cls, teacher: nn.Module, x: torch.Tensor, recipe: ViewRecipe = DEFAULT_VIEWS, *,
                     teacher_sha256: str | None = None, cache: bool = True,
                     batch_size: int = 500) -> "TeacherViews":
        """The views of ``x`` with ``teacher``'s logits: on disk (:func:`cached_teacher_views`)
        when ``teacher_sha256`` names the teacher, else computed (:func:`teacher_view_outputs`)."""
        if teacher_sha256 is None:
            return cls(recipe, teacher_view_outputs(teacher, x, recipe, batch_size=batch_size))
        logits, hit = cached_teacher_views(teacher, x, recipe, teacher_sha256=teacher_sha256, cache=cache,
                                           batch_size=batch_size)
        return cls(recipe, logits, hit)

    @property
    def num_views(self) -> int:
        """K, the number of views per image."""
        return len(self.recipe)

    @property
    def num_examples(self) -> int | None:
        """N, the number of images the logits cover (``None`` without logits)."""
        return None if self.logits is None else self.logits.shape[1]

    def to(self, device) -> "TeacherViews":
        """The same views with the logits on ``device`` (no per-batch copies on a GPU)."""
        logits = None if self.logits is None else self.logits.to(device)
        return TeacherViews(self.recipe, logits, self.from_cache)

    def draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` view ids, uniform over the K views, from ``generator`` (CPU, long)."""
        return torch.randint(0, len(self.recipe), (n,), generator=generator)

    def inputs(self, xb: torch.Tensor, view_ids: torch.Tensor) -> torch.Tensor:
        """The batch under the drawn views (:func:`apply_views`)."""
        return apply_views(xb, view_ids, self.recipe)

    def targets(self, idx: torch.Tensor, view_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"logits": logits[view_ids, idx]}``: the teacher's logits for rows ``idx`` of the
        training set under the views ``view_ids`` (on the logits' device)."""
        if self.logits is None:
            raise ValueError("these TeacherViews hold no teacher logits (inputs only)")
        dev = self.logits.device
        return {"logits": self.logits[torch.as_tensor(view_ids, device=dev), torch.as_tensor(idx, device=dev)]}
