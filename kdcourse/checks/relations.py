"""Checkers for the relation-distillation exercises of lesson 06 (RKD distance and angle, SP).

Same approach as :mod:`kdcourse.checks.features`: fixed inputs, the reference from
:mod:`kdcourse.losses`, and when the answer is wrong, the classic mistake that reproduces it.

    >>> check_similarity_matrix(similarity_matrix)
    ✓ similarity_matrix matches the reference on 3 test cases (flat and 4-D features).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import losses
from . import engine
from .engine import accepted, fmt, randn, row

__all__ = [
    "check_rkd_distance_loss",
    "check_rkd_angles",
    "check_rkd_angle_loss",
    "check_similarity_matrix",
    "check_similarity_preserving_loss",
]


def _scale_invariance(name: str, fn: Callable, s: torch.Tensor, t: torch.Tensor, what: str) -> None:
    """A relation loss must not change when either embedding is scaled."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    base = fn(s.clone(), t.clone())
    for label, args in (("the student's", (10.0 * s, t)), ("the teacher's", (s, 0.1 * t))):
        if not engine.close(fn(*args), base):
            raise engine.fail("relations.scale_dependent", name=name, label=label, base=fmt(base),
                              scaled=fmt(fn(*args)), what=what)


# ------------------------------------------------------------------ inputs

# (student, teacher) embeddings of different widths. In the second case the teacher has an outlier,
# so some normalised distances differ by more than 1 and the Huber loss is in its linear part
# (there it differs from the squared error by more than a constant factor).
_OUTLIER = randn(6, 4, seed=51)
_OUTLIER[0] += 6.0
_RKD_INPUTS = [
    (randn(5, 3, seed=50), randn(5, 6, seed=52)),
    (randn(6, 2, seed=53), _OUTLIER),
    (randn(4, 5, seed=54) * 20.0, randn(4, 3, seed=55) * 0.1),
]


# ------------------------------------------------------------------ RKD distance


def _off(n: int) -> torch.Tensor:
    return ~torch.eye(n, dtype=torch.bool)


def _rkd_distance_variant(norm: str, crit: str, red: str) -> Callable:
    def fn(s, t):
        n = len(s)
        d_s, d_t = torch.cdist(s, s), torch.cdist(t, t)
        if norm == "squared":
            d_s, d_t = d_s.pow(2), d_t.pow(2)
        if norm in ("mean", "squared"):
            d_s, d_t = d_s / d_s[_off(n)].mean(), d_t / d_t[_off(n)].mean()
        elif norm == "diag":
            d_s, d_t = d_s / d_s.mean(), d_t / d_t.mean()
        elif norm == "teacher":
            d_s, d_t = d_s / d_t[_off(n)].mean(), d_t / d_t[_off(n)].mean()
        elif norm == "student":
            d_s, d_t = d_s / d_s[_off(n)].mean(), d_t / d_s[_off(n)].mean()
        loss = {"huber": F.smooth_l1_loss, "mse": F.mse_loss, "l1": F.l1_loss}[crit]
        if red == "sum":
            return loss(d_s, d_t, reduction="sum")
        if red == "offdiag":
            return loss(d_s[_off(n)], d_t[_off(n)])
        return loss(d_s, d_t)  # "full": the mean over all b^2 entries, as the reference implementations
    return fn


# Each kind of slip of the RKD distance loss, by its id in kdcourse.mistakes (None: as the reference). The
# RKD authors' code (lenscloth/RKD, RkdDistance), RepDistiller (RKDLoss) and mdistiller (rkd_loss) all take
# F.smooth_l1_loss(d, t_d) over the full b x b matrices, mu over the positive entries (i != j); kdcourse.losses
# and the lesson follow them, and their weights (25 and 50) go with that average.
_D = "rkd_distance_loss."
_RKD_NORM = {"mean": None, "none": _D + "not_normalised", "diag": _D + "mu_with_diagonal",
             "teacher": _D + "teacher_mean", "student": _D + "student_mean", "squared": _D + "squared"}
_RKD_CRIT = {"huber": None, "mse": _D + "mse", "l1": _D + "l1"}
_RKD_RED = {"full": None, "offdiag": _D + "pairs_only", "sum": _D + "sum"}


def _rkd_distance_variants() -> list[engine.Variant]:
    variants = []
    for norm, m1 in _RKD_NORM.items():
        for crit, m2 in _RKD_CRIT.items():
            for red, m3 in _RKD_RED.items():
                mistakes = tuple(m for m in (m1, m2, m3) if m)
                variants.append(engine.Variant(mistakes, _rkd_distance_variant(norm, crit, red)))
    return variants


def _pair_shown(case: tuple) -> str:
    return f"student {tuple(case[0].shape)}, teacher {tuple(case[1].shape)}"


def _scale_note(what: str) -> Callable:
    def afterword(name: str, fn: Callable) -> str:
        try:
            _scale_invariance(name, fn, *_RKD_INPUTS[0], what)
        except AssertionError as error:
            return f"\n{error}"
        return ""
    return afterword


RKD_DISTANCE_LOSS = engine.Exercise(
    "rkd_distance_loss", losses.rkd_distance_loss, _RKD_INPUTS, _pair_shown, _rkd_distance_variants,
    success="{name} matches the reference on {n} test cases (different widths and scales, a teacher with an outlier), "
            "and its gradient is finite.",
    fallback=engine.compare_with("compare with F.smooth_l1_loss(d_s / mu_s, d_t / mu_t) over the whole b x b matrices, "
                           "each mu the mean distance over the pairs i != j."),
    on_match=engine.gradient_to("the student's embedding"),
    afterword=_scale_note("Normalise each network's distances by their mean."),
)


check_rkd_distance_loss = engine.checker(RKD_DISTANCE_LOSS, """
    Check ``fn(student_embedding, teacher_embedding)`` against
    :func:`kdcourse.losses.rkd_distance_loss`: the Huber loss between the pairwise distance matrices,
    each divided by its mean over the pairs ``i != j``, averaged over all ``b^2`` entries (the zero
    diagonal included), as the RKD authors' code, RepDistiller and mdistiller compute it. Averaging
    over the ``b(b-1)`` pairs ``i != j`` alone is named: it is ``b/(b-1)`` times the reference.
    """)


# ------------------------------------------------------------------ RKD angles

_ANGLE_INPUTS = [
    (randn(5, 3, seed=60),),
    (randn(4, 2, seed=61) * 5.0,),
    (randn(6, 8, seed=62),),
]


def _angles_normalised_over(dim: int) -> Callable:
    def fn(e: torch.Tensor) -> torch.Tensor:
        u = F.normalize(e[:, None, :] - e[None, :, :], p=2, dim=dim)
        return torch.einsum("ijd,kjd->ijk", u, u)
    return fn


def _angles_of_unit_points(e: torch.Tensor) -> torch.Tensor:
    u = F.normalize(e, dim=-1)
    diff = u[:, None, :] - u[None, :, :]
    return torch.einsum("ijd,kjd->ijk", diff, diff)


def _angle_variants() -> list[engine.Variant]:
    def at_i(e):  # vertex i: <t_j - t_i, t_k - t_i>
        u = F.normalize(e[None, :, :] - e[:, None, :], dim=-1)  # u[i, j] = unit(t_j - t_i)
        return torch.einsum("ijd,ikd->ijk", u, u)

    def at_k(e):  # vertex k: <t_i - t_k, t_j - t_k>
        u = F.normalize(e[:, None, :] - e[None, :, :], dim=-1)  # u[i, k] = unit(t_i - t_k)
        return torch.einsum("ikd,jkd->ijk", u, u)

    m = "rkd_angles."
    return [
        accepted(losses.rkd_angles),
        row(m + "vertex_first", at_i),
        row(m + "vertex_last", at_k),
        row(m + "wrong_direction", lambda e: -losses.rkd_angles(e)),
        row(m + "not_normalised", _raw_angles),
        row(m + "acos", lambda e: torch.acos(losses.rkd_angles(e).clamp(-1, 1))),
        row(m + "normalised_over_dim0", _angles_normalised_over(0)),
        row(m + "normalised_over_dim1", _angles_normalised_over(1)),
        row(m + "unit_points", _angles_of_unit_points),
    ]


def _valid(n: int) -> torch.Tensor:
    """valid[i, j, k]: i != j and k != j (where two points coincide the cosine is not defined)."""
    return _off(n)[:, :, None] & _off(n)[None, :, :]


def _angles_output(name: str, shown: str, out, case: tuple) -> torch.Tensor:
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    n = len(case[0])
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (n, n, n) and not torch.isfinite(out).all():
        raise engine.fail("rkd_angles.nan_where_points_coincide", name=name, shown=shown)
    one_per_triplet = {(n, n): engine.mistake("rkd_angles.one_value_per_pair")}
    out = engine.tensor_like(lambda c: (n, n, n), lambda c, o: one_per_triplet)(
        name, shown, out, case)
    return out.detach().where(_valid(n), torch.zeros(()))


def _angles_fallback(exercise, name, out, e, case) -> str:
    first = _ANGLE_INPUTS[0][0]
    return (engine.mistake("rkd_angles.unexplained", name=name, points=fmt(first[:3]),
                           expected=fmt(losses.rkd_angles(first)[0, 1, 2]), got=fmt(out[0, 1, 2])))


RKD_ANGLES = engine.Exercise(
    "rkd_angles", losses.rkd_angles, _ANGLE_INPUTS,
    show=lambda c: f"embedding of shape {tuple(c[0].shape)}",
    variants=lambda: [engine.Variant(v.mistakes, lambda e, f=v.make: f(e).where(_valid(len(e)), torch.zeros(())), v.id)
                      for v in _angle_variants()],  # compared where the angle is defined (_valid)
    success="{name} matches the reference on {n} test cases (the vertex is the middle point).",
    fallback=_angles_fallback, output=_angles_output,
    quoted=lambda outputs, expected: 0,
)


check_rkd_angles = engine.checker(RKD_ANGLES, """
    Check ``fn(embedding)`` -> ``(N, N, N)`` cosines ``A[i, j, k] = <e_ij, e_kj>`` of the angle
    at the vertex ``t_j`` (RKD eq. 6), with ``e_ij`` the unit vector from ``t_j`` to ``t_i``.
    Entries where two points coincide (``i == j`` or ``k == j``) are not checked, but must be finite.
    """)


# ------------------------------------------------------------------ RKD angle loss


def _raw_angles(e: torch.Tensor) -> torch.Tensor:
    diff = e[:, None, :] - e[None, :, :]
    return torch.einsum("ijd,kjd->ijk", diff, diff)


def _rkd_angle_variants() -> list[engine.Variant]:
    a = losses.rkd_angles
    m = "rkd_angle_loss."
    return [
        accepted(lambda s, t: F.smooth_l1_loss(a(s), a(t))),
        row(_RKD_CRIT["mse"], lambda s, t: F.mse_loss(a(s), a(t))),
        row(_RKD_CRIT["l1"], lambda s, t: F.l1_loss(a(s), a(t))),
        row(m + "sum", lambda s, t: F.smooth_l1_loss(a(s), a(t), reduction="sum")),
        row(m + "not_normalised", lambda s, t: F.smooth_l1_loss(_raw_angles(s), _raw_angles(t))),
        row(m + "compared_with_itself", lambda s, t: torch.zeros(())),
        *[row(m + f"normalised_over_dim{d}", lambda s, t, a=_angles_normalised_over(d): F.smooth_l1_loss(a(s), a(t)))
          for d in (0, 1)],
        row("rkd_angles.unit_points",
             lambda s, t: F.smooth_l1_loss(_angles_of_unit_points(s), _angles_of_unit_points(t))),
    ]


RKD_ANGLE_LOSS = engine.Exercise(
    "rkd_angle_loss", losses.rkd_angle_loss, _RKD_INPUTS, _pair_shown, _rkd_angle_variants,
    success="{name} matches the reference on {n} test cases, and its gradient is finite.",
    fallback=engine.compare_with("compare with F.smooth_l1_loss(rkd_angles(student), rkd_angles(teacher)). If the check "
                           "of rkd_angles passed, call that function here."),
    on_match=engine.gradient_to("the student's embedding"),
    afterword=_scale_note("Angles between unit vectors do not depend on scale: normalise the difference vectors."),
)


check_rkd_angle_loss = engine.checker(RKD_ANGLE_LOSS, """
    Check ``fn(student_embedding, teacher_embedding)`` against :func:`kdcourse.losses.rkd_angle_loss`
    (the Huber loss between the two ``(N, N, N)`` tensors of angle cosines, averaged).""")


# ------------------------------------------------------------------ similarity matrix

_SIM_INPUTS = [
    (randn(4, 6, seed=70),),
    (torch.relu(randn(5, 3, 2, 2, seed=71)),),
    (randn(3, 2, seed=72) * 4.0,),
]


def _gram(f: torch.Tensor) -> torch.Tensor:
    q = f.flatten(1)
    return q @ q.t()


def _pooled(f: torch.Tensor) -> torch.Tensor:
    """Each example's feature averaged over its positions (global pooling), where SP flattens it."""
    return f.mean(tuple(range(2, f.dim()))) if f.dim() > 2 else f


_FLATTEN = engine.mistake("similarity_matrix.not_flattened")
def _flatten_hint(error: Exception) -> str | None:
    """For an error on 4-D features: most likely they were not flattened."""
    text = str(error).lower()
    if any(word in text for word in ("size", "dimension", "shape", "dims")):
        return _FLATTEN + " " + engine.mistake("similarity_matrix.flatten_any_feature")
    return None


def _sim_variants() -> list[engine.Variant]:
    m = "similarity_matrix."
    return [
        accepted(lambda f: F.normalize(_gram(f), dim=1)),
        row(m + "rows_not_normalised", _gram),
        row(m + "features_normalised", lambda f: _gram(F.normalize(f.flatten(1), dim=1))),
        row(m + "columns", lambda f: F.normalize(_gram(f), dim=0)),
        row(m + "l1_rows", lambda f: F.normalize(_gram(f), p=1, dim=1)),
        row(m + "softmax", lambda f: torch.softmax(_gram(f), dim=1)),
        row(m + "one_norm", lambda f: _gram(f) / _gram(f).norm()),
        row(m + "pooled", lambda f: F.normalize(_gram(_pooled(f)), dim=1)),
    ]


def _sim_hints(case: tuple, out) -> dict:
    f = case[0]
    b, d = f.shape[0], f[0].numel()
    hints = {(d, d): engine.mistake("similarity_matrix.gram_of_dimensions")}
    if f.dim() > 2:
        c = f.shape[1]
        hints[(b, c, c)] = engine.mistake("similarity_matrix.channel_gram")
        if isinstance(out, torch.Tensor) and tuple(out.shape) not in hints:
            hints[tuple(out.shape)] = _FLATTEN  # any other shape from a 4-D input: most likely not flattened
    return hints


SIMILARITY_MATRIX = engine.Exercise(
    "similarity_matrix", losses.similarity_matrix, _SIM_INPUTS,
    show=lambda c: f"feature of shape {tuple(c[0].shape)}", variants=_sim_variants,
    success="{name} matches the reference on {n} test cases (flat and 4-D features).",
    fallback=engine.first_row_fallback("compare with G = Q Q^T, then each row divided by its L2 norm."),
    output=engine.tensor_like(lambda c: (len(c[0]), len(c[0])), _sim_hints),
    call_error=lambda c: _FLATTEN if c[0].dim() > 2 else None,
)


check_similarity_matrix = engine.checker(SIMILARITY_MATRIX, """
    Check ``fn(feature)`` -> the ``(b, b)`` row-normalised batch similarity of SP
    (:func:`kdcourse.losses.similarity_matrix`), for flat and 4-D features.""")


# ------------------------------------------------------------------ SP loss

_SP_INPUTS = [
    (randn(4, 3, 2, 2, seed=80), randn(4, 10, seed=81)),
    (randn(6, 5, seed=82), torch.relu(randn(6, 4, 3, 3, seed=83))),
    (randn(3, 2, seed=84), randn(3, 7, seed=85)),
]


def _sp_variants() -> list[engine.Variant]:
    g = losses.similarity_matrix

    def diff(s, t):
        return g(t) - g(s)

    def raw(s, t):
        return _gram(t) - _gram(s)

    m = "similarity_preserving_loss."
    return [
        accepted(lambda s, t: diff(s, t).pow(2).sum() / len(s) ** 2),
        row(m + "no_b2", lambda s, t: diff(s, t).pow(2).sum()),
        row(m + "divided_by_b", lambda s, t: diff(s, t).pow(2).sum() / len(s)),
        row(m + "norm_not_square", lambda s, t: diff(s, t).norm() / len(s) ** 2),
        row(m + "norm_not_square_no_b2", lambda s, t: diff(s, t).norm()),
        row(m + "absolute", lambda s, t: diff(s, t).abs().sum() / len(s) ** 2),
        row(m + "not_row_normalised", lambda s, t: raw(s, t).pow(2).sum() / len(s) ** 2),
        row(m + "not_row_normalised_no_b2", lambda s, t: raw(s, t).pow(2).sum()),
        row("similarity_matrix.pooled", lambda s, t: (g(_pooled(t)) - g(_pooled(s))).pow(2).sum() / len(s) ** 2),
    ]


def _sp_fallback(exercise, name, out, e, case) -> str:
    b = len(case[0])
    hint = ""
    if float(out) != 0 and math.isclose(float(e) / float(out), 1 / b ** 2, rel_tol=1e-3):
        hint = " " + engine.mistake("similarity_preserving_loss.ratio_one_over_b2")
    return (engine.mistake("similarity_preserving_loss.unexplained", name=name, pair=_pair_shown(case), out=fmt(out),
                           expected=fmt(e), ratio=engine.ratio(e, out), hint=hint))


SIMILARITY_PRESERVING_LOSS = engine.Exercise(
    "similarity_preserving_loss", losses.similarity_preserving_loss, _SP_INPUTS, _pair_shown, _sp_variants,
    success="{name} matches the reference on {n} test cases (batches of 3 to 6, flat and 4-D features).",
    fallback=_sp_fallback, on_match=engine.gradient_to("the student's features"),
    call_hint=lambda case: _flatten_hint if max(case[0].dim(), case[1].dim()) > 2 else None,
)


check_similarity_preserving_loss = engine.checker(SIMILARITY_PRESERVING_LOSS, """
    Check ``fn(student_feature, teacher_feature)`` against
    :func:`kdcourse.losses.similarity_preserving_loss`: ``||G_T - G_S||_F^2 / b^2``.""")
