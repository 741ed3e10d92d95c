"""The course's comparison: every method, several seeds, one table.

``python -m kdcourse compare`` calls :func:`compare`; notebooks may call it too. The default
digits regime (chosen so that KD's effect is visible, see README "Results"):

- teacher: ``DigitsCNN(32)`` (103k parameters) trained on all 1,077 training images;
- student: ``DigitsCNN(8)`` (7k parameters) trained on a 300-image transfer set: with few
  labels, the teacher's soft targets carry the most information (with all 1,077 images the
  student reaches the teacher's accuracy on its own and KD has nothing left to add);
- 60 epochs of Adam (lr 3e-3, batch 64), T = 4, alpha = 0.9 (lessons 03-04 use 40 epochs;
  with 60 the label-only student has long stopped improving while the distilled one still gains).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from . import data as kd_data
from .config import pick
from .distill import (
    METHODS,
    TrainConfig,
    evaluate,
    method_terms,
    parse_method,
    seed_everything,
    teacher_outputs,
    train,
)
from .models import DigitsCNN, count_parameters
from .study import RunPlan, Runs

__all__ = ["Regime", "DIGITS_REGIME", "digits_teacher", "compare", "format_table", "to_json"]


@dataclass
class Regime:
    """Everything that defines one comparison, besides the method and the seed."""

    teacher_width: int = 32
    teacher_epochs: int = 15
    student_width: int = 8
    train_size: int = 300
    epochs: int = 60
    lr: float = 3e-3
    batch_size: int = 64
    T: float = 4.0
    alpha: float = 0.9
    # term weights and layers chosen on the validation set in lessons 05 and 06 (as their stored
    # outputs show: hint 10 on layer3, AT 10 on layer3, RKD 2.5 / 5, SP 300 on the embedding)
    weights: dict[str, float] = field(default_factory=lambda: {
        "hint": 10.0, "at": 10.0, "rkd_distance": 2.5, "rkd_angle": 5.0, "sp": 300.0,
    })
    # the layer each feature method reads (``method_terms(layers=...)``); the others: their default
    features: dict[str, str] = field(default_factory=lambda: {"hint": "layer3", "at": "layer3"})

    def train_config(self) -> TrainConfig:
        """The students' :class:`~kdcourse.distill.TrainConfig` in this regime (method and seed
        set per run)."""
        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, T=self.T, alpha=self.alpha,
                           weights=self.weights, layers=self.features)


DIGITS_REGIME = Regime()


def digits_teacher(regime: Regime = DIGITS_REGIME, seed: int = 0):
    """Train the digits teacher of ``regime`` (about a second on a CPU); returns (teacher, data)."""
    d = kd_data.load_digits_data(images=True)
    seed_everything(seed)
    teacher = DigitsCNN(regime.teacher_width)
    train(teacher, d.train, epochs=regime.teacher_epochs, seed=seed, progress=False)
    return teacher, d


def compare(
    methods: Sequence[str] = METHODS,
    seeds: int = 3,
    regime: Regime = DIGITS_REGIME,
    progress: bool = True,
) -> dict[str, dict]:
    """Train one student per method and seed on the digits; return per-method results.

    Each entry: ``{"mean", "std", "runs"}`` (test accuracies in [0, 1]; the sample standard
    deviation, ddof = 1), plus ``"params"``
    and ``"seconds"`` (mean training time of one run, teacher excluded). Every method sees the
    same teacher, the same transfer set and the same initial student for a given seed.
    """
    for m in methods:
        parse_method(m)  # an unknown name fails here, before the teacher is trained
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    teacher, d = digits_teacher(regime)
    transfer = kd_data.subset(d.train, regime.train_size, seed=0)
    sample = transfer.tensors[0][:2]
    features = sorted({f for m in methods if m != "baseline"
                       for term in method_terms(m, student=DigitsCNN(regime.student_width), teacher=teacher,
                                                sample_input=sample, weights=regime.weights,
                                                layers=regime.features)
                       for f in term.teacher_features})
    cache = teacher_outputs(teacher, transfer.tensors[0], features)
    config = regime.train_config()
    runs = Runs(lambda: DigitsCNN(regime.student_width),
                lambda method, seed: RunPlan(transfer, config.replace(method=method), teacher, cache),
                score=lambda student, history: evaluate(student, d.test))
    study = runs.study(list(methods), seeds, progress=progress, desc="compare")
    teacher_acc = evaluate(teacher, d.test)
    return {"teacher": {"mean": teacher_acc, "std": 0.0, "runs": [teacher_acc],
                        "params": count_parameters(teacher), "seconds": None}, **study.summaries()}


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table: method, mean +- std accuracy, parameters, seconds per run."""
    lines = [f"{'method':<12} {'test accuracy':>17} {'params':>9} {'s/run':>7}", "-" * 48]
    for name, r in results.items():
        acc = f"{100 * r['mean']:.1f} +- {100 * r['std']:.1f} %"
        secs = f"{r['seconds']:.2f}" if r.get("seconds") is not None else "-"
        lines.append(f"{name:<12} {acc:>17} {r['params']:>9,} {secs:>7}")
    return "\n".join(lines)


def to_json(results: dict[str, dict], path) -> None:
    """Write the results shaped ``{"<method>": {"mean", "std", "runs", ...}}``."""
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")


def cache_benchmark(epochs: int = 10, repeats: int = 3) -> dict[str, float]:
    """Seconds per epoch for a baseline student, a KD student with cached teacher outputs and
    one without the cache (the teacher re-run every batch), on the full digits training set.

    Returns the three median epoch times and the two ratios to the baseline.
    """
    teacher, d = digits_teacher()
    timings = {}
    for label, method, cache in (("baseline", "baseline", True), ("kd_cached", "kd", True),
                                 ("kd_uncached", "kd", False)):
        per_epoch = []
        for seed in range(repeats):
            seed_everything(seed)
            student = DigitsCNN(DIGITS_REGIME.student_width)
            h = train(student, d.train, teacher=teacher, method=method, epochs=epochs, cache_teacher=cache,
                      seed=seed, progress=False)
            # the one-off teacher pass of the cached run is spread over its epochs
            per_epoch.append((sum(h.epoch_seconds) + h.teacher_seconds) / epochs)
        timings[label] = statistics.median(per_epoch)
    timings["ratio_cached"] = timings["kd_cached"] / timings["baseline"]
    timings["ratio_uncached"] = timings["kd_uncached"] / timings["baseline"]
    return timings


def views_benchmark(images: int = 500, epochs: int = 3, warmup: int = 1, batch_size: int = 64,
                    recipe=None, seed: int = 0) -> dict[str, float]:
    """Augmented KD on CIFAR-10: seconds per epoch with the view cache vs the live teacher.

    On ``images`` training images (a stratified subset), the shipped teacher and the course's
    student ``CifarCNN((16, 32, 64))``, on the CPU, the median epoch time (over ``epochs``
    epochs after ``warmup`` discarded ones) of (1) ``baseline_views``: labels only on the same
    fixed-view augmented batches (:class:`kdcourse.views.TeacherViews`, inputs only), (2)
    ``kd_views``: KD with the teacher's logits read from the view cache, (3) ``kd_live``: KD with
    random crop + flip (:func:`kdcourse.capstone.random_crop_flip`) and the teacher run on every
    batch. ``view_cache_seconds`` is the one-off cost of computing the view cache (always
    recomputed here, never read from disk; not part of the epoch times), ``break_even_epochs``
    the number of epochs after which it has paid for itself against the live teacher.
    """
    import math

    from torch.utils.data import TensorDataset

    from .capstone import random_crop_flip
    from .models import CifarCNN
    from .teachers import CIFAR10_TEACHER_SHA256, load_cifar10_teacher
    from .views import DEFAULT_VIEWS, TeacherViews, cached_teacher_views

    recipe = recipe or DEFAULT_VIEWS
    d = kd_data.load_cifar10_data(train_size=images, test_size=100, seed=seed)
    x, y = kd_data.tensors(d.train)
    train_set = TensorDataset(x.contiguous(), y)
    teacher = load_cifar10_teacher()
    start = time.perf_counter()
    logits, _ = cached_teacher_views(teacher, train_set.tensors[0], recipe, teacher_sha256=CIFAR10_TEACHER_SHA256,
                                     cache=False)
    build = time.perf_counter() - start
    views = TeacherViews(recipe, logits)
    runs = {
        "baseline_views": dict(method="baseline", teacher_views=TeacherViews(recipe)),
        "kd_views": dict(method="kd", teacher=teacher, teacher_views=views),
        "kd_live": dict(method="kd", teacher=teacher, augment=random_crop_flip),
    }
    out: dict[str, float] = {"images": len(y), "views": len(recipe), "timed_epochs": epochs,
                             "threads": torch.get_num_threads()}
    for label, kwargs in runs.items():
        seed_everything(seed)
        student = CifarCNN((16, 32, 64))
        h = train(student, train_set, epochs=warmup + epochs, batch_size=batch_size, lr=3e-3, seed=seed,
                  progress=False, device="cpu", **kwargs)
        out[f"{label}_epoch_s"] = statistics.median(h.epoch_seconds[warmup:])
    out["view_cache_seconds"] = build
    out["ratio_views"] = out["kd_views_epoch_s"] / out["baseline_views_epoch_s"]
    out["ratio_live"] = out["kd_live_epoch_s"] / out["baseline_views_epoch_s"]
    saved = out["kd_live_epoch_s"] - out["kd_views_epoch_s"]
    out["break_even_epochs"] = math.ceil(build / saved) if saved > 0 else float("inf")
    return out


def default_seeds() -> int:
    return pick(quick=3, full=10)
