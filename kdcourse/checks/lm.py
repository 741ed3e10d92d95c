"""Checkers for lesson 09 (distilling a language model), written as tables.

Each exercise is one :class:`~kdcourse.checks.engine.Exercise` entry: the reference, the fixed
cases, and its known mistakes -- an id (its message, which names it and says the fix, is in
:mod:`kdcourse.mistakes.language`) and a function that makes it. The engine runs the learner's
function on every case; when an output is off it finds the mistakes whose outputs match the
learner's on every case (the fewest first) and quotes them.

The cases are batches of token logits ``(batch, length, vocab)`` with a padding mask whose
sequences have *different* lengths (4, 2 and 5 real tokens of 5), so "forgot the mask",
"averaged per sequence" and "averaged over the batch" give different numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import losses
from . import engine
from .engine import fmt, row
from .logits import _IN_PLACE, _call

__all__ = [
    "EXERCISES",
    "check_masked_token_kd",
    "check_reverse_kl",
    "check_renormalize_top_k",
]

_NAN_HINT = engine.mistake("language.nan_from_log")
_KL_DIV_NAN = engine.mistake("language.nan_from_kl_div")


# ------------------------------------------------------------------ fixed inputs

_G = torch.Generator().manual_seed(9)
_STUDENT = torch.randn(3, 5, 6, generator=_G) * 2.0
_TEACHER = torch.randn(3, 5, 6, generator=_G) * 2.5
_MASK = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
_STUDENT_B = torch.randn(2, 4, 9, generator=_G) * 1.5
_TEACHER_B = torch.randn(2, 4, 9, generator=_G) * 3.0
_MASK_B = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
_FULL_B = torch.ones(2, 4, dtype=torch.bool)


def _show_kd(case: tuple) -> str:
    s, _, mask, *rest = case
    T, lengths = f", T={rest[0]:g}" if rest else "", "/".join(str(int(n)) for n in mask.sum(1))
    return f"logits of shape {tuple(s.shape)}, mask with {lengths} real tokens per sequence{T}"


# ------------------------------------------------------------------ the masked token-level KD loss

def _per_token_kl(s, t, T=1.0, reverse=False):
    log_q, log_p = F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)
    if reverse:
        log_p, log_q = log_q, log_p
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _token_mean(x, mask):
    return (x * mask).sum() / mask.sum()


_KD_MISTAKES = (
    row("masked_token_kd.no_mask", lambda s, t, m, T: _per_token_kl(s, t, T).mean() * T * T),
    row("masked_token_kd.masked_but_all_positions",
         lambda s, t, m, T: (_per_token_kl(s, t, T) * m).sum() / m.numel() * T * T),
    row("masked_token_kd.per_sequence",
         lambda s, t, m, T: ((_per_token_kl(s, t, T) * m).sum(1) / m.sum(1)).mean() * T * T),
    row("masked_token_kd.per_batch", lambda s, t, m, T: (_per_token_kl(s, t, T) * m).sum() / s.shape[0] * T * T),
    row("masked_token_kd.vocab_mean", lambda s, t, m, T: _token_mean(_per_token_kl(s, t, T), m) / s.shape[-1] * T * T),
    row("masked_token_kd.no_T2", lambda s, t, m, T: _token_mean(_per_token_kl(s, t, T), m)),
    row("masked_token_kd.reversed", lambda s, t, m, T: _token_mean(_per_token_kl(s, t, T, reverse=True), m) * T * T),
    row("masked_token_kd.no_temperature", lambda s, t, m, T: _token_mean(_per_token_kl(s, t), m) * T * T),
    row("masked_token_kd.cross_entropy",
         lambda s, t, m, T: _token_mean(-(F.softmax(t / T, -1) * F.log_softmax(s / T, -1)).sum(-1), m) * T * T),
    row("masked_token_kd.inverted_mask", lambda s, t, m, T: (_per_token_kl(s, t, T) * ~m).sum() / m.sum() * T * T),
    row("masked_token_kd.sum", lambda s, t, m, T: (_per_token_kl(s, t, T) * m).sum() * T * T),
    row("masked_token_kd.T_not_T2", lambda s, t, m, T: _token_mean(_per_token_kl(s, t, T), m) * T),
    row("masked_token_kd.wrong_dim",
         lambda s, t, m, T: _token_mean((F.softmax(t / T, 1) * (F.log_softmax(t / T, 1) - F.log_softmax(s / T, 1)))
                                           .sum(-1), m) * T * T),
)


# ------------------------------------------------------------------ reverse KL

_REVERSE_MISTAKES = (
    row("reverse_kl.forward", lambda s, t, m: _token_mean(_per_token_kl(s, t), m)),
    row("reverse_kl.no_mask", lambda s, t, m: _per_token_kl(s, t, reverse=True).mean()),
    row("reverse_kl.per_sequence", lambda s, t, m: ((_per_token_kl(s, t, reverse=True) * m).sum(1) / m.sum(1)).mean()),
    row("reverse_kl.sign",
         lambda s, t, m: _token_mean((F.softmax(t, -1) * (F.log_softmax(s, -1) - F.log_softmax(t, -1))).sum(-1), m)),
    row("reverse_kl.masked_but_all_positions",
         lambda s, t, m: (_per_token_kl(s, t, reverse=True) * m).sum() / m.numel()),
    row("reverse_kl.per_batch", lambda s, t, m: (_per_token_kl(s, t, reverse=True) * m).sum() / s.shape[0]),
    row("reverse_kl.sum", lambda s, t, m: (_per_token_kl(s, t, reverse=True) * m).sum()),
    row("reverse_kl.vocab_mean", lambda s, t, m: _token_mean(_per_token_kl(s, t, reverse=True), m) / s.shape[-1]),
    row("reverse_kl.cross_entropy",
         lambda s, t, m: _token_mean(-(F.softmax(s, -1) * F.log_softmax(t, -1)).sum(-1), m)),
    row("reverse_kl.student_weights_missing",
         lambda s, t, m: _token_mean((F.log_softmax(s, -1) - F.log_softmax(t, -1)).sum(-1), m)),
)


# ------------------------------------------------------------------ top-k renormalisation

def _top_log_probs(logits: torch.Tensor, k: int) -> torch.Tensor:
    return F.log_softmax(logits, -1).topk(k, dim=-1).values


_TOPK_CASES = ((_top_log_probs(_TEACHER, 3),), (_top_log_probs(_TEACHER_B, 5),), (_top_log_probs(_TEACHER_B, 1),),
               (_top_log_probs(torch.tensor([[[900.0, 890.0, 0.0, -5.0]]]), 2),))

_TOPK_MISTAKES = (
    row("renormalize_top_k.not_renormalized", lambda lp: lp.exp()),
    row("renormalize_top_k.tail_spread", lambda lp: lp.exp() + (1 - lp.exp().sum(-1, keepdim=True)) / lp.shape[-1]),
    row("renormalize_top_k.tail_to_top",
         lambda lp: lp.exp() + F.pad(1 - lp.exp().sum(-1, keepdim=True), (0, lp.shape[-1] - 1))),
    row("renormalize_top_k.log_space", lambda lp: F.log_softmax(lp, -1)),
    row("renormalize_top_k.wrong_dim", lambda lp: F.softmax(lp, 0)),
    row("renormalize_top_k.log_prob_ratio", lambda lp: lp / lp.sum(-1, keepdim=True)),
)


# ------------------------------------------------------------------ what a table cannot say


def _output(reference: Callable, nan_hint: str, scalar: bool = True) -> Callable:
    """A loss (one number) or a tensor shaped like the reference, finite where the reference is."""
    def output(name: str, shown: str, out, case: tuple):
        __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
        expected = reference(*case)
        out = engine.tensor_output(name, shown, out, finite=False)
        if out.shape != expected.shape:
            shapes = {"name": name, "shown": shown, "got": tuple(out.shape), "expected": tuple(expected.shape)}
            raise engine.fail("masked_token_kd.not_a_scalar", **shapes) if scalar else \
                engine.fail("renormalize_top_k.wrong_shape", **shapes)
        if not torch.isfinite(out).all() and torch.isfinite(expected).all():
            raise engine.fail("language.not_finite", name=name, shown=shown, nan_hint=nan_hint)
        return out
    return output


def _loss_fallback(formula: str) -> Callable:
    return lambda exercise, name, out, e, case: (engine.generic(name, exercise.show(case), e, out)
                                                 + f"\n  The formula: {formula}.")


def _rows_fallback(exercise, name, out, e, case) -> str:
    """Where a tensor is off: the row that differs most, and the formula."""
    got, want = out.detach().reshape(-1, out.shape[-1]), e.reshape(-1, e.shape[-1])
    worst = int((got - want).abs().amax(-1).argmax())
    return engine.mistake("renormalize_top_k.unexplained", name=name, shown=exercise.show(case), row=worst,
                          got=fmt(got[worst]), got_sum=f"{float(got[worst].sum()):.4g}", expected=fmt(want[worst]),
                          expected_sum=f"{float(want[worst].sum()):.4g}") + (
        "\n  The formula: p_j / sum_{i <= k} p_i with p = exp(top_log_probs).")


def _real_tokens_only(exercise, name: str, fn: Callable) -> None:
    """The gradient reaches the real tokens only, and equals the reference's."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    case = exercise.cases[0]
    s = case[0].clone().requires_grad_(True)
    out = _call(fn, name, (s, *case[1:]), exercise.show(case))
    if not out.requires_grad:
        raise engine.fail("answer.no_gradient_to_logits", name=name, shown=exercise.show(case))
    out.backward()
    padded = ~case[2]
    if s.grad[padded].abs().max() > 0:
        raise engine.fail("masked_token_kd.padded_gradient", name=name)
    s_ref = case[0].clone().requires_grad_(True)
    exercise.reference(s_ref, *case[1:]).backward()
    if not engine.close(s.grad, s_ref.grad):
        raise engine.fail("masked_token_kd.detached_part", name=name, norm=f"{float(s.grad.norm()):.3g}",
                          expected_norm=f"{float(s_ref.grad.norm()):.3g}")


def _token_kd(s, t, m, T):
    return losses.token_kd_loss(s, t, m, T=T)


_reverse_kl = functools.partial(losses.token_kd_loss, divergence="reverse")
_renormalized = functools.partial(torch.softmax, dim=-1)


_LOSS_SUCCESS = "{name} matches the reference on {n} cases, and its gradient reaches the real tokens only, as the reference's does."

MASKED_TOKEN_KD = engine.Exercise(
    "masked_token_kd", _token_kd,
    ((_STUDENT, _TEACHER, _MASK, 1.0), (_STUDENT, _TEACHER, _MASK, 2.0),
     (_STUDENT_B, _TEACHER_B, _MASK_B, 4.0), (_STUDENT_B, _TEACHER_B, _FULL_B, 1.0)),
    show=_show_kd, variants=lambda: list(_KD_MISTAKES), success=_LOSS_SUCCESS,
    fallback=_loss_fallback("T^2 * sum over real tokens of KL(p_t || p_s), divided by the number of real tokens"),
    output=_output(_token_kd, _KL_DIV_NAN), on_match=_real_tokens_only, quote=engine.at_case,
    in_place=_IN_PLACE,
    reference_name='kdcourse.losses.token_kd_loss',
)

REVERSE_KL = engine.Exercise(
    "reverse_kl", _reverse_kl,
    ((_STUDENT, _TEACHER, _MASK), (_STUDENT_B, _TEACHER_B, _MASK_B), (_STUDENT_B, _TEACHER_B, _FULL_B)),
    show=_show_kd, variants=lambda: list(_REVERSE_MISTAKES), success=_LOSS_SUCCESS,
    fallback=_loss_fallback("sum over real tokens of sum_v q_s,v (log q_s,v - log p_t,v), divided by the number "
                            "of real tokens"),
    output=_output(_reverse_kl, _KL_DIV_NAN), on_match=_real_tokens_only, quote=engine.at_case,
    in_place=_IN_PLACE,
    reference_name="kdcourse.losses.token_kd_loss(divergence='reverse')",
)

RENORMALIZE_TOP_K = engine.Exercise(
    "renormalize_top_k", _renormalized, _TOPK_CASES,
    show=lambda case: f"top-k log-probabilities of shape {tuple(case[0].shape)}",
    variants=lambda: list(_TOPK_MISTAKES), success="{name} matches the reference on {n} cases.",
    fallback=_rows_fallback, output=_output(_renormalized, _NAN_HINT, scalar=False), quote=engine.at_case,
    in_place=_IN_PLACE,
    reference_name='a softmax over the top-k log-probabilities',
)

EXERCISES = {e.name: e for e in (MASKED_TOKEN_KD, REVERSE_KL, RENORMALIZE_TOP_K)}
"""Every exercise of lesson 09, by name."""


check_masked_token_kd = engine.checker(MASKED_TOKEN_KD, """
    Check ``fn(student_logits, teacher_logits, mask, T)`` against ``token_kd_loss(..., T=T)``.""")


check_reverse_kl = engine.checker(REVERSE_KL, """
    Check ``fn(student_logits, teacher_logits, mask)`` against ``token_kd_loss(..., divergence="reverse")``.""")


check_renormalize_top_k = engine.checker(RENORMALIZE_TOP_K, """
    Check ``fn(top_log_probs)`` (``(..., k)`` cached log-probabilities) returns them renormalised.""")
