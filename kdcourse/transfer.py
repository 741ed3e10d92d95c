"""Distilling on a transfer set: few labels, many images that only the teacher labels.

Hinton et al. (2015) distil on a *transfer set*, which need not be labelled: the teacher labels
it. That is the everyday use of distillation (a few hundred labelled images, thousands of
unlabelled ones) and the regime where the teacher has the most to give. The study compares three
students on the same seeds (same initialisation, same batch order for a given seed):

- ``baseline``: cross-entropy on the labelled images only (it never sees the pool);
- ``pseudo``: the labelled images plus the pool with the teacher's *hard* arg-max labels
  (:func:`kdcourse.distill.pseudo_label_term`);
- ``kd``: the labelled images plus the pool with the teacher's *soft* targets,
  ``(1 - alpha) CE + alpha T^2 KL`` (the CE term over the labelled rows only, see
  :func:`kdcourse.distill.labeled_cross_entropy`).

The pool is either the rest of the training set (``pool="train"``: images the shipped teacher was
trained on, where it is nearly always right and very confident) or images it never saw
(``pool="held-out"``: test images set aside and never used to measure accuracy).

    >>> study = cifar10_transfer_study(TransferRegime(labeled=500, unlabeled=5000), seeds=3)
    >>> print(format_table(study.results))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import TensorDataset

from . import config
from .data import DataSplits, cifar10_labels, labeled_split, load_cifar10_data, tensors, transfer_set
from .distill import History, TrainConfig, evaluate
from .models import CifarCNN, count_parameters
from .study import RunPlan, Runs, paired_differences, summarize  # noqa: F401  (re-exported)
from .teachers import cifar10_teacher_info, load_cifar10_teacher, shipped_cifar10_logits

__all__ = [
    "TRANSFER_METHODS",
    "TransferRegime",
    "TransferStudy",
    "summarize",
    "paired_differences",
    "transfer_study",
    "transfer_rows",
    "cifar10_teacher_logits",
    "cifar10_transfer_study",
    "capacity_study",
    "digits_transfer_study",
    "DIGITS_TRANSFER",
    "soft_target_entropy",
    "QUICK",
    "FULL",
    "regime",
]

TRANSFER_METHODS = ("baseline", "pseudo", "kd")
"""The three comparators: labels only, hard pseudo-labels, soft targets."""


@dataclass(frozen=True)
class TransferRegime:
    """Everything that defines a transfer-set study, besides the methods and the seeds."""

    labeled: int = 500
    unlabeled: int | None = 5000  # None: every other training image (pool="train")
    pool: str = "train"  # "train": the rest of the training set; "held-out": test images kept out of the test
    epochs: int = 12  # pseudo and kd: epochs over labelled + pool
    baseline_epochs: int = 40  # the label-only student: epochs over its labelled images
    test_size: int = 5000  # test images scored (the held-out pool comes from the others)
    batch_size: int = 64
    lr: float = 3e-3
    T: float = 4.0
    alpha: float = 0.9
    data_seed: int = 0  # which images are labelled, pooled and tested
    student_widths: tuple[int, int, int] = (16, 32, 64)

    def __post_init__(self):
        if self.pool not in ("train", "held-out"):
            raise ValueError(f"pool must be 'train' or 'held-out', got {self.pool!r}")
        if self.labeled < 1 or (self.unlabeled is not None and self.unlabeled < 1):
            raise ValueError(f"labeled and unlabeled must be >= 1 (unlabeled None: all the others), "
                             f"got {self.labeled} and {self.unlabeled}")
        if self.pool == "held-out" and self.unlabeled is None:
            raise ValueError("a held-out pool needs its size: give unlabeled=...")

    def describe(self) -> str:
        where = "the rest of the training set" if self.pool == "train" else "held-out test images"
        pool = "all other" if self.unlabeled is None else f"{self.unlabeled:,}"
        return (f"{self.labeled:,} labelled + {pool} unlabelled images ({where}); "
                f"baseline {self.baseline_epochs} epochs on the labelled images, pseudo / kd {self.epochs} epochs "
                f"on both; Adam lr {self.lr:g} + cosine, batch {self.batch_size}, "
                f"T={self.T:g}, alpha={self.alpha:g}; {self.test_size:,} test images")


@dataclass
class TransferStudy:
    """The results of :func:`transfer_study`."""

    regime: TransferRegime
    results: dict[str, dict]  # {"teacher": {...}, method: {"mean", "std", "runs", "params", "seconds", ...}}
    histories: dict[str, list[History]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    pool_logits: torch.Tensor | None = None  # the teacher's logits on the pool
    pool_labels: torch.Tensor | None = None  # the pool's true labels (never used in training)
    held_out_logits: torch.Tensor | None = None  # the teacher's logits on held-out test images
    held_out_labels: torch.Tensor | None = None
    test_logits: torch.Tensor | None = None  # the teacher's logits on the test images scored
    test_labels: torch.Tensor | None = None
    test_data: TensorDataset | None = None  # the test images scored (CIFAR-10 studies)
    students: dict[str, list[nn.Module]] = field(default_factory=dict)  # with keep_students=True, per seed

    def accuracies(self) -> dict[str, list[float]]:
        """``{method: [test accuracy per seed]}``."""
        return {m: r["runs"] for m, r in self.results.items() if m != "teacher"}

    def gain(self, method: str, reference: str = "baseline") -> dict:
        """:func:`paired_differences` of two methods of this study."""
        return paired_differences(self.results, method, reference)


def transfer_study(
    labeled: TensorDataset,
    pool: TensorDataset,
    test: TensorDataset,
    teacher: nn.Module,
    teacher_logits: torch.Tensor,
    make_student: Callable[[], nn.Module],
    reg: TransferRegime,
    methods: Sequence[str] = TRANSFER_METHODS,
    seeds: int = 3,
    progress: bool = True,
    keep_students: bool = False,
) -> TransferStudy:
    """Train one student per method and seed; return accuracies (test, in [0, 1]) and paired gains.

    ``teacher_logits`` are ``teacher``'s logits on ``labeled`` then ``pool`` (the rows of
    :func:`kdcourse.data.transfer_set`), computed once: without augmentation they never change,
    so the teacher never runs during training. ``make_student()`` builds a fresh student; it is called
    after seeding, so seed ``s`` gives every method the same initial student.
    Each method's entry also holds ``"vs_baseline"``: the per-seed differences to the baseline.
    ``keep_students=True`` keeps the trained students (``study.students[method]``, one per seed, in
    eval mode) for measuring them afterwards, e.g. their agreement with the teacher.
    """
    methods = list(methods)
    unknown = [m for m in methods if m not in TRANSFER_METHODS]
    if unknown:
        raise ValueError(f"unknown transfer-set method(s) {unknown}; use {TRANSFER_METHODS}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    data = transfer_set(labeled, pool)
    if len(teacher_logits) != len(data):
        raise ValueError(f"teacher_logits has {len(teacher_logits)} rows, the transfer set {len(data)}: "
                         "give the teacher's logits on the labelled images followed by the pool")
    cache = {"logits": teacher_logits}
    common = TrainConfig(batch_size=reg.batch_size, lr=reg.lr, cosine=True)

    def plan(method: str, seed: int) -> RunPlan:
        if method == "baseline":  # the labelled images alone, for its own (longer) budget
            return RunPlan(labeled, common.replace(method="baseline", epochs=reg.baseline_epochs))
        return RunPlan(data, common.replace(method=method, T=reg.T, alpha=reg.alpha, epochs=reg.epochs),
                       teacher, cache)

    runs = Runs(make_student, plan, score=lambda student, history: evaluate(student, test),
                keep_students="all" if keep_students else None)
    study = runs.study(methods, seeds, progress=progress, desc="transfer set")
    results = study.summaries()
    for method in results:
        results[method]["images_per_run"] = (len(labeled) * reg.baseline_epochs if method == "baseline"
                                             else len(data) * reg.epochs)
    histories = {m: r.histories for m, r in study.methods.items()}
    students = {m: [run.student for run in r.runs] for m, r in study.methods.items()} if keep_students else {}
    if "baseline" in results:
        for method in results:
            if method != "baseline":
                results[method]["vs_baseline"] = paired_differences(results, method)
    return TransferStudy(reg, results, histories, students=students)


# ------------------------------------------------------------------ CIFAR-10


QUICK = TransferRegime(labeled=500, unlabeled=2500, epochs=8, baseline_epochs=20, student_widths=(8, 16, 32))
"""Lesson 08 on one CPU thread: 500 labels + 2,500 unlabelled images, the 7k-parameter student."""

FULL = TransferRegime(labeled=500, unlabeled=5000, epochs=12, baseline_epochs=40)
"""The command line's regime (and lesson 08 with ``KDCOURSE_PROFILE=full``): 500 + 5,000 images,
the course's 26.7k-parameter student."""


def regime() -> TransferRegime:
    """:data:`QUICK` or :data:`FULL`, following ``KDCOURSE_PROFILE``."""
    return config.pick(quick=QUICK, full=FULL)


def _rows(labels: torch.Tensor, first: int, second: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row numbers of a stratified :func:`kdcourse.data.labeled_split` of a split with these labels."""
    a, b = labeled_split(TensorDataset(torch.arange(len(labels)), labels), first, second, seed=seed)
    return a.tensors[0], b.tensors[0]


def transfer_rows(reg: TransferRegime, y_train: torch.Tensor, y_test: torch.Tensor) -> dict[str, torch.Tensor]:
    """Which CIFAR-10 rows a regime uses: ``labeled`` and ``pool`` (training rows, or test rows for
    ``pool="held-out"``), ``test`` (the test images scored) and ``held_out`` (test rows outside
    ``test``: ``reg.unlabeled`` of them, the held-out pool whatever ``reg.pool`` says).

    The test images are the same for both kinds of pool, so the two can be compared directly."""
    labeled, train_pool = _rows(y_train, reg.labeled, reg.unlabeled, reg.data_seed)
    test, held_out = _rows(y_test, reg.test_size, reg.unlabeled, reg.data_seed)
    return {"labeled": labeled, "pool": train_pool if reg.pool == "train" else held_out, "test": test,
            "held_out": held_out}


def cifar10_teacher_logits(data: DataSplits, split: str, rows: torch.Tensor | None = None,
                           teacher: nn.Module | None = None, cache: bool = True,
                           which: str = "strong") -> tuple[torch.Tensor, str]:
    """The shipped teacher ``which``'s logits on ``data``'s ``split`` (``rows`` of it, default all).

    Read from the logits shipped with the package when ``data`` is the copy they were computed on
    (:func:`kdcourse.teachers.shipped_cifar10_logits`), else computed once and cached on disk
    (:func:`kdcourse.teacher_cache.cached_teacher_outputs`). Returns ``(logits, "shipped" | "cache" |
    "computed")``.
    """
    from .teacher_cache import cached_teacher_outputs

    x = tensors(getattr(data, split))[0]
    if rows is None:
        rows = torch.arange(len(x))
    shipped = shipped_cifar10_logits(data.source_sha256, which=which)
    if shipped is not None and split in data.rows:
        return shipped[split][data.rows[split][rows]], "shipped"
    teacher = teacher if teacher is not None else load_cifar10_teacher(which=which)
    out, hit = cached_teacher_outputs(teacher, x[rows], (), teacher_sha256=cifar10_teacher_info(which=which)["sha256"],
                                      cache=cache, split=split)
    return out["logits"], "cache" if hit else "computed"


def cifar10_transfer_study(reg: TransferRegime | None = None, methods: Sequence[str] = TRANSFER_METHODS,
                           seeds: int = 3, progress: bool = True, teacher: str = "strong",
                           keep_students: bool = False) -> TransferStudy:
    """:func:`transfer_study` on CIFAR-10 with the shipped teacher ``teacher`` (``"strong"`` or
    ``"weak"``, :data:`kdcourse.teachers.CIFAR10_TEACHERS`) and a ``CifarCNN(reg.student_widths)`` student.

    The rows come from :func:`transfer_rows` (stratified, ``reg.data_seed``), and only those
    images are loaded (``load_cifar10_data(train_rows=..., test_rows=...)``: about 30 MB rather
    than 700 MB for all of CIFAR-10). The result's ``"teacher"`` entry holds the teacher's accuracy
    on the same test images and on the pool; ``pool_logits`` / ``pool_labels`` its logits on the
    pool and the pool's true labels, ``held_out_logits`` / ``held_out_labels`` the same for the
    held-out test images (for comparing the two kinds of pool), ``test_logits`` / ``test_labels``
    the same for the test images scored.
    """
    reg = reg or FULL
    start = time.perf_counter()
    y_train, y_test = cifar10_labels()
    rows = transfer_rows(reg, y_train, y_test)
    train_rows = rows["labeled"] if reg.pool == "held-out" else torch.cat([rows["labeled"], rows["pool"]])
    test_rows = torch.cat([rows["test"], rows["held_out"]])
    data = load_cifar10_data(train_rows=train_rows, test_rows=test_rows)
    data_seconds = time.perf_counter() - start
    n_lab, n_test = len(rows["labeled"]), len(rows["test"])
    x_train, y_tr = tensors(data.train)
    x_test, y_te = tensors(data.test)
    lab = TensorDataset(x_train[:n_lab], y_tr[:n_lab])
    test = TensorDataset(x_test[:n_test], y_te[:n_test])
    held = TensorDataset(x_test[n_test:], y_te[n_test:])
    pool = TensorDataset(x_train[n_lab:], y_tr[n_lab:]) if reg.pool == "train" else held

    start = time.perf_counter()
    train_logits, source = cifar10_teacher_logits(data, "train", which=teacher)
    test_logits, _ = cifar10_teacher_logits(data, "test", which=teacher)
    held_logits = test_logits[n_test:]
    pool_logits = train_logits[n_lab:] if reg.pool == "train" else held_logits
    transfer_logits = torch.cat([train_logits[:n_lab], pool_logits])
    teacher_seconds = time.perf_counter() - start

    which = teacher
    teacher = load_cifar10_teacher(which=which)
    study = transfer_study(lab, pool, test, teacher, transfer_logits, lambda: CifarCNN(reg.student_widths), reg,
                           methods=methods, seeds=seeds, progress=progress, keep_students=keep_students)
    teacher_acc = float((test_logits[:n_test].argmax(1) == test.tensors[1]).float().mean())
    study.results = {"teacher": {
        "mean": teacher_acc, "std": 0.0, "runs": [teacher_acc], "params": count_parameters(teacher),
        "seconds": None, "pool_accuracy": float((pool_logits.argmax(1) == pool.tensors[1]).float().mean()),
        "logits_from": source, "which": which}, **study.results}
    study.timings = {"data_seconds": data_seconds, "teacher_seconds": teacher_seconds}
    study.pool_logits, study.pool_labels = pool_logits, pool.tensors[1]
    study.held_out_logits, study.held_out_labels = held_logits, held.tensors[1]
    study.test_logits, study.test_labels, study.test_data = test_logits[:n_test], test.tensors[1], test
    return study


def capacity_study(reg: TransferRegime, widths: Sequence[tuple[int, int, int]],
                   methods: Sequence[str] = ("baseline", "kd"), seeds: int = 3, teacher: str = "strong",
                   progress: bool = True) -> dict[tuple[int, int, int], TransferStudy]:
    """:func:`cifar10_transfer_study` for students ``CifarCNN(w)`` of several widths, one teacher:
    ``{widths: study}`` in the order given. Same images, same seeds (so for a given size the
    methods are paired, and ``study.gain("kd")`` is KD's per-seed gain at that size); the
    capacity-gap question of Mirzadeh et al. (2020) and of the ResNet-10 -> ResNet-3..6 study."""
    if not widths:
        raise ValueError("give at least one student width, e.g. widths=[(4, 8, 16), (8, 16, 32)]")
    from dataclasses import replace

    return {tuple(w): cifar10_transfer_study(replace(reg, student_widths=tuple(w)), methods=methods, seeds=seeds,
                                             progress=progress, teacher=teacher)
            for w in widths}


DIGITS_TRANSFER = TransferRegime(labeled=100, unlabeled=None, epochs=20, baseline_epochs=60, test_size=450)
"""The digits' transfer set: 100 labelled images, the other 977 training images unlabelled."""


def digits_transfer_study(reg: TransferRegime, methods: Sequence[str] = TRANSFER_METHODS, seeds: int = 3,
                          student_width: int = 8, progress: bool = True) -> TransferStudy:
    """:func:`transfer_study` on the digits: the course's digits teacher (trained on all 1,077
    training images, :func:`kdcourse.compare.digits_teacher`), ``reg.labeled`` labelled training
    images, ``reg.unlabeled`` others as the pool (``reg.pool`` must be ``"train"``), the 450 test
    images, a ``DigitsCNN(student_width)`` student."""
    from .compare import digits_teacher
    from .distill import teacher_outputs
    from .models import DigitsCNN

    if reg.pool != "train":
        raise ValueError("the digits have no held-out pool: use pool='train'")
    teacher, d = digits_teacher()
    labeled, pool = labeled_split(d.train, reg.labeled, reg.unlabeled, seed=reg.data_seed)
    logits = teacher_outputs(teacher, transfer_set(labeled, pool).tensors[0])["logits"]
    study = transfer_study(labeled, pool, d.test, teacher, logits, lambda: DigitsCNN(student_width), reg,
                           methods=methods, seeds=seeds, progress=progress)
    acc = evaluate(teacher, d.test)
    study.results = {"teacher": {"mean": acc, "std": 0.0, "runs": [acc], "params": count_parameters(teacher),
                                 "seconds": None}, **study.results}
    return study


def soft_target_entropy(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """The entropy (nats) of each row of ``softmax(logits / T)``: how much a soft target says
    beyond its arg-max (0: one-hot, ``log(classes)``: uniform)."""
    p = torch.softmax(logits / T, dim=1)
    return -(p * torch.log_softmax(logits / T, dim=1)).sum(1)
