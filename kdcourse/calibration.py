"""Fidelity and calibration: does the student copy its teacher, and does it know when it is wrong?

Stanton et al. (2021, "Does knowledge distillation really work?") separate two questions that a
test accuracy mixes up: *generalisation* (is the student right?) and *fidelity* (does the
student agree with its teacher?). They measure fidelity with two numbers, both here:

- the **top-1 agreement** (:func:`top1_agreement`), the share of inputs where student and teacher
  predict the same class, ``(1/N) sum_i 1[argmax_c z_s[i, c] = argmax_c z_t[i, c]]``;
- the **KL divergence to the teacher** (:func:`mean_kl_to_teacher`),
  ``(1/N) sum_i KL(p_t[i] || p_s[i])`` with ``p = softmax(z / T)``.

Calibration asks whether a model's confidence matches its accuracy (Guo et al. 2017, "On
calibration of modern neural networks"). The predictions are grouped into ``M`` equal-width bins
``B_m = ((m - 1)/M, m/M]`` of their confidence (the largest probability of each row);
:func:`reliability_bins` returns each bin's mean confidence and accuracy (a reliability diagram,
:func:`kdcourse.plots.reliability_diagram`), and :func:`expected_calibration_error` their gap,
Guo et al.'s eq. (3)::

    ECE = sum_m (|B_m| / N) |acc(B_m) - conf(B_m)|

Every function takes ``(N, C)`` tensors or any ``(..., C)`` shape (a language model's
``(batch, length, vocab)``): the leading dimensions are flattened into rows, and an optional
boolean ``mask`` of the leading shape keeps only the rows where it is ``True`` (e.g. the tokens
that are not padding). Results are plain Python floats, or numpy arrays for the bins. Inputs are
checked; a problem raises ``ValueError`` with a message that says what to fix.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "top1_agreement",
    "mean_kl_to_teacher",
    "reliability_bins",
    "expected_calibration_error",
]


# ---------------------------------------------------------------- input checks


def _as_tensor(name: str, x) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (or numpy array), got {type(x).__name__}")
    return x.detach().cpu()


def _rows(name: str, x, what: str = "logits") -> torch.Tensor:
    """``x`` of shape (..., C) as a float64 (N, C) tensor."""
    x = _as_tensor(name, x)
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name} must have shape (..., C) with the {what} of C classes last, "
                         f"got shape {tuple(x.shape)}")
    if x.dim() == 1:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: pass the {what} of each example as a row, "
                         f"shape (N, C) or (..., C); for one example use x[None]")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor of {what}, got dtype {x.dtype}")
    return x.reshape(-1, x.shape[-1]).to(torch.float64)


def _mask_rows(mask, lead_shape: torch.Size) -> torch.Tensor | None:
    """``mask`` of the leading shape as a flat boolean (N,) tensor (None: every row)."""
    if mask is None:
        return None
    mask = _as_tensor("mask", mask)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a boolean tensor (True: the row counts), got dtype {mask.dtype}; "
                         "integer indices are not accepted, use e.g. `targets != pad_id`")
    if mask.shape != lead_shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)} but the inputs' leading shape is "
                         f"{tuple(lead_shape)}: one entry per row, without the class dimension")
    return mask.reshape(-1)


def _select(rows: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    return rows if keep is None else rows[keep]


def _check_nonempty(n: int, masked: bool) -> None:
    if n == 0:
        raise ValueError("no row is selected: the mask is False everywhere" if masked
                         else "the inputs are empty: pass at least one row")


def _check_finite(name: str, x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values (in the rows that count); check the "
                         "model's outputs upstream")


def _pair(student_logits, teacher_logits, mask) -> tuple[torch.Tensor, torch.Tensor]:
    s, t = _as_tensor("student_logits", student_logits), _as_tensor("teacher_logits", teacher_logits)
    if s.shape != t.shape:
        raise ValueError(f"student_logits has shape {tuple(s.shape)} but teacher_logits has shape "
                         f"{tuple(t.shape)}: score both models on the same inputs, (..., C) each")
    keep = _mask_rows(mask, s.shape[:-1]) if s.dim() >= 2 else None
    s, t = _rows("student_logits", s), _rows("teacher_logits", t)
    s, t = _select(s, keep), _select(t, keep)
    _check_nonempty(len(s), keep is not None)
    _check_finite("student_logits", s)
    _check_finite("teacher_logits", t)
    return s, t


def _check_temperature(T) -> float:
    if isinstance(T, torch.Tensor):
        T = float(T)
    if isinstance(T, bool) or not isinstance(T, (int, float)) or not math.isfinite(T) or T <= 0:
        raise ValueError(f"The temperature T must be a finite number > 0, got {T!r} (T = 1: the ordinary softmax)")
    return float(T)


def _check_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r} (Guo et al. 2017 use 15)")
    return int(n_bins)


# ---------------------------------------------------------------- fidelity


def top1_agreement(student_logits, teacher_logits, mask=None) -> float:
    """Top-1 agreement (Stanton et al. 2021): the share of rows where student and teacher predict
    the same class, ``(1/N) sum_i 1[argmax_c z_s[i, c] = argmax_c z_t[i, c]]``.

    ``student_logits`` and ``teacher_logits``: the same shape, ``(N, C)`` or ``(..., C)`` (leading
    dimensions are flattened into rows). Logits or probabilities both work, since softmax keeps the
    arg-max. ``mask``: optional boolean tensor of the leading shape; only its ``True`` rows count.
    A tie goes to the first of the tied classes, as in ``torch.argmax``. Returns a float in [0, 1].
    """
    s, t = _pair(student_logits, teacher_logits, mask)
    return float((s.argmax(1) == t.argmax(1)).double().mean())


def mean_kl_to_teacher(student_logits, teacher_logits, T: float = 1.0, mask=None) -> float:
    """The mean over rows of ``KL(p_t || p_s) = sum_c p_t[c] (log p_t[c] - log p_s[c])`` with
    ``p_t = softmax(z_t / T)`` and ``p_s = softmax(z_s / T)``: Stanton et al.'s (2021) second
    fidelity metric (0 when the student reproduces the teacher's distribution exactly), in nats.

    This is a *metric*, not the distillation loss: there is **no** ``T^2`` factor (the loss
    :func:`kdcourse.losses.kd_loss` has one to keep gradients comparable across temperatures).
    ``T = 1`` compares the models' actual predictive distributions.

    Inputs: *logits* (not probabilities) of the same shape, ``(N, C)`` or ``(..., C)``; ``mask`` as in
    :func:`top1_agreement`. Computed in float64. Returns a float >= 0.
    """
    T = _check_temperature(T)
    s, t = _pair(student_logits, teacher_logits, mask)
    log_s, log_t = F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(1)
    return float(kl.clamp_min(0.0).mean())


# ---------------------------------------------------------------- calibration


def reliability_bins(probs, targets, n_bins: int = 15, mask=None) -> dict[str, np.ndarray]:
    """Per-bin confidence and accuracy for a reliability diagram (Guo et al. 2017, sec. 2).

    Each row's confidence is its largest probability ``max_c p[i, c]``, its prediction that class.
    The rows are grouped into ``n_bins`` equal-width bins ``B_m = (lower_m, upper_m]`` on [0, 1]
    (the first bin also holds 0), and for each bin::

        confidence[m] = (1/|B_m|) sum_{i in B_m} max_c p[i, c]          (conf(B_m))
        accuracy[m]   = (1/|B_m|) sum_{i in B_m} 1[argmax_c p[i, c] = y_i]   (acc(B_m))

    ``probs``: *probabilities* (e.g. ``softmax(logits)``), ``(N, C)`` or ``(..., C)``, each row in
    [0, 1] summing to 1. ``targets``: the true classes, integers of the leading shape. ``mask``:
    optional boolean tensor of the leading shape; only its ``True`` rows count (their targets must
    be valid classes, the others may hold a padding value). Computed in float64 (a float32 0.6 is
    slightly above 0.6 and falls in the bin above it).

    Returns a dict of numpy arrays of length ``n_bins``: ``lower``, ``upper``, ``confidence``,
    ``accuracy`` (both NaN for an empty bin) and ``count`` (int64, rows per bin).
    """
    n_bins = _check_n_bins(n_bins)
    p = _as_tensor("probs", probs)
    y = _as_tensor("targets", targets)
    if p.dim() < 2:
        raise ValueError(f"probs must have shape (N, C) or (..., C), got {tuple(p.shape)}")
    if y.shape != p.shape[:-1]:
        raise ValueError(f"targets has shape {tuple(y.shape)} but probs has shape {tuple(p.shape)}: "
                         f"expected one class index per row, shape {tuple(p.shape[:-1])}")
    if torch.is_floating_point(y) or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"targets must be integer class indices, got dtype {y.dtype}")
    keep = _mask_rows(mask, p.shape[:-1])
    n_classes = p.shape[-1]
    p = _select(_rows("probs", p, what="probabilities"), keep)
    y = _select(y.reshape(-1).long(), keep)
    _check_nonempty(len(p), keep is not None)
    _check_finite("probs", p)
    if (p < 0).any() or (p > 1).any():
        raise ValueError("probs has values outside [0, 1]: pass probabilities, e.g. softmax(logits, dim=-1), "
                         "not logits")
    sums = p.sum(1)
    worst = float((sums - 1).abs().max())
    if worst > 1e-3:
        raise ValueError(f"the rows of probs must sum to 1, but one sums to {float(sums[(sums - 1).abs().argmax()]):.4g}: "
                         "pass softmax(logits, dim=-1) over the class dimension (the last one)")
    if (y < 0).any() or (y >= n_classes).any():
        bad = int(y[(y < 0) | (y >= n_classes)][0])
        raise ValueError(f"targets must lie in [0, {n_classes - 1}] (the {n_classes} classes of probs), got {bad}; "
                         "mask out padding positions with mask=...")

    confidence, predicted = p.max(1)
    correct = (predicted == y).to(torch.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    conf = confidence.numpy()
    # bin m holds (edges[m], edges[m + 1]]; searchsorted(side="left") gives m + 1 for those, 0 for conf == 0
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(index, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(index, weights=correct.numpy(), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        mean_acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    return {"lower": edges[:-1].copy(), "upper": edges[1:].copy(), "confidence": mean_conf,
            "accuracy": mean_acc, "count": count}


def expected_calibration_error(probs, targets, n_bins: int = 15, mask=None) -> float:
    """Expected calibration error, Guo et al. (2017) eq. (3):
    ``ECE = sum_m (|B_m| / N) |acc(B_m) - conf(B_m)|`` over the ``n_bins`` equal-width confidence
    bins of :func:`reliability_bins` (same inputs: probabilities, targets, optional mask).

    0 for a perfectly calibrated model (in every bin, the accuracy equals the mean confidence);
    close to 1 for a model that is always confident and always wrong. Returns a float in [0, 1].
    """
    bins = reliability_bins(probs, targets, n_bins=n_bins, mask=mask)
    count = bins["count"]
    filled = count > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float((count[filled] / count.sum() * gaps).sum())
