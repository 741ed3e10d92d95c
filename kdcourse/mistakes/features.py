"""The mistakes of feature distillation (lessons 05 and 08b): FitNets' hint loss, attention maps and attention
transfer, between one pair of layers or several.

A glossary: each mistake's id (``exercise.mistake``), then, indented, what a checker says of it.
"""

from __future__ import annotations

from .entry import entries

ENTRIES = entries("""
hint_loss.sum
    it sums the squared errors; average them over all elements (F.mse_loss), so that one weight suits layers of
    any size (the paper's 1/2 goes into the weight too).

hint_loss.per_example_norm
    it sums over channels and positions and averages over the batch only (the paper's per-example norm); this
    course averages over all elements (F.mse_loss), so that one weight suits layers of any size.

hint_loss.half
    it multiplies by the paper's 1/2; in this course that constant is folded into the term's weight: return
    F.mse_loss(regressor(student_feature), teacher_feature).

hint_loss.norm_not_square
    it returns the norm of the difference, not its square: use the mean SQUARED error.

hint_loss.l1
    it uses the mean absolute error (L1); FitNets uses the squared error (F.mse_loss).

hint_loss.regressor_on_teacher
    the arguments are reversed: the regressor is applied to the TEACHER's features. It maps the student's
    features to the teacher's shape: mse(regressor(student_feature), teacher_feature).

hint_loss.no_regressor
    the regressor is never applied: the student's features are compared with the teacher's directly, which fails
    whenever their channel counts differ. Use regressor(student_feature).

hint_loss.regressor_on_both
    the regressor is applied to both features; apply it to the student's only.

attention_map.ignores_p
    it ignores p and always squares: use feature.abs().pow(p).

attention_map.no_abs
    it raises A to the power p without the absolute value: use feature.abs().pow(p) (|A|^p).

attention_map.not_normalised
    the map is not normalised: divide each example's map by its L2 norm (F.normalize(q, dim=1)). Without it the
    map's scale depends on the network's width and activations, and teacher and student maps cannot be compared.

attention_map.l1_norm
    it normalises with the L1 norm (the sum); attention transfer uses the L2 norm: F.normalize(q, p=2, dim=1).

attention_map.batch_norm
    it normalises over the whole batch at once: normalise each example's map separately (F.normalize(q, dim=1)
    on the (N, H*W) maps).

attention_map.normalised_over_batch
    it normalises over the batch (dim=0): normalise each example's map, over its H*W positions (dim=1).

attention_map.softmax
    it uses a softmax; attention transfer divides by the L2 norm: F.normalize(q, dim=1).

attention_map.max
    it divides by the maximum; attention transfer divides by the L2 norm: F.normalize(q, dim=1).

attention_transfer_loss.sum
    it sums over the batch and the positions; average instead (.pow(2).mean()), as in the authors' code: the
    paper's weight beta = 1000 assumes the mean.

attention_transfer_loss.sum_over_positions
    it sums over the positions and averages over the batch; this course (like the authors' code) averages over
    the positions too: diff.pow(2).mean().

attention_transfer_loss.norm_not_square
    it takes each example's norm of the difference, not its square (eq. 2 written literally); the authors' code
    and this course use the squared difference, averaged: diff.pow(2).mean().

attention_transfer_loss.l1
    it uses the absolute difference (L1); use the squared difference: diff.pow(2).mean().

attention_transfer_loss.not_normalised
    the attention maps are compared without normalising them (divide each by its L2 norm, as attention_map
    does): the raw maps' scales depend on each network's width and activations, so the loss would push the
    student's scale instead of its spatial pattern.

attention_transfer_loss.ignores_p
    it ignores p: pass p on to attention_map(feature, p).

attention_transfer_loss.ignores_p_in_power
    it ignores p: use feature.abs().pow(p).

paired_attention_loss.mean_over_pairs
    it averages the pairs' losses; add them up (the sum over the pairs), as the authors' code, RepDistiller and
    mdistiller do: the term's weight carries the scale (500 here: the paper's beta/2, beta = 1000).

paired_attention_loss.per_example_norm
    it sums the squared differences over positions (the paper's per-example norm) and averages over the batch
    only; this course averages over batch AND positions (`.pow(2).mean()`), as the authors' code does (the
    paper's beta/2 goes into the weight).

paired_attention_loss.sum
    it sums the squared differences over everything; average them (`.pow(2).mean()`).

paired_attention_loss.norm_not_square
    it returns the norm of the difference (per example), not its square: use the mean of the squared
    differences.

paired_attention_loss.student_not_normalised
    the student's attention maps are not normalised: use attention_map(...), which divides each map by its L2
    norm, so that only WHERE a network looks matters, not how strongly.

paired_attention_loss.not_normalised
    the attention maps are not normalised: use attention_map(...) (unit L2 norm per example).

paired_attention_loss.p_one
    it compares the feature maps' absolute values (p = 1); attention transfer squares them (attention_map's
    default p = 2).
""")
