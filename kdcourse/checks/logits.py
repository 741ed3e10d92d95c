"""Checkers for the logit exercises of lessons 01 and 02.

Each checker calls the learner's function on fixed inputs (several temperatures, batches of more
than one example, logits where the direction of the KL matters) and compares it with the
reference in :mod:`kdcourse.losses`. When the answer is wrong it does not guess: it computes what
each classic mistake would return on the same inputs and names the one that matches every case.

    >>> check_kd_loss(kd_loss)
    ✓ kd_loss matches the reference on 6 test cases (T = 1, 2, 4, 10; batches of 4x5 and 3x7 logits) and passes gradients to the student.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import losses
from . import engine
from .engine import accepted, fmt, row

__all__ = [
    "check_softmax_with_temperature",
    "check_entropy",
    "check_kd_loss",
    "check_distillation_loss",
]

# ------------------------------------------------------------------ fixed inputs

# Teacher logits of 4 examples over 5 classes, each confident but with a clear "second choice",
# and student logits that disagree in places: KL(t || s) and KL(s || t) differ clearly here.
_TEACHER = torch.tensor([
    [6.0, 2.5, 0.5, -1.0, 1.0],
    [-0.5, 5.0, 3.5, 0.0, -2.0],
    [1.0, 0.0, -1.5, 4.5, 3.0],
    [0.5, -1.0, 2.0, 1.5, 5.5],
])
_STUDENT = torch.tensor([
    [2.0, 1.5, 1.0, 0.0, -0.5],
    [0.5, 2.0, -1.0, 1.0, 0.0],
    [-1.0, 0.5, 0.0, 1.0, 2.5],
    [1.5, 0.0, 0.5, -0.5, 1.0],
])
_TARGETS = torch.tensor([0, 1, 3, 2])  # the last example: the teacher is wrong (argmax 4)

# A second shape (3 examples, 7 classes), so "off by the number of classes" and "off by the
# batch size" are told apart.
_TEACHER_B = torch.tensor([
    [3.0, -1.0, 0.5, 2.0, -2.0, 1.0, 0.0],
    [-1.5, 0.5, 4.0, 0.0, 1.0, -0.5, 2.5],
    [0.0, 2.0, -1.0, 1.0, 0.5, 5.0, -1.0],
])
_STUDENT_B = torch.tensor([
    [1.0, 0.0, 0.5, 1.5, -1.0, 0.0, 0.5],
    [0.0, 1.0, 1.0, -0.5, 2.0, 0.0, 0.5],
    [0.5, 0.5, -0.5, 0.0, 1.0, 1.5, 0.0],
])
_TARGETS_B = torch.tensor([0, 2, 5])

_SOFTMAX_INPUTS = [
    (_TEACHER, 1.0),
    (_TEACHER, 2.0),
    (_TEACHER, 4.0),
    (_STUDENT_B, 0.5),
    (_TEACHER_B, 10.0),
]
# A single example (1-D) and large logits come last: they test generality and numerical
# stability once the formula itself is known to be right.
_SOFTMAX_VECTOR = (torch.tensor([2.0, 1.0, 0.1, -1.0]), 3.0)
_SOFTMAX_LARGE = (torch.tensor([[1000.0, 998.0, 990.0], [-5.0, 0.0, 1000.0]]), 1.0)

_KD_INPUTS = [
    (_STUDENT, _TEACHER, 1.0),
    (_STUDENT, _TEACHER, 2.0),
    (_STUDENT, _TEACHER, 4.0),
    (_STUDENT, _TEACHER, 10.0),
    (_STUDENT_B, _TEACHER_B, 1.0),
    (_STUDENT_B, _TEACHER_B, 4.0),
]
_DISTILL_INPUTS = [
    (_STUDENT, _TEACHER, _TARGETS, 4.0, 0.9),
    (_STUDENT, _TEACHER, _TARGETS, 2.0, 0.3),
    (_STUDENT, _TEACHER, _TARGETS, 4.0, 1.0),
    (_STUDENT, _TEACHER, _TARGETS, 4.0, 0.0),
    (_STUDENT_B, _TEACHER_B, _TARGETS_B, 10.0, 0.7),
    (_STUDENT_B, _TEACHER_B, _TARGETS_B, 1.0, 0.5),
    (_STUDENT_B, _TEACHER_B, _TARGETS_B, 3.0, 0.9),
]


# ------------------------------------------------------------------ shared helpers


_IN_PLACE = engine.mistake("answer.in_place_logits")
_NUMPY_HINT = engine.mistake("answer.numpy_logits")


def _call(fn: Callable, name: str, args: tuple, shown: str):
    """The engine's call, with the in-place message of logits."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    return engine.call(fn, name, args, shown, in_place=_IN_PLACE)


def _check_output(name: str, shown: str, out, expected: torch.Tensor) -> torch.Tensor:
    """Type and shape checks for a function that returns one tensor shaped like its input."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    return engine.tensor_output(name, shown, out, expected.shape, finite=False, numpy_hint=_NUMPY_HINT)


_shaped_like_input = engine.tensor_like(lambda case: case[0].shape, finite=False, numpy_hint=_NUMPY_HINT)


# ------------------------------------------------------------------ softmax with temperature


def _softmax_variants() -> list[engine.Variant]:
    m = "softmax_with_temperature."
    return [
        accepted(lambda z, T: torch.softmax(z / T, -1)),
        row(m + "no_temperature", lambda z, T: torch.softmax(z, -1)),
        row(m + "multiplied_by_t", lambda z, T: torch.softmax(z * T, -1)),
        row(m + "divided_twice", lambda z, T: torch.softmax(z / T ** 2, -1)),
        row(m + "divided_after", lambda z, T: torch.softmax(z, -1) / T),
        row(m + "log_probabilities", lambda z, T: torch.log_softmax(z / T, -1)),
        row(m + "not_normalised", lambda z, T: torch.exp(z / T)),
        row(m + "whole_tensor_sum", lambda z, T: torch.exp(z / T) / torch.exp(z / T).sum()),
        row(m + "whole_tensor_sum_no_temperature", lambda z, T: torch.exp(z) / torch.exp(z).sum()),
        row(m + "no_softmax", lambda z, T: z / T),
        row(m + "over_batch", lambda z, T: torch.softmax(z / T, 0)),
        row(m + "over_batch_no_temperature", lambda z, T: torch.softmax(z, 0)),
    ]


def _softmax_fallback(exercise, name, out, expected, case) -> str:
    z, T = case
    sums = out.detach().sum(-1)
    extra = "" if torch.allclose(sums, torch.ones_like(sums), atol=1e-4) else f" Its rows sum to {fmt(sums)}, not 1."
    return (engine.mistake("softmax_with_temperature.unexplained", name=name, first=fmt(z[0]), temperature=f"{T:g}",
                           got=fmt(out[0]), expected=fmt(expected[0]), extra=extra))


def _softmax_edges(exercise, name: str, fn: Callable) -> None:
    """Once the formula is right: one example (a 1-D tensor), then logits around 1000."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    z, T = _SOFTMAX_VECTOR
    shown = f"a single vector of logits {fmt(z)}, T={T:g}"
    expected = losses.softmax_with_temperature(z, T)
    try:
        out = _call(fn, name, (z, T), shown)
    except AssertionError as error:
        raise AssertionError(f"{error}\n" + engine.mistake("softmax_with_temperature.fails_on_one_example")) from None
    if not engine.close(_check_output(name, shown, out, expected), expected):
        raise engine.fail("softmax_with_temperature.one_example_dim", name=name, shown=shown, got=fmt(out),
                          expected=fmt(expected))
    z, T = _SOFTMAX_LARGE
    shown = "logits around 1000, T=1"
    expected = losses.softmax_with_temperature(z, T)
    out = _check_output(name, shown, _call(fn, name, (z, T), shown), expected)
    if not torch.isfinite(out).all():
        raise engine.fail("softmax_with_temperature.overflow", name=name, shown=shown, got=fmt(out))
    if not engine.close(out, expected):
        raise AssertionError(engine.generic(name, shown, expected, out))


SOFTMAX_WITH_TEMPERATURE = engine.Exercise(
    "softmax_with_temperature", losses.softmax_with_temperature, _SOFTMAX_INPUTS,
    show=lambda c: f"logits of shape {tuple(c[0].shape)}, T={c[1]:g}", variants=_softmax_variants,
    success=f"{{name}} matches the reference on {len(_SOFTMAX_INPUTS) + 2} test cases "
            "(T = 0.5 to 10, batches and a single vector, large logits).",
    fallback=_softmax_fallback, output=_shaped_like_input, on_match=_softmax_edges, in_place=_IN_PLACE,
)


check_softmax_with_temperature = engine.checker(SOFTMAX_WITH_TEMPERATURE, """
    Check ``fn(logits, T)`` against :func:`kdcourse.losses.softmax_with_temperature`.

    Cases: batches of 4x5 and 3x7 logits at T = 0.5, 1, 2, 4, 10, then one 1-D vector of logits
    and logits around 1000 (a naive ``exp`` overflows there).
    """)


# ------------------------------------------------------------------ entropy

_ENTROPY_INPUTS = [
    (torch.softmax(_TEACHER, -1),),
    (torch.softmax(_STUDENT_B / 3.0, -1),),
    (torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]]),),
]


def _entropy_variants() -> list[engine.Variant]:
    def h(p):
        return -torch.special.xlogy(p, p)

    m = "entropy."
    return [
        accepted(lambda p: h(p).sum(-1)),
        row(m + "bits", lambda p: h(p).sum(-1) / math.log(2)),
        row(m + "no_minus", lambda p: -h(p).sum(-1)),
        row(m + "mean_over_classes", lambda p: h(p).mean(-1)),
        row(m + "sum_over_batch", lambda p: h(p).sum()),
        row(m + "mean_over_batch", lambda p: h(p).sum(-1).mean()),
        row(m + "sum_over_dim0", lambda p: h(p).sum(0)),
        row(m + "no_weights", lambda p: -torch.log(p).sum(-1)),
    ]


def _entropy_output(name: str, shown: str, out, case: tuple):
    """Any tensor is judged on its values (a wrong shape is a mistake the diagnosis names)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    return out if isinstance(out, torch.Tensor) else _check_output(name, shown, out, case[0])


def _entropy_of_zeros(name: str, outputs: list, expected: list) -> str | None:
    """NaN from 0 * log(0) is its own mistake, once the other cases are right."""
    if all(engine.close(o, e) for o, e in zip(outputs[:2], expected[:2])) and not torch.isfinite(outputs[2]).all():
        return engine.mistake("entropy.nan_at_zero", name=name, got=fmt(outputs[2]))
    return None


ENTROPY = engine.Exercise(
    "entropy", losses.entropy, _ENTROPY_INPUTS, show=lambda c: f"probs of shape {tuple(c[0].shape)}",
    variants=_entropy_variants,
    success="{name} matches the reference on {n} test cases (including probabilities that are exactly 0).",
    fallback=lambda exercise, name, out, e, case: (
        f"{name}(probs of shape {tuple(case[0].shape)}) returned {fmt(out)}, expected {fmt(e)} (one value per "
        "row). No classic mistake explains this; compare your code with H(p) = -sum_i p_i log p_i over the last "
        "dimension."),
    output=_entropy_output, in_place=_IN_PLACE, diagnose_on=2, before_diagnosis=_entropy_of_zeros,
)


check_entropy = engine.checker(ENTROPY, """
    Check ``fn(probs)`` -> one entropy (in nats) per row, :math:`H(p) = -\\sum_i p_i \\log p_i`.

    The last case holds exact zeros: :math:`0 \\log 0` counts as 0, so a naive ``p * log(p)`` gives nan.
    """)


# ------------------------------------------------------------------ kd_loss

def _kd_variant(scale: str, direction: str, reduction: str, temp: str, form: str, dim: str = "ok") -> Callable:
    """KD loss under one combination of mistakes (each argument "ok" or an id of kdcourse.mistakes.CATALOGUE)."""

    def fn(s, t, T):
        zs = s * T if temp == "temperature_multiplied" else (
            s if temp in ("temperature_missing", "temperature_teacher_only") else s / T)
        zt = t * T if temp == "temperature_multiplied" else (
            t if temp in ("temperature_missing", "temperature_student_only") else t / T)
        if direction == "reversed_kl":
            zs, zt = zt, zs
        dim_s = 0 if dim in ("softmax_over_batch", "student_softmax_over_batch") else 1  # batch, or classes
        dim_t = 0 if dim in ("softmax_over_batch", "teacher_softmax_over_batch") else 1
        log_ps, log_pt = F.log_softmax(zs, dim_s), F.log_softmax(zt, dim_t)
        if form == "softmax_student":
            per = log_pt.exp() * (log_pt - log_ps.exp())  # kl_div(input=p_s, target=p_t)
        elif form == "log_target":
            per = F.kl_div(log_ps, log_pt, reduction="none")  # nan: log of a negative "probability"
        elif form == "cross_entropy_not_kl":
            per = -log_pt.exp() * log_ps
        else:
            per = log_pt.exp() * (log_pt - log_ps)
        if reduction == "mean_reduction":
            value = per.mean()
        elif reduction == "sum_reduction":
            value = per.sum()
        else:
            value = per.sum() / s.shape[0]
        factor = {"ok": T * T, "missing_t_squared": 1.0, "t_not_squared": T}[scale]
        return value * factor

    return fn


def _kd_variants() -> list[engine.Variant]:
    variants = []
    for scale, direction, reduction, temp, form, dim in itertools.product(
        ("ok", "missing_t_squared", "t_not_squared"), ("ok", "reversed_kl"),
        ("ok", "mean_reduction", "sum_reduction"),
        ("ok", "temperature_student_only", "temperature_teacher_only", "temperature_missing", "temperature_multiplied"),
        ("ok", "softmax_student", "log_target", "cross_entropy_not_kl"),
        ("ok", "softmax_over_batch", "student_softmax_over_batch", "teacher_softmax_over_batch"),
    ):
        if temp == "temperature_missing" and scale == "missing_t_squared":
            mistakes = ("plain_kl",)
            if (direction, reduction, form, dim) != ("ok", "ok", "ok", "ok"):
                continue
        else:
            mistakes = tuple(k for k in (scale, direction, reduction, temp, form, dim) if k != "ok")
            if dim != "ok" and len(mistakes) > 3:
                continue  # a wrong softmax dimension is named with at most two other slips
        variants.append(engine.Variant(mistakes, _kd_variant(scale, direction, reduction, temp, form, dim)))
    return variants


def _near_usual_temperature(cases: list[tuple]) -> Callable:
    """The wrong case to quote in a message: the one closest to the usual T = 4 (T is argument 3 or 4)."""
    def quoted(outputs, expected) -> int:
        wrong = [i for i, (o, e) in enumerate(zip(outputs, expected)) if not engine.close(o, e)]
        return min(wrong, key=lambda i: (abs(math.log(cases[i][-1 if len(cases[i]) == 3 else 3] / 4.0)), i))
    return quoted


def _scalar_output(name: str, shown: str, out, case: tuple) -> torch.Tensor:
    batch = case[0].shape[0]
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    out = engine.tensor_output(name, shown, out, finite=False)
    if out.shape != ():
        if out.dim() == 1 and out.shape[0] == batch:
            hint = (" " + engine.mistake("kd_loss.one_value_per_example"))
        elif out.dim() == 2:
            hint = (" " + engine.mistake("kd_loss.one_value_per_class"))
        else:
            hint = " " + engine.mistake("kd_loss.reduce_to_one")
        raise engine.fail("kd_loss.not_a_scalar", name=name, shown=shown, out_shape=tuple(out.shape), hint=hint)
    return out


def _reaches_the_student(exercise, name: str, fn: Callable) -> None:
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    case = exercise.cases[2 if exercise.name == "kd_loss" else 0]
    s = case[0].clone().requires_grad_(True)
    shown = exercise.show(case)
    out = _call(fn, name, (s, *case[1:]), shown)
    if not out.requires_grad:
        raise engine.fail("answer.no_gradient_to_logits", name=name, shown=shown)


KD_LOSS = engine.Exercise(
    "kd_loss", losses.kd_loss, _KD_INPUTS,
    show=lambda c: f"student and teacher logits of shape {tuple(c[0].shape)}, T={c[2]:g}", variants=_kd_variants,
    success="{name} matches the reference on {n} test cases (T = 1, 2, 4, 10; batches of 4x5 and 3x7 logits) and passes "
            "gradients to the student.",
    fallback=lambda exercise, name, out, e, case: engine.generic(
        name, f"logits of shape {tuple(case[0].shape)}, T={case[2]:g}", e, out),
    output=_scalar_output, on_match=_reaches_the_student, in_place=_IN_PLACE,
    numbers=lambda c: {"T": c[2], "B": c[0].shape[0], "C": c[0].shape[1]}, quote=engine.at_case,
    quoted=_near_usual_temperature(_KD_INPUTS),
)


check_kd_loss = engine.checker(KD_LOSS, """
    Check ``fn(student_logits, teacher_logits, T)`` against :func:`kdcourse.losses.kd_loss`.

    Cases: 4x5 and 3x7 logits at T = 1, 2, 4, 10. The message names the mistake (missing T^2,
    reversed KL, ``reduction="mean"``, probabilities instead of log-probabilities, T on one side
    only, ...) whose value matches the learner's output on every case.
    """)


# ------------------------------------------------------------------ distillation_loss

# Each kind of slip in L = alpha * soft + (1 - alpha) * hard, by its id in kdcourse.mistakes.CATALOGUE.
_WEIGHTS = {
    "ok": lambda a: (a, 1 - a),
    "swapped_alpha": lambda a: (1 - a, a),
    "hard_unweighted": lambda a: (a, 1.0),
    "soft_unweighted": lambda a: (1.0, 1 - a),
    "alpha_both": lambda a: (a, a),
    "no_weights": lambda a: (1.0, 1.0),
    "soft_only": lambda a: (1.0, 0.0),
    "hard_only": lambda a: (0.0, 1.0),
}
# the soft-term mistakes tried inside the sum: (scale, direction, reduction, temperature, form, dim) of _kd_variant
_SOFT_FOR_MIX = {
    "ok": ("ok", "ok", "ok", "ok", "ok"),
    "missing_t_squared": ("missing_t_squared", "ok", "ok", "ok", "ok"),
    "reversed_kl": ("ok", "reversed_kl", "ok", "ok", "ok"),
    "mean_reduction": ("ok", "ok", "mean_reduction", "ok", "ok"),
    "temperature_missing": ("ok", "ok", "ok", "temperature_missing", "ok"),
    "softmax_student": ("ok", "ok", "ok", "ok", "softmax_student"),
    "softmax_over_batch": ("ok", "ok", "ok", "ok", "ok", "softmax_over_batch"),
}


_HARD_TERMS = {  # the hard term under each slip (an id of kdcourse.mistakes), of (student, teacher logits, labels, T)
    "ok": lambda s, t, y, T: F.cross_entropy(s, y),
    "ce_at_temperature": lambda s, t, y, T: F.cross_entropy(s / T, y),
    "ce_at_temperature_t_squared": lambda s, t, y, T: F.cross_entropy(s / T, y) * T * T,
    "ce_sum": lambda s, t, y, T: F.cross_entropy(s, y, reduction="sum"),
    "ce_teacher_labels": lambda s, t, y, T: F.cross_entropy(s, t.argmax(1)),
    "ce_on_probabilities": lambda s, t, y, T: F.cross_entropy(torch.softmax(s, 1), y),
    "ce_scaled_t_squared": lambda s, t, y, T: F.cross_entropy(s, y) * T * T,
    "nll_on_logits": lambda s, t, y, T: F.nll_loss(s, y),
    "nll_on_probabilities": lambda s, t, y, T: F.nll_loss(torch.softmax(s, 1), y),
}


def _distill_variants() -> list[engine.Variant]:
    variants = []
    for weights, hard, soft in itertools.product(_WEIGHTS, _HARD_TERMS, _SOFT_FOR_MIX):
        soft_fn = _kd_variant(*_SOFT_FOR_MIX[soft])

        def fn(s, t, y, T, alpha, soft_fn=soft_fn, weights=weights, hard=hard):
            w_soft, w_hard = _WEIGHTS[weights](alpha)
            return w_soft * soft_fn(s, t, T) + w_hard * _HARD_TERMS[hard](s, t, y, T)

        variants.append(engine.Variant(tuple(m for m in (weights, hard, soft) if m != "ok"), fn))
    return variants


DISTILLATION_LOSS = engine.Exercise(
    "distillation_loss", losses.distillation_loss, _DISTILL_INPUTS,
    show=lambda c: f"logits of shape {tuple(c[0].shape)}, T={c[3]:g}, alpha={c[4]:g}", variants=_distill_variants,
    success="{name} matches the reference on {n} test cases (alpha = 0 to 1, T = 1 to 10, two batches) and passes "
            "gradients to the student.",
    fallback=lambda exercise, name, out, e, case: engine.generic(name, exercise.show(case), e, out),
    output=_scalar_output, on_match=_reaches_the_student, in_place=_IN_PLACE,
    numbers=lambda c: {"T": c[3], "B": c[0].shape[0], "C": c[0].shape[1], "alpha": c[4]}, quote=engine.at_case,
    quoted=_near_usual_temperature(_DISTILL_INPUTS),
)


check_distillation_loss = engine.checker(DISTILLATION_LOSS, """
    Check ``fn(student_logits, teacher_logits, targets, T, alpha)`` against
    :func:`kdcourse.losses.distillation_loss`: ``alpha * T^2 KL(p_t || p_s) + (1 - alpha) CE(y, p_s)``.

    Cases: alpha = 0, 0.3, 0.5, 0.7, 0.9, 1 and T = 1 to 10 on two batches (in one of them the teacher
    is wrong on an example). Named mistakes: alpha swapped or missing, CE at temperature T, CE
    reduction, teacher labels instead of true labels, and the main soft-term mistakes.
    """)
