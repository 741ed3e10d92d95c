"""Distillation losses: pure functions, one per method.

Conventions (see COURSE.md):

- ``alpha`` weights the distillation (soft) term:
  ``L = alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE(y, p_s)``;
- KL uses ``reduction="batchmean"`` on ``log_softmax(student / T)`` against
  ``softmax(teacher / T)``: a sum over classes, a mean over examples.

Every function checks its inputs and raises ``ValueError`` with a message that says what to fix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "softmax_with_temperature",
    "entropy",
    "kd_loss",
    "distillation_loss",
    "hint_loss",
    "attention_map",
    "attention_transfer_loss",
    "multi_stage_attention_loss",
    "pairwise_distances",
    "rkd_distance_loss",
    "rkd_angles",
    "rkd_angle_loss",
    "similarity_matrix",
    "similarity_preserving_loss",
    "dkd_loss",
    "token_kd_loss",
    "top_k_logits",
    "top_k_kd_loss",
]


# ---------------------------------------------------------------- input checks


def _as_number(name: str, x) -> float | None:
    """``x`` as a Python float when it is a real number: ``int``, ``float``, a NumPy scalar or a
    one-element (e.g. 0-d) torch tensor. Booleans are not numbers here: ``None`` for anything else."""
    if isinstance(x, torch.Tensor):
        if x.numel() != 1 or x.dtype == torch.bool or x.is_complex():
            return None
        return float(x)
    if isinstance(x, bool) or type(x).__name__ == "bool_":  # Python and NumPy booleans
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if type(x).__module__ == "numpy" and hasattr(x, "dtype") and getattr(x, "shape", None) == () \
            and x.dtype.kind in "iuf":
        return float(x)
    return None


def _check_temperature(T) -> float:
    """``T`` as a float; ``ValueError`` unless it is a finite number > 0 (not a boolean)."""
    value = _as_number("T", T)
    if value is None or not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"The temperature T must be a finite number > 0, got {T!r}. "
            "T = 1 is the ordinary softmax; distillation typically uses T between 2 and 20."
        )
    return value


def _check_alpha(alpha) -> float:
    """``alpha`` as a float; ``ValueError`` unless it is a number in [0, 1] (not a boolean)."""
    value = _as_number("alpha", alpha)
    if value is None or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"alpha must lie in [0, 1], got {alpha!r}. In this course alpha weights the soft "
            "(distillation) term and 1 - alpha the hard-label cross-entropy."
        )
    return value


def _check_batch(name: str, x: torch.Tensor, ndim: int | tuple[int, ...] | None = None,
                 finite: bool = True) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and x.dim() not in allowed:
        shapes = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(
            f"{name} must be {shapes} with the batch first, got shape {tuple(x.shape)}"
        )
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}): pass at least one example")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if finite:
        _check_finite(name, x)


def _check_finite(name: str, x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(
            f"{name} contains NaN or infinite values. Check the learning rate, the inputs, and "
            "any division or log upstream."
        )


def _check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    _check_batch("student_logits", student_logits, 2)
    _check_batch("teacher_logits", teacher_logits, 2)
    if student_logits.shape != teacher_logits.shape:
        s, t = tuple(student_logits.shape), tuple(teacher_logits.shape)
        why = (
            "the class counts differ: teacher and student must predict the same classes"
            if s[0] == t[0]
            else "the batch sizes differ: pass the teacher the same inputs as the student"
        )
        raise ValueError(f"student_logits {s} and teacher_logits {t} do not match: {why}")


def _check_targets(targets: torch.Tensor, logits: torch.Tensor) -> None:
    if not isinstance(targets, torch.Tensor) or targets.dim() != 1:
        raise ValueError(
            "targets must be a 1-D tensor of class indices, shape (batch,), got "
            f"{getattr(targets, 'shape', type(targets).__name__)}"
        )
    if targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets has {targets.shape[0]} labels but the logits have {logits.shape[0]} rows"
        )
    if targets.dtype not in (torch.int64, torch.int32, torch.uint8, torch.int16, torch.int8):
        raise ValueError(f"targets must hold integer class indices, got dtype {targets.dtype}")
    if targets.numel() and (targets.min() < 0 or targets.max() >= logits.shape[1]):
        raise ValueError(
            f"targets must lie in [0, {logits.shape[1] - 1}] for {logits.shape[1]} classes, "
            f"got values from {int(targets.min())} to {int(targets.max())}"
        )


# ---------------------------------------------------------------- logit distillation


def softmax_with_temperature(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    r"""Softened class probabilities (Hinton et al. 2015, eq. 1).

    .. math:: q_i = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}

    Computed along the last dimension. ``T = 1`` is the ordinary softmax; a larger ``T`` spreads
    probability onto the wrong classes ("dark knowledge"); ``T -> inf`` tends to uniform.
    """
    _check_temperature(T)
    _check_batch("logits", logits)
    return torch.softmax(logits / T, dim=-1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    r"""The entropy of each distribution (row) of ``probs``, in nats (lesson 01).

    .. math:: H(p) = -\sum_i p_i \log p_i, \qquad 0 \log 0 = 0

    One value per row (over the last dimension); ``torch.special.xlogy`` makes exact zeros count as 0.
    """
    return -torch.special.xlogy(probs, probs).sum(-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 4.0) -> torch.Tensor:
    r"""The soft-target loss of Hinton et al. 2015, scaled by :math:`T^2`.

    .. math:: L_{KD} = T^2 \cdot \frac{1}{N} \sum_{n=1}^{N} \sum_i p^T_{t,i}
              \left(\log p^T_{t,i} - \log p^T_{s,i}\right),
              \qquad p^T = \mathrm{softmax}(z / T)

    i.e. ``T**2 * KL(p_t || p_s)`` averaged over the batch (``reduction="batchmean"``). The
    :math:`T^2` keeps the gradient's scale roughly independent of ``T`` (the gradient of the KL
    alone shrinks like :math:`1/T^2`, sec. 2 of the paper). The teacher's distribution is the
    target: KL(teacher || student), not the reverse.
    """
    T = _check_temperature(T)
    _check_logits(student_logits, teacher_logits)
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / T, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * T * T


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    T: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    r"""The full distillation objective: a weighted mix of soft and hard targets.

    .. math:: L = \alpha \, T^2 \, \mathrm{KL}(p_t^T \,\|\, p_s^T) + (1 - \alpha)\, \mathrm{CE}(y, p_s^1)

    ``alpha`` weights the soft (distillation) term. ``alpha = 0`` is plain training on labels;
    ``alpha = 1`` learns from the teacher alone. The cross-entropy uses ``T = 1``.
    """
    alpha = _check_alpha(alpha)
    soft = kd_loss(student_logits, teacher_logits, T)
    _check_targets(targets, student_logits)
    hard = F.cross_entropy(student_logits, targets.long())
    return alpha * soft + (1.0 - alpha) * hard


def _log_binary(z: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """``log (p_target, 1 - p_target)`` of ``softmax(z)``, shape ``(N, 2)``, computed in log space."""
    log_norm = torch.logsumexp(z, dim=1)
    log_target = z[target_mask] - log_norm
    log_rest = torch.logsumexp(z.masked_fill(target_mask, float("-inf")), dim=1) - log_norm
    return torch.stack([log_target, log_rest], dim=1)


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    T: float = 4.0,
    alpha: float = 1.0,
    beta: float = 8.0,
) -> torch.Tensor:
    r"""Decoupled knowledge distillation (Zhao et al. 2022, eq. 7).

    .. math:: L_{DKD} = \alpha \cdot TCKD + \beta \cdot NCKD

    TCKD is the KL between the binary distributions (target class, all others) of teacher and
    student; NCKD the KL between their distributions over the non-target classes only. Both
    use temperature ``T`` and are scaled by :math:`T^2`, batch-averaged. Classical KD equals
    ``TCKD + (1 - p_t^{target}) * NCKD``: DKD lets NCKD keep its weight when the teacher is
    confident.
    """
    T = _check_temperature(T)
    _check_logits(student_logits, teacher_logits)
    _check_targets(targets, student_logits)
    if alpha < 0 or beta < 0:
        raise ValueError(f"DKD weights must be >= 0, got alpha={alpha}, beta={beta}")
    target_mask = F.one_hot(targets.long(), student_logits.shape[1]).bool()
    # binary distributions b = (p_target, 1 - p_target), in log space: log p_target is the
    # log-softmax at the target, log(1 - p_target) the log-sum-exp of the other logits minus that
    # of all. Exact even where a probability underflows (clamping p at 1e-12 before the log is not).
    log_b_s = _log_binary(student_logits / T, target_mask)
    log_b_t = _log_binary(teacher_logits / T, target_mask)
    tckd = F.kl_div(log_b_s, log_b_t, reduction="batchmean", log_target=True) * T * T
    # distributions over the non-target classes: push the target logit to -inf
    masked_s = (student_logits / T).masked_fill(target_mask, float("-inf"))
    masked_t = (teacher_logits / T).masked_fill(target_mask, float("-inf"))
    log_q_s = F.log_softmax(masked_s, dim=1).masked_fill(target_mask, 0.0)
    log_q_t = F.log_softmax(masked_t, dim=1).masked_fill(target_mask, 0.0)
    q_t = log_q_t.exp().masked_fill(target_mask, 0.0)
    nckd = (q_t * (log_q_t - log_q_s)).sum(1).mean() * T * T
    return alpha * tckd + beta * nckd


# ---------------------------------------------------------------- feature distillation


def hint_loss(
    student_feature: torch.Tensor,
    teacher_feature: torch.Tensor,
    regressor: nn.Module | None = None,
) -> torch.Tensor:
    r"""The FitNets hint loss (Romero et al. 2015, eq. 3), as a mean over elements.

    .. math:: L_{HT} = \frac{1}{2}\,\| u_h(x) - r(v_g(x)) \|^2

    ``student_feature`` is the guided layer :math:`v_g`, ``teacher_feature`` the hint
    :math:`u_h`, ``regressor`` :math:`r` maps the student's shape to the teacher's (a 1x1
    convolution or a linear layer; its parameters must be trained too). The squared error is
    averaged over all elements (``F.mse_loss``), which keeps it on a scale comparable to the
    cross-entropy for any layer size; the paper's 1/2 is folded into the term's weight.
    """
    _check_batch("student_feature", student_feature)
    _check_batch("teacher_feature", teacher_feature)
    guided = regressor(student_feature) if regressor is not None else student_feature
    if guided.shape != teacher_feature.shape:
        fix = (
            "check the regressor's output size"
            if regressor is not None
            else "pass a regressor (e.g. nn.Conv2d(c_student, c_teacher, 1)) that maps the "
            "student's features to the teacher's shape"
        )
        raise ValueError(
            f"student feature{' after the regressor' if regressor is not None else ''} has shape "
            f"{tuple(guided.shape)} but the teacher's hint has {tuple(teacher_feature.shape)}: {fix}"
        )
    return F.mse_loss(guided, teacher_feature)


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    r"""Spatial attention map of a feature map (Zagoruyko & Komodakis 2017, sec. 3.1).

    .. math:: Q = \mathrm{vec}\Big(\sum_c |A_c|^p\Big) \,/\, \Big\|\mathrm{vec}\Big(\sum_c |A_c|^p\Big)\Big\|_2

    ``feature`` is ``(N, C, H, W)``; the result is ``(N, H*W)`` with unit L2 norm per example.
    The channel count does not matter, so teacher and student may differ in width. (We take
    the channel mean instead of the sum; the normalisation makes the two identical.)
    """
    return _attention_map("feature", feature, p)


def _attention_map(name: str, feature: torch.Tensor, p: float) -> torch.Tensor:
    _check_batch(name, feature, 4, finite=False)
    powered = feature.square() if p == 2 else feature.abs().pow(p)  # |x|^2 = x^2, one temporary less
    q = F.normalize(powered.mean(dim=1).flatten(1), dim=1)
    # NaN or inf anywhere in a feature map makes its row of q NaN: checking the map (H*W numbers per
    # example) instead of the feature map (C times more) keeps the check cheap on every training step
    _check_finite(name, q)
    return q


def attention_transfer_loss(
    student_feature: torch.Tensor, teacher_feature: torch.Tensor, p: float = 2.0
) -> torch.Tensor:
    r"""Attention transfer (Zagoruyko & Komodakis 2017, eq. 2).

    .. math:: L_{AT} = \Big\| \frac{Q_S}{\|Q_S\|_2} - \frac{Q_T}{\|Q_T\|_2} \Big\|_2^2

    with :math:`Q` from :func:`attention_map`, averaged over batch and positions as in the
    authors' code (the paper's :math:`\beta/2` goes into the term's weight; their code multiplies by
    :math:`\beta = 1000`).
    Feature maps must share their spatial size.
    """
    _check_batch("student_feature", student_feature, 4, finite=False)  # _attention_map checks the maps
    _check_batch("teacher_feature", teacher_feature, 4, finite=False)
    if student_feature.shape[0] != teacher_feature.shape[0]:
        raise ValueError("student and teacher features have different batch sizes")
    if student_feature.shape[2:] != teacher_feature.shape[2:]:
        raise ValueError(
            f"attention maps need the same spatial size, got student {tuple(student_feature.shape[2:])} "
            f"and teacher {tuple(teacher_feature.shape[2:])}: pick layers at the same resolution "
            "(or resize with F.interpolate)"
        )
    diff = _attention_map("student_feature", student_feature, p) - _attention_map("teacher_feature", teacher_feature, p)
    return diff.pow(2).mean()


def multi_stage_attention_loss(
    student_features, teacher_features, p: float = 2.0
) -> torch.Tensor:
    r"""Attention transfer at several stages at once (Zagoruyko & Komodakis 2017, eq. 2, summed over
    the pairs :math:`j` of layers): :math:`\sum_j L_{AT}(S_j, T_j)`.

    ``student_features`` and ``teacher_features`` are sequences of feature maps, paired by
    position (stage 1 with stage 1, ...). The sum over stages, each averaged as in
    :func:`attention_transfer_loss`, is what the authors' code and RepDistiller's ``Attention``
    compute before their weight (:math:`\beta = 1000` in their code and in :data:`kdcourse.methods.DEFAULT_WEIGHTS`;
    the paper writes :math:`\beta/2`).
    """
    student_features, teacher_features = list(student_features), list(teacher_features)
    if not student_features or len(student_features) != len(teacher_features):
        raise ValueError(
            f"pass one or more feature maps per model, paired by stage: got {len(student_features)} student and "
            f"{len(teacher_features)} teacher maps"
        )
    return sum(attention_transfer_loss(s, t, p) for s, t in zip(student_features, teacher_features))


# ---------------------------------------------------------------- relation distillation


def _as_embedding(name: str, x: torch.Tensor) -> torch.Tensor:
    _check_batch(name, x)
    if x.shape[0] < 2:
        raise ValueError(f"{name}: relation losses compare examples, so the batch needs at least 2")
    return x.flatten(1)


def pairwise_distances(embedding: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances between all pairs of rows, ``(N, N)``, with a zero diagonal.

    As the RKD authors' ``pdist`` (and RepDistiller's, mdistiller's): squared distances clamped
    at ``eps`` before the square root (so the gradient stays finite where two rows coincide),
    then the diagonal set to exactly 0.
    """
    sq = embedding.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * embedding @ embedding.t()).clamp_min(eps)
    d = d2.sqrt()
    return d * (1 - torch.eye(len(embedding), dtype=d.dtype, device=d.device))


def rkd_distance_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
    r"""RKD distance-wise loss (Park et al. 2019, eqs. 3-5), as the reference implementations compute it.

    .. math:: \psi_D(t_i, t_j) = \frac{1}{\mu}\|t_i - t_j\|_2, \quad
              \mu = \frac{1}{b(b-1)}\sum_{i \ne j}\|t_i - t_j\|_2, \qquad
              L_{RKD-D} = \frac{1}{b^2}\sum_{i, j} \ell_\delta(\psi_D(s_i,s_j), \psi_D(t_i,t_j))

    with the Huber loss :math:`\ell_\delta` (``F.smooth_l1_loss``, :math:`\delta = 1`), for a batch
    of ``b`` examples. The mean distance :math:`\mu` is taken over the pairs :math:`i \ne j` (the
    positive entries), the Huber loss is averaged over all :math:`b^2` entries of the two
    :math:`b \times b` matrices, the diagonal's :math:`\ell_\delta(0, 0) = 0` included. That is what
    the RKD authors' code (lenscloth/RKD, ``metric/loss.py``, ``RkdDistance``), RepDistiller
    (``distiller_zoo/RKD.py``, ``RKDLoss``) and mdistiller (``mdistiller/distillers/RKD.py``) do:
    ``t_d = pdist(teacher); t_d = t_d / t_d[t_d > 0].mean()``, the same for the student, then
    ``F.smooth_l1_loss(d, t_d)`` on the full matrices; their weight 25 (``w_d``) goes with this
    average. It is :math:`(b-1)/b` times the average over the :math:`b(b-1)` pairs alone.

    Dividing by the mean distance makes the loss invariant to the scale of either embedding; the
    two embeddings may have different widths. The teacher's side is computed without gradient.
    """
    s = _as_embedding("student_embedding", student_embedding)
    t = _as_embedding("teacher_embedding", teacher_embedding)
    if s.shape[0] != t.shape[0]:
        raise ValueError("student and teacher embeddings have different batch sizes")
    off_diag = ~torch.eye(len(s), dtype=torch.bool, device=s.device)  # the pairs i != j, for the mean
    with torch.no_grad():
        d_t = pairwise_distances(t)
        d_t = d_t / d_t[off_diag].mean()
    d_s = pairwise_distances(s)
    d_s = d_s / d_s[off_diag].mean()
    return F.smooth_l1_loss(d_s, d_t)  # over all b^2 entries, the zero diagonal included


def rkd_angles(embedding: torch.Tensor) -> torch.Tensor:
    r"""The ``(N, N, N)`` cosines of RKD's angles (Park et al. 2019, eq. 6): ``A[i, j, k]`` is the cosine of
    the angle at the vertex :math:`t_j`, :math:`\langle e^{ij}, e^{kj}\rangle` with :math:`e^{ij} = (t_i - t_j) /
    \|t_i - t_j\|_2` (0 where two points coincide: ``F.normalize`` adds an eps)."""
    diff = embedding[:, None, :] - embedding[None, :, :]
    e = F.normalize(diff, p=2, dim=2)
    return torch.einsum("ijd,kjd->ijk", e, e)


def rkd_angle_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
    r"""RKD angle-wise loss (Park et al. 2019, eqs. 6-7).

    .. math:: \psi_A(t_i, t_j, t_k) = \cos\angle t_i t_j t_k = \langle e^{ij}, e^{kj}\rangle,
              \quad e^{ij} = \frac{t_i - t_j}{\|t_i - t_j\|_2}

    compared with the Huber loss over all triplets (averaged). Angles do not change when an
    embedding is scaled or shifted. Memory grows as N^3: keep relation batches small (<= 128).
    """
    s = _as_embedding("student_embedding", student_embedding)
    t = _as_embedding("teacher_embedding", teacher_embedding)
    if s.shape[0] != t.shape[0]:
        raise ValueError("student and teacher embeddings have different batch sizes")
    with torch.no_grad():
        a_t = rkd_angles(t)
    a_s = rkd_angles(s)
    return F.smooth_l1_loss(a_s, a_t)


def similarity_matrix(feature: torch.Tensor) -> torch.Tensor:
    r"""Row-normalised batch similarity (Tung & Mori 2019, eqs. 1-2).

    .. math:: \tilde G = Q Q^\top, \qquad G_{[i,:]} = \tilde G_{[i,:]} / \|\tilde G_{[i,:]}\|_2

    with ``Q`` the feature flattened to ``(N, -1)``. The result is ``(N, N)``.
    """
    q = _as_embedding("feature", feature)
    return F.normalize(q @ q.t(), p=2, dim=1)


def similarity_preserving_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    r"""Similarity-preserving KD (Tung & Mori 2019, eq. 4).

    .. math:: L_{SP} = \frac{1}{b^2} \| G_T - G_S \|_F^2

    with the row-normalised similarity matrices of :func:`similarity_matrix` over a batch of
    ``b`` examples. Features may have any shapes as long as the batch sizes agree. The paper's
    weight is ``gamma = 3000``.
    """
    g_s = similarity_matrix(student_feature)
    g_t = similarity_matrix(teacher_feature)
    if g_s.shape != g_t.shape:
        raise ValueError("student and teacher features have different batch sizes")
    b = g_s.shape[0]
    return (g_t - g_s).pow(2).sum() / (b * b)


# ---------------------------------------------------------------- language models (lesson 09)

DIVERGENCES = ("forward", "reverse", "jsd")


def _check_tokens(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(
            f"{name} must be a (batch, length, vocab) tensor of next-token logits, got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    _check_batch(name, x)


def _check_mask(mask: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:
    """The mask as a boolean ``(batch, length)`` tensor (all true for ``None``)."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool)
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"mask must be a (batch, length) tensor of shape {tuple(shape)}, true for real tokens, got "
            f"{getattr(mask, 'shape', type(mask).__name__)}"
        )
    if mask.dtype != torch.bool:
        if torch.is_floating_point(mask) or not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"mask must hold booleans (or 0/1 integers), got dtype {mask.dtype}")
        mask = mask.bool()
    if not mask.any():
        raise ValueError("the mask has no true entry: a batch needs at least one real (unpadded) token")
    return mask


def _masked_token_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the unmasked tokens of the whole batch; padded positions get no gradient."""
    return per_token.masked_fill(~mask, 0.0).sum() / mask.sum()


def token_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    T: float = 1.0,
    divergence: str = "forward",
    beta: float = 0.5,
) -> torch.Tensor:
    r"""Token-level distillation of a language model: a divergence per position, averaged per token.

    With :math:`p = \mathrm{softmax}(z_t / T)` (teacher) and :math:`q = \mathrm{softmax}(z_s / T)`
    (student) at every position,

    - ``"forward"``: :math:`\mathrm{KL}(p \| q) = \sum_v p_v (\log p_v - \log q_v)`, the KL of
      :func:`kd_loss` (Hinton et al. 2015) at every token; mass-covering;
    - ``"reverse"``: :math:`\mathrm{KL}(q \| p)`, MiniLLM's objective (Gu et al. 2024); mode-seeking;
    - ``"jsd"``: the generalized Jensen--Shannon divergence of GKD (Agarwal et al. 2024, eq. 2),
      :math:`\beta\,\mathrm{KL}(p \| m) + (1-\beta)\,\mathrm{KL}(q \| m)` with
      :math:`m = \beta p + (1-\beta) q`, as TRL's ``generalized_jsd_loss`` computes it
      (symmetric at ``beta = 0.5``; ``0 < beta < 1``).

    The divergence is multiplied by :math:`T^2` (as in :func:`kd_loss`) and averaged **per token
    over the unmasked tokens of the whole batch**: ``sum(divergence * mask) / mask.sum()``. Padded
    positions (``mask`` false) contribute no value and no gradient; every real token weighs the
    same whatever the length of its sequence. ``mask=None`` counts every position.
    Shapes: logits ``(batch, length, vocab)``, ``mask`` ``(batch, length)``.
    """
    _check_temperature(T)
    _check_tokens("student_logits", student_logits)
    _check_tokens("teacher_logits", teacher_logits)
    if student_logits.shape != teacher_logits.shape:
        s, t = tuple(student_logits.shape), tuple(teacher_logits.shape)
        why = ("the vocabularies differ: teacher and student must share one tokenizer"
               if s[:2] == t[:2] else "batch or length differ: give both models the same token ids")
        raise ValueError(f"student_logits {s} and teacher_logits {t} do not match: {why}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    mask = _check_mask(mask, student_logits.shape[:2])
    log_q = F.log_softmax(student_logits / T, dim=-1)
    log_p = F.log_softmax(teacher_logits / T, dim=-1)
    if divergence == "forward":
        per_token = (log_p.exp() * (log_p - log_q)).sum(-1)
    elif divergence == "reverse":
        per_token = (log_q.exp() * (log_q - log_p)).sum(-1)
    else:
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not 0.0 < beta < 1.0:
            raise ValueError(
                f"beta must lie strictly between 0 and 1 for the JSD, got {beta!r} "
                "(its limits are the two KLs: use divergence='forward' or 'reverse')"
            )
        log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1.0 - beta)]), dim=0)
        kl_p_m = (log_p.exp() * (log_p - log_m)).sum(-1)
        kl_q_m = (log_q.exp() * (log_q - log_m)).sum(-1)
        per_token = beta * kl_p_m + (1.0 - beta) * kl_q_m
    return _masked_token_mean(per_token, mask) * T * T


def top_k_logits(teacher_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a top-k cache stores per token: the teacher's ``k`` largest logits and their token ids.

    Returns ``(values, indices)``, each ``(..., k)``, largest first (``torch.topk``). Storage per
    token: ``k`` values and ``k`` ids instead of ``vocab`` values.
    """
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= teacher_logits.shape[-1]:
        raise ValueError(f"k must be an integer between 1 and the vocabulary size "
                         f"{teacher_logits.shape[-1]}, got {k!r}")
    values, indices = teacher_logits.topk(k, dim=-1)
    return values, indices


def top_k_kd_loss(
    student_logits: torch.Tensor,
    top_values: torch.Tensor,
    top_indices: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    T: float = 1.0,
) -> torch.Tensor:
    r"""Forward-KL token distillation from a cached top-k of the teacher's logits.

    The tail (the teacher's probability outside its top ``k``) is **dropped and the kept ``k``
    probabilities renormalised**: :math:`\tilde p = \mathrm{softmax}(\text{top\_values} / T)`
    over the ``k`` cached entries. The student stays normalised over the whole vocabulary,
    :math:`\log q = \mathrm{log\_softmax}(z_s / T)`, read at the cached ids. The loss is
    :math:`T^2\,\mathrm{KL}(\tilde p \| q) = T^2 \sum_{j \le k} \tilde p_j (\log \tilde p_j - \log q_{i_j})`,
    averaged per unmasked token like :func:`token_kd_loss`. So the student is pushed to put its
    mass on the teacher's ``k`` candidates; ``k = vocab`` is exactly ``token_kd_loss(...,
    divergence="forward")``, and ``k = 1`` is the cross-entropy on the teacher's arg-max (hard
    pseudo-labels), times :math:`T^2`.
    """
    _check_temperature(T)
    _check_tokens("student_logits", student_logits)
    if not isinstance(top_values, torch.Tensor) or not isinstance(top_indices, torch.Tensor) \
            or top_values.shape != top_indices.shape or top_values.shape[:2] != student_logits.shape[:2]:
        raise ValueError(
            "top_values and top_indices must both be (batch, length, k), with the batch and length of "
            f"student_logits {tuple(student_logits.shape)}; got {getattr(top_values, 'shape', None)} and "
            f"{getattr(top_indices, 'shape', None)} (make them with top_k_logits(teacher_logits, k))"
        )
    if top_indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or \
            int(top_indices.min()) < 0 or int(top_indices.max()) >= student_logits.shape[-1]:
        raise ValueError(f"top_indices must be integer token ids in [0, {student_logits.shape[-1] - 1}]")
    if not torch.isfinite(top_values).all():
        raise ValueError("top_values contains NaN or infinite values")
    mask = _check_mask(mask, student_logits.shape[:2])
    log_p = F.log_softmax(top_values.float() / T, dim=-1)
    log_q = F.log_softmax(student_logits / T, dim=-1).gather(-1, top_indices.long())
    per_token = (log_p.exp() * (log_p - log_q)).sum(-1)
    return _masked_token_mean(per_token, mask) * T * T
