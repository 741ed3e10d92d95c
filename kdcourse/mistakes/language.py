"""The mistakes of distilling a language model (lesson 09): the masked token-level KD loss, the reverse KL
and the renormalised top-k of a cached teacher.

A glossary: each mistake's id (``exercise.mistake``), then, indented, what a checker says of it.
"""

from __future__ import annotations

from .entry import entries

ENTRIES = entries("""
masked_token_kd.no_mask
    it averages over every position, padding included: the padded positions add their (meaningless) KL and
    dilute the real tokens. Multiply the per-token KL by the mask and divide by mask.sum(), the number of real
    tokens.

masked_token_kd.masked_but_all_positions
    it zeroes the padded positions but still divides by every position (batch x length): divide by mask.sum(),
    the number of real tokens.

masked_token_kd.per_sequence
    it averages per sequence first, then over sequences: a token of a short sequence then weighs more than one
    of a long sequence. Average per token over the whole batch: (kl * mask).sum() / mask.sum().

masked_token_kd.per_batch
    it divides the summed KL by the number of sequences (reduction="batchmean" on the flattened tokens counts
    rows of the batch, not tokens): divide by mask.sum(), the number of real tokens.

masked_token_kd.vocab_mean
    it averages over the vocabulary too (reduction="mean" on a per-class tensor): the KL is a sum over the
    vocabulary, then a mean over real tokens.

masked_token_kd.no_T2
    the loss is not multiplied by T^2: at T != 1 the gradients shrink like 1/T^2. Multiply by T ** 2, as kd_loss
    does.

masked_token_kd.reversed
    the KL is reversed: it computes KL(student || teacher). Forward token-level KD is KL(teacher || student):
    the teacher's probabilities weight the log-ratio.

masked_token_kd.no_temperature
    the temperature is only used as the T^2 factor: divide both models' logits by T inside the softmaxes too.

masked_token_kd.cross_entropy
    it computes the cross-entropy -sum p_t log p_s, not the KL: the two differ by the teacher's entropy.
    Subtract it, or use sum p_t (log p_t - log p_s).

masked_token_kd.inverted_mask
    it keeps the padded positions and drops the real tokens (e.g. masked_fill(mask, 0), which zeroes where the
    mask is TRUE): mask is true for real tokens, so zero where it is false: masked_fill(~mask, 0), or multiply
    by the mask.

masked_token_kd.sum
    it sums the per-token KL over the real tokens without dividing by their number: divide by mask.sum().

masked_token_kd.T_not_T2
    it multiplies by T instead of T^2: the gradient of the softened KL shrinks like 1/T^2, so the factor is T **
    2.

masked_token_kd.wrong_dim
    its softmaxes run over the wrong dimension: the vocabulary is the LAST dimension of (batch, length, vocab)
    logits: use dim=-1.

language.nan_from_kl_div
    usually F.kl_div given log-probabilities as its target without log_target=True: it then takes the log of
    negative numbers. Pass log_target=True, or give it probabilities

language.not_finite
    {name}({shown}) returned NaN or inf where the answer is finite: {nan_hint}.

masked_token_kd.padded_gradient
    {name} returns the right value, but padded positions receive a gradient: mask the per-token values (multiply by
    the mask) before summing.

masked_token_kd.detached_part
    {name} returns the right value, but its gradient with respect to the student's logits is not the loss's (norm
    {norm}, expected {expected_norm}): part of the student's computation is detached (.detach(), .data, or a value
    computed under no_grad), so training would follow the wrong direction. Keep every student term in the graph.

masked_token_kd.not_a_scalar
    {name}({shown}) returned shape {got}; a loss must be a scalar (shape ()): average over the real tokens.

reverse_kl.forward
    it computes the forward KL(teacher || student): the reverse KL weights the log-ratio by the STUDENT's
    probabilities: sum q_s (log q_s - log p_t).

reverse_kl.no_mask
    it averages over every position, padding included: multiply by the mask and divide by mask.sum().

reverse_kl.per_sequence
    it averages per sequence first: average per token over the whole batch, (kl * mask).sum() / mask.sum().

reverse_kl.sign
    it returns minus the forward KL (the teacher's probabilities weight log q_s - log p_t), a negative number:
    the reverse KL is sum q_s (log q_s - log p_t), weighted by the STUDENT, and is never negative.

reverse_kl.masked_but_all_positions
    it zeroes the padded positions but divides by every position (batch x length): divide by mask.sum(), the
    number of real tokens.

reverse_kl.per_batch
    it divides the summed KL by the number of sequences: divide by mask.sum(), the number of real tokens.

reverse_kl.sum
    it sums the per-token KL without dividing by the number of real tokens: divide by mask.sum().

reverse_kl.vocab_mean
    it averages over the vocabulary too: the KL is a sum over the vocabulary, then a mean over real tokens.

reverse_kl.cross_entropy
    it computes the cross-entropy -sum q_s log p_t, not the KL: add the student's sum q_s log q_s (the negative
    entropy), i.e. use sum q_s (log q_s - log p_t).

reverse_kl.student_weights_missing
    it sums the log-ratio log q_s - log p_t without weighting it by q_s: the reverse KL is an expectation under
    the student, sum q_s (log q_s - log p_t).

renormalize_top_k.not_renormalized
    it returns exp(log-probabilities) as they are: they sum to less than 1 (the teacher's tail outside its top k
    is missing). Divide by their sum over the last dimension.

renormalize_top_k.tail_spread
    it spreads the tail mass evenly over the k tokens (adds (1 - sum) / k to each): that changes their ratios.
    Renormalise instead: p / p.sum(-1, keepdim=True) keeps the ratios.

renormalize_top_k.tail_to_top
    it gives the whole tail mass to the top token: renormalise all k instead, p / p.sum(-1, keepdim=True).

renormalize_top_k.log_space
    it returns log-probabilities (a log_softmax): the exercise asks for probabilities. Take .exp(), or use
    torch.softmax(top_log_probs, dim=-1).

renormalize_top_k.wrong_dim
    it normalises over the wrong dimension: the k candidates of one token are on the LAST dimension (dim=-1).

renormalize_top_k.log_prob_ratio
    it divides the log-probabilities by their sum: renormalise the probabilities, exp(lp) / exp(lp).sum(-1,
    keepdim=True).

renormalize_top_k.wrong_shape
    {name}({shown}) returned shape {got}; expected {expected}, one value per cached candidate.

renormalize_top_k.unexplained
    {name}({shown}) returned the right shape but other values; in row {row} of the flattened output: got {got} (sum
    {got_sum}), expected {expected} (sum {expected_sum}). No classic mistake explains this.

language.nan_from_log
    a log of zero or of a negative number, or an exp() that overflows: work with torch.log_softmax / torch.softmax,
    which are stable
""")
