"""What the logit mistakes compute: the soft term ``T^2 KL(p_t || p_s)`` and the mix
``alpha * soft + (1 - alpha) * CE`` as a learner who made them would write them.

Each mistake is named by its id in :data:`kdcourse.mistakes.CATALOGUE`, so one id is both the message a
checker says and the function that makes the mistake. The checkers of lessons 02 and 04 compare a
learner's answer with these (:mod:`kdcourse.checks.logits`, :mod:`kdcourse.checks.training`), and the
tests hold lesson 07's broken losses (:mod:`kdcourse.pitfalls`) equal to them.

For instance ``kd_loss_with("missing_t_squared")(s, t, 4.0)`` is ``kd_loss(s, t, 4.0) / 16``, and
``distillation_loss_with("swapped_alpha", "reversed_kl")`` weighs a reversed KL by ``1 - alpha``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["SOFT_TERM_SLIPS", "WEIGHT_SLIPS", "HARD_TERM_SLIPS", "kd_loss_with", "distillation_loss_with"]

SOFT_TERM_SLIPS = {  # where the soft term can go wrong -> the mistakes there (at most one each)
    "scale": ("missing_t_squared", "t_not_squared"),
    "direction": ("reversed_kl",),
    "reduction": ("mean_reduction", "sum_reduction"),
    "temperature": ("temperature_student_only", "temperature_teacher_only", "temperature_missing",
                    "temperature_multiplied"),
    "form": ("softmax_student", "log_target", "cross_entropy_not_kl"),
    "dim": ("softmax_over_batch", "student_softmax_over_batch", "teacher_softmax_over_batch"),
}

WEIGHT_SLIPS = {  # the weights (soft, hard) of L = alpha * soft + (1 - alpha) * hard under each slip
    "swapped_alpha": lambda a: (1 - a, a),
    "hard_unweighted": lambda a: (a, 1.0),
    "soft_unweighted": lambda a: (1.0, 1 - a),
    "alpha_both": lambda a: (a, a),
    "no_weights": lambda a: (1.0, 1.0),
    "soft_only": lambda a: (1.0, 0.0),
    "hard_only": lambda a: (0.0, 1.0),
}

HARD_TERM_SLIPS = {  # the hard term under each slip, of (student logits, teacher logits, labels, T)
    "ce_at_temperature": lambda s, t, y, T: F.cross_entropy(s / T, y),
    "ce_at_temperature_t_squared": lambda s, t, y, T: F.cross_entropy(s / T, y) * T * T,
    "ce_sum": lambda s, t, y, T: F.cross_entropy(s, y, reduction="sum"),
    "ce_teacher_labels": lambda s, t, y, T: F.cross_entropy(s, t.argmax(1)),
    "ce_on_probabilities": lambda s, t, y, T: F.cross_entropy(torch.softmax(s, 1), y),
    "ce_scaled_t_squared": lambda s, t, y, T: F.cross_entropy(s, y) * T * T,
    "nll_on_logits": lambda s, t, y, T: F.nll_loss(s, y),
    "nll_on_probabilities": lambda s, t, y, T: F.nll_loss(torch.softmax(s, 1), y),
}


def kd_loss_with(*mistakes: str) -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    """``fn(student_logits, teacher_logits, T)``: the soft term ``T^2 KL(p_t^T || p_s^T)`` (batchmean)
    with ``mistakes`` made, at most one of each of :data:`SOFT_TERM_SLIPS`; ``"plain_kl"`` is the KL at
    T = 1 (no temperature anywhere)."""
    if "plain_kl" in mistakes:
        mistakes = tuple(m for m in mistakes if m != "plain_kl") + ("temperature_missing", "missing_t_squared")
    slip = {slot: next((m for m in mistakes if m in ids), "ok") for slot, ids in SOFT_TERM_SLIPS.items()}
    unknown = set(mistakes) - set(slip.values())
    if unknown:
        raise ValueError(f"not a soft-term mistake, or two in one place: {sorted(unknown)}")
    temperature, dim = slip["temperature"], slip["dim"]

    def fn(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
        zs = s * T if temperature == "temperature_multiplied" else (
            s if temperature in ("temperature_missing", "temperature_teacher_only") else s / T)
        zt = t * T if temperature == "temperature_multiplied" else (
            t if temperature in ("temperature_missing", "temperature_student_only") else t / T)
        if slip["direction"] == "reversed_kl":
            zs, zt = zt, zs
        dim_s = 0 if dim in ("softmax_over_batch", "student_softmax_over_batch") else 1  # batch, or classes
        dim_t = 0 if dim in ("softmax_over_batch", "teacher_softmax_over_batch") else 1
        log_ps, log_pt = F.log_softmax(zs, dim_s), F.log_softmax(zt, dim_t)
        form = slip["form"]
        if form == "softmax_student":
            per = log_pt.exp() * (log_pt - log_ps.exp())  # kl_div(input=p_s, target=p_t)
        elif form == "log_target":
            per = F.kl_div(log_ps, log_pt, reduction="none")  # nan: log of a negative "probability"
        elif form == "cross_entropy_not_kl":
            per = -log_pt.exp() * log_ps
        else:
            per = log_pt.exp() * (log_pt - log_ps)
        divisor = {"mean_reduction": per.numel(), "sum_reduction": 1}.get(slip["reduction"], len(s))
        value = per.sum() / divisor
        return value * {"ok": T * T, "missing_t_squared": 1.0, "t_not_squared": T}[slip["scale"]]

    return fn


def distillation_loss_with(*mistakes: str) -> Callable:
    """``fn(student_logits, teacher_logits, targets, T, alpha)``: ``alpha * T^2 KL + (1 - alpha) CE`` with
    ``mistakes`` made: at most one of :data:`WEIGHT_SLIPS`, one of :data:`HARD_TERM_SLIPS`, and soft-term
    mistakes (:func:`kd_loss_with`)."""
    weight_slips = [m for m in mistakes if m in WEIGHT_SLIPS]
    hard_slips = [m for m in mistakes if m in HARD_TERM_SLIPS]
    if len(weight_slips) > 1 or len(hard_slips) > 1:
        raise ValueError(f"at most one slip of the weights and one of the hard term, got {weight_slips + hard_slips}")
    soft = kd_loss_with(*(m for m in mistakes if m not in weight_slips + hard_slips))
    weigh = WEIGHT_SLIPS[weight_slips[0]] if weight_slips else lambda a: (a, 1 - a)
    hard_term = HARD_TERM_SLIPS[hard_slips[0]] if hard_slips else lambda s, t, y, T: F.cross_entropy(s, y)

    def fn(s, t, y, T, alpha):
        w_soft, w_hard = weigh(alpha)
        return w_soft * soft(s, t, T) + w_hard * hard_term(s, t, y, T)

    return fn
