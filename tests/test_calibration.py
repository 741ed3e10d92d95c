"""Unit tests of kdcourse.calibration (fidelity and calibration metrics) and its reliability diagram:
hand-computed values, the bin convention, (..., C) shapes with masks, and the error messages."""

import math

import numpy as np
import pytest
import torch

from kdcourse.calibration import expected_calibration_error, mean_kl_to_teacher, reliability_bins, top1_agreement

# ------------------------------------------------------------------ top-1 agreement

STUDENT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0], [5.0, 4.0]])  # arg-max 0, 1, 1, 0
TEACHER = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # arg-max 0, 0, 1, 1


def test_top1_agreement_hand_values():
    assert top1_agreement(STUDENT, TEACHER) == pytest.approx(0.5)
    assert top1_agreement(STUDENT, STUDENT) == 1.0
    assert top1_agreement(STUDENT, -STUDENT) == 0.0
    # probabilities give the same arg-max as logits
    assert top1_agreement(STUDENT.softmax(1), TEACHER) == pytest.approx(0.5)
    assert isinstance(top1_agreement(STUDENT, TEACHER), float)


def test_top1_agreement_mask_and_leading_dimensions():
    assert top1_agreement(STUDENT, TEACHER, mask=torch.tensor([True, False, True, False])) == 1.0
    assert top1_agreement(STUDENT, TEACHER, mask=torch.tensor([False, True, False, True])) == 0.0
    assert top1_agreement(STUDENT, TEACHER, mask=torch.tensor([True, True, True, False])) == pytest.approx(2 / 3)
    # (batch, length, C) like a language model: the same rows, laid out as 2 sequences of 2 tokens
    s3, t3 = STUDENT.reshape(2, 2, 2), TEACHER.reshape(2, 2, 2)
    assert top1_agreement(s3, t3) == pytest.approx(0.5)
    mask = torch.tensor([[True, True], [True, False]])
    assert top1_agreement(s3, t3, mask=mask) == pytest.approx(2 / 3)


# ------------------------------------------------------------------ KL to the teacher


def test_mean_kl_to_teacher_hand_value_and_direction():
    # teacher p = (1/4, 3/4), student q = (1/2, 1/2): KL(p || q) = 1/4 ln(1/2) + 3/4 ln(3/2)
    teacher = torch.tensor([[0.0, math.log(3.0)], [1.0, 2.0]], dtype=torch.float64)
    student = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    kl_pq = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)  # 0.1308; the reverse KL(q || p) is 0.1438
    assert mean_kl_to_teacher(student, teacher) == pytest.approx(kl_pq / 2, rel=1e-9)
    assert mean_kl_to_teacher(student, teacher, mask=torch.tensor([True, False])) == pytest.approx(kl_pq, rel=1e-9)
    assert mean_kl_to_teacher(student, teacher, mask=torch.tensor([False, True])) == pytest.approx(0.0, abs=1e-12)
    assert mean_kl_to_teacher(teacher, teacher) == pytest.approx(0.0, abs=1e-12)
    # logits are shift-invariant per row
    assert mean_kl_to_teacher(student + 7.0, teacher - 3.0) == pytest.approx(kl_pq / 2, rel=1e-9)


def test_mean_kl_to_teacher_temperature_without_t_squared():
    teacher = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    student = torch.zeros(1, 2, dtype=torch.float64)
    # at T = 2 the teacher is softmax((0, ln 3) / 2) = (1, sqrt 3) / (1 + sqrt 3); the student stays uniform
    s3 = math.sqrt(3.0)
    p = np.array([1.0, s3]) / (1 + s3)
    expected = float((p * np.log(p / 0.5)).sum())  # 0.0335; with a T^2 factor it would be 4x that
    assert mean_kl_to_teacher(student, teacher, T=2.0) == pytest.approx(expected, rel=1e-9)
    assert mean_kl_to_teacher(student, teacher, T=2) < mean_kl_to_teacher(student, teacher, T=1.0)


def test_mean_kl_to_teacher_leading_dimensions_and_mask():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 5, generator=g), torch.randn(2, 3, 5, generator=g)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    flat = mean_kl_to_teacher(s.reshape(6, 5)[mask.reshape(-1)], t.reshape(6, 5)[mask.reshape(-1)], T=3.0)
    assert mean_kl_to_teacher(s, t, T=3.0, mask=mask) == pytest.approx(flat, rel=1e-12)
    assert mean_kl_to_teacher(s, t, T=3.0, mask=mask) != pytest.approx(mean_kl_to_teacher(s, t, T=3.0), rel=1e-3)
    # a masked-out padding row may hold anything
    s_pad = s.clone()
    s_pad[0, 1] = float("nan")
    assert mean_kl_to_teacher(s_pad, t, T=3.0, mask=mask) == pytest.approx(flat, rel=1e-12)


# ------------------------------------------------------------------ reliability bins and ECE

# Two bins, (0, 0.5] and (0.5, 1]; three classes.
PROBS = torch.tensor([
    [0.40, 0.30, 0.30],  # confidence 0.40, predicts 0, target 0: right   -> bin 0
    [0.20, 0.45, 0.35],  # confidence 0.45, predicts 1, target 2: wrong   -> bin 0
    [0.90, 0.05, 0.05],  # confidence 0.90, predicts 0, target 0: right   -> bin 1
    [0.10, 0.80, 0.10],  # confidence 0.80, predicts 1, target 0: wrong   -> bin 1
    [0.00, 0.30, 0.70],  # confidence 0.70, predicts 2, target 2: right   -> bin 1
], dtype=torch.float64)
TARGETS = torch.tensor([0, 2, 0, 0, 2])
# bin 0: conf (0.40 + 0.45) / 2 = 0.425, acc 1/2, gap 0.075; bin 1: conf 0.8, acc 2/3, gap 2/15
# ECE = 2/5 * 0.075 + 3/5 * 2/15 = 0.03 + 0.08 = 0.11 (unweighted mean of gaps: 0.104; sum: 0.208)


def test_reliability_bins_two_bin_hand_example():
    bins = reliability_bins(PROBS, TARGETS, n_bins=2)
    assert set(bins) == {"lower", "upper", "confidence", "accuracy", "count"}
    np.testing.assert_allclose(bins["lower"], [0.0, 0.5])
    np.testing.assert_allclose(bins["upper"], [0.5, 1.0])
    np.testing.assert_array_equal(bins["count"], [2, 3])
    np.testing.assert_allclose(bins["confidence"], [0.425, 0.8])
    np.testing.assert_allclose(bins["accuracy"], [0.5, 2 / 3])
    assert all(isinstance(v, np.ndarray) for v in bins.values())
    assert expected_calibration_error(PROBS, TARGETS, n_bins=2) == pytest.approx(0.11, abs=1e-12)
    # one bin: |mean accuracy - mean confidence| = |3/5 - 0.65| = 0.05
    assert expected_calibration_error(PROBS, TARGETS, n_bins=1) == pytest.approx(0.05, abs=1e-12)


def test_perfectly_calibrated_toy_case_and_the_bin_edges():
    # confidence 0.5 on 4 rows (2 right), 0.75 on 4 rows (3 right): accuracy = confidence in each bin
    probs = torch.tensor([[0.5, 0.5]] * 4 + [[0.75, 0.25]] * 4, dtype=torch.float64)
    targets = torch.tensor([0, 0, 1, 1, 0, 0, 0, 1])  # ties go to class 0, as with torch.argmax
    assert expected_calibration_error(probs, targets, n_bins=4) == pytest.approx(0.0, abs=1e-12)
    bins = reliability_bins(probs, targets, n_bins=4)
    # bins (0, .25], (.25, .5], (.5, .75], (.75, 1]: an upper edge belongs to its bin
    np.testing.assert_array_equal(bins["count"], [0, 4, 4, 0])
    np.testing.assert_allclose(bins["confidence"][1:3], [0.5, 0.75])
    np.testing.assert_allclose(bins["accuracy"][1:3], [0.5, 0.75])
    assert np.isnan(bins["confidence"][[0, 3]]).all() and np.isnan(bins["accuracy"][[0, 3]]).all()
    # the default 15 bins: 0.5 and 0.75 lie in bins 7 (7/15, 8/15] and 11 (11/15, 12/15]; the rest are empty
    bins15 = reliability_bins(probs, targets)
    assert len(bins15["count"]) == 15 and bins15["count"].sum() == 8
    np.testing.assert_array_equal(np.flatnonzero(bins15["count"]), [7, 11])
    assert np.isnan(bins15["accuracy"]).sum() == 13
    assert expected_calibration_error(probs, targets) == pytest.approx(0.0, abs=1e-12)


def test_always_confident_and_wrong_gives_about_one():
    probs = torch.tensor([[0.999, 0.0005, 0.0005]] * 10)
    targets = torch.full((10,), 2)
    assert expected_calibration_error(probs, targets) == pytest.approx(0.999, abs=1e-6)
    # ... and always right at that confidence: the gap is the missing 0.001
    assert expected_calibration_error(probs, torch.zeros(10, dtype=torch.long)) == pytest.approx(0.001, abs=1e-6)


def test_reliability_bins_leading_dimensions_and_mask():
    # the 5 rows above as (1, 5, C) plus 3 padding rows (target -100, masked out), as a (2, 4, C) batch
    pad = torch.tensor([[1.0, 0.0, 0.0]] * 3, dtype=torch.float64)
    probs = torch.cat([PROBS, pad]).reshape(2, 4, 3)
    targets = torch.cat([TARGETS, torch.full((3,), -100)]).reshape(2, 4)
    mask = targets != -100
    bins = reliability_bins(probs, targets, n_bins=2, mask=mask)
    np.testing.assert_array_equal(bins["count"], [2, 3])
    np.testing.assert_allclose(bins["accuracy"], [0.5, 2 / 3])
    assert expected_calibration_error(probs, targets, n_bins=2, mask=mask) == pytest.approx(0.11, abs=1e-12)
    with pytest.raises(ValueError, match="mask out padding"):
        reliability_bins(probs, targets, n_bins=2)


# ------------------------------------------------------------------ error messages


def test_agreement_and_kl_errors():
    for fn in (top1_agreement, mean_kl_to_teacher):
        with pytest.raises(ValueError, match="same inputs"):
            fn(torch.zeros(4, 3), torch.zeros(4, 2))
        with pytest.raises(ValueError, match="NaN"):
            fn(torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2))
        with pytest.raises(ValueError, match="as a row"):
            fn(torch.zeros(3), torch.zeros(3))
        with pytest.raises(ValueError, match="mask has shape"):
            fn(STUDENT, TEACHER, mask=torch.ones(3, dtype=torch.bool))
        with pytest.raises(ValueError, match="boolean"):
            fn(STUDENT, TEACHER, mask=torch.tensor([1, 0, 1, 0]))
        with pytest.raises(ValueError, match="False everywhere"):
            fn(STUDENT, TEACHER, mask=torch.zeros(4, dtype=torch.bool))
        with pytest.raises(ValueError, match="floating-point"):
            fn(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long))
    for bad_T in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            mean_kl_to_teacher(STUDENT, TEACHER, T=bad_T)


def test_calibration_errors():
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins(PROBS, TARGETS, n_bins=0)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(PROBS, TARGETS, n_bins=2.5)
    with pytest.raises(ValueError, match="sum to 1"):
        reliability_bins(PROBS * 0.9, TARGETS)
    with pytest.raises(ValueError, match="outside \\[0, 1\\].*not logits"):
        reliability_bins(torch.tensor([[2.0, -1.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="NaN"):
        reliability_bins(torch.tensor([[float("nan"), 0.5]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="one class index per row"):
        reliability_bins(PROBS, TARGETS[:4])
    with pytest.raises(ValueError, match="integer class indices"):
        reliability_bins(PROBS, TARGETS.double())
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        expected_calibration_error(PROBS, torch.tensor([0, 2, 0, 0, 3]))
    with pytest.raises(ValueError, match="mask has shape"):
        reliability_bins(PROBS, TARGETS, mask=torch.ones(5, 1, dtype=torch.bool))


# ------------------------------------------------------------------ the reliability diagram


def test_reliability_diagram_one_line_per_model(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from kdcourse.plots import reliability_diagram

    probs = torch.tensor([[0.5, 0.5]] * 4 + [[0.75, 0.25]] * 4, dtype=torch.float64)
    targets = torch.tensor([0, 0, 1, 1, 0, 0, 0, 1])
    bins = {"calibrated": reliability_bins(probs, targets, n_bins=4),
            "two-bin example": reliability_bins(PROBS, TARGETS, n_bins=2)}
    fig = reliability_diagram(bins, title="toy", ece={"two-bin example": 0.11})
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "toy"
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)
    lines = ax.get_lines()
    assert len(lines) == 1 + len(bins)  # the diagonal, then one line per model
    np.testing.assert_allclose(lines[0].get_xdata(), [0, 1])
    np.testing.assert_allclose(lines[0].get_ydata(), [0, 1])
    # empty bins are skipped; each point is (confidence, accuracy) of a bin
    np.testing.assert_allclose(lines[1].get_xdata(), [0.5, 0.75])
    np.testing.assert_allclose(lines[2].get_xdata(), [0.425, 0.8])
    np.testing.assert_allclose(lines[2].get_ydata(), [0.5, 2 / 3])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["perfect calibration", "calibrated", "two-bin example (ECE 0.110)"]
    fig.savefig(tmp_path / "reliability.png")
    with pytest.raises(ValueError, match="empty"):
        reliability_diagram({})
    with pytest.raises(ValueError, match="lack"):
        reliability_diagram({"bad": {"accuracy": [0.5]}})
