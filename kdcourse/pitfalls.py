"""Broken distillers, each with ONE classic mistake, for lesson 07 ("find the bug").

Every pitfall plugs into the package trainer, so it can be measured on the same run as the
correct distiller:

    >>> history = train_with_pitfall("missing_t_squared", student, data.train, teacher, T=4, alpha=0.9)

The correct objective (COURSE.md, :func:`kdcourse.losses.distillation_loss`) is

.. math:: L = \\alpha \\, T^2 \\, \\mathrm{KL}(p_t^T \\,\\|\\, p_s^T) + (1 - \\alpha)\\, \\mathrm{CE}(y, p_s),

with ``KL`` summed over classes and averaged over the batch (``reduction="batchmean"``), the
student entering through ``log_softmax`` and the teacher frozen (eval mode, no gradients).

The pitfalls (:data:`PITFALLS`):

- four broken soft-target losses, drop-in replacements for :func:`kdcourse.losses.kd_loss`
  (signature ``(student_logits, teacher_logits, T)``): :func:`kd_loss_missing_t_squared`,
  :func:`kd_loss_reversed_kl`, :func:`kd_loss_mean_reduction`, :func:`kd_loss_softmax_student`;
- one broken weighting, :func:`swapped_alpha_terms` (lists of
  :class:`~kdcourse.distill.LossTerm`, like :func:`correct_terms`);
- two broken training set-ups, where the teacher sits inside the trained module
  (:class:`TeacherInside`): :func:`teacher_train_mode_setup`, :func:`teacher_not_frozen_setup`.

:func:`pitfall_terms` builds the terms of a loss pitfall; :func:`train_with_pitfall` trains
with any of them (or with one of the :data:`MYSTERIES`, for the diagnosis exercise). The
symptoms worth checking on any distiller: :func:`first_step_parts` (the loss terms before the
first update, against the correct distiller on the same batch) and :func:`teacher_drift` (how
far the teacher's weights and BatchNorm statistics moved).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from . import losses, mistakes
from .distill import Distiller, History, LossTerm, cross_entropy_term, kd_term, train
from .models import DigitsCNN

__all__ = [
    "PITFALLS",
    "MYSTERIES",
    "kd_loss_missing_t_squared",
    "kd_loss_reversed_kl",
    "kd_loss_mean_reduction",
    "kd_loss_softmax_student",
    "correct_terms",
    "swapped_alpha_terms",
    "pitfall_terms",
    "train_with_pitfall",
    "digits_teacher_with_dropout",
    "first_step_parts",
    "teacher_drift",
    "TeacherInside",
    "teacher_train_mode_setup",
    "teacher_not_frozen_setup",
]

#: Each pitfall's name and its mistake in one line (from :data:`kdcourse.mistakes.CATALOGUE`).
PITFALLS = mistakes.pitfalls()


# ---------------------------------------------------------------- broken soft-target losses


def kd_loss_missing_t_squared(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                              T: float = 4.0) -> torch.Tensor:
    r"""BROKEN: the soft-target loss without the :math:`T^2` factor.

    .. math:: L = \mathrm{KL}(p_t^T \,\|\, p_s^T)  \quad(\text{correct: } T^2 \cdot \mathrm{KL})

    Its value, and its gradient, are exactly :math:`1/T^2` of the correct one (1/16 at ``T=4``).
    The gradient of the KL shrinks like :math:`1/T^2` (Hinton et al. 2015, sec. 2), which the
    :math:`T^2` undoes; without it, raising ``T`` silently turns the soft term down and the
    ``alpha`` mix is no longer what it says: at ``T=4, alpha=0.9`` the soft term weighs
    ``0.9 / 16 = 0.056`` against ``0.1`` for the labels.
    """
    return losses.kd_loss(student_logits, teacher_logits, T) / (T * T)


def kd_loss_reversed_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                        T: float = 4.0) -> torch.Tensor:
    r"""BROKEN: the KL divergence with its arguments swapped, :math:`T^2\,\mathrm{KL}(p_s^T \,\|\, p_t^T)`.

    The classic slip is ``F.kl_div(log_softmax(teacher / T), softmax(student / T))``: PyTorch's
    ``kl_div(input, target)`` computes ``KL(target || exp(input))``, so the *student* becomes the
    reference distribution. This is the "reverse" (mode-seeking) KL: it barely penalises a
    student that ignores the teacher's small probabilities (the dark knowledge), e.g. a student
    sure of one of two classes the teacher hesitates between costs ``log 2`` instead of a
    growing penalty. It equals ``kd_loss(teacher_logits, student_logits, T)``.
    """
    losses._check_temperature(T)
    losses._check_logits(student_logits, teacher_logits)
    log_p_teacher = F.log_softmax(teacher_logits / T, dim=1)
    p_student = F.softmax(student_logits / T, dim=1)
    return F.kl_div(log_p_teacher, p_student, reduction="batchmean") * T * T


def kd_loss_mean_reduction(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                           T: float = 4.0) -> torch.Tensor:
    r"""BROKEN: ``F.kl_div(..., reduction="mean")``, which averages over classes as well as examples.

    The KL is a sum over classes; ``"mean"`` divides it by the number of classes ``C`` too, so
    the value and the gradient are exactly :math:`1/C` of the correct one (1/10 on digits and
    CIFAR-10, 1/100 on CIFAR-100: the bug grows with the dataset). PyTorch warns about it
    ("reduction: 'mean' divides the total loss by both the batch size and the support size");
    read your warnings.
    """
    losses._check_temperature(T)
    losses._check_logits(student_logits, teacher_logits)
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    p_teacher = F.softmax(teacher_logits / T, dim=1)
    with warnings.catch_warnings():
        # the warning is the symptom; keep it out of training loops (it is shown in the lesson)
        warnings.simplefilter("ignore", UserWarning)
        kl = F.kl_div(log_p_student, p_teacher, reduction="mean")
    return kl * T * T


def kd_loss_softmax_student(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                            T: float = 4.0) -> torch.Tensor:
    r"""BROKEN: probabilities instead of log-probabilities as the first argument of ``F.kl_div``.

    ``F.kl_div(input, target)`` expects ``input`` to be log-probabilities and computes
    :math:`\sum_i p_{t,i} (\log p_{t,i} - \mathrm{input}_i)`. Given ``softmax(student / T)`` it
    computes

    .. math:: T^2 \Big(\sum_i p_{t,i} \log p_{t,i} - \sum_i p_{t,i}\, p^T_{s,i}\Big),

    a negative "divergence" that is not zero when the student matches the teacher, and whose
    minimum is a student that puts all its (softened) mass on the teacher's top class: the dark
    knowledge is thrown away and the gradients are weak. Nothing crashes.
    """
    losses._check_temperature(T)
    losses._check_logits(student_logits, teacher_logits)
    p_student = F.softmax(student_logits / T, dim=1)
    p_teacher = F.softmax(teacher_logits / T, dim=1)
    return F.kl_div(p_student, p_teacher, reduction="batchmean") * T * T


# ---------------------------------------------------------------- broken set-ups (loss terms)


def correct_terms(T: float = 4.0, alpha: float = 0.9) -> list[LossTerm]:
    """The reference: ``(1 - alpha) CE + alpha T^2 KL`` (pass the teacher to ``train``)."""
    return [cross_entropy_term(1 - alpha), kd_term(alpha, T)]


def swapped_alpha_terms(T: float = 4.0, alpha: float = 0.9) -> list[LossTerm]:
    r"""BROKEN: the other projects' convention read with this course's ``alpha``.

    .. math:: L = \alpha\, \mathrm{CE}(y, p_s) + (1 - \alpha)\, T^2\, \mathrm{KL}(p_t^T \,\|\, p_s^T)

    The author sets ``alpha = 0.9`` believing it gives the teacher 90 % of the say; the labels
    get it instead, and the soft term keeps 10 %. Each term's value is right, only the weights
    are exchanged, so unit tests of the loss itself pass.
    """
    losses._check_alpha(alpha)
    return [cross_entropy_term(alpha), kd_term(1 - alpha, T)]


class TeacherInside(nn.Module):
    """A student and its teacher in one module, as buggy training code often holds them.

    ``forward`` runs both on the batch, keeps the teacher's logits in ``teacher_logits`` and
    returns the student's logits. Training this module instead of the student reproduces the
    classic set-up ``model = Wrapper(student, teacher); model.train();
    optimizer = Adam(model.parameters())``: ``model.train()`` also switches the teacher to
    train mode, and the optimiser updates every teacher parameter that requires a gradient.

    ``keep_teacher_eval`` and ``teacher_no_grad`` fix one half each, so that each pitfall below
    has exactly one mistake.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, keep_teacher_eval: bool = False,
                 teacher_no_grad: bool = False):
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.keep_teacher_eval = keep_teacher_eval
        self.teacher_no_grad = teacher_no_grad
        self.teacher_logits: torch.Tensor | None = None

    def train(self, mode: bool = True) -> "TeacherInside":
        super().train(mode)
        if self.keep_teacher_eval:
            self.teacher.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.teacher_no_grad:
            with torch.no_grad():
                self.teacher_logits = self.teacher(x)
        else:
            self.teacher_logits = self.teacher(x)
        return self.student(x)


def _inside_terms(model: TeacherInside, T: float, alpha: float) -> list[LossTerm]:
    losses._check_alpha(alpha)
    losses._check_temperature(T)
    kd = LossTerm("kd", alpha, lambda s, t, y: losses.kd_loss(s["logits"], model.teacher_logits, T),
                  needs_teacher=False)
    return [cross_entropy_term(1 - alpha), kd]


def teacher_train_mode_setup(student: nn.Module, teacher: nn.Module, T: float = 4.0,
                             alpha: float = 0.9) -> tuple[TeacherInside, list[LossTerm]]:
    """BROKEN: the teacher runs in train mode during distillation. Returns ``(model, terms)``:
    train ``model`` (it holds student and teacher) with ``terms`` and ``teacher=None``.

    The only mistake: the teacher is inside the training wrapper, so ``wrapper.train()``
    switches it to train mode too (it still gets no gradients and is never updated by the
    optimiser). Its dropout is active: its soft targets are noisy and differ between two passes
    on the same batch. Its BatchNorm layers normalise with the current batch's statistics and
    overwrite their running statistics (``running_mean`` / ``running_var`` drift), so even the
    teacher's eval-mode predictions change afterwards. ``teacher`` is modified in place: pass a
    copy. Needs live teacher passes (cached outputs would hide the bug).
    """
    teacher.requires_grad_(False)
    model = TeacherInside(student, teacher, keep_teacher_eval=False, teacher_no_grad=True)
    return model, _inside_terms(model, T, alpha)


def teacher_not_frozen_setup(student: nn.Module, teacher: nn.Module, T: float = 4.0,
                             alpha: float = 0.9) -> tuple[TeacherInside, list[LossTerm]]:
    """BROKEN: the teacher is not frozen. Returns ``(model, terms)`` like
    :func:`teacher_train_mode_setup`.

    The only mistake: the teacher's parameters require gradients, its forward pass is not under
    ``torch.no_grad()``, and the optimiser (built over ``model.parameters()``) updates them; the
    teacher is kept in eval mode. The soft-target loss pulls the teacher towards the student as
    much as the student towards the teacher, so the "teacher" drifts and its accuracy can fall;
    memory and time are spent on the teacher's gradients as well. ``teacher`` is modified in
    place: pass a copy.
    """
    teacher.requires_grad_(True)
    model = TeacherInside(student, teacher, keep_teacher_eval=True, teacher_no_grad=False)
    return model, _inside_terms(model, T, alpha)


_LOSS_BUGS = {
    "missing_t_squared": kd_loss_missing_t_squared,
    "reversed_kl": kd_loss_reversed_kl,
    "mean_reduction": kd_loss_mean_reduction,
    "softmax_student": kd_loss_softmax_student,
}
_SETUP_BUGS = {"teacher_train_mode": teacher_train_mode_setup, "teacher_not_frozen": teacher_not_frozen_setup}


#: Two distillers with an undisclosed pitfall each, for the diagnosis exercise of lesson 07
#: (:func:`kdcourse.checks.check_diagnosis`). Diagnose them from their symptoms before reading
#: :data:`_MYSTERY_BUGS`.
MYSTERIES = ("mystery_a", "mystery_b")


@dataclass(frozen=True)
class _Diagnosis:
    """A mystery's pitfall, ``why`` its symptoms show it (said when the diagnosis is right), and for a wrong
    answer the ``hints`` for likely confusions (by the pitfall named) or the general ``hint``."""

    bug: str
    why: str
    hint: str
    hints: dict[str, str]


_DIAGNOSES = {
    "mystery_a": _Diagnosis(
        "mean_reduction",
        why=("its soft term is exactly 1/10 of the correct one from the very first step, and 10 is the number of "
             "classes, not T^2 = 16: F.kl_div(..., reduction='mean') averages over the 10 classes as well as over"
             " the batch. The teacher never moved. Accuracy barely suffers here because Adam rescales gradients, "
             "so only the soft/hard balance changed (0.09 : 0.1 instead of 0.9 : 0.1); on CIFAR-100 the factor "
             "would be 100."),
        hint=("Compare its first-step soft term with the correct distiller's on the same batch: by what exact "
              "factor do they differ, and did the teacher move?"),
        hints={
            "missing_t_squared": (
                "Close: the soft term is too small by a constant factor from the first step. But is that factor T^2 ="
                " 16? Compare the two 'kd' values in the table. What else in this problem equals 10?"),
            "teacher_train_mode": (
                "A teacher in train mode moves its BatchNorm statistics; look at the teacher columns for mystery_a: "
                "did anything about the teacher change?"),
            "swapped_alpha": (
                "A swapped alpha changes the weights, not the values: the weights of mystery_a are 0.1 and 0.9 as "
                "they should be. Look at the unweighted soft-term value instead."),
        },
    ),
    "mystery_b": _Diagnosis(
        "teacher_train_mode",
        why=("the teacher's weights did not move but its BatchNorm running statistics did, and its soft term at "
             "the first step differs from the correct one although the loss code is right: the teacher ran in "
             "train mode (batch statistics, dropout on). Accuracy hardly changed, which is what makes this bug "
             "dangerous: only the symptoms give it away."),
        hint=("Look at the teacher: which of its numbers changed during the student's training, and which stayed "
              "put? What changes a module's buffers but not its weights?"),
        hints={
            "teacher_not_frozen": (
                "Close: the teacher did change. But which part of it: its weights, or only its BatchNorm running "
                "statistics? Only one of the two can be changed without gradients."),
            "reversed_kl": (
                "A reversed KL changes the soft term's value, but would it change the teacher's BatchNorm statistics?"
                " Look at the teacher columns."),
        },
    ),
}
_MYSTERY_BUGS = {mystery: d.bug for mystery, d in _DIAGNOSES.items()}


def _check_name(pitfall: str | None) -> str:
    name = "correct" if pitfall is None else pitfall
    name = _MYSTERY_BUGS.get(name, name)
    if name not in ("correct", *PITFALLS):
        raise ValueError(f"unknown pitfall {pitfall!r}; choose 'correct', one of {list(PITFALLS)} "
                         f"or one of {list(MYSTERIES)}")
    return name


def pitfall_terms(pitfall: str | None, T: float = 4.0, alpha: float = 0.9) -> list[LossTerm]:
    """The loss terms of a pitfall that lives in the loss (``None`` or ``"correct"``: the
    reference); train with them and ``teacher=teacher`` as usual.

    The two teacher pitfalls are set-ups, not losses: use :func:`teacher_train_mode_setup`,
    :func:`teacher_not_frozen_setup` or simply :func:`train_with_pitfall`.
    """
    name = _check_name(pitfall)
    if pitfall in MYSTERIES:
        raise ValueError("the mysteries are diagnosed from their symptoms: train them with train_with_pitfall")
    if name in _SETUP_BUGS:
        raise ValueError(f"{name!r} is a training set-up mistake, not a loss: use {_SETUP_BUGS[name].__name__} "
                         "or train_with_pitfall")
    if name == "correct":
        return correct_terms(T, alpha)
    if name == "swapped_alpha":
        return swapped_alpha_terms(T, alpha)
    losses._check_alpha(alpha)
    return [cross_entropy_term(1 - alpha), kd_term(alpha, T, _LOSS_BUGS[name])]


def train_with_pitfall(pitfall: str | None, student: nn.Module, train_data: TensorDataset,
                       teacher: nn.Module, *, T: float = 4.0, alpha: float = 0.9,
                       teacher_cache=None, **train_kwargs) -> History:
    """Train ``student`` with one pitfall (``None`` / ``"correct"``: the correct distiller).

    Takes the arguments of :func:`kdcourse.distill.train`. The teacher pitfalls work on a deep
    copy of ``teacher`` (yours is left untouched) and need live teacher passes, so
    ``teacher_cache`` is ignored for them. The returned history has ``history.student`` and
    ``history.teacher``: the teacher as it is after training (the copy, for the teacher
    pitfalls; in the mode training left it in).
    """
    name = _check_name(pitfall)
    label = pitfall or "correct"
    if name in _SETUP_BUGS:
        used = copy.deepcopy(teacher)
        model, terms = _SETUP_BUGS[name](student, used, T, alpha)
        history = train(model, train_data, terms=terms, method=label, **train_kwargs)
        history.student = student
        student.eval()
    else:
        used = teacher
        history = train(student, train_data, teacher=teacher, terms=pitfall_terms(name, T, alpha),
                        method=label, teacher_cache=teacher_cache, **train_kwargs)
    history.teacher = used
    return history


def digits_teacher_with_dropout(width: int = 32, p: float = 0.3, num_classes: int = 10) -> DigitsCNN:
    """A :class:`~kdcourse.models.DigitsCNN` (BatchNorm after every convolution) with dropout
    before its ``head``: a teacher on which the train-mode pitfall shows (dropout noise and
    BatchNorm drift). Feature names are unchanged."""
    if not 0 <= p < 1:
        raise ValueError(f"the dropout probability p must lie in [0, 1), got {p}")
    model = DigitsCNN(width, num_classes=num_classes)
    model.head = nn.Sequential(nn.Dropout(p), nn.Linear(4 * width, num_classes))
    return model


# ---------------------------------------------------------------- symptoms (diagnostics)


def first_step_parts(pitfall: str | None, student: nn.Module, teacher: nn.Module, x: torch.Tensor,
                     y: torch.Tensor, T: float = 4.0, alpha: float = 0.9) -> dict[str, float]:
    """The loss terms of the first training step, before any update: a cheap probe to run on
    any distiller. Returns each term's value (``"ce"``, ``"kd"``, unweighted), its weight
    (``"w_ce"``, ``"w_kd"``) and ``"soft_share"``, the soft term's share of the weighted total.

    Works on copies of ``student`` and ``teacher`` (in train mode, as in training), so nothing
    you pass changes, and seeded (dropout draws repeat). Compare with ``pitfall=None`` on the
    same batch: the values should agree.
    """
    name = _check_name(pitfall)
    student, teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    if name in _SETUP_BUGS:
        model, terms = _SETUP_BUGS[name](student, teacher, T, alpha)
        distiller = Distiller(model, None, terms)
    else:
        distiller = Distiller(student, teacher, pitfall_terms(name, T, alpha))
    distiller.train()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        total, parts, _ = distiller.compute_loss(x, y)
    out = dict(parts)
    for term in distiller.terms:
        out[f"w_{term.name}"] = float(term.weight)
    out["soft_share"] = out["w_kd"] * out["kd"] / float(total)
    return out


def teacher_drift(before: nn.Module, after: nn.Module) -> dict[str, float]:
    """How far a teacher moved during distillation (it should not move at all).

    ``"weights"``: the largest absolute change of any parameter; ``"bn_statistics"``: the
    largest absolute change of any BatchNorm running mean or variance. Take ``before`` as a
    deep copy made before training.
    """
    b_params, a_params = dict(before.named_parameters()), dict(after.named_parameters())
    if b_params.keys() != a_params.keys():
        raise ValueError("before and after are not the same architecture")
    weights = max(float((a_params[k].detach() - b_params[k].detach()).abs().max()) for k in b_params)
    b_buf, a_buf = dict(before.named_buffers()), dict(after.named_buffers())
    stats = [k for k in b_buf if k.endswith(("running_mean", "running_var"))]
    bn = max((float((a_buf[k] - b_buf[k]).abs().max()) for k in stats), default=0.0)
    return {"weights": weights, "bn_statistics": bn}
