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
from ..losses import attention_map
from ..methods import paired_attention_loss as _reference
from .engine import Exercise as _Exercise
from .engine import Variant as _Variant
from .engine import accepted as _accepted
from .engine import check as _check
from .engine import check_gradient as _check_gradient
from .engine import fmt as _fmt
from .engine import randn as _randn
from .engine import row as _row
from .engine import scalar_output as _scalar_output

__all__ = ["check_paired_attention_loss"]

_PAIRS = {"layer1": "layer2", "layer2": "layer3"}


def _outputs(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    return {name: _randn(*shape, seed=seed + i) for i, (name, shape) in enumerate(shapes.items())}


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


def _raw_q(x: torch.Tensor) -> torch.Tensor:
    """The map without the L2 normalisation."""
    return x.abs().pow(2).mean(1).flatten(1)


def _per_pair(s, t, pairs, q=attention_map, reduce=lambda d: d.pow(2).mean()):
    return [reduce(q(s[a]) - q(t[b])) for a, b in pairs.items()]


def _variants() -> list[_Variant]:
    m = "paired_attention_loss."
    return [
        _accepted(lambda s, t, p: _reference(s, t, p)),
        _row(m + "mean_over_pairs", lambda s, t, p: sum(_per_pair(s, t, p)) / len(p)),
        _row(m + "per_example_norm", lambda s, t, p: sum(_per_pair(s, t, p, reduce=lambda d: d.pow(2).sum(1).mean()))),
        _row(m + "sum", lambda s, t, p: sum(_per_pair(s, t, p, reduce=lambda d: d.pow(2).sum()))),
        _row(m + "norm_not_square", lambda s, t, p: sum(_per_pair(s, t, p, reduce=lambda d: d.norm(dim=1).mean()))),
        _row(m + "student_not_normalised",
             lambda s, t, p: sum((_raw_q(s[a]) - attention_map(t[b])).pow(2).mean() for a, b in p.items())),
        _row(m + "not_normalised", lambda s, t, p: sum(_per_pair(s, t, p, q=_raw_q))),
        _row(m + "p_one", lambda s, t, p: sum(_per_pair(s, t, p, q=lambda x: attention_map(x, 1)))),
    ]


_ITEMS = "`for student_name, teacher_name in pairs.items():`"


def _error_hint(error: Exception, student_out=None, teacher_out=None, pairs=None) -> str:
    text = str(error)
    if isinstance(error, KeyError):
        key = error.args[0] if error.args else None
        if pairs and key in pairs and teacher_out is not None and key not in teacher_out:
            return (f"\nteacher_out has no layer {key!r}: that is the STUDENT's layer name, and the teacher's "
                    f"layers have their own names here ({', '.join(repr(k) for k in teacher_out)}); reading both "
                    "dicts under the same name only works while the two networks happen to share their names "
                    "(and even then it pairs layers of different resolutions). `pairs` maps a student layer to the "
                    "teacher layer it learns from: read student_out[student_name] and teacher_out[teacher_name], "
                    f"{_ITEMS}")
        if pairs and key in pairs.values() and student_out is not None and key not in student_out:
            return (f"\nstudent_out has no layer {key!r}: that is the TEACHER's layer name. `pairs` maps student "
                    "layer -> teacher layer: read student_out[student_name] and teacher_out[teacher_name], "
                    f"{_ITEMS}")
        return ("\nA layer name is missing from one of the dicts: `pairs` maps a STUDENT layer to a TEACHER "
                "layer, so read student_out[student_name] and teacher_out[teacher_name] "
                "(`for student_name, teacher_name in pairs.items()`).")
    if isinstance(error, ValueError) and "values to unpack" in text:
        return (f"\nIterating over a dict gives its KEYS only (the student's layer names, strings), so "
                f"`for s, t in pairs:` tries to unpack each name into two variables. Use {_ITEMS}, which "
                "gives (student layer, teacher layer) pairs.")
    if "size of tensor" in text or "spatial size" in text or "shape" in text:
        return ("\nThe two maps have different sizes: did you read both sides under the same name, or the pair "
                "the wrong way round? `pairs` maps student layer -> teacher layer of the SAME resolution: "
                "student_out[student_name] with teacher_out[teacher_name].")
    return ""


def _reaches_layer1(exercise, name: str, fn: Callable) -> None:
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    s = {k: v.clone().requires_grad_(True) for k, v in _STUDENT.items()}
    _check_gradient(name, fn(s, _TEACHER, _PAIRS), s["layer1"], "the student's layer1 features")


PAIRED_ATTENTION_LOSS = _Exercise(
    "paired_attention_loss", _reference, _CASES, show=_show, variants=_variants,
    success="{name} matches the reference on {n} test cases (two pairs and one, layers of different names), and the "
            "gradient reaches the student's features.",
    fallback=lambda exercise, name, out, e, case: (
        f"{name}({_show(case)}) returned {_fmt(out)}, expected {_fmt(e)}. No classic mistake explains this; for each "
        "pair compute attention_map(student_out[s]) and attention_map(teacher_out[t]), take the mean squared "
        "difference, and add up the pairs' losses."),
    output=lambda name, shown, out, case: _scalar_output(name, shown, out, 4),
    on_match=_reaches_layer1, collect_errors=True, error_hint=lambda error, case: _error_hint(error, *case),
    reference_name='kdcourse.methods.paired_attention_loss',
)


def check_paired_attention_loss(fn: Callable) -> None:
    """Check ``fn(student_out, teacher_out, pairs)`` against
    :func:`kdcourse.methods.paired_attention_loss`: for every ``{student layer: teacher layer}``
    pair the mean squared difference of the unit-norm attention maps, summed over the pairs.
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    _check(PAIRED_ATTENTION_LOSS, fn)


# ------------------------------------------------------------------ lesson 08: the transfer set

from ..distill import labeled_cross_entropy as _labeled_ce_reference  # noqa: E402

__all__ += ["check_labeled_cross_entropy"]

_CE_LOGITS = [_randn(6, 5, seed=50), _randn(6, 5, seed=51), _randn(4, 5, seed=52), _randn(5, 5, seed=53)]
_CE_LABELS = [torch.tensor([3, -1, 0, -1, -1, 4]), torch.tensor([1, 2, 0, 4, 3, 2]), torch.full((4,), -1),
              torch.tensor([-1, -1, 2, -1, -1])]
_CE_WHAT = ["3 labelled and 3 unlabelled rows", "every row labelled", "no labelled row", "one labelled row"]


def _ce_rows(logits, y):
    keep = y != -1
    return torch.nn.functional.cross_entropy(logits[keep], y[keep], reduction="sum"), int(keep.sum())


def _ce_variants() -> list[_Variant]:
    def over_batch(z, y):
        total, _ = _ce_rows(z, y)
        return total / len(y)

    def nan_when_empty(z, y):
        total, n = _ce_rows(z, y)
        return total / n if n else torch.tensor(float("nan"))

    m = "labeled_cross_entropy."
    return [
        _accepted(_labeled_ce_reference),
        _row(m + "over_batch", over_batch),
        _row(m + "nan_when_empty", nan_when_empty),
        _row(m + "sum", lambda z, y: _ce_rows(z, y)[0]),
    ]


def _ce_show(case: tuple) -> str:
    return _CE_WHAT[next(i for i, y in enumerate(_CE_LABELS) if y is case[1])]


def _ce_output(name: str, what: str, out, case: tuple):
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    try:
        return _scalar_output(name, what, out, len(case[1]))
    except AssertionError as bad:
        if "NaN" in str(bad) and not bool((case[1] != -1).any()):
            raise AssertionError(f"{name}: {_catalogue.message('labeled_cross_entropy.nan_when_empty')}") from None
        raise


def _ce_error_hint(error: BaseException, case: tuple) -> str:
    if "Target -1" in str(error) or "out of bounds" in str(error):
        return ("\nThe label -1 means 'no label': keep only the rows with y != -1 before the "
                "cross-entropy (logits[keep], y[keep]).")
    return ""


def _ce_reaches_logits(exercise, name: str, fn: Callable) -> None:
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    z = _CE_LOGITS[0].clone().requires_grad_(True)
    _check_gradient(name, fn(z, _CE_LABELS[0]), z, "the student's logits")


LABELED_CROSS_ENTROPY = _Exercise(
    "labeled_cross_entropy", _labeled_ce_reference, list(zip(_CE_LOGITS, _CE_LABELS)), show=_ce_show,
    variants=_ce_variants,
    success=f"{{name}} matches the reference on {{n}} batches ({', '.join(_CE_WHAT)}), and the gradient reaches the logits.",
    fallback=lambda exercise, name, out, e, case: (
        f"{name} on a batch with {_ce_show(case)} returned {_fmt(out)}, expected {_fmt(e)}. No classic mistake "
        "explains this: keep the rows with y != -1, take F.cross_entropy on them (a mean), and return 0 when "
        "there are none."),
    output=_ce_output, on_match=_ce_reaches_logits, collect_errors=True, error_hint=_ce_error_hint,
    reference_name='kdcourse.methods.labeled_cross_entropy',
)


def check_labeled_cross_entropy(fn: Callable) -> None:
    """Check ``fn(logits, y)`` against :func:`kdcourse.distill.labeled_cross_entropy`: the
    cross-entropy averaged over the rows whose label is not ``-1``, and 0 when there is none."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    _check(LABELED_CROSS_ENTROPY, fn)
