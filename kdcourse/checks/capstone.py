"""Checkers for lesson 08 (CIFAR-10 capstone): the cross-entropy of a transfer set (labels -1 skipped),
``labeled_cross_entropy(logits, y)``, and attention transfer between layers
of different names, ``paired_attention_loss(student_out, teacher_out, pairs)``.

    >>> check_paired_attention_loss(paired_attention_loss)
    ✓ paired_attention_loss matches the reference on 3 test cases ...
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import mistakes as _catalogue
from ..distill import labeled_cross_entropy as _labeled_ce_reference
from ..losses import attention_map
from ..methods import paired_attention_loss as _reference
from . import engine
from .engine import accepted, fmt, randn, row
from .features import _q as _raw_q  # the attention map before its L2 normalisation

__all__ = ["check_paired_attention_loss", "check_labeled_cross_entropy"]

_PAIRS = {"layer1": "layer2", "layer2": "layer3"}


def _outputs(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    return {name: randn(*shape, seed=seed + i) for i, (name, shape) in enumerate(shapes.items())}


# Student layer1 is 4x4 like teacher layer2, student layer2 2x2 like teacher layer3: pairing by the
# same name (or the wrong way round) mixes resolutions. Case 3 has a single pair between layers whose
# names differ (a teacher of another architecture), so a student name used on the teacher's outputs
# raises a KeyError there.
_SHAPES_S = {"layer1": (4, 3, 4, 4), "layer2": (4, 5, 2, 2), "layer3": (4, 6, 1, 1), "logits": (4, 10)}
_SHAPES_T = {"layer1": (4, 2, 8, 8), "layer2": (4, 7, 4, 4), "layer3": (4, 9, 2, 2), "logits": (4, 10)}
_STUDENT, _TEACHER = _outputs(_SHAPES_S, seed=30), _outputs(_SHAPES_T, seed=40)
_TEACHER_RENAMED = {"block3": _TEACHER["layer3"], "logits": _TEACHER["logits"]}
_CASES = [
    (_STUDENT, _TEACHER, _PAIRS),
    (_outputs(_SHAPES_S, seed=60), _outputs(_SHAPES_T, seed=70), _PAIRS),
    (_STUDENT, _TEACHER_RENAMED, {"layer2": "block3"}),
]


def _show(case: tuple) -> str:
    s, _, pairs = case
    what = "one pair" if len(pairs) == 1 else "two pairs" if s is _STUDENT else "two pairs, other values"
    return f"pairs={pairs}, {what}"


def _per_pair(s, t, pairs, q=attention_map, reduce=lambda d: d.pow(2).mean()):
    return [reduce(q(s[a]) - q(t[b])) for a, b in pairs.items()]


def _variants() -> list[engine.Variant]:
    m = "paired_attention_loss."
    return [
        accepted(lambda s, t, p: _reference(s, t, p)),
        row(m + "mean_over_pairs", lambda s, t, p: sum(_per_pair(s, t, p)) / len(p)),
        row(m + "per_example_norm", lambda s, t, p: sum(_per_pair(s, t, p, reduce=lambda d: d.pow(2).sum(1).mean()))),
        row(m + "sum", lambda s, t, p: sum(_per_pair(s, t, p, reduce=lambda d: d.pow(2).sum()))),
        row(m + "norm_not_square", lambda s, t, p: sum(_per_pair(s, t, p, reduce=lambda d: d.norm(dim=1).mean()))),
        row(m + "student_not_normalised",
             lambda s, t, p: sum((_raw_q(s[a], 2) - attention_map(t[b])).pow(2).mean() for a, b in p.items())),
        row(m + "not_normalised", lambda s, t, p: sum(_per_pair(s, t, p, q=lambda x: _raw_q(x, 2)))),
        row(m + "p_one", lambda s, t, p: sum(_per_pair(s, t, p, q=lambda x: attention_map(x, 1)))),
    ]


_ITEMS = "`for student_name, teacher_name in pairs.items():`"


def _error_hint(error: Exception, student_out=None, teacher_out=None, pairs=None) -> str:
    text = str(error)
    if isinstance(error, KeyError):
        key = error.args[0] if error.args else None
        if pairs and key in pairs and teacher_out is not None and key not in teacher_out:
            return ("\n" + engine.mistake("paired_attention_loss.student_name_on_teacher", key=f"{key!r}",
                                          teacher_layers=', '.join(repr(k) for k in teacher_out), items=_ITEMS))
        if pairs and key in pairs.values() and student_out is not None and key not in student_out:
            return ("\n" + engine.mistake("paired_attention_loss.teacher_name_on_student", key=f"{key!r}",
                                          items=_ITEMS))
        return ("\n" + engine.mistake("paired_attention_loss.missing_layer"))
    if isinstance(error, ValueError) and "values to unpack" in text:
        return ("\n" + engine.mistake("paired_attention_loss.iterating_over_keys", items=_ITEMS))
    if "size of tensor" in text or "spatial size" in text or "shape" in text:
        return ("\n" + engine.mistake("paired_attention_loss.maps_differ"))
    return ""


def _reaches_layer1(exercise, name: str, fn: Callable) -> None:
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    s = {k: v.clone().requires_grad_(True) for k, v in _STUDENT.items()}
    engine.check_gradient(name, fn(s, _TEACHER, _PAIRS), s["layer1"], "the student's layer1 features")


PAIRED_ATTENTION_LOSS = engine.Exercise(
    "paired_attention_loss", _reference, _CASES, show=_show, variants=_variants,
    success="{name} matches the reference on {n} test cases (two pairs and one, layers of different names), and the "
            "gradient reaches the student's features.",
    fallback=lambda exercise, name, out, e, case: (
        engine.mistake("paired_attention_loss.unexplained", name=name, shown=_show(case), out=fmt(out),
                       expected=fmt(e))),
    output=lambda name, shown, out, case: engine.scalar_output(name, shown, out, 4),
    on_match=_reaches_layer1, collect_errors=True, error_hint=lambda error, case: _error_hint(error, *case),
)


check_paired_attention_loss = engine.checker(PAIRED_ATTENTION_LOSS, """
    Check ``fn(student_out, teacher_out, pairs)`` against
    :func:`kdcourse.methods.paired_attention_loss`: for every ``{student layer: teacher layer}``
    pair the mean squared difference of the unit-norm attention maps, summed over the pairs.
    """)


# ------------------------------------------------------------------ lesson 08: the transfer set

_CE_LOGITS = [randn(6, 5, seed=50), randn(6, 5, seed=51), randn(4, 5, seed=52), randn(5, 5, seed=53)]
_CE_LABELS = [torch.tensor([3, -1, 0, -1, -1, 4]), torch.tensor([1, 2, 0, 4, 3, 2]), torch.full((4,), -1),
              torch.tensor([-1, -1, 2, -1, -1])]
_CE_WHAT = ["3 labelled and 3 unlabelled rows", "every row labelled", "no labelled row", "one labelled row"]


def _ce_rows(logits, y):
    keep = y != -1
    return torch.nn.functional.cross_entropy(logits[keep], y[keep], reduction="sum"), int(keep.sum())


def _ce_variants() -> list[engine.Variant]:
    def over_batch(z, y):
        total, _ = _ce_rows(z, y)
        return total / len(y)

    def nan_when_empty(z, y):
        total, n = _ce_rows(z, y)
        return total / n if n else torch.tensor(float("nan"))

    m = "labeled_cross_entropy."
    return [
        accepted(_labeled_ce_reference),
        row(m + "over_batch", over_batch),
        row(m + "nan_when_empty", nan_when_empty),
        row(m + "sum", lambda z, y: _ce_rows(z, y)[0]),
    ]


def _ce_show(case: tuple) -> str:
    return _CE_WHAT[next(i for i, y in enumerate(_CE_LABELS) if y is case[1])]


def _ce_output(name: str, what: str, out, case: tuple):
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    try:
        return engine.scalar_output(name, what, out, len(case[1]))
    except AssertionError as bad:
        if "NaN" in str(bad) and not bool((case[1] != -1).any()):
            raise AssertionError(f"{name}: {_catalogue.message('labeled_cross_entropy.nan_when_empty')}") from None
        raise


def _ce_error_hint(error: BaseException, case: tuple) -> str:
    if "Target -1" in str(error) or "out of bounds" in str(error):
        return ("\n" + engine.mistake("labeled_cross_entropy.label_minus_one"))
    return ""


LABELED_CROSS_ENTROPY = engine.Exercise(
    "labeled_cross_entropy", _labeled_ce_reference, list(zip(_CE_LOGITS, _CE_LABELS)), show=_ce_show,
    variants=_ce_variants,
    success=f"{{name}} matches the reference on {{n}} batches ({', '.join(_CE_WHAT)}), and the gradient reaches the logits.",
    fallback=lambda exercise, name, out, e, case: (
        engine.mistake("labeled_cross_entropy.unexplained", name=name, batch=_ce_show(case), out=fmt(out),
                       expected=fmt(e))),
    output=_ce_output, on_match=engine.gradient_to("the student's logits"), collect_errors=True,
    error_hint=_ce_error_hint,
)


check_labeled_cross_entropy = engine.checker(LABELED_CROSS_ENTROPY, """
    Check ``fn(logits, y)`` against :func:`kdcourse.distill.labeled_cross_entropy`: the
    cross-entropy averaged over the rows whose label is not ``-1``, and 0 when there is none.""")
