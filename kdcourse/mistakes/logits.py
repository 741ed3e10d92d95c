"""The mistakes of logit distillation (lessons 01, 02 and 04, and lesson 07's pitfalls): the softmax with a temperature,
the entropy, the soft term T^2 KL(p_t || p_s), its weights, the hard term and the frozen teacher."""

from __future__ import annotations

from .entry import Mistake, entries

ENTRIES = (
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

# The exercises of lessons 01 and 03, as a glossary: each id, then, indented, what a checker says of it.
ENTRIES += entries("""
softmax_with_temperature.no_temperature
    the temperature is not applied: it returns softmax(logits), the same for every T. Divide the logits by T
    before the softmax.

softmax_with_temperature.multiplied_by_t
    it multiplies the logits by T instead of dividing: softmax(logits * T) gets sharper as T grows, the opposite
    of softening. Use softmax(logits / T).

softmax_with_temperature.divided_twice
    it divides by T twice (softmax(logits / T**2)): divide the logits by T once.

softmax_with_temperature.divided_after
    it divides the probabilities by T after the softmax (softmax(logits) / T): the result no longer sums to 1.
    Divide the logits, before the softmax.

softmax_with_temperature.log_probabilities
    it returns log-probabilities (log_softmax); the exercise asks for probabilities: use torch.softmax (or take
    .exp() of the result).

softmax_with_temperature.not_normalised
    it returns exp(logits / T) without dividing by the sum over classes: normalise so that each row sums to 1.

softmax_with_temperature.whole_tensor_sum
    it divides by the sum of the WHOLE tensor (e.sum()), over every example and class at once, so the whole
    batch sums to 1 instead of each row. Sum over the classes only, one sum per example: e / e.sum(dim=-1,
    keepdim=True).

softmax_with_temperature.whole_tensor_sum_no_temperature
    it divides by the sum of the WHOLE tensor (e.sum()) and ignores T: divide the logits by T, then normalise
    each row, e / e.sum(dim=-1, keepdim=True).

softmax_with_temperature.no_softmax
    it returns logits / T, the scaled logits, without the softmax.

softmax_with_temperature.over_batch
    the softmax runs over the batch (dim=0), not over the classes: each column sums to 1 instead of each row.
    Use dim=-1 (the last dimension, the classes).

softmax_with_temperature.over_batch_no_temperature
    the softmax runs over the batch (dim=0) and ignores T: use softmax(logits / T, dim=-1).

softmax_with_temperature.unexplained
    {name}(logits={first}..., T={temperature}) returned first row {got}, expected {expected}.{extra} No classic
    mistake explains this; compare your code with q_i = exp(z_i / T) / sum_j exp(z_j / T).

softmax_with_temperature.one_example_dim
    {name}({shown}) returned {got}, expected {expected}: on a 1-D tensor the classes are dim=0 = dim=-1. Use dim=-1
    so one example and a batch both work.

softmax_with_temperature.overflow
    {name}({shown}) returned {got}: exp(1000) overflows to inf and inf / inf is nan. Subtract each row's maximum
    before the exp (the softmax does not change), or use torch.softmax.

softmax_with_temperature.fails_on_one_example
    Your function works on a batch but not on one example (a 1-D tensor): take the softmax over dim=-1, the last
    dimension, which is the classes in both cases.

entropy.bits
    it uses log base 2 (bits); the course measures entropy in nats: use the natural log (torch.log), so the
    uniform distribution over 10 classes has entropy log(10) = 2.303.

entropy.no_minus
    the minus sign is missing: sum_i p_i log p_i is <= 0; the entropy is its negative.

entropy.mean_over_classes
    it averages over the classes (mean) instead of summing: H = -sum_i p_i log p_i.

entropy.sum_over_batch
    it sums over the whole batch: return one entropy per example (sum over dim=-1).

entropy.mean_over_batch
    it averages over the batch: return one entropy per example (sum over dim=-1 only).

entropy.sum_over_dim0
    it sums over the batch (dim=0) instead of the classes (dim=-1).

entropy.no_weights
    it forgets the p_i weights: H = -sum_i p_i log p_i, not -sum_i log p_i.

entropy.nan_at_zero
    {name} returns {got} when some probabilities are exactly 0: 0 * log(0) = 0 * (-inf) is nan in floating point.
    Use torch.special.xlogy(p, p) (which defines 0 log 0 = 0) or p * torch.log(p.clamp_min(1e-12)).

kd_loss.one_value_per_example
    That is one value per example: average over the batch (reduction="batchmean": sum over classes, divide by the
    batch size).

kd_loss.one_value_per_class
    That is one value per example and class (reduction="none"): use reduction="batchmean" (sum over classes, mean
    over examples).

kd_loss.not_a_scalar
    {name}({shown}) returned a tensor of shape {out_shape}; a loss must be a scalar (shape ()).{hint}

kd_loss.reduce_to_one
    Reduce it to a single number.
""")
