"""Checkers for lesson 09 (distilling a language model), written as tables.

Each exercise is one :class:`Exercise` entry: the reference, the fixed cases, and its known
mistakes -- an id, the message that names it and says the fix, and a function that makes it.
:func:`check` runs the learner's function on every case; when an output is off it finds the
mistakes whose outputs match the learner's on every case (the fewest first) and quotes them.
``tests/test_checks_lm.py`` runs every table: the reference passes, each mistake gets its message.

The cases are batches of token logits ``(batch, length, vocab)`` with a padding mask whose
sequences have *different* lengths (4, 2 and 5 real tokens of 5), so "forgot the mask",
"averaged per sequence" and "averaged over the batch" give different numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import losses
from .engine import Exercise, at_case
from .engine import check as _check
from .engine import mistake as _mistake
from .logits import _call, _close, _fmt, _generic

__all__ = [
    "EXERCISES",
    "check",
    "check_masked_token_kd",
    "check_reverse_kl",
    "check_renormalize_top_k",
]

_NAN_HINT = ("a log of zero or of a negative number, or an exp() that overflows: work with "
             "torch.log_softmax / torch.softmax, which are stable")
_KL_DIV_NAN = ("usually F.kl_div given log-probabilities as its target without log_target=True: it then "
               "takes the log of negative numbers. Pass log_target=True, or give it probabilities")


# ------------------------------------------------------------------ fixed inputs

_G = torch.Generator().manual_seed(9)
_STUDENT = torch.randn(3, 5, 6, generator=_G) * 2.0
_TEACHER = torch.randn(3, 5, 6, generator=_G) * 2.5
_MASK = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
_STUDENT_B = torch.randn(2, 4, 9, generator=_G) * 1.5
_TEACHER_B = torch.randn(2, 4, 9, generator=_G) * 3.0
_MASK_B = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
_FULL_B = torch.ones(2, 4, dtype=torch.bool)


def _lengths(mask: torch.Tensor) -> str:
    return "/".join(str(int(n)) for n in mask.sum(1))


def _show_kd(case: tuple) -> str:
    s, _, mask, *rest = case
    T = f", T={rest[0]:g}" if rest else ""
    return f"logits of shape {tuple(s.shape)}, mask with {_lengths(mask)} real tokens per sequence{T}"


# ------------------------------------------------------------------ the masked token-level KD loss

def _per_token_kl(s, t, T=1.0, reverse=False):
    log_q, log_p = F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)
    if reverse:
        log_p, log_q = log_q, log_p
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _token_mean(x, mask):
    return (x * mask).sum() / mask.sum()


_KD_MISTAKES = (
    _mistake("no_mask", "it averages over every position, padding included: the padded positions add their "
            "(meaningless) KL and dilute the real tokens. Multiply the per-token KL by the mask and divide by "
            "mask.sum(), the number of real tokens.",
            lambda s, t, m, T: _per_token_kl(s, t, T).mean() * T * T),
    _mistake("masked_but_all_positions", "it zeroes the padded positions but still divides by every position "
            "(batch x length): divide by mask.sum(), the number of real tokens.",
            lambda s, t, m, T: (_per_token_kl(s, t, T) * m).sum() / m.numel() * T * T),
    _mistake("per_sequence", "it averages per sequence first, then over sequences: a token of a short sequence "
            "then weighs more than one of a long sequence. Average per token over the whole batch: "
            "(kl * mask).sum() / mask.sum().",
            lambda s, t, m, T: ((_per_token_kl(s, t, T) * m).sum(1) / m.sum(1)).mean() * T * T),
    _mistake("per_batch", "it divides the summed KL by the number of sequences (reduction=\"batchmean\" on the "
            "flattened tokens counts rows of the batch, not tokens): divide by mask.sum(), the number of real "
            "tokens.",
            lambda s, t, m, T: (_per_token_kl(s, t, T) * m).sum() / s.shape[0] * T * T),
    _mistake("vocab_mean", "it averages over the vocabulary too (reduction=\"mean\" on a per-class tensor): the KL "
            "is a sum over the vocabulary, then a mean over real tokens.",
            lambda s, t, m, T: _token_mean(_per_token_kl(s, t, T), m) / s.shape[-1] * T * T),
    _mistake("no_T2", "the loss is not multiplied by T^2: at T != 1 the gradients shrink like 1/T^2. Multiply by "
            "T ** 2, as kd_loss does.",
            lambda s, t, m, T: _token_mean(_per_token_kl(s, t, T), m)),
    _mistake("reversed", "the KL is reversed: it computes KL(student || teacher). Forward token-level KD is "
            "KL(teacher || student): the teacher's probabilities weight the log-ratio.",
            lambda s, t, m, T: _token_mean(_per_token_kl(s, t, T, reverse=True), m) * T * T),
    _mistake("no_temperature", "the temperature is only used as the T^2 factor: divide both models' logits by T "
            "inside the softmaxes too.",
            lambda s, t, m, T: _token_mean(_per_token_kl(s, t), m) * T * T),
    _mistake("cross_entropy", "it computes the cross-entropy -sum p_t log p_s, not the KL: the two differ by the "
            "teacher's entropy. Subtract it, or use sum p_t (log p_t - log p_s).",
            lambda s, t, m, T: _token_mean(-(F.softmax(t / T, -1) * F.log_softmax(s / T, -1)).sum(-1), m) * T * T),
    _mistake("inverted_mask", "it keeps the padded positions and drops the real tokens (e.g. masked_fill(mask, 0), "
            "which zeroes where the mask is TRUE): mask is true for real tokens, so zero where it is false: "
            "masked_fill(~mask, 0), or multiply by the mask.",
            lambda s, t, m, T: (_per_token_kl(s, t, T) * ~m).sum() / m.sum() * T * T),
    _mistake("sum", "it sums the per-token KL over the real tokens without dividing by their number: divide by "
            "mask.sum().",
            lambda s, t, m, T: (_per_token_kl(s, t, T) * m).sum() * T * T),
    _mistake("T_not_T2", "it multiplies by T instead of T^2: the gradient of the softened KL shrinks like 1/T^2, "
            "so the factor is T ** 2.",
            lambda s, t, m, T: _token_mean(_per_token_kl(s, t, T), m) * T),
    _mistake("wrong_dim", "its softmaxes run over the wrong dimension: the vocabulary is the LAST dimension of "
            "(batch, length, vocab) logits: use dim=-1.",
            lambda s, t, m, T: _token_mean((F.softmax(t / T, 1) * (F.log_softmax(t / T, 1) - F.log_softmax(s / T, 1)))
                                           .sum(-1), m) * T * T),
)



# ------------------------------------------------------------------ reverse KL

_REVERSE_MISTAKES = (
    _mistake("forward", "it computes the forward KL(teacher || student): the reverse KL weights the log-ratio by "
            "the STUDENT's probabilities: sum q_s (log q_s - log p_t).",
            lambda s, t, m: _token_mean(_per_token_kl(s, t), m)),
    _mistake("no_mask", "it averages over every position, padding included: multiply by the mask and divide by "
            "mask.sum().",
            lambda s, t, m: _per_token_kl(s, t, reverse=True).mean()),
    _mistake("per_sequence", "it averages per sequence first: average per token over the whole batch, "
            "(kl * mask).sum() / mask.sum().",
            lambda s, t, m: ((_per_token_kl(s, t, reverse=True) * m).sum(1) / m.sum(1)).mean()),
    _mistake("sign", "it returns minus the forward KL (the teacher's probabilities weight log q_s - log p_t), a "
            "negative number: the reverse KL is sum q_s (log q_s - log p_t), weighted by the STUDENT, and is never "
            "negative.",
            lambda s, t, m: _token_mean((F.softmax(t, -1) * (F.log_softmax(s, -1) - F.log_softmax(t, -1))).sum(-1), m)),
    _mistake("masked_but_all_positions", "it zeroes the padded positions but divides by every position (batch x "
            "length): divide by mask.sum(), the number of real tokens.",
            lambda s, t, m: (_per_token_kl(s, t, reverse=True) * m).sum() / m.numel()),
    _mistake("per_batch", "it divides the summed KL by the number of sequences: divide by mask.sum(), the number "
            "of real tokens.",
            lambda s, t, m: (_per_token_kl(s, t, reverse=True) * m).sum() / s.shape[0]),
    _mistake("sum", "it sums the per-token KL without dividing by the number of real tokens: divide by mask.sum().",
            lambda s, t, m: (_per_token_kl(s, t, reverse=True) * m).sum()),
    _mistake("vocab_mean", "it averages over the vocabulary too: the KL is a sum over the vocabulary, then a mean "
            "over real tokens.",
            lambda s, t, m: _token_mean(_per_token_kl(s, t, reverse=True), m) / s.shape[-1]),
    _mistake("cross_entropy", "it computes the cross-entropy -sum q_s log p_t, not the KL: add the student's "
            "sum q_s log q_s (the negative entropy), i.e. use sum q_s (log q_s - log p_t).",
            lambda s, t, m: _token_mean(-(F.softmax(s, -1) * F.log_softmax(t, -1)).sum(-1), m)),
    _mistake("student_weights_missing", "it sums the log-ratio log q_s - log p_t without weighting it by q_s: the "
            "reverse KL is an expectation under the student, sum q_s (log q_s - log p_t).",
            lambda s, t, m: _token_mean((F.log_softmax(s, -1) - F.log_softmax(t, -1)).sum(-1), m)),
)



# ------------------------------------------------------------------ top-k renormalisation

def _top_log_probs(logits: torch.Tensor, k: int) -> torch.Tensor:
    return F.log_softmax(logits, -1).topk(k, dim=-1).values


_TOPK_CASES = ((_top_log_probs(_TEACHER, 3),), (_top_log_probs(_TEACHER_B, 5),), (_top_log_probs(_TEACHER_B, 1),),
               (_top_log_probs(torch.tensor([[[900.0, 890.0, 0.0, -5.0]]]), 2),))

_TOPK_MISTAKES = (
    _mistake("not_renormalized", "it returns exp(log-probabilities) as they are: they sum to less than 1 (the "
            "teacher's tail outside its top k is missing). Divide by their sum over the last dimension.",
            lambda lp: lp.exp()),
    _mistake("tail_spread", "it spreads the tail mass evenly over the k tokens (adds (1 - sum) / k to each): that "
            "changes their ratios. Renormalise instead: p / p.sum(-1, keepdim=True) keeps the ratios.",
            lambda lp: lp.exp() + (1 - lp.exp().sum(-1, keepdim=True)) / lp.shape[-1]),
    _mistake("tail_to_top", "it gives the whole tail mass to the top token: renormalise all k instead, "
            "p / p.sum(-1, keepdim=True).",
            lambda lp: lp.exp() + F.pad(1 - lp.exp().sum(-1, keepdim=True), (0, lp.shape[-1] - 1))),
    _mistake("log_space", "it returns log-probabilities (a log_softmax): the exercise asks for probabilities. Take "
            ".exp(), or use torch.softmax(top_log_probs, dim=-1).",
            lambda lp: F.log_softmax(lp, -1)),
    _mistake("wrong_dim", "it normalises over the wrong dimension: the k candidates of one token are on the LAST "
            "dimension (dim=-1).",
            lambda lp: F.softmax(lp, 0)),
    _mistake("log_prob_ratio", "it divides the log-probabilities by their sum: renormalise the probabilities, "
            "exp(lp) / exp(lp).sum(-1, keepdim=True).",
            lambda lp: lp / lp.sum(-1, keepdim=True)),
)




# ------------------------------------------------------------------ what a table cannot say


def _output(reference: Callable, nan_hint: str, scalar: bool = True) -> Callable:
    """A loss (one number) or a tensor shaped like the reference, finite where the reference is."""
    def output(name: str, shown: str, out, case: tuple):
        __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
        expected = reference(*case)
        if not isinstance(out, torch.Tensor):
            hint = " Did you call `.item()` or `float(...)`? Return the tensor so gradients can flow." \
                if isinstance(out, (float, int)) else ""
            if out is None:
                hint = " Did you forget the `return` statement?"
            raise AssertionError(f"{name}({shown}) returned a {type(out).__name__}, expected a torch.Tensor.{hint}")
        if out.shape != expected.shape:
            what = "a loss must be a scalar (shape ()): average over the real tokens" if scalar else \
                f"expected {tuple(expected.shape)}, one value per cached candidate"
            raise AssertionError(f"{name}({shown}) returned shape {tuple(out.shape)}; {what}.")
        if not torch.isfinite(out).all() and torch.isfinite(expected).all():
            raise AssertionError(f"{name}({shown}) returned NaN or inf where the answer is finite: {nan_hint}.")
        return out
    return output


def _loss_fallback(formula: str) -> Callable:
    return lambda exercise, name, out, e, case: (_generic(name, exercise.show(case), e, out)
                                                 + f"\n  The formula: {formula}.")


def _rows_fallback(exercise, name, out, e, case) -> str:
    """Where a tensor is off: the row that differs most, and the formula."""
    got, want = out.detach().reshape(-1, out.shape[-1]), e.reshape(-1, e.shape[-1])
    row = int((got - want).abs().amax(-1).argmax())
    return (f"{name}({exercise.show(case)}) returned the right shape but other values; in row {row} of the flattened "
            f"output: got {_fmt(got[row])} (sum {float(got[row].sum()):.4g}), expected {_fmt(want[row])} "
            f"(sum {float(want[row].sum()):.4g}). No classic mistake explains this."
            "\n  The formula: p_j / sum_{i <= k} p_i with p = exp(top_log_probs).")


def _real_tokens_only(exercise, name: str, fn: Callable) -> None:
    """The gradient reaches the real tokens only, and equals the reference's."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    case = exercise.cases[0]
    s = case[0].clone().requires_grad_(True)
    out = _call(fn, name, (s, *case[1:]), exercise.show(case))
    if not out.requires_grad:
        raise AssertionError(
            f"{name} returns the right value but no gradient flows back to the student's logits: did you use "
            ".detach(), .item(), torch.no_grad() or numpy? Training would not learn from it.")
    out.backward()
    padded = ~case[2]
    if s.grad[padded].abs().max() > 0:
        raise AssertionError(f"{name} returns the right value, but padded positions receive a gradient: "
                             "mask the per-token values (multiply by the mask) before summing.")
    s_ref = case[0].clone().requires_grad_(True)
    exercise.reference(s_ref, *case[1:]).backward()
    if not _close(s.grad, s_ref.grad):
        raise AssertionError(
            f"{name} returns the right value, but its gradient with respect to the student's logits is not "
            f"the loss's (norm {float(s.grad.norm()):.3g}, expected {float(s_ref.grad.norm()):.3g}): part of "
            "the student's computation is detached (.detach(), .data, or a value computed under no_grad), "
            "so training would follow the wrong direction. Keep every student term in the graph.")


def _token_kd(s, t, m, T):
    return losses.token_kd_loss(s, t, m, T=T)


def _reverse_kl(s, t, m):
    return losses.token_kd_loss(s, t, m, divergence="reverse")


def _renormalized(lp):
    return torch.softmax(lp, dim=-1)


_LOSS_SUCCESS = "matches the reference on {n} cases, and its gradient reaches the real tokens only, as the reference's does."

MASKED_TOKEN_KD = Exercise(
    "masked_token_kd", _token_kd,
    ((_STUDENT, _TEACHER, _MASK, 1.0), (_STUDENT, _TEACHER, _MASK, 2.0),
     (_STUDENT_B, _TEACHER_B, _MASK_B, 4.0), (_STUDENT_B, _TEACHER_B, _FULL_B, 1.0)),
    show=_show_kd, variants=lambda: list(_KD_MISTAKES), success=_LOSS_SUCCESS,
    fallback=_loss_fallback("T^2 * sum over real tokens of KL(p_t || p_s), divided by the number of real tokens"),
    output=_output(_token_kd, _KL_DIV_NAN), on_match=_real_tokens_only, quote=at_case,
)

REVERSE_KL = Exercise(
    "reverse_kl", _reverse_kl,
    ((_STUDENT, _TEACHER, _MASK), (_STUDENT_B, _TEACHER_B, _MASK_B), (_STUDENT_B, _TEACHER_B, _FULL_B)),
    show=_show_kd, variants=lambda: list(_REVERSE_MISTAKES), success=_LOSS_SUCCESS,
    fallback=_loss_fallback("sum over real tokens of sum_v q_s,v (log q_s,v - log p_t,v), divided by the number "
                            "of real tokens"),
    output=_output(_reverse_kl, _KL_DIV_NAN), on_match=_real_tokens_only, quote=at_case,
)

RENORMALIZE_TOP_K = Exercise(
    "renormalize_top_k", _renormalized, _TOPK_CASES,
    show=lambda case: f"top-k log-probabilities of shape {tuple(case[0].shape)}",
    variants=lambda: list(_TOPK_MISTAKES), success="matches the reference on {n} cases.",
    fallback=_rows_fallback, output=_output(_renormalized, _NAN_HINT, scalar=False), quote=at_case,
)

EXERCISES = {e.name: e for e in (MASKED_TOKEN_KD, REVERSE_KL, RENORMALIZE_TOP_K)}
"""Every exercise of lesson 09, by name."""


def check(exercise: Exercise | str, fn: Callable) -> None:
    """Run ``fn`` on every case of ``exercise`` (or its name): one ✓ line when right, else
    ``AssertionError`` naming the mistake that reproduces the learner's outputs."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    _check(EXERCISES[exercise] if isinstance(exercise, str) else exercise, fn)


def check_masked_token_kd(fn: Callable) -> None:
    """Check ``fn(student_logits, teacher_logits, mask, T)`` against ``token_kd_loss(..., T=T)``."""
    __tracebackhide__ = True
    check(MASKED_TOKEN_KD, fn)


def check_reverse_kl(fn: Callable) -> None:
    """Check ``fn(student_logits, teacher_logits, mask)`` against ``token_kd_loss(..., divergence="reverse")``."""
    __tracebackhide__ = True
    check(REVERSE_KL, fn)


def check_renormalize_top_k(fn: Callable) -> None:
    """Check ``fn(top_log_probs)`` (``(..., k)`` cached log-probabilities) returns them renormalised."""
    __tracebackhide__ = True
    check(RENORMALIZE_TOP_K, fn)
