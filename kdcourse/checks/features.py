"""Checkers for the feature-distillation exercises of lesson 05 (FitNets hints, attention transfer).

Each checker calls the learner's function on fixed inputs, compares it with the reference in
:mod:`kdcourse.losses` / :mod:`kdcourse.distill`, and when the answer is wrong computes what each
classic mistake would return on the same inputs, naming the one that reproduces every case.

    >>> check_attention_map(attention_map)
    ✓ attention_map matches the reference on 4 test cases (p = 1, 2, 3; 2 to 5 channels).

The small helpers at the top are shared with :mod:`kdcourse.checks.relations`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..distill import LossTerm
from ..models import DigitsCNN, feature_extractor
from . import engine
from .engine import accepted, fmt, randn, row

__all__ = [
    "check_make_regressor",
    "check_hint_loss",
    "check_hint_term",
    "check_attention_map",
    "check_attention_transfer_loss",
]

# ------------------------------------------------------------------ shared helpers


def _same_shape_loss(loss: Callable) -> Callable:
    """``loss(a, b)`` that refuses different shapes instead of broadcasting them: a hypothesis computed by
    a checker must not emit PyTorch's broadcasting UserWarning, which would look like the learner's."""
    def fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
        return loss(a, b)
    return fn


_mse = _same_shape_loss(F.mse_loss)
_l1 = _same_shape_loss(F.l1_loss)


def _regressor_hint(regressor, student_shape, teacher_shape=None, batch_sizes=()) -> str | None:
    """The likely cause when a regressor cannot take (or mis-maps) the student's feature maps.
    ``batch_sizes``: other batch sizes the learner may have read the shapes from (a sample input)."""
    if not isinstance(regressor, nn.Module):
        return None
    linear = [m for m in regressor.modules() if isinstance(m, nn.Linear)]
    if linear:
        return engine.mistake("make_regressor.linear", width=student_shape[-1])
    conv = next((m for m in regressor.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        return None
    batches = {student_shape[0], *batch_sizes}
    wrong_in = conv.in_channels in batches and conv.in_channels != student_shape[1]
    wrong_out = (teacher_shape is not None and conv.out_channels in batches | {teacher_shape[0]}
                 and conv.out_channels != teacher_shape[1])
    if wrong_in or wrong_out:
        which = ("input and output channel counts are" if wrong_in and wrong_out else
                 "input channel count is" if wrong_in else "output channel count is")
        counts = f"{student_shape[1]} for the student" + (
            f", {teacher_shape[1]} for the teacher" if teacher_shape is not None else "")
        return engine.mistake("make_regressor.channels_from_batch", which=which, counts=counts)
    return None


# ------------------------------------------------------------------ make_regressor

_REGRESSOR_CASES = [
    ((4, 8, 4, 4), (4, 32, 4, 4)),
    ((4, 4, 8, 8), (4, 16, 8, 8)),
    ((2, 16, 2, 2), (2, 64, 2, 2)),
]


def check_make_regressor(fn: Callable) -> None:
    """Check ``fn(student_shape, teacher_shape)`` -> a trainable module mapping the student's
    feature maps ``(N, C_s, H, W)`` onto the teacher's ``(N, C_t, H, W)`` (FitNets' regressor).
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    name = engine.name_of(fn, "make_regressor")
    for s_shape, t_shape in _REGRESSOR_CASES:
        shown = f"student_shape={s_shape}, teacher_shape={t_shape}"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            regressor = engine.call(fn, name, (torch.Size(s_shape), torch.Size(t_shape)), shown)
        if isinstance(regressor, torch.Tensor):
            raise engine.fail("make_regressor.returned_tensor", name=name, shown=shown)
        if not isinstance(regressor, nn.Module):
            raise engine.fail("make_regressor.not_a_module", name=name, shown=shown, type=type(regressor).__name__)
        if not any(p.requires_grad for p in regressor.parameters()):
            raise engine.fail("make_regressor.not_trainable", name=name, shown=shown, type=type(regressor).__name__)
        x = randn(*s_shape, seed=1)
        try:
            out = regressor(x)
        except Exception as error:
            reversed_ok = False
            try:
                reversed_ok = tuple(regressor(randn(*t_shape, seed=1)).shape) == s_shape
            except Exception:
                pass
            if reversed_ok:
                raise engine.fail("make_regressor.teacher_to_student", name=name, shown=shown, c_teacher=t_shape[1],
                                  c_student=s_shape[1]) from None
            hint = _regressor_hint(regressor, s_shape, t_shape)
            raise AssertionError(
                engine.mistake("make_regressor.fails_on_student", name=name, shown=shown, s_shape=s_shape,
                               type=type(error).__name__, error=error) + (f"\n{hint}" if hint else "")
            ) from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != t_shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            hint = engine.mistake("make_regressor.compare_shapes")
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[1] == t_shape[1]:
                hint = engine.mistake("make_regressor.spatial_size_changed")
            elif isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[1] != t_shape[1]:
                hint = engine.mistake("make_regressor.wrong_out_channels", c_teacher=t_shape[1])
            hint = _regressor_hint(regressor, s_shape, t_shape) or hint
            raise engine.fail("make_regressor.wrong_output", name=name, shown=shown, s_shape=s_shape, got=got,
                              t_shape=t_shape, hint=hint)
    # different spatial sizes: the skeleton's ValueError must survive
    try:
        fn(torch.Size((4, 8, 8, 8)), torch.Size((4, 32, 4, 4)))
    except ValueError:
        pass
    except NotImplementedError as error:
        raise engine.not_implemented(name, error) from None
    except Exception as error:
        raise engine.fail("make_regressor.other_error_on_sizes", name=name, type=type(error).__name__) from None
    else:
        raise engine.fail("make_regressor.accepts_other_sizes", name=name)
    print(f"✓ {name} maps the student's channels onto the teacher's in {len(_REGRESSOR_CASES)} test cases, "
          "and rejects layers of different spatial sizes.")


# ------------------------------------------------------------------ hint_loss


def _conv(c_in: int, c_out: int, seed: int) -> nn.Conv2d:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Conv2d(c_in, c_out, 1, bias=False)


# (student feature, teacher feature, regressor). The last case has as many student as teacher
# channels, so "regressor on the teacher" or "no regressor" compute something we can recognise.
_HINT_INPUTS = [
    (randn(4, 3, 4, 4, seed=10), randn(4, 6, 4, 4, seed=11), _conv(3, 6, seed=12)),
    (randn(2, 4, 2, 2, seed=13), randn(2, 8, 2, 2, seed=14), _conv(4, 8, seed=15)),
    (randn(3, 5, 2, 2, seed=16), randn(3, 5, 2, 2, seed=17), _conv(5, 5, seed=18)),
]


def _hint_variants() -> list[engine.Variant]:
    def sq(s, t, r):
        return (r(s) - t).pow(2)

    m = "hint_loss."
    return [
        accepted(lambda s, t, r: _mse(r(s), t)),
        row(m + "sum", lambda s, t, r: sq(s, t, r).sum()),
        row(m + "per_example_norm", lambda s, t, r: sq(s, t, r).sum() / s.shape[0]),
        row(m + "half", lambda s, t, r: 0.5 * _mse(r(s), t)),
        row(m + "norm_not_square", lambda s, t, r: (r(s) - t).norm()),
        row(m + "l1", lambda s, t, r: _l1(r(s), t)),
        row(m + "regressor_on_teacher", lambda s, t, r: _mse(r(t), s)),
        row(m + "no_regressor", lambda s, t, r: _mse(s, t)),
        row(m + "regressor_on_both", lambda s, t, r: _mse(r(s), r(t))),
    ]


def _hint_gradients(exercise, name: str, fn: Callable) -> None:
    """The gradient reaches the student's features and the regressor's weights."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    s, t, r = exercise.cases[0]
    s = s.clone().requires_grad_(True)
    r.zero_grad(set_to_none=True)
    loss = fn(s, t, r)
    engine.check_gradient(name, loss, s, "the student's features")
    grads = torch.autograd.grad(loss, list(r.parameters()), allow_unused=True)
    if any(g is None or not g.abs().sum() > 0 for g in grads):
        raise engine.fail("hint_loss.regressor_not_trained", name=name)


def _hint_error(error: BaseException, case: tuple) -> str:
    if isinstance(error, RuntimeError) and ("channels" in str(error) or "size of tensor" in str(error)):
        return ("\n" + engine.mistake("hint_loss.shapes_do_not_line_up"))
    return ""


HINT_LOSS = engine.Exercise(
    "hint_loss", losses.hint_loss, _HINT_INPUTS,
    show=lambda c: f"student {tuple(c[0].shape)}, teacher {tuple(c[1].shape)}, regressor {c[2]}",
    variants=_hint_variants,
    success="{name} matches the reference on {n} test cases, and the gradient reaches both the student's features and "
            "the regressor.",
    fallback=lambda exercise, name, out, e, case: (
        engine.mistake("hint_loss.unexplained", name=name, student=tuple(case[0].shape), teacher=tuple(case[1].shape),
                       out=fmt(out), expected=fmt(e))),
    on_match=_hint_gradients, collect_errors=True, error_hint=_hint_error,
)


check_hint_loss = engine.checker(HINT_LOSS, """Check ``fn(student_feature, teacher_feature, regressor)`` against
    :func:`kdcourse.losses.hint_loss`: the mean squared error between ``regressor(student_feature)``
    and ``teacher_feature``, with the gradient reaching the student's features and the regressor.
    """)


# ------------------------------------------------------------------ hint_term


def check_hint_term(fn: Callable) -> None:
    """Check ``fn(weight, student, teacher, feature, sample_input)`` -> a :class:`LossTerm` whose
    ``fn`` is the hint loss through a regressor that the optimizer will train (``module``).
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    name = engine.name_of(fn, "hint_term")
    feature, weight = "layer2", 2.5
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        student, teacher = DigitsCNN(4), DigitsCNN(8)
        teacher.eval().requires_grad_(False)
        x = randn(6, 1, 8, 8, seed=20)
        y = torch.tensor([0, 1, 2, 3, 4, 5])
        shown = f"weight={weight}, DigitsCNN(4), DigitsCNN(8), feature={feature!r}, sample_input of shape (2, 1, 8, 8)"
        term = engine.call(fn, name, (weight, student, teacher, feature, x[:2]), shown)
        if not isinstance(term, LossTerm):
            raise engine.fail("hint_term.not_a_loss_term", name=name, shown=shown, type=type(term).__name__)
        if term.weight != weight:
            raise engine.fail("hint_term.weight_not_passed", name=name, term_weight=f"{term.weight!r}", weight=weight)
        if feature not in term.student_features or feature not in term.teacher_features:
            raise engine.fail("hint_term.wrong_features", name=name, term_student_features=f"{term.student_features!r}",
                              term_teacher_features=f"{term.teacher_features!r}", feature=f"{feature!r}")
        if term.module is None:
            raise engine.fail("hint_term.no_module", name=name)
        params = [p for p in term.module.parameters() if p.requires_grad]
        if not params:
            raise engine.fail("hint_term.module_not_trainable", name=name)
        with torch.no_grad():
            t_out = dict(feature_extractor(teacher, [feature])(x))
        s_out = dict(feature_extractor(student, [feature])(x))
        s_shape, t_shape = tuple(s_out[feature].shape), tuple(t_out[feature].shape)

        def hint(error):
            if isinstance(error, KeyError):
                return engine.mistake("hint_term.key_error", feature=f"{feature!r}")
            return _regressor_hint(term.module, s_shape, t_shape, (len(x[:2]),)) or (
                engine.mistake("hint_term.wrong_layer_shapes", feature=f"{feature!r}", s_shape=s_shape,
                               t_shape=t_shape))

        value = engine.call(term.fn, f"{name}(...).fn", (s_out, t_out, y), "student_out, teacher_out, targets",
                            hint=hint)
        value = engine.scalar_output(f"{name}(...).fn", "student_out, teacher_out, targets", value, len(x))
        try:
            expected = losses.hint_loss(s_out[feature], t_out[feature], term.module)
        except Exception as error:  # term.module is not a regressor from the student's shape to the teacher's
            hint = (_regressor_hint(term.module, s_shape, t_shape, (len(x[:2]),))
                    or engine.mistake("hint_term.one_regressor"))
            raise engine.fail("hint_term.module_not_a_regressor", name=name, feature=f"{feature!r}", s_shape=s_shape,
                              t_shape=t_shape, type=type(error).__name__, error=error, hint=hint) from None
        if not engine.close(value, expected):
            if engine.close(value, weight * expected):
                raise engine.fail("hint_term.weight_twice", name=name)
            raise engine.fail("hint_term.other_regressor_in_fn", name=name, value=fmt(value), feature=f"{feature!r}",
                              expected=fmt(expected))
        grads = torch.autograd.grad(value, params, allow_unused=True)
        if any(g is None or not g.abs().sum() > 0 for g in grads):
            raise engine.fail("hint_term.module_not_used", name=name)
    print(f"✓ {name} builds a hint term on {feature!r} whose regressor is trained with the student.")


# ------------------------------------------------------------------ attention_map

# (feature, p): feature maps with negative values, so |A|^p and A^p differ for odd p.
_AT_MAP_INPUTS = [
    (randn(3, 5, 4, 4, seed=30), 2.0),
    (randn(2, 3, 3, 3, seed=31), 1.0),
    (randn(3, 5, 4, 4, seed=30), 3.0),
    (randn(4, 2, 2, 2, seed=32), 2.0),
]


def _q(a: torch.Tensor, p: float, reduce: str = "mean", absolute: bool = True) -> torch.Tensor:
    a = a.abs() if absolute else a
    q = a.pow(p)
    return (q.mean(1) if reduce == "mean" else q.sum(1)).flatten(1)


def _attention_variants() -> list[engine.Variant]:
    norm = lambda q: F.normalize(q, dim=1)  # noqa: E731
    m = "attention_map."
    return [
        accepted(lambda a, p: norm(_q(a, p))),
        row(m + "ignores_p", lambda a, p: norm(_q(a, 2))),
        row(m + "no_abs", lambda a, p: norm(_q(a, p, absolute=False))),
        row(m + "not_normalised", lambda a, p: _q(a, p)),
        row(m + "not_normalised", lambda a, p: _q(a, p, "sum")),
        row(m + "l1_norm", lambda a, p: F.normalize(_q(a, p), p=1, dim=1)),
        row(m + "batch_norm", lambda a, p: _q(a, p) / _q(a, p).norm()),
        row(m + "normalised_over_batch", lambda a, p: F.normalize(_q(a, p), dim=0)),
        row(m + "softmax", lambda a, p: torch.softmax(_q(a, p), dim=1)),
        row(m + "max", lambda a, p: _q(a, p) / _q(a, p).amax(1, keepdim=True)),
        engine.Variant((m + "not_normalised", m + "no_abs"), lambda a, p: _q(a, p, absolute=False)),
    ]


def _attention_map_hints(case: tuple, out) -> dict:
    n, c, h, w = case[0].shape
    return {
        (c, h * w): engine.mistake("attention_map.reduced_over_batch"),
        (n, h, w): engine.mistake("attention_map.not_flattened"),
        (n, c): engine.mistake("attention_map.reduced_over_positions"),
        (n, c, h * w): engine.mistake("attention_map.not_reduced"),
        (h * w,): engine.mistake("attention_map.no_batch_dimension"),
    }


ATTENTION_MAP = engine.Exercise(
    "attention_map", losses.attention_map, _AT_MAP_INPUTS,
    show=lambda c: f"feature of shape {tuple(c[0].shape)}, p={c[1]:g}", variants=_attention_variants,
    success="{name} matches the reference on {n} test cases (p = 1, 2, 3; 2 to 5 channels).",
    fallback=engine.first_row_fallback("compare your code with Q = vec(sum_c |A_c|^p) / ||vec(sum_c |A_c|^p)||_2."),
    output=engine.tensor_like(lambda c: (len(c[0]), c[0].shape[2] * c[0].shape[3]), _attention_map_hints),
)


check_attention_map = engine.checker(ATTENTION_MAP, """
    Check ``fn(feature, p)`` -> ``(N, H*W)`` maps :math:`\\mathrm{vec}(\\sum_c |A_c|^p)`, each
    with unit L2 norm, against :func:`kdcourse.losses.attention_map`.
    """)


# ------------------------------------------------------------------ attention_transfer_loss

# (student feature, teacher feature, p): different widths, the same spatial size.
_AT_LOSS_INPUTS = [
    (randn(4, 3, 4, 4, seed=40), randn(4, 8, 4, 4, seed=41) * 3.0, 2.0),
    (randn(3, 2, 2, 2, seed=42) * 0.2, randn(3, 5, 2, 2, seed=43), 2.0),
    (randn(2, 4, 3, 3, seed=44), randn(2, 6, 3, 3, seed=45), 1.0),
]


def _at_loss_variants() -> list[engine.Variant]:
    am = losses.attention_map

    def diff(s, t, p):
        return am(s, p) - am(t, p)

    m = "attention_transfer_loss."
    return [
        accepted(lambda s, t, p: diff(s, t, p).pow(2).mean()),
        row(m + "sum", lambda s, t, p: diff(s, t, p).pow(2).sum()),
        row(m + "sum_over_positions", lambda s, t, p: diff(s, t, p).pow(2).sum(1).mean()),
        row(m + "norm_not_square", lambda s, t, p: diff(s, t, p).norm(dim=1).mean()),
        row(m + "l1", lambda s, t, p: diff(s, t, p).abs().mean()),
        row(m + "not_normalised", lambda s, t, p: (_q(s, p) - _q(t, p)).pow(2).mean()),
        row(m + "not_normalised", lambda s, t, p: (_q(s, p, "sum") - _q(t, p, "sum")).pow(2).mean()),
        row(m + "ignores_p", lambda s, t, p: (am(s, 2.0) - am(t, 2.0)).pow(2).mean()),
        engine.Variant((m + "not_normalised", m + "ignores_p_in_power"),
                       lambda s, t, p: (_q(s, 2.0) - _q(t, 2.0)).pow(2).mean()),
    ]


def _at_loss_fallback(exercise, name, out, e, case) -> str:
    s, t, p = case
    return (engine.mistake("attention_transfer_loss.unexplained", name=name, student=tuple(s.shape),
                           teacher=tuple(t.shape), p=f"{p:g}", out=fmt(out), expected=fmt(e),
                           ratio=engine.ratio(e, out)))


ATTENTION_TRANSFER_LOSS = engine.Exercise(
    "attention_transfer_loss", losses.attention_transfer_loss, _AT_LOSS_INPUTS,
    show=lambda c: f"student {tuple(c[0].shape)}, teacher {tuple(c[1].shape)}, p={c[2]:g}",
    variants=_at_loss_variants, success="{name} matches the reference on {n} test cases (different widths, p = 1 and 2).",
    fallback=_at_loss_fallback, on_match=engine.gradient_to("the student's features"),
    call_error=lambda c: (
        engine.mistake("attention_transfer_loss.maps_not_features", c_student=c[0].shape[1], c_teacher=c[1].shape[1])),
)


check_attention_transfer_loss = engine.checker(ATTENTION_TRANSFER_LOSS, """
    Check ``fn(student_feature, teacher_feature, p)`` against
    :func:`kdcourse.losses.attention_transfer_loss` (teacher and student of different widths).
    """)
