"""The CIFAR-10 capstone (kdcourse.capstone): attention transfer over pairs of differently named
layers (kdcourse.methods), the teacher cache and its key (kdcourse.teacher_cache), augmentation, the size/latency table, the checker and, when ``KDCOURSE_CIFAR10`` points at
the data, a tiny end-to-end study (200 images, 1 epoch) through the API and the command line.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
import torch

from kdcourse import capstone
from kdcourse.capstone import (
    FULL,
    QUICK,
    capstone_terms,
    format_size_latency,
    random_crop_flip,
    size_latency_table,
)
from kdcourse.checks import check_paired_attention_loss
from kdcourse.distill import Distiller
from kdcourse.losses import attention_map, attention_transfer_loss
from kdcourse.methods import attention_term, method_terms, paired_attention_loss
from kdcourse.models import CifarCNN, CifarResNet, feature_extractor
from kdcourse.teacher_cache import cached_teacher_outputs, teacher_cache_key, teacher_outputs

needs_cifar = pytest.mark.skipif(not os.environ.get("KDCOURSE_CIFAR10"),
                                 reason="set KDCOURSE_CIFAR10 to the CIFAR-10 archive to run the data tests")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KDCOURSE_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def small_teacher():
    torch.manual_seed(0)
    return CifarResNet(widths=(8, 8, 16), blocks=1).eval()


def _images(n=6, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ regimes


def test_profiles_pick_the_regime(monkeypatch):
    monkeypatch.setenv("KDCOURSE_PROFILE", "quick")
    assert capstone.regime() is QUICK and not QUICK.augment and QUICK.train_size
    monkeypatch.setenv("KDCOURSE_PROFILE", "full")
    assert capstone.regime() is FULL and FULL.augment and FULL.train_size is None and FULL.epochs >= 30
    assert "all 50,000" in FULL.describe()


# ------------------------------------------------------------------ paired attention transfer


def test_student_and_teacher_layers_pair_by_resolution(small_teacher):
    x = _images(2)
    s = feature_extractor(CifarCNN(), ["layer1", "layer2"])(x)
    t = feature_extractor(small_teacher, ["layer2", "layer3"])(x)
    for s_name, t_name in capstone.AT_PAIRS.items():
        assert s[s_name].shape[2:] == t[t_name].shape[2:]


def test_paired_attention_loss_matches_attention_transfer():
    """AT over pairs is ordinary AT per pair, summed over the pairs as the references do."""
    s = {"a": torch.randn(4, 3, 8, 8), "b": torch.randn(4, 5, 4, 4)}
    t = {"x": torch.randn(4, 7, 8, 8), "y": torch.randn(4, 2, 4, 4)}
    one = paired_attention_loss(s, t, {"a": "x"})
    assert torch.equal(one, attention_transfer_loss(s["a"], t["x"]))
    two = paired_attention_loss(s, t, {"a": "x", "b": "y"})
    expected = attention_transfer_loss(s["a"], t["x"]) + attention_transfer_loss(s["b"], t["y"])
    assert torch.allclose(two, expected)
    assert torch.equal(paired_attention_loss(s, t, [("a", "x"), ("b", "y")]), two)  # pairs as a sequence


def test_paired_attention_loss_rejects_bad_pairs():
    s = {"a": torch.randn(2, 3, 8, 8)}
    t = {"x": torch.randn(2, 3, 4, 4)}
    with pytest.raises(ValueError, match="same spatial size"):
        paired_attention_loss(s, t, {"a": "x"})
    with pytest.raises(ValueError, match="at least one"):
        paired_attention_loss(s, t, {})


def test_study_weight_is_the_authors_beta_over_two():
    """500 x the sum over the two pairs: the paper's beta / 2 (beta = 1e3, eq. 2; the authors' code and mdistiller use beta), and the same
    number as the study's earlier 1000 x the mean over the pairs."""
    assert QUICK.weights["at"] == FULL.weights["at"] == 500.0


def test_capstone_terms(small_teacher):
    student = CifarCNN()
    names = lambda terms: [t.name for t in terms]  # noqa: E731
    assert names(capstone_terms("baseline", QUICK, student, None)) == ["ce"]
    assert names(capstone_terms("kd", QUICK, student, small_teacher)) == ["ce", "kd"]
    at = capstone_terms("at", QUICK, student, small_teacher)
    assert names(at) == ["ce", "at"]
    assert at[1].student_features == ("layer1", "layer2") and at[1].teacher_features == ("layer2", "layer3")
    assert at[1].weight == QUICK.weights["at"]
    assert names(capstone_terms("kd+at", QUICK, student, small_teacher)) == ["ce", "kd", "at"]
    sp = capstone_terms("sp", QUICK, student, small_teacher)
    assert names(sp) == ["ce", "sp"] and sp[1].student_features == sp[1].teacher_features == ("embedding",)
    with pytest.raises(ValueError, match="unknown method"):
        capstone_terms("kd+crd", QUICK, student, small_teacher)
    with pytest.raises(ValueError, match="teacher"):
        capstone_terms("kd", QUICK, student, None)


def test_paired_at_is_the_registry_term(small_teacher):
    """The study's AT is the registry's AT over pairs, no path of its own."""
    student = CifarCNN()
    study = capstone_terms("at", QUICK, student, small_teacher)[1]
    registry = method_terms("at", student=student, teacher=small_teacher, layers={"at": capstone.AT_PAIRS},
                            weights={"at": 500.0})[1]
    direct = attention_term(500.0, capstone.AT_PAIRS)
    x = _images(3)
    s_out = dict(feature_extractor(student, ["layer1", "layer2"])(x))
    t_out = dict(feature_extractor(small_teacher, ["layer2", "layer3"])(x))
    values = [term.fn(s_out, t_out, None) for term in (study, registry, direct)]
    assert torch.equal(values[0], values[1]) and torch.equal(values[0], values[2])


def test_distiller_reads_each_side_by_its_own_names(small_teacher):
    student = CifarCNN()
    distiller = Distiller(student, small_teacher, capstone_terms("kd+at", QUICK, student, small_teacher))
    assert distiller.student_features == ("layer1", "layer2")
    assert distiller.teacher_features == ("layer2", "layer3")
    x, y = _images(4), torch.tensor([0, 1, 2, 3])
    loss, parts, _ = distiller.compute_loss(x, y)
    assert set(parts) == {"ce", "kd", "at"} and torch.isfinite(loss)


def test_cached_feature_maps_give_the_live_loss(small_teacher):
    """The cache stores the teacher's feature maps; the loss on them equals the loss on live ones."""
    x = _images(5)
    student = CifarCNN()
    term = capstone_terms("at", QUICK, student, small_teacher)[1]
    s_out = dict(feature_extractor(student, term.student_features)(x))
    live = dict(feature_extractor(small_teacher, term.teacher_features)(x))
    cached = teacher_outputs(small_teacher, x, term.teacher_features, batch_size=2)
    assert cached["layer3"].shape == (5, 16, 8, 8) and cached["layer2"].shape == (5, 8, 16, 16)
    assert torch.allclose(term.fn(s_out, live, None), term.fn(s_out, cached, None), atol=1e-6)


# ------------------------------------------------------------------ the teacher cache


def test_teacher_outputs_shapes(small_teacher):
    x = _images(5)
    out = teacher_outputs(small_teacher, x, ("embedding", "layer3"), batch_size=2)
    assert set(out) == {"logits", "embedding", "layer3"}
    assert out["logits"].shape == (5, 10) and out["embedding"].shape == (5, 16)
    assert out["layer3"].shape == (5, 16, 8, 8)
    with torch.no_grad():
        assert torch.allclose(out["logits"], small_teacher(x), atol=1e-5)


def test_cache_key_depends_on_teacher_data_features_and_subset():
    x = _images(4)
    key = teacher_cache_key("abc", x, ("embedding",), train_size=4, seed=0)
    assert key == teacher_cache_key("abc", x.clone(), ("embedding",), train_size=4, seed=0)
    assert len(key) == 24 and all(c in "0123456789abcdef" for c in key)
    others = {
        teacher_cache_key("abd", x, ("embedding",), train_size=4, seed=0),  # another checkpoint
        teacher_cache_key("abc", _images(4, seed=1), ("embedding",), train_size=4, seed=0),  # other images
        teacher_cache_key("abc", x, ("embedding", "layer3"), train_size=4, seed=0),  # more features
        teacher_cache_key("abc", x, ("embedding",), train_size=4, seed=1),  # another subset seed
        teacher_cache_key("abc", x, ("embedding",), train_size=4, seed=0, split="test"),
    }
    assert key not in others and len(others) == 5
    # the order of the feature names does not matter
    assert teacher_cache_key("abc", x, ("layer3", "embedding")) == teacher_cache_key("abc", x, ("embedding", "layer3"))


def test_cached_teacher_outputs_roundtrip(cache_dir, small_teacher):
    x = _images(6)
    first, hit = cached_teacher_outputs(small_teacher, x, ("embedding",), teacher_sha256="t", seed=0)
    assert not hit
    files = list(cache_dir.glob("cifar10-teacher-*.pt"))
    assert len(files) == 1
    second, hit = cached_teacher_outputs(small_teacher, x, ("embedding",), teacher_sha256="t", seed=0)
    assert hit and set(second) == set(first)
    assert all(torch.equal(first[k], second[k]) for k in first)
    # another checkpoint digest: a new entry, computed again
    _, hit = cached_teacher_outputs(small_teacher, x, ("embedding",), teacher_sha256="u", seed=0)
    assert not hit and len(list(cache_dir.glob("cifar10-teacher-*.pt"))) == 2
    # a damaged file is recomputed and replaced
    files[0].write_bytes(b"not a torch file")
    third, hit = cached_teacher_outputs(small_teacher, x, ("embedding",), teacher_sha256="t", seed=0)
    assert not hit and torch.equal(third["logits"], first["logits"])
    _, hit = cached_teacher_outputs(small_teacher, x, ("embedding",), teacher_sha256="t", seed=0)
    assert hit
    # cache=False never touches the disk
    _, hit = cached_teacher_outputs(small_teacher, x, (), teacher_sha256="v", cache=False)
    assert not hit and len(list(cache_dir.glob("cifar10-teacher-*.pt"))) == 2


def test_channels_last_data_is_made_contiguous():
    """Freshly decoded images may be channels-last; the study trains on contiguous copies so the
    first run (empty cache) and later runs give the same numbers."""
    from torch.utils.data import TensorDataset

    from kdcourse.data import DataSplits

    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    splits = DataSplits(TensorDataset(x, torch.zeros(4, dtype=torch.long)), None,
                        TensorDataset(x.contiguous(), torch.zeros(4, dtype=torch.long)))
    fixed = capstone._contiguous(splits)
    assert fixed.train.tensors[0].is_contiguous() and torch.equal(fixed.train.tensors[0], x)
    assert fixed.test is splits.test and fixed.val is None


# ------------------------------------------------------------------ augmentation and latency


def test_random_crop_flip():
    x = torch.randn(8, 3, 32, 32)
    torch.manual_seed(0)
    a = random_crop_flip(x)
    torch.manual_seed(0)
    assert torch.equal(a, random_crop_flip(x)) and a.shape == x.shape
    torch.manual_seed(1)
    flips = random_crop_flip(x, pad=0)  # no padding: each image is itself or its mirror image
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(2)) for f, i in zip(flips, x))
    # a shifted crop moves the content: the padded zeros show up at a border
    torch.manual_seed(2)
    assert (random_crop_flip(x) == 0).any()


def test_size_latency_table(small_teacher):
    rows = size_latency_table({"teacher": small_teacher, "student": CifarCNN()}, {"student": 0.5},
                              batch_sizes=(1, 4), repeats=3)
    assert [r["model"] for r in rows] == ["teacher", "student"]
    assert rows[1]["params"] == 26_682 and abs(rows[1]["size_mb"] - 26_682 * 4 / 1e6) < 1e-9
    assert rows[1]["latency_ms_b4"] > 0 and "accuracy" not in rows[0]
    assert abs(rows[1]["mult_adds_m"] - 5.1616) < 1e-3
    text = format_size_latency(rows)
    assert "ms @ batch 4" in text and "50.0 %" in text and "26,682" in text and "5.2" in text


def test_count_multiply_adds():
    # CifarCNN: 3x3 convs at 32x32 (3->16, 16->16), 16x16 (16->32), 8x8 (32->64), then 64->10
    expected = 32 * 32 * 16 * 27 + 32 * 32 * 16 * 144 + 16 * 16 * 32 * 144 + 8 * 8 * 64 * 288 + 640
    assert capstone.count_multiply_adds(CifarCNN()) == expected
    assert capstone.count_multiply_adds(CifarResNet()) > 20 * expected


# ------------------------------------------------------------------ the checker


def test_checker_accepts_the_reference(capsys):
    check_paired_attention_loss(paired_attention_loss)
    assert "✓" in capsys.readouterr().out


def test_checker_names_classic_mistakes():
    def same_names(s, t, pairs):
        return sum(attention_transfer_loss(s[a], t[a]) for a in pairs)

    def averaged(s, t, pairs):
        return sum((attention_map(s[a]) - attention_map(t[b])).pow(2).mean() for a, b in pairs.items()) / len(pairs)

    def todo(s, t, pairs):
        raise NotImplementedError("Exercise")

    for fn, words in ((same_names, "same name"), (averaged, "add them up"), (todo, "not implemented yet")):
        with pytest.raises(AssertionError, match=words):
            check_paired_attention_loss(fn)


# ------------------------------------------------------------------ end to end (needs the data)

TINY = replace(QUICK, train_size=200, test_size=100, epochs=1, student_widths=(16, 32, 64))


def _test_logits_files() -> int:
    """Cache files the test split's logits take: none when the shipped logits apply to this copy."""
    from kdcourse.data import load_cifar10_data
    from kdcourse.teachers import shipped_cifar10_logits

    return 0 if shipped_cifar10_logits(load_cifar10_data(train_size=10, test_size=10).source_sha256) else 1


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    """A fresh cache folder for teacher outputs that shares the decoded CIFAR-10 arrays.

    The images are decoded once into the usual cache (where the notebooks find them too) and
    linked into the fresh folder, so only the teacher cache starts empty.
    """
    from kdcourse import config
    from kdcourse.data import load_cifar10_data

    load_cifar10_data(train_size=10, test_size=10)
    folder = tmp_path_factory.mktemp("kdcourse-cache")
    for f in config.cache_dir().glob("cifar10-*.npz"):
        (folder / f.name).symlink_to(f)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDCOURSE_CACHE", str(folder))
        yield folder


def _teacher_files(folder):
    return sorted(folder.glob("cifar10-teacher-*.pt"))


@needs_cifar
def test_tiny_study_and_its_cache(data_cache):
    before = len(_teacher_files(data_cache))
    study = capstone.cifar10_study(("baseline", "kd", "at", "sp"), seeds=1, reg=TINY, progress=False)
    assert set(study.results) == {"teacher", "baseline", "kd", "at", "sp"}
    for name in ("baseline", "kd", "at", "sp"):
        r = study.results[name]
        assert 0 <= r["mean"] <= 1 and r["params"] == 26_682 and len(r["runs"]) == 1
        assert len(study.histories[name][0].val_acc) == 1
    assert study.results["teacher"]["mean"] > 0.6  # 88 % on the full test set
    assert not study.timings["teacher_from_cache"]
    files = 1 + _test_logits_files()  # the training subset and (unless shipped) the test subset
    assert len(_teacher_files(data_cache)) == before + files
    again = capstone.cifar10_study(("kd",), seeds=1, reg=TINY, progress=False)  # one entry serves all
    assert again.timings["teacher_from_cache"] and len(_teacher_files(data_cache)) == before + files
    assert again.results["kd"]["runs"] == study.results["kd"]["runs"]  # same seed, same numbers


@needs_cifar
def test_tiny_full_profile_path_on_cpu(data_cache):
    """Augmentation on: the teacher runs live on every batch (only the test logits are cached)."""
    before = len(_teacher_files(data_cache))
    reg = replace(FULL, train_size=100, test_size=50, epochs=1, batch_size=50)
    study = capstone.cifar10_study(("kd", "at"), seeds=1, reg=reg, progress=False, device="cpu")
    assert study.results["at"]["params"] == 26_682 and len(study.histories["kd"][0].val_acc) == 1
    assert len(_teacher_files(data_cache)) == before + _test_logits_files()


@needs_cifar
def test_command_line_on_cifar10(data_cache, monkeypatch, tmp_path, capsys):
    from kdcourse.__main__ import main

    monkeypatch.setattr(capstone, "QUICK", TINY)
    out = tmp_path / "cifar.json"
    assert main(["compare", "--dataset", "cifar10", "--methods", "baseline,kd", "--seeds", "1",
                 "--quiet", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "teacher" in printed and "kd" in printed
    stored = json.loads(out.read_text())
    assert set(stored) == {"teacher", "baseline", "kd"} and stored["kd"]["params"] == 26_682


# ------------------------------------------------------------------ patience (issue 13; a GPU study, tested tiny)


def test_patience_refuses_what_it_cannot_measure():
    from kdcourse.patience import patience_study

    with pytest.raises(ValueError, match="augment=True"):
        patience_study((1,), reg=QUICK)
    with pytest.raises(ValueError, match="'baseline' with 'kd'"):
        patience_study((1,), methods=("kd", "at"))
    with pytest.raises(ValueError, match="epochs >= 1"):
        patience_study((0, 1))


@needs_cifar
def test_tiny_patience_study_pairs_seeds_at_every_budget(data_cache, tmp_path, capsys, monkeypatch):
    from kdcourse.__main__ import main
    from kdcourse.patience import format_patience, patience_study

    reg = replace(FULL, train_size=100, test_size=50, batch_size=50)
    result = patience_study((2, 1), seeds=2, reg=reg, progress=False, device="cpu")
    assert list(result["budgets"]) == ["1", "2"] and result["teacher_view"].startswith("the student's own augmented")
    for b in result["budgets"].values():
        base, kd = b["methods"]["baseline"]["runs"], b["methods"]["kd"]["runs"]
        assert b["gain"]["runs"] == pytest.approx([k - a for k, a in zip(kd, base)])
        assert set(b["images_per_second"]) == {"baseline", "kd"} and min(b["images_per_second"].values()) > 0
    assert result["longest"]["epochs"] == 2
    assert result["longest"]["reached_on_every_seed"] == (min(result["budgets"]["2"]["gain"]["runs"]) >= 0.015)
    assert "KD - labels (paired)" in format_patience(result)
    monkeypatch.setattr(capstone, "FULL", reg)  # the command line on 100 training and 50 test images
    out = tmp_path / "patience.json"
    assert main(["patience", "--budgets", "1", "--seeds", "2", "--images", "100", "--quiet", "--json", str(out),
                 "--precision", "bfloat16", "--channels-last"]) == 0  # the GPU script's fast path, here on the CPU
    written = json.loads(out.read_text())
    assert "labels only" in capsys.readouterr().out and written["budgets"]["1"]["gain"]
    assert written["regime"].endswith("bfloat16 autocast, channels-last")
    assert main(["patience", "--budgets", "a,b"]) == 2


@needs_cifar
def test_patience_with_the_weak_teacher_and_another_student(data_cache, tmp_path, capsys, monkeypatch):
    """The full-scale teacher-quality and capacity studies of issue 13 (a GPU's), here on 100 images: the
    command line picks the shipped weak teacher and the student's widths."""
    from kdcourse.__main__ import main
    from kdcourse.data import load_cifar10_data, tensors
    from kdcourse.transfer import cifar10_teacher_logits

    monkeypatch.setattr(capstone, "FULL", replace(FULL, train_size=100, test_size=50, batch_size=50))
    out = tmp_path / "patience.json"
    assert main(["patience", "--budgets", "1", "--seeds", "1", "--images", "100", "--quiet", "--json", str(out),
                 "--teacher", "weak", "--student-widths", "4,8,16"]) == 0
    written = json.loads(out.read_text())
    assert "the weak teacher" in written["regime"]
    assert written["student"] == "CifarCNN(4, 8, 16)" and written["student_parameters"] < 26_682
    assert "student CifarCNN(4, 8, 16)" in capsys.readouterr().out
    data = load_cifar10_data(train_size=100, test_size=50, seed=FULL.data_seed)
    y = tensors(data.test)[1]
    accuracy = {which: float((cifar10_teacher_logits(data, "test", which=which)[0].argmax(1) == y).float().mean())
                for which in ("strong", "weak")}
    assert accuracy["weak"] != accuracy["strong"]  # so that the next line tells them apart
    assert written["teacher"] == pytest.approx(accuracy["weak"])
    assert main(["patience", "--budgets", "1", "--student-widths", "4,8"]) == 2
    assert "three positive integers" in capsys.readouterr().err
    with pytest.raises(ValueError, match="shipped ones"):
        capstone.cifar10_study(("baseline",), 1, replace(FULL, teacher="medium"))


def test_the_gpu_session_script_is_valid_bash_and_uses_flags_the_command_line_has(capsys):
    """scripts/gpu_session.sh runs only where a GPU is lent: here, its syntax and the patience flags it passes."""
    import subprocess
    from pathlib import Path

    from kdcourse.__main__ import main

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_session.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "--precision bfloat16 --channels-last" in text
    with pytest.raises(SystemExit) as info:  # argparse: --help lists the flags the script uses
        main(["patience", "--help"])
    assert info.value.code == 0
    shown = capsys.readouterr().out
    assert all(flag in shown for flag in ("--precision", "--channels-last", "--budgets", "--seeds", "--images"))
    assert "--teacher weak" in text and "--student-widths" in text  # its quality and capacity stages
    assert "--teacher" in shown and "--student-widths" in shown
