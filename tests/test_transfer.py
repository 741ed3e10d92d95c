"""Transfer sets: labelled / unlabelled splits, label -1 in training, pseudo-labels, the study,
the shipped teacher logits and the command line."""

from __future__ import annotations

import json
import os
import shutil
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from kdcourse import teachers
from kdcourse.__main__ import main
from kdcourse.data import labeled_split, load_digits_data, transfer_set
from kdcourse.distill import (
    UNLABELED,
    labeled_cross_entropy,
    method_terms,
    pseudo_label_targets,
    seed_everything,
    train,
)
from kdcourse.models import DigitsCNN
from kdcourse.transfer import TransferRegime, paired_differences, soft_target_entropy, summarize, transfer_study


@pytest.fixture(scope="module")
def digits():
    return load_digits_data(images=True)


def test_labeled_split_is_disjoint_stratified_and_seeded(digits):
    lab, pool = labeled_split(digits.train, 100, 500, seed=3)
    assert len(lab) == 100 and len(pool) == 500
    assert torch.equal(torch.bincount(lab.tensors[1], minlength=10), torch.full((10,), 10))
    rows = {tuple(r.flatten().tolist()) for r in lab.tensors[0]}
    assert not any(tuple(r.flatten().tolist()) in rows for r in pool.tensors[0])
    again = labeled_split(digits.train, 100, 500, seed=3)
    assert torch.equal(again[0].tensors[0], lab.tensors[0]) and torch.equal(again[1].tensors[0], pool.tensors[0])
    other = labeled_split(digits.train, 100, 500, seed=4)
    assert not torch.equal(other[0].tensors[0], lab.tensors[0])
    lab_all, rest = labeled_split(digits.train, 100, None)
    assert len(lab_all) + len(rest) == len(digits.train)


@pytest.mark.parametrize("labeled, unlabeled", [(0, 10), (1077, None), (100, 0), (100, 2000)])
def test_labeled_split_rejects_impossible_sizes(digits, labeled, unlabeled):
    with pytest.raises(ValueError, match="between 1 and"):
        labeled_split(digits.train, labeled, unlabeled)


def test_transfer_set_hides_the_pool_labels(digits):
    lab, pool = labeled_split(digits.train, 50, 200)
    ts = transfer_set(lab, pool)
    y = ts.tensors[1]
    assert len(ts) == 250 and torch.equal(y[:50], lab.tensors[1]) and bool((y[50:] == UNLABELED).all())
    with pytest.raises(ValueError, match="differ"):
        transfer_set(lab, TensorDataset(torch.zeros(3, 64), torch.zeros(3, dtype=torch.long)))


def test_labeled_cross_entropy_skips_unlabelled_rows():
    torch.manual_seed(0)
    logits = torch.randn(6, 10, requires_grad=True)
    y = torch.tensor([3, -1, 5, -1, -1, 0])
    keep = y != -1
    assert torch.allclose(labeled_cross_entropy(logits, y), F.cross_entropy(logits[keep], y[keep]))
    full = torch.tensor([3, 1, 5, 2, 9, 0])
    assert torch.equal(labeled_cross_entropy(logits, full), F.cross_entropy(logits, full))
    none = labeled_cross_entropy(logits, torch.full((6,), -1))
    none.backward()
    assert none.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_pseudo_labels_fill_only_the_missing_labels():
    teacher = torch.tensor([[0.0, 5.0, 1.0], [4.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    y = torch.tensor([2, -1, -1])
    assert pseudo_label_targets(teacher, y).tolist() == [2, 0, 2]
    terms = method_terms("pseudo", teacher=DigitsCNN(4))
    assert [t.name for t in terms] == ["pseudo"]
    with pytest.raises(ValueError, match="cannot be summed"):
        method_terms("kd+pseudo", teacher=DigitsCNN(4))
    with pytest.raises(ValueError, match="needs a teacher"):
        method_terms("pseudo")


def test_training_on_a_transfer_set_counts_only_labelled_rows(digits):
    seed_everything(0)
    teacher = DigitsCNN(8)
    train(teacher, digits.train, epochs=2, progress=False)
    lab, pool = labeled_split(digits.train, 40, 300)
    ts = transfer_set(lab, pool)
    for method in ("kd", "pseudo", "baseline"):
        seed_everything(0)
        h = train(DigitsCNN(4), ts, teacher=None if method == "baseline" else teacher, method=method,
                  epochs=2, progress=False)
        assert all(np.isfinite(h.train_loss)) and all(0.0 <= a <= 1.0 for a in h.train_acc)
    seed_everything(0)
    with pytest.raises(ValueError, match="every example needs a label"):
        train(DigitsCNN(4), ts, teacher=teacher, method="dkd", epochs=1, progress=False)


def test_summaries_use_the_sample_std_and_pair_by_seed():
    s = summarize([0.5, 0.7, 0.6])
    assert s["std"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.6])) and s["mean"] == pytest.approx(0.6)
    assert summarize([0.4])["std"] == 0.0
    res = {"baseline": summarize([0.5, 0.6, 0.7]), "kd": summarize([0.6, 0.6, 0.9])}
    d = paired_differences(res, "kd")
    assert d["runs"] == pytest.approx([0.1, 0.0, 0.2])
    with pytest.raises(ValueError, match="pair runs by seed"):
        paired_differences({"baseline": summarize([0.5]), "kd": summarize([0.6, 0.7])}, "kd")


def test_transfer_study_pairs_seeds_and_reports_gains(digits):
    seed_everything(0)
    teacher = DigitsCNN(8)
    train(teacher, digits.train, epochs=3, progress=False)
    lab, pool = labeled_split(digits.train, 50, 300)
    from kdcourse.distill import teacher_outputs

    logits = teacher_outputs(teacher, transfer_set(lab, pool).tensors[0])["logits"]
    reg = TransferRegime(labeled=50, unlabeled=300, epochs=2, baseline_epochs=2)
    study = transfer_study(lab, pool, digits.test, teacher, logits, lambda: DigitsCNN(4), reg, seeds=2,
                           progress=False)
    assert set(study.results) == {"baseline", "pseudo", "kd"}
    for m in ("pseudo", "kd"):
        diffs = [a - b for a, b in zip(study.results[m]["runs"], study.results["baseline"]["runs"])]
        assert study.results[m]["vs_baseline"]["runs"] == pytest.approx(diffs)
    again = transfer_study(lab, pool, digits.test, teacher, logits, lambda: DigitsCNN(4), reg,
                           methods=("kd",), seeds=2, progress=False, keep_students=True)
    assert again.results["kd"]["runs"] == study.results["kd"]["runs"]  # same seed, same numbers
    assert study.students == {} and len(again.students["kd"]) == 2
    from kdcourse.distill import evaluate

    assert [evaluate(m, digits.test) for m in again.students["kd"]] == again.results["kd"]["runs"]
    with pytest.raises(ValueError, match="rows"):
        transfer_study(lab, pool, digits.test, teacher, logits[:-1], lambda: DigitsCNN(4), reg, progress=False)
    with pytest.raises(ValueError, match="unknown transfer-set method"):
        transfer_study(lab, pool, digits.test, teacher, logits, lambda: DigitsCNN(4), reg, methods=("at",))


def test_transfer_rows_keep_test_and_pools_apart():
    from kdcourse.transfer import transfer_rows

    y_train = torch.arange(1000) % 10
    y_test = torch.arange(400) % 10
    for pool in ("train", "held-out"):
        reg = TransferRegime(labeled=50, unlabeled=100, test_size=200, pool=pool)
        r = transfer_rows(reg, y_train, y_test)
        assert len(r["labeled"]) == 50 and len(r["pool"]) == 100 and len(r["test"]) == 200
        assert not set(r["test"].tolist()) & set(r["held_out"].tolist())
        if pool == "train":
            assert not set(r["labeled"].tolist()) & set(r["pool"].tolist())
        else:
            assert torch.equal(r["pool"], r["held_out"])
    a = transfer_rows(TransferRegime(labeled=50, unlabeled=100, test_size=200), y_train, y_test)
    b = transfer_rows(TransferRegime(labeled=50, unlabeled=100, test_size=200, pool="held-out"), y_train, y_test)
    assert torch.equal(a["test"], b["test"]), "both kinds of pool are scored on the same test images"


def test_regime_errors():
    with pytest.raises(ValueError, match="pool must be"):
        TransferRegime(pool="test")
    with pytest.raises(ValueError, match="held-out pool needs its size"):
        TransferRegime(pool="held-out", unlabeled=None)


def test_soft_target_entropy():
    logits = torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    h = soft_target_entropy(logits)
    assert h[0].item() == pytest.approx(0.0, abs=1e-6) and h[1].item() == pytest.approx(np.log(3))
    assert soft_target_entropy(torch.tensor([[4.0, 0.0, 0.0]]), T=4)[0] > soft_target_entropy(
        torch.tensor([[4.0, 0.0, 0.0]]))[0]


# ------------------------------------------------------------------ the shipped teacher logits


def test_shipped_logits_match_their_sidecar():
    info = teachers.cifar10_teacher_info(teachers.CIFAR10_LOGITS_PATH)
    assert info["sha256"] == teachers.CIFAR10_LOGITS_SHA256 == teachers._sha256(teachers.CIFAR10_LOGITS_PATH)
    assert info["teacher_sha256"] == teachers.CIFAR10_TEACHER_SHA256
    logits = teachers.shipped_cifar10_logits(info["data_sha256"])
    assert logits["train"].shape == (50_000, 10) and logits["test"].shape == (10_000, 10)
    assert logits["train"].dtype == torch.float32 and torch.isfinite(logits["test"]).all()
    assert teachers.shipped_cifar10_logits("another copy") is None
    assert teachers.shipped_cifar10_logits(None) is None


def test_the_weak_teachers_logits_are_its_own():
    info = teachers.cifar10_teacher_info(teachers.CIFAR10_WEAK_LOGITS_PATH)
    assert info["sha256"] == teachers.CIFAR10_WEAK_LOGITS_SHA256 == teachers._sha256(teachers.CIFAR10_WEAK_LOGITS_PATH)
    assert info["teacher_sha256"] == teachers.CIFAR10_WEAK_TEACHER_SHA256
    weak = teachers.shipped_cifar10_logits(info["data_sha256"], which="weak")
    strong = teachers.shipped_cifar10_logits(info["data_sha256"])
    assert weak["test"].shape == strong["test"].shape == (10_000, 10)
    assert not torch.equal(weak["test"], strong["test"])
    assert info["teacher_accuracy"]["test"] < teachers.cifar10_teacher_info(teachers.CIFAR10_LOGITS_PATH)[
        "teacher_accuracy"]["test"]


def test_capacity_study_needs_widths():
    from kdcourse.transfer import QUICK, capacity_study

    with pytest.raises(ValueError, match="at least one student width"):
        capacity_study(QUICK, [])


def test_corrupted_shipped_logits_warn_and_are_not_used(tmp_path, monkeypatch):
    copy = tmp_path / "cifar10_teacher_logits.npz"
    shutil.copy(teachers.CIFAR10_LOGITS_PATH, copy)
    shutil.copy(teachers.CIFAR10_LOGITS_PATH.with_suffix(".json"), copy.with_suffix(".json"))
    blob = bytearray(copy.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    copy.write_bytes(bytes(blob))
    monkeypatch.setattr(teachers, "CIFAR10_LOGITS_PATH", copy)
    monkeypatch.setattr(teachers, "_SHIPPED_LOGITS", {})
    digest = teachers.cifar10_teacher_info(copy)["data_sha256"]
    with pytest.warns(RuntimeWarning, match="corrupted or modified"):
        assert teachers.shipped_cifar10_logits(digest) is None


@pytest.mark.skipif(not os.environ.get("KDCOURSE_CIFAR10"), reason="needs KDCOURSE_CIFAR10 (the offline copy)")
def test_shipped_logits_are_the_teachers_outputs():
    from kdcourse.data import load_cifar10_data
    from kdcourse.distill import predict_logits
    from kdcourse.transfer import cifar10_teacher_logits

    d = load_cifar10_data(train_size=20, test_size=20, seed=1)
    shipped, source = cifar10_teacher_logits(d, "test")
    assert source == "shipped" and shipped.shape == (20, 10)
    live = predict_logits(teachers.load_cifar10_teacher(), d.test.tensors[0])
    assert torch.allclose(shipped, live, atol=1e-3)
    rows = torch.tensor([3, 7])
    part, _ = cifar10_teacher_logits(d, "train", rows)
    assert torch.allclose(part, predict_logits(teachers.load_cifar10_teacher(), d.train.tensors[0][rows]), atol=1e-3)


# ------------------------------------------------------------------ the command line


def test_cli_transfer_study_on_the_digits(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["compare", "--dataset", "digits", "--labeled", "100", "--methods", "baseline,pseudo,kd",
                 "--seeds", "2", "--epochs", "2", "--baseline-epochs", "2", "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "100 labelled + all other unlabelled images" in printed and "kd - baseline per seed" in printed
    results = json.loads(out.read_text())
    assert [m for m in results] == ["teacher", "baseline", "pseudo", "kd"]
    assert len(results["kd"]["runs"]) == 2 and len(results["kd"]["vs_baseline"]["runs"]) == 2


def test_cli_rejects_the_weak_teacher_on_the_digits(capsys):
    assert main(["compare", "--dataset", "digits", "--labeled", "100", "--teacher", "weak", "--seeds", "1",
                 "--quiet"]) == 2
    assert "CIFAR-10 teacher" in capsys.readouterr().err


@pytest.mark.parametrize("widths", ["16,32", "a,b,c", "0,8,16"])
def test_cli_rejects_bad_student_widths(widths, capsys):
    assert main(["compare", "--dataset", "cifar10", "--labeled", "100", "--student-widths", widths, "--seeds", "1",
                 "--quiet"]) == 2
    assert "three positive integers" in capsys.readouterr().err


def test_cli_rejects_a_held_out_pool_on_the_digits(capsys):
    assert main(["compare", "--dataset", "digits", "--labeled", "100", "--pool", "held-out", "--unlabeled", "50",
                 "--seeds", "1", "--quiet"]) == 2
    assert "held-out pool" in capsys.readouterr().err


# ------------------------------------------------------------------ the lesson-08 checker


def _right(z, y):
    keep = y != -1
    return F.cross_entropy(z[keep], y[keep]) if keep.any() else z.sum() * 0.0


def test_checker_accepts_a_right_answer(capsys):
    from kdcourse.checks import check_labeled_cross_entropy

    check_labeled_cross_entropy(_right)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda z, y: F.cross_entropy(z, y, ignore_index=-1), "returns NaN for a batch without a labelled row"),
    (lambda z, y: F.cross_entropy(z[y != -1], y[y != -1], reduction="sum") / len(y), "divides by the batch size"),
    (lambda z, y: F.cross_entropy(z[y != -1], y[y != -1], reduction="sum") if (y != -1).any() else z.sum() * 0,
     "sums over the labelled rows"),
    (lambda z, y: F.cross_entropy(z, y), "The label -1 means 'no label'"),
    (lambda z, y: _right(z, y).detach(), "no gradient reaches"),
])
def test_checker_names_each_mistake(wrong, words):
    from kdcourse.checks import check_labeled_cross_entropy

    with pytest.raises(AssertionError, match=words):
        check_labeled_cross_entropy(wrong)


def test_checker_says_not_implemented():
    from kdcourse.checks import check_labeled_cross_entropy

    def todo(z, y):
        raise NotImplementedError("Exercise: implement it")

    with pytest.raises(AssertionError, match="not implemented yet"):  # the checker itself (tests/test_fallback.py:
        check_labeled_cross_entropy.__wrapped__(todo)  # the lessons' wrapper answers the stub with the reference)
