"""What any checker says of what came back, whatever the exercise: a stub, a number or None where a tensor was
due, NaN, a loss that is not one number, a gradient that does not reach the student; and lesson 07's diagnosis
given as something other than a name.

A glossary: each message's id, then, indented, its text; ``{name}`` (the learner's function), ``{shown}`` (the
case) and the other placeholders are filled in by the checker (:func:`kdcourse.mistakes.message`).
"""

from __future__ import annotations

from .entry import entries

ENTRIES = entries("""
answer.not_implemented
    {name} is not implemented yet ({error}). Replace the `raise NotImplementedError` line with your code, run that
    cell again, then run this check.

answer.returned_a_number
    Did you call `.item()` or `float(...)`? Return the tensor, so gradients can flow.

answer.returned_none
    Did you forget the `return` statement?

answer.not_a_tensor
    {name}({shown}) returned a {type}, expected a torch.Tensor.{hint}

answer.not_finite
    {name}({shown}) returned NaN or infinite values: {got}.

answer.one_value_per_example
    It looks like one value per example: average over the batch as well (a single number).

answer.one_element
    Return a 0-d tensor (e.g. `.mean()` or `.sum()`, or `.squeeze()`).

answer.not_a_scalar
    {name}({shown}) returned shape {out_shape}; a loss is one number.{hint}

answer.no_graph
    {name}: no gradient reaches {what}. Did you call `.detach()`, `.item()` or compute under `torch.no_grad()`? The
    student learns only through this gradient.

answer.no_gradient
    {name}: no gradient reaches {what}. Did you `.detach()` it (or use it under `torch.no_grad()`)? The student
    learns only through this gradient.

answer.nan_gradient
    {name}: the gradient with respect to {what} contains NaN. A square root or a division at zero (e.g. the distance
    of an example to itself) has an infinite derivative: clamp before `sqrt` (`d2.clamp_min(1e-12).sqrt()`) and
    normalise with `F.normalize`, which adds an eps.

answer.zero_gradient
    {name}: the gradient with respect to {what} is zero: the loss must depend on it.

answer.in_place_logits
    e.g. `logits /= T`). Write `scaled = logits / T` instead: the caller's logits must stay as they were.

answer.numpy_logits
    Use torch operations (torch.softmax, torch.exp, ...) and return a torch.Tensor.

answer.in_place_features
    an in-place op such as `x.pow_(2)`, `x /= n` or `x[...] = ...`). Compute new tensors instead: the caller's
    features must stay as they were.

answer.numpy
    Use torch operations and return a torch.Tensor (gradients cannot flow through NumPy).

answer.changed_input_in_place
    {who} changed its input tensor in place ({in_place}

answer.wrong_shape
    {name}({shown}) returned shape {got}, expected {expected}.{hint}

answer.no_gradient_to_logits
    {name}({shown}) returns the right value but no gradient flows back to the student's logits: did you use
    .detach(), .item(), torch.no_grad() or numpy? Training would not learn from it.

diagnosis.not_a_string
    Write your diagnosis as a string, one of: {pitfalls} (got {answer}).

diagnosis.unknown
    {answer} is not one of the pitfalls. Choose one of:

diagnosis.wrong
    Good try, but the symptoms of {mystery} do not fit {answer} ({summary}).
""")
