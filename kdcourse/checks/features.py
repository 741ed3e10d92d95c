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
from .engine import Exercise as _Exercise
from .engine import Variant as _Variant
from .engine import accepted as _accepted
from .engine import call as _call
from .engine import check as _check
from .engine import check_gradient as _check_gradient
from .engine import close as _close
from .engine import first_row_fallback as _first_row_fallback
from .engine import fmt as _fmt
from .engine import gradient_to as _gradient_to
from .engine import name_of as _name
from .engine import not_implemented as _not_implemented
from .engine import randn as _randn
from .engine import ratio as _ratio
from .engine import row as _row
from .engine import scalar_output as _scalar_output
from .engine import tensor_like as _tensor_like

__all__ = [
    "check_make_regressor",
    "check_hint_loss",
    "check_hint_term",
    "check_attention_map",
    "check_attention_transfer_loss",
]

RTOL, ATOL = 1e-4, 1e-6


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
        return (f"The regressor is an nn.Linear, which acts on the LAST dimension of its input (the width W = "
                f"{student_shape[-1]} of a feature map (N, C, H, W)), not on the channels. For feature maps use a "
                "1x1 convolution, nn.Conv2d(c_student, c_teacher, kernel_size=1): the same linear map of the "
                "channels at every position.")
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
        return (f"The regressor's {which} shape[0], the batch size N. Feature maps are "
                f"(N, C, H, W): the channel count is shape[1] ({student_shape[1]} for the student"
                + (f", {teacher_shape[1]} for the teacher" if teacher_shape is not None else "")
                + "), so use nn.Conv2d(student_shape[1], teacher_shape[1], kernel_size=1).")
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
    name = _name(fn, "make_regressor")
    for s_shape, t_shape in _REGRESSOR_CASES:
        shown = f"student_shape={s_shape}, teacher_shape={t_shape}"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            regressor = _call(fn, name, (torch.Size(s_shape), torch.Size(t_shape)), shown)
        if isinstance(regressor, torch.Tensor):
            raise AssertionError(
                f"{name}({shown}) returned a tensor; return the layer itself (an nn.Module such as "
                "nn.Conv2d(...)), which the loss then applies to the student's features."
            )
        if not isinstance(regressor, nn.Module):
            raise AssertionError(
                f"{name}({shown}) returned a {type(regressor).__name__}; return an nn.Module (e.g. a "
                "1x1 nn.Conv2d) so that its parameters can be handed to the optimizer."
            )
        if not any(p.requires_grad for p in regressor.parameters()):
            raise AssertionError(
                f"{name}({shown}) returned {type(regressor).__name__}, which has no trainable parameters. "
                "The regressor must LEARN how to map the student's channels onto the teacher's: use "
                "nn.Conv2d(c_student, c_teacher, kernel_size=1)."
            )
        x = _randn(*s_shape, seed=1)
        try:
            out = regressor(x)
        except Exception as error:
            reversed_ok = False
            try:
                reversed_ok = tuple(regressor(_randn(*t_shape, seed=1)).shape) == s_shape
            except Exception:
                pass
            if reversed_ok:
                raise AssertionError(
                    f"{name}({shown}): the regressor maps the TEACHER's {t_shape[1]} channels to the student's "
                    f"{s_shape[1]}, the wrong way round. It is applied to the student's features: "
                    "nn.Conv2d(c_student, c_teacher, 1), with c = shape[1]."
                ) from None
            hint = _regressor_hint(regressor, s_shape, t_shape)
            raise AssertionError(
                f"{name}({shown}): applying the regressor to a student feature map of shape {s_shape} "
                f"raised {type(error).__name__}: {error}" + (f"\n{hint}" if hint else "")
            ) from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != t_shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            hint = "compare it with the teacher's shape."
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[1] == t_shape[1]:
                hint = ("the channels are right but the spatial size changed: use kernel_size=1 (or padding "
                        "that keeps H x W), since hint layers are chosen with the same spatial size.")
            elif isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[1] != t_shape[1]:
                hint = f"it should output the teacher's channel count, {t_shape[1]} (teacher_shape[1])."
            hint = _regressor_hint(regressor, s_shape, t_shape) or hint
            raise AssertionError(
                f"{name}({shown}): the regressor turns a student feature map {s_shape} into {got}, expected "
                f"the teacher's {t_shape}: {hint}"
            )
    # different spatial sizes: the skeleton's ValueError must survive
    try:
        fn(torch.Size((4, 8, 8, 8)), torch.Size((4, 32, 4, 4)))
    except ValueError:
        pass
    except NotImplementedError as error:
        raise _not_implemented(name, error) from None
    except Exception as error:
        raise AssertionError(
            f"{name}(student 8x8, teacher 4x4) raised {type(error).__name__}; raise a ValueError that says "
            "the layers must share their spatial size."
        ) from None
    else:
        raise AssertionError(
            f"{name}(student_shape=(4, 8, 8, 8), teacher_shape=(4, 32, 4, 4)) returned a regressor, but a "
            "1x1 convolution cannot turn 8x8 maps into 4x4 ones: raise a ValueError asking for layers with "
            "the same spatial size (keep the check at the top of the function)."
        )
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
    (_randn(4, 3, 4, 4, seed=10), _randn(4, 6, 4, 4, seed=11), _conv(3, 6, seed=12)),
    (_randn(2, 4, 2, 2, seed=13), _randn(2, 8, 2, 2, seed=14), _conv(4, 8, seed=15)),
    (_randn(3, 5, 2, 2, seed=16), _randn(3, 5, 2, 2, seed=17), _conv(5, 5, seed=18)),
]


def _hint_variants() -> list[_Variant]:
    def sq(s, t, r):
        return (r(s) - t).pow(2)

    m = "hint_loss."
    return [
        _accepted(lambda s, t, r: _mse(r(s), t)),
        _row(m + "sum", lambda s, t, r: sq(s, t, r).sum()),
        _row(m + "per_example_norm", lambda s, t, r: sq(s, t, r).sum() / s.shape[0]),
        _row(m + "half", lambda s, t, r: 0.5 * _mse(r(s), t)),
        _row(m + "norm_not_square", lambda s, t, r: (r(s) - t).norm()),
        _row(m + "l1", lambda s, t, r: _l1(r(s), t)),
        _row(m + "regressor_on_teacher", lambda s, t, r: _mse(r(t), s)),
        _row(m + "no_regressor", lambda s, t, r: _mse(s, t)),
        _row(m + "regressor_on_both", lambda s, t, r: _mse(r(s), r(t))),
    ]


def _hint_gradients(exercise, name: str, fn: Callable) -> None:
    """The gradient reaches the student's features and the regressor's weights."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    s, t, r = exercise.cases[0]
    s = s.clone().requires_grad_(True)
    r.zero_grad(set_to_none=True)
    loss = fn(s, t, r)
    _check_gradient(name, loss, s, "the student's features")
    grads = torch.autograd.grad(loss, list(r.parameters()), allow_unused=True)
    if any(g is None or not g.abs().sum() > 0 for g in grads):
        raise AssertionError(f"{name}: no gradient reaches the regressor's weights: apply the regressor "
                             "inside the loss, without torch.no_grad(), so that it is trained too.")


def _hint_error(error: BaseException, case: tuple) -> str:
    if isinstance(error, RuntimeError) and ("channels" in str(error) or "size of tensor" in str(error)):
        return ("\nThe shapes do not line up: the regressor takes the STUDENT's channels and outputs "
                "the teacher's, so apply it to student_feature, then compare with teacher_feature.")
    return ""


HINT_LOSS = _Exercise(
    "hint_loss", losses.hint_loss, _HINT_INPUTS,
    show=lambda c: f"student {tuple(c[0].shape)}, teacher {tuple(c[1].shape)}, regressor {c[2]}",
    variants=_hint_variants,
    success="{name} matches the reference on {n} test cases, and the gradient reaches both the student's features and "
            "the regressor.",
    fallback=lambda exercise, name, out, e, case: (
        f"{name}(student {tuple(case[0].shape)}, teacher {tuple(case[1].shape)}) returned {_fmt(out)}, "
        f"expected {_fmt(e)}. No classic mistake explains this; compare your code with "
        "F.mse_loss(regressor(student_feature), teacher_feature)."),
    on_match=_hint_gradients, collect_errors=True, error_hint=_hint_error,
    reference_name='kdcourse.losses.hint_loss',
)


def check_hint_loss(fn: Callable) -> None:
    """Check ``fn(student_feature, teacher_feature, regressor)`` against
    :func:`kdcourse.losses.hint_loss`: the mean squared error between ``regressor(student_feature)``
    and ``teacher_feature``, with the gradient reaching the student's features and the regressor.
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    _check(HINT_LOSS, fn)


# ------------------------------------------------------------------ hint_term


def check_hint_term(fn: Callable) -> None:
    """Check ``fn(weight, student, teacher, feature, sample_input)`` -> a :class:`LossTerm` whose
    ``fn`` is the hint loss through a regressor that the optimizer will train (``module``).
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    name = _name(fn, "hint_term")
    feature, weight = "layer2", 2.5
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        student, teacher = DigitsCNN(4), DigitsCNN(8)
        teacher.eval().requires_grad_(False)
        x = _randn(6, 1, 8, 8, seed=20)
        y = torch.tensor([0, 1, 2, 3, 4, 5])
        shown = f"weight={weight}, DigitsCNN(4), DigitsCNN(8), feature={feature!r}, sample_input of shape (2, 1, 8, 8)"
        term = _call(fn, name, (weight, student, teacher, feature, x[:2]), shown)
        if not isinstance(term, LossTerm):
            raise AssertionError(
                f"{name}({shown}) returned a {type(term).__name__}; return a LossTerm(name, weight, fn, "
                "features=(feature,), module=regressor)."
            )
        if term.weight != weight:
            raise AssertionError(
                f"{name}: the term's weight is {term.weight!r}, expected the weight passed in ({weight}). "
                "train() multiplies fn's value by term.weight: pass it through, don't hard-code it."
            )
        if feature not in term.student_features or feature not in term.teacher_features:
            raise AssertionError(
                f"{name}: the term reads {term.student_features!r} from the student and {term.teacher_features!r} "
                f"from the teacher; name the hint layer, features=({feature!r},), so that train() pulls that "
                "layer from both networks with the feature extractor."
            )
        if term.module is None:
            raise AssertionError(
                f"{name}: the regressor's parameters are left out of the optimizer. train() optimises the "
                "student's parameters and each term's `module`; without module=regressor the regressor "
                "stays at its random initialisation and the student chases a random projection of the "
                "teacher. Pass module=regressor to the LossTerm."
            )
        params = [p for p in term.module.parameters() if p.requires_grad]
        if not params:
            raise AssertionError(f"{name}: term.module has no trainable parameters; it should be the regressor.")
        with torch.no_grad():
            t_out = dict(feature_extractor(teacher, [feature])(x))
        s_out = dict(feature_extractor(student, [feature])(x))
        s_shape, t_shape = tuple(s_out[feature].shape), tuple(t_out[feature].shape)

        def hint(error):
            if isinstance(error, KeyError):
                return (f"student_out and teacher_out are dicts keyed by layer name; each holds 'logits' and the "
                        f"layers of the term's features, here {feature!r}: read student_out[feature] and "
                        "teacher_out[feature] with the `feature` passed in (not a name of your own).")
            return _regressor_hint(term.module, s_shape, t_shape, (len(x[:2]),)) or (
                f"The student's {feature!r} features are {s_shape}, the teacher's {t_shape}: the regressor maps "
                "the student's channels (shape[1]) onto the teacher's, so apply it to student_out[feature].")

        value = _call(term.fn, f"{name}(...).fn", (s_out, t_out, y), "student_out, teacher_out, targets", hint=hint)
        value = _scalar_output(f"{name}(...).fn", "student_out, teacher_out, targets", value, len(x))
        try:
            expected = losses.hint_loss(s_out[feature], t_out[feature], term.module)
        except Exception as error:  # term.module is not a regressor from the student's shape to the teacher's
            raise AssertionError(
                f"{name}: term.module cannot map the student's {feature!r} features {s_shape} onto the teacher's "
                f"{t_shape} ({type(error).__name__}: {error}). "
                + (_regressor_hint(term.module, s_shape, t_shape, (len(x[:2]),))
                   or "Build ONE regressor from the two shapes (make_regressor(student_shape, teacher_shape)), "
                      "use it in fn and pass it as module.")
            ) from None
        if not _close(value, expected):
            if _close(value, weight * expected):
                raise AssertionError(
                    f"{name}: fn returns weight x the hint loss; train() multiplies by term.weight already, so "
                    "the weight would count twice. Return the plain hint loss from fn."
                )
            raise AssertionError(
                f"{name}: fn returned {_fmt(value)}, but hint_loss(student_out[{feature!r}], "
                f"teacher_out[{feature!r}], term.module) is {_fmt(expected)}. Does fn use the same regressor "
                "that you pass as module? Build ONE regressor and use it in both places."
            )
        grads = torch.autograd.grad(value, params, allow_unused=True)
        if any(g is None or not g.abs().sum() > 0 for g in grads):
            raise AssertionError(
                f"{name}: fn's value does not depend on term.module's parameters: the regressor handed to "
                "the optimizer is not the one used in the loss. Build ONE regressor, use it in fn and pass it "
                "as module."
            )
    print(f"✓ {name} builds a hint term on {feature!r} whose regressor is trained with the student.")


# ------------------------------------------------------------------ attention_map

# (feature, p): feature maps with negative values, so |A|^p and A^p differ for odd p.
_AT_MAP_INPUTS = [
    (_randn(3, 5, 4, 4, seed=30), 2.0),
    (_randn(2, 3, 3, 3, seed=31), 1.0),
    (_randn(3, 5, 4, 4, seed=30), 3.0),
    (_randn(4, 2, 2, 2, seed=32), 2.0),
]


def _q(a: torch.Tensor, p: float, reduce: str = "mean", absolute: bool = True) -> torch.Tensor:
    a = a.abs() if absolute else a
    q = a.pow(p)
    return (q.mean(1) if reduce == "mean" else q.sum(1)).flatten(1)


def _attention_variants() -> list[_Variant]:
    norm = lambda q: F.normalize(q, dim=1)  # noqa: E731
    m = "attention_map."
    return [
        _accepted(lambda a, p: norm(_q(a, p))),
        _row(m + "ignores_p", lambda a, p: norm(_q(a, 2))),
        _row(m + "no_abs", lambda a, p: norm(_q(a, p, absolute=False))),
        _row(m + "not_normalised", lambda a, p: _q(a, p)),
        _row(m + "not_normalised", lambda a, p: _q(a, p, "sum")),
        _row(m + "l1_norm", lambda a, p: F.normalize(_q(a, p), p=1, dim=1)),
        _row(m + "batch_norm", lambda a, p: _q(a, p) / _q(a, p).norm()),
        _row(m + "normalised_over_batch", lambda a, p: F.normalize(_q(a, p), dim=0)),
        _row(m + "softmax", lambda a, p: torch.softmax(_q(a, p), dim=1)),
        _row(m + "max", lambda a, p: _q(a, p) / _q(a, p).amax(1, keepdim=True)),
        _Variant((m + "not_normalised", m + "no_abs"), lambda a, p: _q(a, p, absolute=False)),
    ]


def _attention_map_hints(case: tuple, out) -> dict:
    n, c, h, w = case[0].shape
    return {
        (c, h * w): "It reduced over dim 0, the batch (shape[0] is the batch size N): the channels are dim 1, "
                    "so reduce over dim=1 and keep one map per example.",
        (n, h, w): "Flatten the positions: the map of one example is a vector of H*W values (q.flatten(1)), "
                   "normalised as a whole.",
        (n, c): "It reduced over the positions; reduce over the CHANNELS (dim=1) and keep one value per "
                "position.",
        (n, c, h * w): "Reduce over the channels (dim=1): one value per position.",
        (h * w,): "Keep the batch dimension: one map per example, shape (N, H*W).",
    }


ATTENTION_MAP = _Exercise(
    "attention_map", losses.attention_map, _AT_MAP_INPUTS,
    show=lambda c: f"feature of shape {tuple(c[0].shape)}, p={c[1]:g}", variants=_attention_variants,
    success="{name} matches the reference on {n} test cases (p = 1, 2, 3; 2 to 5 channels).",
    fallback=_first_row_fallback("compare your code with Q = vec(sum_c |A_c|^p) / ||vec(sum_c |A_c|^p)||_2."),
    output=_tensor_like(lambda c: (len(c[0]), c[0].shape[2] * c[0].shape[3]), _attention_map_hints),
    reference_name='kdcourse.losses.attention_map',
)


def check_attention_map(fn: Callable) -> None:
    """Check ``fn(feature, p)`` -> ``(N, H*W)`` maps :math:`\\mathrm{vec}(\\sum_c |A_c|^p)`, each
    with unit L2 norm, against :func:`kdcourse.losses.attention_map`.
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    _check(ATTENTION_MAP, fn)


# ------------------------------------------------------------------ attention_transfer_loss

# (student feature, teacher feature, p): different widths, the same spatial size.
_AT_LOSS_INPUTS = [
    (_randn(4, 3, 4, 4, seed=40), _randn(4, 8, 4, 4, seed=41) * 3.0, 2.0),
    (_randn(3, 2, 2, 2, seed=42) * 0.2, _randn(3, 5, 2, 2, seed=43), 2.0),
    (_randn(2, 4, 3, 3, seed=44), _randn(2, 6, 3, 3, seed=45), 1.0),
]


def _at_loss_variants() -> list[_Variant]:
    am = losses.attention_map

    def diff(s, t, p):
        return am(s, p) - am(t, p)

    m = "attention_transfer_loss."
    return [
        _accepted(lambda s, t, p: diff(s, t, p).pow(2).mean()),
        _row(m + "sum", lambda s, t, p: diff(s, t, p).pow(2).sum()),
        _row(m + "sum_over_positions", lambda s, t, p: diff(s, t, p).pow(2).sum(1).mean()),
        _row(m + "norm_not_square", lambda s, t, p: diff(s, t, p).norm(dim=1).mean()),
        _row(m + "l1", lambda s, t, p: diff(s, t, p).abs().mean()),
        _row(m + "not_normalised", lambda s, t, p: (_q(s, p) - _q(t, p)).pow(2).mean()),
        _row(m + "not_normalised", lambda s, t, p: (_q(s, p, "sum") - _q(t, p, "sum")).pow(2).mean()),
        _row(m + "ignores_p", lambda s, t, p: (am(s, 2.0) - am(t, 2.0)).pow(2).mean()),
        _Variant((m + "not_normalised", m + "ignores_p_in_power"), lambda s, t, p: (_q(s, 2.0) - _q(t, 2.0)).pow(2).mean()),
    ]


def _at_loss_fallback(exercise, name, out, e, case) -> str:
    s, t, p = case
    return (f"{name}(student {tuple(s.shape)}, teacher {tuple(t.shape)}, p={p:g}) returned "
            f"{_fmt(out)}, expected {_fmt(e)}{_ratio(e, out)}. No classic mistake explains this; compare "
            "with (attention_map(s, p) - attention_map(t, p)).pow(2).mean(). If your check of "
            "attention_map passed, call that function here.")


ATTENTION_TRANSFER_LOSS = _Exercise(
    "attention_transfer_loss", losses.attention_transfer_loss, _AT_LOSS_INPUTS,
    show=lambda c: f"student {tuple(c[0].shape)}, teacher {tuple(c[1].shape)}, p={c[2]:g}",
    variants=_at_loss_variants, success="{name} matches the reference on {n} test cases (different widths, p = 1 and 2).",
    fallback=_at_loss_fallback, on_match=_gradient_to("the student's features"),
    call_error=lambda c: (
        f"Teacher and student have different channel counts ({c[0].shape[1]} vs {c[1].shape[1]}): "
        "compare their attention MAPS, attention_map(student_feature, p) and "
        "attention_map(teacher_feature, p), which have one value per position whatever the width."),
    reference_name='kdcourse.losses.attention_transfer_loss',
)


def check_attention_transfer_loss(fn: Callable) -> None:
    """Check ``fn(student_feature, teacher_feature, p)`` against
    :func:`kdcourse.losses.attention_transfer_loss` (teacher and student of different widths).
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    _check(ATTENTION_TRANSFER_LOSS, fn)
