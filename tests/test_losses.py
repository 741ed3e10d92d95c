"""Unit tests of kdcourse.losses: exact values, gradients, properties and error messages."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kdcourse import losses as L
from rkd_reference import repdistiller_rkd_distance

torch.set_default_dtype(torch.float32)


def logits_batch(n=4, c=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=dtype) * 2


# ------------------------------------------------------------------ exact values


def test_softmax_with_temperature_hand_values():
    z = torch.tensor([[0.0, math.log(3.0)]])
    assert torch.allclose(L.softmax_with_temperature(z, 1.0), torch.tensor([[0.25, 0.75]]))
    # at T = 2, exp(log(3)/2) = sqrt(3)
    s3 = math.sqrt(3.0)
    assert torch.allclose(L.softmax_with_temperature(z, 2.0), torch.tensor([[1 / (1 + s3), s3 / (1 + s3)]]))


def test_softmax_with_temperature_limits():
    z = torch.tensor([[1.0, 2.0, 5.0]])
    assert torch.allclose(L.softmax_with_temperature(z, 1e4), torch.full((1, 3), 1 / 3), atol=1e-3)
    assert L.softmax_with_temperature(z, 0.05)[0, 2] > 0.999


def test_entropy_in_nats_with_zeros_counting_as_zero():
    p = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    assert torch.allclose(L.entropy(p), torch.tensor([math.log(4), 0.0, math.log(2)]))


def test_rkd_angles_are_the_cosines_at_the_middle_vertex():
    e = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [3.0, -1.0]])
    a = L.rkd_angles(e)
    for i, j, k in [(0, 1, 2), (2, 1, 0), (3, 0, 2), (1, 2, 3)]:
        u, v = e[i] - e[j], e[k] - e[j]
        assert math.isclose(float(a[i, j, k]), float(u @ v / (u.norm() * v.norm())), abs_tol=1e-6)
    assert math.isclose(float(a[0, 1, 2]), 0.0, abs_tol=1e-6)  # a right angle at (1, 0)
    assert torch.isfinite(a).all() and float(a[1, 1, 2]) == 0.0  # a point with itself: 0, not NaN


def test_kd_loss_hand_value():
    # two classes: teacher p = (0.25, 0.75), student q = (0.5, 0.5) at T = 1
    t = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    s = torch.zeros(1, 2, dtype=torch.float64)
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert L.kd_loss(s, t, T=1.0).item() == pytest.approx(kl)
    # at T = 2 the same logits are softened, and the loss is scaled by T^2 = 4
    p = torch.softmax(t / 2, 1)[0]
    kl2 = float((p * (p / 0.5).log()).sum())
    assert L.kd_loss(s, t, T=2.0).item() == pytest.approx(4 * kl2)


def test_kd_loss_is_batchmean_and_direction():
    s, t = logits_batch(seed=1), logits_batch(seed=2)
    T = 3.0
    p_t, log_p_s = torch.softmax(t / T, 1), torch.log_softmax(s / T, 1)
    expected = (p_t * (p_t.log() - log_p_s)).sum(1).mean() * T * T
    assert L.kd_loss(s, t, T).item() == pytest.approx(expected.item())
    reversed_kl = L.kd_loss(t, s, T)
    assert not torch.isclose(reversed_kl, L.kd_loss(s, t, T))


def test_distillation_loss_mixes_with_alpha_on_soft_term():
    s, t = logits_batch(), logits_batch(seed=3)
    y = torch.tensor([0, 1, 2, 3])
    soft, hard = L.kd_loss(s, t, 4.0), F.cross_entropy(s, y)
    assert L.distillation_loss(s, t, y, T=4.0, alpha=1.0).item() == pytest.approx(soft.item())
    assert L.distillation_loss(s, t, y, T=4.0, alpha=0.0).item() == pytest.approx(hard.item())
    assert L.distillation_loss(s, t, y, T=4.0, alpha=0.3).item() == pytest.approx(0.3 * soft.item() + 0.7 * hard.item())


def test_dkd_decomposes_classical_kd():
    # Zhao et al. eq. 5: KD = TCKD + (1 - p_t^target) * NCKD, example by example
    s, t = logits_batch(n=1, c=6, seed=4), logits_batch(n=1, c=6, seed=5)
    y = torch.tensor([2])
    T = 2.0
    tckd = L.dkd_loss(s, t, y, T=T, alpha=1.0, beta=0.0)
    nckd = L.dkd_loss(s, t, y, T=T, alpha=0.0, beta=1.0)
    p_target = torch.softmax(t / T, 1)[0, 2]
    assert L.kd_loss(s, t, T).item() == pytest.approx((tckd + (1 - p_target) * nckd).item(), rel=1e-6)


def test_hint_loss_is_mse_after_regressor():
    s = torch.ones(2, 3, 4, 4)
    t = torch.zeros(2, 5, 4, 4)
    reg = nn.Conv2d(3, 5, 1, bias=False)
    nn.init.constant_(reg.weight, 0.5)
    # each output element = 3 * 0.5 = 1.5, squared error 2.25
    assert L.hint_loss(s, t, reg).item() == pytest.approx(2.25)
    assert L.hint_loss(torch.ones(2, 3), torch.zeros(2, 3)).item() == pytest.approx(1.0)


def test_attention_map_is_normalised_and_width_free():
    f = torch.randn(3, 7, 4, 4)
    q = L.attention_map(f)
    assert q.shape == (3, 16)
    assert torch.allclose(q.norm(dim=1), torch.ones(3))
    # duplicating channels changes nothing (the mean over channels is the same)
    assert torch.allclose(L.attention_map(torch.cat([f, f], 1)), q, atol=1e-6)
    assert L.attention_transfer_loss(f, torch.cat([f, f], 1)).item() == pytest.approx(0.0, abs=1e-10)


def test_pairwise_distances_hand_values():
    e = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert torch.allclose(L.pairwise_distances(e), torch.tensor([[0.0, 5.0], [5.0, 0.0]]))


def test_pairwise_distances_zero_diagonal_and_clamp():
    # the diagonal is exactly 0; two coinciding rows get sqrt(eps), as the reference pdist's clamp gives
    e = torch.tensor([[1.0, 2.0], [1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64)
    d = L.pairwise_distances(e)
    assert torch.equal(torch.diagonal(d), torch.zeros(3, dtype=torch.float64))
    assert d[0, 1].item() == pytest.approx(1e-6) and d[0, 1] == d[1, 0]
    assert torch.allclose(d[0, 2], torch.tensor(math.hypot(4.0, 1.5), dtype=torch.float64))


_reference_rkd_distance = repdistiller_rkd_distance  # RepDistiller / RKD authors / mdistiller (tests/rkd_reference.py)


@pytest.mark.parametrize("b", [2, 5, 16])
def test_rkd_distance_matches_the_reference_implementations(b):
    g = torch.Generator().manual_seed(b)
    s = torch.randn(b, 7, generator=g, dtype=torch.float64)
    t = 3.0 * torch.randn(b, 4, generator=g, dtype=torch.float64)
    t[0] += 5.0  # an outlier: some normalised distances differ by more than 1 (the Huber loss's linear part)
    loss = L.rkd_distance_loss(s, t)
    assert loss.item() == pytest.approx(_reference_rkd_distance(s, t).item(), rel=1e-12)
    # the full-matrix mean is (b-1)/b times the mean over the b(b-1) pairs i != j alone
    off = ~torch.eye(b, dtype=torch.bool)
    d_s, d_t = torch.cdist(s, s), torch.cdist(t, t)
    d_s, d_t = d_s / d_s[off].mean(), d_t / d_t[off].mean()
    pairs_mean = F.smooth_l1_loss(d_s[off], d_t[off])
    assert loss.item() == pytest.approx((b - 1) / b * pairs_mean.item(), rel=1e-10)
    # and the gradient is the reference's too
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    L.rkd_distance_loss(s1, t).backward()
    _reference_rkd_distance(s2, t).backward()
    assert torch.allclose(s1.grad, s2.grad, rtol=1e-10, atol=1e-12)


def test_rkd_losses_zero_for_identical_relations():
    e = torch.randn(6, 4, dtype=torch.float64)
    assert L.rkd_distance_loss(e, e).item() == pytest.approx(0.0, abs=1e-12)
    assert L.rkd_angle_loss(e, e).item() == pytest.approx(0.0, abs=1e-12)


def test_similarity_preserving_hand_value():
    # teacher: two orthogonal examples -> G_T = I; student: two identical ones -> G_S rows (1,1)/sqrt2
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    r = 1 / math.sqrt(2)
    expected = 2 * ((1 - r) ** 2 + r**2) / 4
    assert L.similarity_preserving_loss(s, t).item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ gradients (float64 gradcheck)


@pytest.mark.parametrize(
    "fn",
    [
        lambda s, t: L.kd_loss(s, t, 3.0),
        lambda s, t: L.distillation_loss(s, t, torch.tensor([0, 1, 2, 3]), 3.0, 0.7),
        lambda s, t: L.dkd_loss(s, t, torch.tensor([0, 1, 2, 3]), 3.0),
        lambda s, t: L.hint_loss(s, t),
        lambda s, t: L.rkd_distance_loss(s, t),
        lambda s, t: L.rkd_angle_loss(s, t),
        lambda s, t: L.similarity_preserving_loss(s, t),
        lambda s, t: L.softmax_with_temperature(s, 2.0),
    ],
    ids=["kd", "distillation", "dkd", "hint", "rkd_distance", "rkd_angle", "sp", "softmax"],
)
def test_gradcheck(fn):
    s = logits_batch(seed=10).requires_grad_()
    t = logits_batch(seed=11)
    assert torch.autograd.gradcheck(lambda x: fn(x, t), (s,))


def test_gradcheck_attention_transfer():
    s = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 5, 4, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: L.attention_transfer_loss(x, t), (s,))


# ------------------------------------------------------------------ properties

finite_logits = st.lists(st.floats(-20, 20, allow_nan=False), min_size=6, max_size=6)


@settings(max_examples=60, deadline=None)
@given(finite_logits, finite_logits, st.floats(0.5, 20), st.floats(-50, 50))
def test_kd_loss_properties(s, t, T, shift):
    s = torch.tensor([s], dtype=torch.float64)
    t = torch.tensor([t], dtype=torch.float64)
    value = L.kd_loss(s, t, T).item()
    assert value >= -1e-10
    assert L.kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-9)
    # adding a constant to all logits of either model changes nothing
    assert L.kd_loss(s + shift, t - shift, T).item() == pytest.approx(value, rel=1e-6, abs=1e-8)


def test_t_squared_keeps_gradient_scale():
    s = logits_batch(n=64, c=10, seed=20).requires_grad_()
    t = logits_batch(n=64, c=10, seed=21)

    def grad_norm(T, scaled):
        s.grad = None
        loss = L.kd_loss(s, t, T) if scaled else L.kd_loss(s, t, T) / (T * T)
        loss.backward()
        return s.grad.norm().item()

    scaled = [grad_norm(T, True) for T in (2, 4, 8, 16)]
    unscaled = [grad_norm(T, False) for T in (2, 4, 8, 16)]
    # with T^2: within a factor ~2 across an 8x range of T; without: shrinks roughly like 1/T^2
    assert max(scaled) / min(scaled) < 2.5
    slope = math.log(unscaled[-1] / unscaled[0]) / math.log(16 / 2)
    assert -2.3 < slope < -1.7


@settings(max_examples=30, deadline=None)
@given(st.floats(0.1, 10), st.floats(0.1, 10))
def test_relation_losses_scale_invariant(a, b):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(8, 5, generator=g, dtype=torch.float64)
    t = torch.randn(8, 3, generator=g, dtype=torch.float64)
    for fn in (L.rkd_distance_loss, L.rkd_angle_loss, L.similarity_preserving_loss):
        assert fn(a * s, b * t).item() == pytest.approx(fn(s, t).item(), rel=1e-6, abs=1e-10)
    # angles are translation invariant too
    assert L.rkd_angle_loss(s + 3.0, t - 1.0).item() == pytest.approx(L.rkd_angle_loss(s, t).item(), rel=1e-6)


# ------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize("T", [0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(T):
    with pytest.raises(ValueError, match="temperature T must be"):
        L.kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), T)
    with pytest.raises(ValueError, match="temperature T must be"):
        L.softmax_with_temperature(torch.zeros(2, 3), T)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        L.distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]), alpha=alpha)


def test_shape_messages():
    with pytest.raises(ValueError, match="class counts differ"):
        L.kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="batch sizes differ"):
        L.kd_loss(torch.zeros(2, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="must be 2-D"):
        L.kd_loss(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="targets has 3 labels"):
        L.distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
        L.distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="regressor"):
        L.hint_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 4, 4))
    with pytest.raises(ValueError, match="same spatial size"):
        L.attention_transfer_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="at least 2"):
        L.rkd_distance_loss(torch.zeros(1, 3), torch.zeros(1, 3))


def test_non_finite_and_empty():
    bad = torch.tensor([[0.0, float("nan")]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        L.kd_loss(bad, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="empty batch"):
        L.kd_loss(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match="floating-point"):
        L.kd_loss(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))


# ------------------------------------------------------------------ scalars and DKD in log space


@pytest.mark.parametrize("T", [np.float32(2.0), np.float64(2.0), np.int64(2), torch.tensor(2.0), 2, 2.0])
def test_temperature_accepts_numpy_and_0d_torch_scalars(T):
    s, t = torch.randn(3, 5, generator=torch.Generator().manual_seed(0)), torch.randn(3, 5)
    assert torch.allclose(L.kd_loss(s, t, T), L.kd_loss(s, t, 2.0))
    y = torch.tensor([0, 1, 2])
    assert torch.allclose(L.distillation_loss(s, t, y, T=T, alpha=np.float32(0.5)),
                          L.distillation_loss(s, t, y, T=2.0, alpha=0.5))


@pytest.mark.parametrize("bad", [True, False, np.bool_(True), torch.tensor(True), torch.tensor([1.0, 2.0]), "4"])
def test_booleans_and_non_scalars_are_not_temperatures_or_alphas(bad):
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    with pytest.raises(ValueError, match="temperature T must be"):
        L.kd_loss(s, t, bad)
    with pytest.raises(ValueError, match="alpha must lie"):
        L.distillation_loss(s, t, torch.tensor([0, 1, 2]), T=2.0, alpha=bad)


def _exact_tckd(s, t, y, T):
    """TCKD in float64 from log-sum-exps, for one row."""
    s, t = s.double() / T, t.double() / T
    def log_binary(z):
        norm = torch.logsumexp(z, 0)
        rest = torch.cat([z[:y], z[y + 1:]])
        return torch.stack([z[y] - norm, torch.logsumexp(rest, 0) - norm])
    ls, lt = log_binary(s), log_binary(t)
    return float((lt.exp() * (lt - ls)).sum()) * T * T


def test_dkd_tckd_is_exact_when_a_probability_underflows():
    s = torch.tensor([[0.0, 80.0, 1.0]])  # the student gives the target class 0 about e^-80
    t = torch.tensor([[0.0, 0.5, 1.0]])
    y = torch.tensor([0])
    exact = _exact_tckd(s[0], t[0], 0, 1.0)
    assert exact == pytest.approx(14.425, abs=1e-3)
    assert float(L.dkd_loss(s, t, y, T=1.0, beta=0.0)) == pytest.approx(exact, rel=1e-5)
    # clamping the probability at 1e-12 before the log, the old way, gives a third of it
    p = torch.softmax(s, 1)
    clamped = torch.nn.functional.kl_div(torch.stack([p[:, 0], 1 - p[:, 0]], 1).clamp_min(1e-12).log(),
                                         torch.stack([torch.softmax(t, 1)[:, 0], 1 - torch.softmax(t, 1)[:, 0]], 1),
                                         reduction="batchmean")
    assert float(clamped) < exact / 2


def test_dkd_tckd_matches_the_probability_form_on_ordinary_logits():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(6, 10, generator=g) * 2, torch.randn(6, 10, generator=g) * 2
    y = torch.randint(0, 10, (6,), generator=g)
    expected = sum(_exact_tckd(s[i], t[i], int(y[i]), 4.0) for i in range(6)) / 6
    assert float(L.dkd_loss(s, t, y, T=4.0, beta=0.0)) == pytest.approx(expected, rel=1e-5)


def test_multi_stage_attention_is_the_sum_over_stages():
    g = torch.Generator().manual_seed(4)
    s1, t1 = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 16, 8, 8, generator=g)
    s2, t2 = torch.randn(3, 8, 4, 4, generator=g), torch.randn(3, 32, 4, 4, generator=g)
    total = L.multi_stage_attention_loss([s1, s2], [t1, t2])
    assert torch.allclose(total, L.attention_transfer_loss(s1, t1) + L.attention_transfer_loss(s2, t2))
    # by hand, RepDistiller's form: normalize(f.pow(2).mean(1).view(n, -1)), squared difference, mean
    def at(f):
        return F.normalize(f.pow(2).mean(1).view(f.size(0), -1))
    by_hand = sum((at(a) - at(b)).pow(2).mean() for a, b in [(s1, t1), (s2, t2)])
    assert torch.allclose(total, by_hand, atol=1e-7)
    with pytest.raises(ValueError, match="paired by stage"):
        L.multi_stage_attention_loss([s1, s2], [t1])
