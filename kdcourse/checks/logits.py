"""Checkers for the logit exercises of lessons 01 and 02.

Each checker calls the learner's function on fixed inputs (several temperatures, batches of more
than one example, logits where the direction of the KL matters) and compares it with the
reference in :mod:`kdcourse.losses`. When the answer is wrong it does not guess: it computes what
each classic mistake would return on the same inputs and names the one that matches every case.

    >>> check_kd_loss(kd_loss)
    ✓ kd_loss matches the reference on 6 test cases (T = 1, 2, 4, 10; batches of 4x5 and 3x7 logits) and passes gradients to the student.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import torch

from .. import losses
from ..mistakes.wrong_losses import (
    HARD_TERM_SLIPS,
    SOFT_TERM_SLIPS,
    WEIGHT_SLIPS,
    distillation_loss_with,
    kd_loss_with,
)
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


_call = functools.partial(engine.call, in_place=_IN_PLACE)  # the engine's call, with the in-place message of logits


_shaped_like_input = engine.tensor_like(lambda case: case[0].shape, finite=False,
                                         numpy_hint=engine.mistake("answer.numpy_logits"))


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
    if not engine.close(_shaped_like_input(name, shown, out, (z, T)), expected):
        raise engine.fail("softmax_with_temperature.one_example_dim", name=name, shown=shown, got=fmt(out),
                          expected=fmt(expected))
    z, T = _SOFTMAX_LARGE
    shown = "logits around 1000, T=1"
    expected = losses.softmax_with_temperature(z, T)
    out = _shaped_like_input(name, shown, _call(fn, name, (z, T), shown), (z, T))
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
    return out if isinstance(out, torch.Tensor) else _shaped_like_input(name, shown, out, case)


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

def _kd_variants() -> list[engine.Variant]:
    variants = []
    for slips in itertools.product(*[("ok", *ids) for ids in SOFT_TERM_SLIPS.values()]):
        mistakes = tuple(m for m in slips if m != "ok")
        if "temperature_missing" in mistakes and "missing_t_squared" in mistakes:  # the plain KL, named as such
            if len(mistakes) == 2:
                variants.append(engine.Variant(("plain_kl",), kd_loss_with("plain_kl")))
            continue
        if slips[-1] != "ok" and len(mistakes) > 3:
            continue  # a wrong softmax dimension is named with at most two other slips
        variants.append(engine.Variant(mistakes, kd_loss_with(*mistakes)))
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

# the soft-term mistakes tried inside the sum (kdcourse.mistakes.wrong_losses)
_SOFT_FOR_MIX = ("missing_t_squared", "reversed_kl", "mean_reduction", "temperature_missing", "softmax_student",
                 "softmax_over_batch")


def _distill_variants() -> list[engine.Variant]:
    variants = []
    for slips in itertools.product((None, *WEIGHT_SLIPS), (None, *HARD_TERM_SLIPS), (None, *_SOFT_FOR_MIX)):
        mistakes = tuple(m for m in slips if m)
        variants.append(engine.Variant(mistakes, distillation_loss_with(*mistakes)))
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
