"""The classic mistakes of logit distillation, written once: what each is, how it shows, how to fix it.

Every place that names a mistake reads it here: the checkers of lessons 02 and 04
(:func:`~kdcourse.checks.check_kd_loss`, :func:`~kdcourse.checks.check_distillation_loss`,
:func:`~kdcourse.checks.check_kd_training_step`), lesson 07's broken distillers
(:data:`kdcourse.pitfalls.PITFALLS`) and its diagnosis exercise (:func:`~kdcourse.checks.check_diagnosis`,
which accepts the ``aliases``).

Each entry has an ``id``, a one-line ``summary`` (what is wrong), a ``fix`` (what it does, why it
matters, what to write instead; it may name the numbers of the case at hand: ``{T2}`` the factor
``T^2``, ``{C}`` the number of classes, ``{B}`` the batch size, ``{alpha}`` and ``{1-alpha}`` the
weights, ``{moved}`` the teacher's buffers that moved), and ``pitfall=True`` for the seven of
lesson 07. :func:`message` fills them in.

    >>> print(message("missing_t_squared", T=4))
    the soft term is off by a factor T^2 (= 16 at T=4): ...
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Mistake", "CATALOGUE", "message", "pitfalls", "resolve"]


@dataclass(frozen=True)
class Mistake:
    id: str
    summary: str
    fix: str
    aliases: tuple[str, ...] = ()
    pitfall: bool = False


_ENTRIES = (
    # ---- the soft term: T^2 KL(p_t || p_s), batchmean, log_softmax on the student
    Mistake("missing_t_squared", "the soft term is not multiplied by T^2",
            "the soft term is off by a factor T^2 (= {T2}): did you forget to rescale it by T**2? Without it "
            "the soft term's gradient shrinks like 1/T^2 (lesson 02, section 3), so the teacher's signal is "
            "T^2 times too weak (kdcourse.losses.kd_loss includes the factor).",
            aliases=("missing_t2", "no_t_squared", "no_t2", "t_squared", "t2", "missing_t^2"), pitfall=True),
    Mistake("t_not_squared", "the soft term is multiplied by T, not T^2",
            "it multiplies by T, not by T^2: the soft term must be scaled by T**2."),
    Mistake("plain_kl", "the temperature is never used",
            "it is the plain KL at T = 1: the temperature is never used (neither inside the softmaxes nor as "
            "the T^2 factor)."),
    Mistake("reversed_kl", "KL(student || teacher) instead of KL(teacher || student)",
            "the KL arguments are reversed: it computes KL(student || teacher). The teacher's distribution is "
            "the target: F.kl_div(log_softmax(student / T), softmax(teacher / T)) = KL(teacher || student).",
            aliases=("reverse_kl", "swapped_kl", "kl_reversed", "reversed"), pitfall=True),
    Mistake("mean_reduction", 'F.kl_div(..., reduction="mean") instead of "batchmean"',
            "it uses reduction=\"mean\", which divides by batch size x number of classes, so the soft term is "
            "off by the number of classes ({C}). Use reduction=\"batchmean\" (sum over classes, mean over "
            "examples).",
            aliases=("reduction_mean", "mean", "reduction", 'reduction="mean"', "reduction='mean'"), pitfall=True),
    Mistake("sum_reduction", 'F.kl_div(..., reduction="sum")',
            "it uses reduction=\"sum\": the loss grows with the batch size ({B} here). Use "
            "reduction=\"batchmean\" (sum over classes, mean over examples)."),
    Mistake("softmax_student", "softmax instead of log_softmax on the student inside F.kl_div",
            "F.kl_div expects LOG-probabilities as its first argument, but it gets probabilities: use "
            "F.log_softmax(student_logits / T, dim=1) for the student.",
            aliases=("softmax_instead_of_log_softmax", "no_log_softmax", "softmax"), pitfall=True),
    Mistake("log_target", "the teacher's target passed as log-probabilities",
            "the teacher's target is passed as log-probabilities (log_softmax) but F.kl_div reads it as "
            "probabilities: use softmax(teacher_logits / T), or pass log_target=True."),
    Mistake("temperature_student_only", "T divides the student's logits only",
            "the temperature is applied to the student only: divide the teacher's logits by T as well."),
    Mistake("temperature_teacher_only", "T divides the teacher's logits only",
            "the temperature is applied to the teacher only: divide the student's logits by T as well."),
    Mistake("temperature_missing", "the logits are not divided by T",
            "the temperature is not applied to the logits: use softmax(teacher_logits / T) and "
            "log_softmax(student_logits / T)."),
    Mistake("temperature_multiplied", "the logits are multiplied by T",
            "it multiplies the logits by T instead of dividing them by T."),
    Mistake("cross_entropy_not_kl", "the cross-entropy H(p_t, p_s) instead of the KL",
            "it computes the cross-entropy H(p_t, p_s) = -sum p_t log p_s, not the KL divergence: the two differ "
            "by the teacher's entropy (constant for the student). Use F.kl_div (KL = H(p_t, p_s) - H(p_t))."),
    Mistake("softmax_over_batch", "the softmaxes run over the batch (dim=0)",
            "the soft term's softmaxes run over the batch (dim=0), not over the classes: each column of probabilities sums "
            "to 1 instead of each row, so every example's distribution is mixed with the others' (and the loss "
            "changes with the batch). Use dim=1 (or dim=-1), the classes, in both F.log_softmax and F.softmax."),
    Mistake("student_softmax_over_batch", "the student's log_softmax runs over the batch (dim=0)",
            "the student's log_softmax runs over the batch (dim=0), not over the classes: use "
            "F.log_softmax(student_logits / T, dim=1), like the teacher's softmax."),
    Mistake("teacher_softmax_over_batch", "the teacher's softmax runs over the batch (dim=0)",
            "the teacher's softmax runs over the batch (dim=0), not over the classes: use "
            "F.softmax(teacher_logits / T, dim=1), like the student's log_softmax."),
    # ---- the weights: alpha * soft + (1 - alpha) * hard
    Mistake("swapped_alpha", "alpha weights the hard loss, while the code's author thinks it weights the soft loss",
            "alpha is swapped: it weights the hard (cross-entropy) term. In this course alpha weights the soft "
            "(teacher) term: L = alpha * soft + (1 - alpha) * hard; with alpha = {alpha} the soft term gets "
            "weight {alpha}, the labels {1-alpha}.",
            aliases=("alpha_swapped", "alpha", "swapped_alpha_convention"), pitfall=True),
    Mistake("hard_unweighted", "the hard term has no (1 - alpha)",
            "the hard term is not weighted by (1 - alpha): L = alpha * soft + (1 - alpha) * hard."),
    Mistake("soft_unweighted", "the soft term has no alpha",
            "the soft term is not weighted by alpha: L = alpha * soft + (1 - alpha) * hard."),
    Mistake("alpha_both", "both terms weighted by alpha",
            "both terms are weighted by alpha: the hard term's weight is (1 - alpha)."),
    Mistake("no_weights", "the terms are added without their weights",
            "alpha is not used: the terms are simply added. Multiply the soft term by alpha and the "
            "cross-entropy by (1 - alpha): L = alpha * soft + (1 - alpha) * hard."),
    Mistake("soft_only", "only the soft term",
            "only the soft term is trained: the (1 - alpha) * cross-entropy with the labels y is missing."),
    Mistake("hard_only", "only the cross-entropy",
            "only the cross-entropy with the labels is trained: the alpha * T^2 * KL term with the teacher is "
            "missing (or its weight is 0)."),
    # ---- the hard term: F.cross_entropy(student_logits, targets) at T = 1
    Mistake("ce_at_temperature", "the cross-entropy on student_logits / T",
            "the cross-entropy is computed at temperature T (on student_logits / T): the hard term uses the "
            "ordinary softmax, T = 1: F.cross_entropy(student_logits, targets)."),
    Mistake("ce_at_temperature_t_squared", "the cross-entropy at temperature T, scaled by T^2",
            "the cross-entropy is computed at temperature T and scaled by T^2: only the soft term is; the hard "
            "term is F.cross_entropy(student_logits, targets) at T = 1."),
    Mistake("ce_scaled_t_squared", "the cross-entropy multiplied by T^2 too",
            "the cross-entropy is multiplied by T^2 (= {T2}) as well. Only the soft term needs T^2: it makes up "
            "for the 1/T^2 that the temperature puts on the soft term's gradient. The hard term is the plain "
            "F.cross_entropy(student_logits, targets): alpha * kd_loss(...) + (1 - alpha) * F.cross_entropy(...), "
            "not T**2 * (alpha * KL + (1 - alpha) * CE)."),
    Mistake("ce_sum", 'the cross-entropy with reduction="sum"',
            "the cross-entropy uses reduction=\"sum\" (it grows with the batch size): use the mean over the batch "
            "(the default of F.cross_entropy)."),
    Mistake("ce_teacher_labels", "the teacher's predictions used as labels",
            "the hard term uses the teacher's predictions (argmax) as labels: use the true labels `targets` (the "
            "teacher can be wrong; example 4 of the test batch is such a case)."),
    Mistake("ce_on_probabilities", "F.cross_entropy on probabilities",
            "F.cross_entropy takes logits, but it gets probabilities (a softmax was applied first): pass "
            "student_logits directly."),
    Mistake("nll_on_logits", "F.nll_loss on the raw logits",
            "the hard term is F.nll_loss on the raw logits. F.nll_loss expects LOG-probabilities: on logits it is "
            "just minus the mean of the true classes' logits, which the student can push up for ever (no softmax "
            "ties the classes together). Use F.cross_entropy(student_logits, targets), which applies log_softmax "
            "itself, or F.nll_loss(F.log_softmax(student_logits, dim=1), targets)."),
    Mistake("nll_on_probabilities", "F.nll_loss on probabilities",
            "the hard term is F.nll_loss on probabilities (a softmax): F.nll_loss expects LOG-probabilities. Use "
            "F.log_softmax(student_logits, dim=1) there, or simply F.cross_entropy(student_logits, targets)."),
    # ---- the teacher: frozen, in eval mode
    Mistake("teacher_train_mode", "the teacher is left in train mode (dropout on, BatchNorm statistics updated)",
            "the teacher ran in train mode: its BatchNorm running statistics changed ({moved}) and its dropout "
            "was active, so its soft targets were noisy. Call teacher.eval() before its forward pass.",
            aliases=("train_mode", "teacher_in_train_mode", "teacher_not_in_eval_mode", "no_eval"), pitfall=True),
    Mistake("teacher_not_frozen", "the teacher's parameters get gradients and are updated with the student's",
            "gradients flowed into the teacher (its parameters have .grad): run the teacher's forward pass under "
            "torch.no_grad() (or detach its logits). Besides wasting time, the teacher would get updated by any "
            "optimizer that holds its parameters.",
            aliases=("not_frozen", "unfrozen_teacher", "teacher_updated", "teacher_trained"), pitfall=True),
)

CATALOGUE: dict[str, Mistake] = {m.id: m for m in _ENTRIES}
"""Every mistake by its id."""


def message(mistake_id: str, *, T: float | None = None, C: int | None = None, B: int | None = None,
            alpha: float | None = None, moved: str | None = None) -> str:
    """The ``fix`` of a mistake with the numbers of the case at hand (a placeholder without its number
    is written as its symbol: ``T^2``, ``C``, ``B``, ``alpha``, ``1 - alpha``)."""
    text = CATALOGUE[mistake_id].fix
    for key, value in (("{T2}", f"{T * T:g} at T={T:g}" if T else "T^2"), ("{C}", str(C) if C else "C"),
                       ("{B}", str(B) if B else "B"),
                       ("{1-alpha}", f"{1 - alpha:g}" if alpha is not None else "1 - alpha"),
                       ("{alpha}", f"{alpha:g}" if alpha is not None else "alpha"),
                       ("{moved}", moved or "see teacher_drift")):
        text = text.replace(key, value)
    return text


def pitfalls() -> dict[str, str]:
    """Lesson 07's pitfalls: ``{id: summary}``, in the catalogue's order."""
    return {m.id: m.summary for m in _ENTRIES if m.pitfall}


def resolve(answer: str) -> str:
    """A learner's spelling of a pitfall (``"no T2"``, ``"Reversed KL"``) -> its id; unknown text is
    returned normalised (lower case, ``_`` for spaces and hyphens)."""
    text = answer.strip().lower().replace("-", "_").replace(" ", "_")
    for m in _ENTRIES:
        if m.pitfall and (text == m.id or text in m.aliases):
            return m.id
    return text
