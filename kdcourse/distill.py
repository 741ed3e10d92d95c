"""One training loop for every method: a Distiller (frozen teacher + student + weighted terms).

The design follows Keras' ``Distiller`` (a teacher, a student, weighted losses) and mdistiller
(the teacher is kept in eval mode inside the distiller, whatever mode the distiller is put in).

A method is a list of :class:`LossTerm` objects, each ``weight * fn(student_out, teacher_out,
targets)``, where ``student_out`` and ``teacher_out`` are dicts holding ``"logits"`` and any
intermediate features the term asked for (read with :func:`kdcourse.models.feature_extractor`).

    >>> history = train(student, data.train, teacher=teacher, method="kd", T=4, alpha=0.9)

Methods: ``baseline``, ``kd``, ``hint``, ``at``, ``rkd``, ``sp``, ``dkd``, ``pseudo`` and sums
such as ``kd+at``: the registry of :mod:`kdcourse.methods` (:func:`method_terms`). A custom loss
plugs in as a term:

    >>> terms = [LossTerm("mine", 1.0, lambda s, t, y: my_loss(s["logits"], t["logits"], y))]
    >>> history = train(student, data.train, teacher=teacher, terms=terms)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from . import memo, parallel
from .config import device as default_device
from .config import progress_enabled
from .data import tensors
from .losses import distillation_loss
from .methods import (  # noqa: F401  (the terms and the registry, re-exported: lessons import them from here)
    DEFAULT_WEIGHTS,
    METHODS,
    REGISTRY,
    UNLABELED,
    LossTerm,
    cross_entropy_term,
    hint_term,
    kd_term,
    labeled_cross_entropy,
    make_regressor,
    method_table,
    method_terms,
    parse_method,
    pseudo_label_targets,
    pseudo_label_term,
)
from .models import feature_extractor
from .teacher_cache import teacher_outputs  # noqa: F401  (re-exported: the one teacher cache)

if TYPE_CHECKING:  # for the annotations only (strings at run time): no import of views at run time
    from .views import TeacherViews

__all__ = [
    "LossTerm",
    "Distiller",
    "History",
    "TrainConfig",
    "METHODS",
    "method_terms",
    "train",
    "evaluate",
    "kd_training_step",
    "predict_logits",
    "teacher_outputs",
    "UNLABELED",
    "labeled_cross_entropy",
    "pseudo_label_targets",
    "freeze",
    "seed_everything",
]

Outputs = dict[str, torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that model initialisation and training repeat exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def freeze(model: nn.Module) -> nn.Module:
    """Freeze a teacher: eval mode (dropout off, BatchNorm statistics fixed) and no gradients."""
    model.eval()
    model.requires_grad_(False)
    return model


# ------------------------------------------------------------------ the distiller


class Distiller(nn.Module):
    """A student, a frozen teacher and weighted loss terms.

    The teacher is frozen on construction and stays in eval mode even when the distiller is put
    in train mode; its forward pass runs under ``torch.no_grad()``.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None,
                 terms: Sequence[LossTerm] | None = None):
        super().__init__()
        self.terms = list(terms) if terms else [cross_entropy_term(1.0)]
        if any(term.needs_teacher for term in self.terms) and teacher is None:
            raise ValueError("these loss terms need a teacher, but teacher is None")
        self.student = student
        self.epoch = 1  # set by train(); ramps the weights of terms with a warm-up
        self.teacher = freeze(teacher) if teacher is not None else None
        self.extra = nn.ModuleList([t.module for t in self.terms if t.module is not None])
        # each side's features by their own names (a term may pair differently named layers)
        self.student_features = tuple(sorted({f for t in self.terms for f in t.student_features}))
        self.teacher_features = tuple(sorted({f for t in self.terms if t.needs_teacher for f in t.teacher_features}))
        self._student_features = feature_extractor(student, self.student_features) if self.student_features else None
        self._teacher_features = (
            feature_extractor(self.teacher, self.teacher_features)
            if self.teacher_features and teacher is not None else None
        )

    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
            if self._teacher_features is not None:
                self._teacher_features.eval()
        return self

    @property
    def needs_teacher(self) -> bool:
        return any(t.needs_teacher and t.weight != 0 for t in self.terms)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The student's parameters and those of the terms (regressors); never the teacher's."""
        return [p for p in list(self.student.parameters()) + list(self.extra.parameters()) if p.requires_grad]

    def student_outputs(self, x: torch.Tensor) -> Outputs:
        if self._student_features is not None:
            return dict(self._student_features(x))
        return {"logits": self.student(x)}

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> Outputs:
        if self._teacher_features is not None:
            return dict(self._teacher_features(x))
        return {"logits": self.teacher(x)}

    def compute_loss(self, x: torch.Tensor, y: torch.Tensor, teacher_out: Outputs | None = None, *,
                     floats: bool = True) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """The weighted total, each term's unweighted value (for the history) and the student logits.

        The values come back as Python floats, for a look at one batch. ``floats=False`` keeps
        each one a detached 0-d tensor on the device instead: reading a float waits for the device
        to finish the step, so :func:`train` asks for tensors, adds them up on the device and reads
        the sums once per epoch.
        """
        s = self.student_outputs(x)
        t = None
        if self.needs_teacher:
            t = teacher_out if teacher_out is not None else self.teacher_outputs(x)
        total = torch.zeros((), device=x.device)
        parts: dict[str, float] = {}
        for term in self.terms:
            if term.weight == 0:
                continue
            value = term.fn(s, t, y)
            total = total + term.weight_at(self.epoch) * value
            parts[term.name] = float(value.detach()) if floats else value.detach()
        return total, parts, s["logits"]

    def forward(self, x: torch.Tensor, y: torch.Tensor,
                teacher_out: Outputs | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """One training step's losses: :meth:`compute_loss` with its parts as tensors.

        :func:`train` calls the distiller itself (this method), so that under torchrun
        ``DistributedDataParallel`` can wrap it and average the gradients of the backward pass.
        """
        return self.compute_loss(x, y, teacher_out, floats=False)


def kd_training_step(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     optimizer: torch.optim.Optimizer, T: float, alpha: float) -> float:
    r"""One step of knowledge distillation, the algorithm on one page (lesson 04's exercise; Keras'
    ``Distiller.train_step``): the teacher frozen in eval mode under ``torch.no_grad()``, then
    :math:`L = \alpha T^2 \mathrm{KL}(p_t^T \| p_s^T) + (1 - \alpha) \mathrm{CE}(y, p_s)`
    (:func:`kdcourse.losses.distillation_loss`), ``zero_grad``, ``backward``, ``step``; the loss as a float.
    :func:`train` does the same for every method, with loss terms instead of one formula."""
    teacher.eval()
    with torch.no_grad():
        teacher_logits = teacher(x)
    loss = distillation_loss(student(x), teacher_logits, y, T, alpha)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The model's logits for every row of ``x`` (eval mode, restored afterwards)."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = torch.cat([model(x[i:i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of rows whose arg-max is the label, a float in [0, 1] (lesson 03's exercise)."""
    return float((logits.argmax(dim=1) == labels).float().mean())


def evaluate(model: nn.Module, data: TensorDataset, batch_size: int = 1024) -> float:
    """Accuracy (in [0, 1]) of ``model`` on a ``TensorDataset``."""
    x, y = tensors(data)
    return accuracy(predict_logits(model, x, batch_size), y)


def _accuracy_shared(model: nn.Module, data: TensorDataset, device: torch.device) -> float:
    """:func:`evaluate`, with the rows split between the ranks under torchrun and the counts added.

    Every rank gets the same number (the counts are summed, then divided as :func:`evaluate`
    divides: in float32). One process: :func:`evaluate` itself.
    """
    if parallel.world_size() == 1:
        return evaluate(model, data)
    x, y = tensors(data)
    lo, hi = parallel.shard_bounds(len(y))
    correct = (predict_logits(model, x[lo:hi]).argmax(1) == y[lo:hi]).sum() if hi > lo else torch.zeros(())
    total = parallel.sum_over_ranks(correct.to(device=device, dtype=torch.float64).reshape(1))
    return float(torch.tensor(total.item(), dtype=torch.float32) / len(y))


class _EpochSums:
    """One epoch's running sums, kept on the device: the loss and each part times the batch size,
    the correct and the labelled counts.

    :meth:`add` queues a few additions and waits for nothing (no host sync per step; on a GPU the
    CPU runs ahead, queueing the next steps); :meth:`read` brings everything to Python in one
    transfer, summed over the ranks under torchrun. In float64 (float32 on Apple's MPS, which has no
    float64), so the sums are the ones Python's floats gave, step by step.
    """

    def __init__(self, device: torch.device, part_names: Sequence[str]):
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.loss = torch.zeros((), dtype=self.dtype, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.labeled = torch.zeros((), dtype=torch.int64, device=device)
        self.parts = {name: torch.zeros((), dtype=self.dtype, device=device) for name in part_names}

    def add(self, loss: torch.Tensor, parts: dict[str, torch.Tensor], logits: torch.Tensor, y: torch.Tensor,
            n: int) -> None:
        self.loss += loss.detach().to(self.dtype) * n
        has_label = y != UNLABELED
        self.correct += ((logits.detach().argmax(1) == y) & has_label).sum()
        self.labeled += has_label.sum()
        for name, value in parts.items():
            self.parts[name] += value.to(self.dtype) * n

    def read(self) -> tuple[float, int, int, dict[str, float]]:
        """(loss sum, correct, labelled, {part: sum}) as Python numbers, over every rank."""
        values = torch.stack([self.loss, self.correct.to(self.dtype), self.labeled.to(self.dtype),
                              *self.parts.values()])
        loss, correct, labeled, *parts = parallel.sum_over_ranks(values).tolist()
        return loss, int(correct), int(labeled), dict(zip(self.parts, parts))


def _check_every_step(device: torch.device) -> bool:
    """Whether :func:`train` checks every step's loss for NaN / inf, or once per epoch.

    Every step where that costs nothing: one process on the CPU, where a tensor's value is already
    there, so training stops at the step that diverged. On a GPU reading the value would make the
    CPU wait for the step to finish, and under torchrun one rank stopping alone would leave the
    others waiting for it forever; there the check is once per epoch, on the epoch's loss sum (over
    every rank), which a non-finite step leaves non-finite (inf + x = inf, nan + x = nan).
    """
    return device.type == "cpu" and parallel.world_size() == 1


def _diverged(value: float, epoch: int, per_epoch: bool) -> FloatingPointError:
    where = f"in epoch {epoch} (its mean over the epoch)" if per_epoch else f"at a step of epoch {epoch}"
    return FloatingPointError(f"the loss became {value} {where}: lower the learning rate or the term weights")


# ------------------------------------------------------------------ training


@dataclass
class History:
    """What happened during training, one entry per epoch."""

    method: str
    train_loss: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    teacher_seconds: float = 0.0
    student: nn.Module | None = field(default=None, repr=False)

    @property
    def epochs(self) -> list[int]:
        return list(range(1, len(self.train_loss) + 1))

    @property
    def final_val_acc(self) -> float | None:
        return self.val_acc[-1] if self.val_acc else None

    @property
    def seconds(self) -> float:
        return self.teacher_seconds + sum(self.epoch_seconds)

    def to_dict(self) -> dict:
        return {
            "method": self.method, "train_loss": self.train_loss, "parts": self.parts,
            "train_acc": self.train_acc, "val_acc": self.val_acc,
            "epoch_seconds": self.epoch_seconds, "teacher_seconds": self.teacher_seconds,
        }


PRECISIONS = ("float32", "bfloat16")
"""What :class:`TrainConfig`'s ``precision`` accepts: float32 everywhere, or bfloat16 autocast."""


@dataclass(frozen=True)
class TrainConfig:
    """What one training run is, besides the student, the data and the teacher: what
    :func:`train` reads, and what a study's regime holds for its students.

    ``method`` names a recipe of :mod:`kdcourse.methods` (built with ``T``, ``alpha``,
    ``feature``, ``layers`` and ``weights``); ``optimizer`` is ``"adam"`` or ``"sgd"`` (Nesterov,
    momentum 0.9), with a cosine schedule over all steps if ``cosine``; ``augment`` maps a batch of
    inputs to augmented ones (then the teacher runs live on every batch); ``cache_teacher``
    computes the teacher's outputs once when the inputs never change; ``progress`` shows a bar;
    ``device`` defaults to :func:`kdcourse.config.device`. ``precision="bfloat16"`` runs the forward
    passes (student, and a live teacher) under ``torch.autocast`` in bfloat16 (on a GPU autocast keeps the
    softmaxes and losses in float32; on a CPU only the losses); ``channels_last`` stores the student, a
    live teacher (while it trains) and the image batches channels-last. Both are for a GPU (on most CPUs
    they are slower) and change the numbers a little. :meth:`replace` returns a changed copy.
    """

    method: str = "baseline"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    cosine: bool = False
    seed: int = 0
    T: float = 4.0
    alpha: float = 0.9
    feature: str | None = None
    layers: Mapping | None = None
    weights: Mapping[str, float] | None = None
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    cache_teacher: bool = True
    progress: bool = True
    device: str | None = None
    precision: str = "float32"
    channels_last: bool = False

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"epochs, batch_size and lr must be positive, got {self.epochs}, {self.batch_size}, "
                             f"{self.lr}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {self.precision!r}")

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` (field names of :class:`TrainConfig`)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise TypeError(f"unknown training setting(s) {unknown}; a TrainConfig holds "
                            f"{', '.join(f.name for f in fields(self))}")
        return dataclasses.replace(self, **changes) if changes else self


def train(
    student: nn.Module,
    train_data: TensorDataset,
    config: TrainConfig | None = None,
    *,
    teacher: nn.Module | None = None,
    terms: Sequence[LossTerm] | None = None,
    val_data: TensorDataset | None = None,
    teacher_cache: Outputs | None = None,
    teacher_views: TeacherViews | None = None,
    **settings,
) -> History:
    """Train ``student`` in place with a method's loss terms; return the :class:`History`.

    What the run is (method, epochs, optimiser, T, alpha, ...) is a :class:`TrainConfig`:
    ``train(student, data, config)``, or its fields as keywords, ``train(student, data,
    method="kd", epochs=40)``, which replace those of ``config`` (default ``TrainConfig()``).
    The objects it trains with are keywords: ``teacher``, ``terms``, ``val_data``,
    ``teacher_cache``, ``teacher_views``.

    - ``method`` names a recipe (:func:`method_terms`, with ``T``, ``alpha``, ``feature``,
      ``layers`` and ``weights``); ``terms`` replaces it with your own.
    - Seeded: the same ``seed`` and the same initial student give the same numbers on the same
      machine (batch order, dropout, regressor initialisation).
    - With ``augment=None`` the teacher's outputs for the training set are computed once
      (``cache_teacher``) instead of every epoch; pass ``teacher_cache`` (from
      :func:`teacher_outputs`) to share them across runs.
    - ``teacher_views`` (a :class:`kdcourse.views.TeacherViews`) augments with fixed views
      instead: each batch draws one view per example (seeded by ``seed``), the student sees that
      view and the teacher's cached logits for it are the targets (consistent teaching). Logits
      only (no feature terms) and not with ``augment``; without a teacher only the views are used.
    - ``progress`` shows a ``tqdm`` bar (``KDCOURSE_PROGRESS=0`` silences all bars).
    - Unlabelled examples carry the label ``-1`` (:data:`UNLABELED`, e.g. from
      :func:`kdcourse.data.transfer_set`): the cross-entropy averages over the labelled rows of
      each batch only (:func:`labeled_cross_entropy`; 0 when a batch has none), the teacher
      terms over all rows; ``History.train_acc`` counts labelled rows only. The loss and its
      parts in the history are per-example means over the epoch.
    - Under ``torchrun --nproc_per_node=N`` (a process group, :func:`kdcourse.parallel.init_from_env`)
      it trains data-parallel: each rank takes its slice of every global batch of ``batch_size``
      examples, ``DistributedDataParallel`` averages the gradients, and every rank's history and
      weights agree (what differs from one process: :mod:`kdcourse.parallel`).
    """
    from tqdm.auto import tqdm

    config = (config if config is not None else TrainConfig()).replace(**settings)
    method, epochs, batch_size, lr = config.method, config.epochs, config.batch_size, config.lr
    weight_decay, optimizer, cosine, seed = config.weight_decay, config.optimizer, config.cosine, config.seed
    T, alpha, feature, layers, weights = config.T, config.alpha, config.feature, config.layers, config.weights
    augment, cache_teacher, progress, device = config.augment, config.cache_teacher, config.progress, config.device
    dev = torch.device(device or default_device())
    x_train, y_train = tensors(train_data)
    world = parallel.world_size()
    seed_everything(seed)
    student.to(dev, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    if teacher is not None:
        teacher.to(dev)
    if terms is None:
        terms = method_terms(method, student=student, teacher=teacher, sample_input=x_train[:2].to(dev),
                             T=T, alpha=alpha, feature=feature, layers=layers, weights=weights)
        name = method
    else:
        name = "custom" if method == "baseline" else method
    distiller = Distiller(student, teacher, terms).to(dev)
    if teacher_views is not None:
        if augment is not None or teacher_cache is not None:
            raise ValueError("teacher_views fixes the augmentations and holds the teacher's outputs: "
                             "pass it without augment= and teacher_cache=")
        reads = [t.name for t in distiller.terms if t.needs_teacher and t.weight != 0 and t.teacher_features]
        if distiller.needs_teacher and reads:
            raise ValueError(f"method {name!r} reads the teacher's features (terms {reads}), but teacher_views "
                             "holds its logits only: use a logits method (kd, dkd, pseudo) or augment=")
        if distiller.needs_teacher and teacher_views.num_examples != len(y_train):
            raise ValueError(f"teacher_views holds teacher logits for {teacher_views.num_examples or 'no'} images, "
                             f"the training set has {len(y_train)}: build it from this training set's inputs")
    memo_key = _memo_key(student, train_data, teacher, name, distiller, val_data, epochs, batch_size, lr,
                         weight_decay, optimizer, cosine, seed, augment, cache_teacher, teacher_cache,
                         teacher_views, dev, *_precision_key(config)) if world == 1 else None
    # (under torchrun no memo: its key does not hold the number of processes, whose runs differ
    # from one process's, and N processes would write one entry)
    if memo_key is not None:
        record = memo.load(memo_key, {"student": student, "terms": distiller.extra})
        if record is not None:  # this very run finished before: its end state is back in place
            student.eval()
            return History(**record, student=student)
    params = distiller.trainable_parameters()
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:  # "sgd" (TrainConfig accepts no other)
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps_per_epoch = (len(y_train) + batch_size - 1) // batch_size
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch) if cosine else None

    history = History(method=name, student=student)
    cache = None
    if distiller.needs_teacher and augment is None and teacher_views is None and (
            cache_teacher or teacher_cache is not None):
        start = time.perf_counter()
        cache = teacher_cache if teacher_cache is not None else teacher_outputs(
            distiller.teacher, x_train, distiller.teacher_features)
        missing = {"logits", *distiller.teacher_features} - set(cache)
        if missing or len(cache["logits"]) != len(y_train):
            raise ValueError(f"teacher_cache does not match this training set / method (missing {missing or 'rows'})")
        history.teacher_seconds = time.perf_counter() - start

    if world > 1:
        parallel.check_same_on_every_rank({
            "training examples": len(y_train), "sum of the inputs": float(x_train.double().sum()),
            "sum of the labels": float(y_train.sum()), "epochs": epochs, "batch_size": batch_size, "seed": seed,
            "trainable parameters": sum(p.numel() for p in params)}, dev)
    # Under torchrun the distiller's forward runs inside DistributedDataParallel (gradient averaging).
    step = parallel.wrap(distiller, find_unused_parameters=any(
        t.module is not None and t.weight == 0 for t in distiller.terms)) if world > 1 else distiller
    check_each_step = _check_every_step(dev)
    part_names = list(dict.fromkeys(t.name for t in distiller.terms if t.weight != 0))
    generator = torch.Generator().manual_seed(seed)
    view_generator = torch.Generator().manual_seed(seed + 1_000_003) if teacher_views is not None else None
    bar = tqdm(range(epochs), desc=name if teacher is not None else "training",
               disable=not (progress_enabled(progress) and parallel.is_main()), leave=False)
    with parallel.own_random_streams(seed, dev), _channels_last(teacher if config.channels_last else None):
        for epoch in bar:
            start = time.perf_counter()
            distiller.epoch = epoch + 1
            distiller.train()
            order = torch.randperm(len(y_train), generator=generator)
            sums = _EpochSums(dev, part_names)
            for i in range(0, len(order), batch_size):
                batch = order[i:i + batch_size]  # the global batch: the same examples whatever the ranks
                lo, hi = parallel.shard_bounds(len(batch))  # this rank's slice (all of it in one process)
                n = hi - lo

                def mine(rows: torch.Tensor) -> torch.Tensor:
                    # An empty slice (a last batch with fewer examples than ranks) runs the whole batch
                    # with weight 0: every rank must take part in each gradient average.
                    return rows[lo:hi] if n else rows

                idx = mine(batch)
                xb, yb = x_train[idx].to(dev), y_train[idx].to(dev)
                if augment is not None:
                    xb = augment(xb)
                t_out = {k: v[idx].to(dev) for k, v in cache.items()} if cache is not None else None
                if teacher_views is not None:
                    view_ids = mine(teacher_views.draw(len(batch), view_generator))
                    xb = teacher_views.inputs(xb, view_ids)
                    if distiller.needs_teacher:
                        t_out = {k: v.to(dev) for k, v in teacher_views.targets(idx, view_ids).items()}
                if config.channels_last and xb.dim() == 4:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.precision == "bfloat16"):
                    loss, parts, logits = step(xb, yb, t_out)
                if check_each_step and not torch.isfinite(loss):
                    raise _diverged(float(loss.detach()), epoch + 1, per_epoch=False)
                opt.zero_grad(set_to_none=True)
                # Each rank's loss is a mean over its slice; weighted by the slice's share of the batch
                # (times N, which the gradient average divides by) the average is the batch's mean.
                scale = n * world / len(batch)
                (loss if scale == 1 else loss * scale).backward()
                opt.step()
                if scheduler is not None:
                    scheduler.step()
                if n:
                    sums.add(loss, parts, logits, yb, n)
            total, correct, labeled, part_sums = sums.read()  # the epoch's one read from the device
            if not math.isfinite(total):
                raise _diverged(total / len(y_train), epoch + 1, per_epoch=True)
            parallel.average_buffers(distiller.student)  # BatchNorm's running statistics, under torchrun
            parallel.average_buffers(distiller.extra)
            seconds = time.perf_counter() - start
            if world > 1:  # the slowest rank's times, so that every rank's history agrees
                seconds, history.teacher_seconds = parallel.max_over_ranks(
                    torch.tensor([seconds, history.teacher_seconds], dtype=torch.float64, device=dev)).tolist()
            history.epoch_seconds.append(seconds)
            history.train_loss.append(total / len(y_train))
            history.train_acc.append(correct / labeled if labeled else float("nan"))
            for k, v in part_sums.items():
                history.parts.setdefault(k, []).append(v / len(y_train))
            if val_data is not None:
                history.val_acc.append(_accuracy_shared(student, val_data, dev))
                bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", val_acc=f"{history.val_acc[-1]:.3f}")
    if world > 1:
        del step  # the wrapper, and with it its gradient hooks on the student's parameters
    student.eval()
    if memo_key is not None:
        memo.store(memo_key, {"student": student, "terms": distiller.extra}, history.to_dict())
    return history


@contextlib.contextmanager
def _channels_last(teacher: nn.Module | None):
    """The teacher channels-last while the student trains, and back in the usual layout afterwards (the
    caller's teacher is shared by other runs, which the two layouts would round differently)."""
    if teacher is None:
        yield
        return
    teacher.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        teacher.to(memory_format=torch.contiguous_format)


def _precision_key(config: TrainConfig) -> tuple:
    """What precision and memory format add to a run's memo key (nothing at the defaults, so that the
    keys of float32 runs stay as they were)."""
    changed = (config.precision, config.channels_last) != ("float32", False)
    return ("precision", config.precision, "channels_last", config.channels_last) if changed else ()


def _memo_key(*run) -> str | None:
    """The run's fingerprint for :mod:`kdcourse.memo` when ``KDCOURSE_TRAIN_MEMO=1``, else ``None``."""
    return memo.key_for("distill.train", *run)
