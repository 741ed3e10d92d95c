"""The shipped CIFAR-10 teacher: integrity checks, loading, and its accuracy on real images."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import torch

import kdcourse.teachers as teachers
from kdcourse.models import CifarResNet, count_parameters
from kdcourse.teachers import (
    CIFAR10_TEACHER_PATH,
    CIFAR10_TEACHER_SHA256,
    cifar10_teacher_info,
    load_cifar10_teacher,
)


def test_shipped_teacher_loads_frozen():
    model = load_cifar10_teacher()
    assert isinstance(model, CifarResNet)
    assert model.widths == (32, 64, 128) and model.blocks == 2
    assert count_parameters(model) == 696_618
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_sidecar_records_the_checkpoint():
    info = cifar10_teacher_info()
    assert info["sha256"] == CIFAR10_TEACHER_SHA256
    assert info["parameters"] == 696_618
    assert info["test_accuracy"] >= 0.80
    assert info["checkpoint_bytes"] == CIFAR10_TEACHER_PATH.stat().st_size
    # a plain state_dict, readable without running pickled code
    state = torch.load(CIFAR10_TEACHER_PATH, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_the_weak_teacher_is_the_same_network_on_a_shorter_schedule():
    strong, weak = cifar10_teacher_info(), cifar10_teacher_info(which="weak")
    assert weak["sha256"] == teachers.CIFAR10_WEAK_TEACHER_SHA256 == teachers._sha256(teachers.CIFAR10_WEAK_TEACHER_PATH)
    assert weak["architecture"] == strong["architecture"] and weak["parameters"] == strong["parameters"]
    assert weak["epochs"] < strong["epochs"] and 0.60 <= weak["test_accuracy"] < strong["test_accuracy"] - 0.05
    model = load_cifar10_teacher(which="weak")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert not torch.equal(next(model.parameters()), next(load_cifar10_teacher().parameters()))
    with pytest.raises(ValueError, match="strong"):
        load_cifar10_teacher(which="medium")


def test_a_corrupted_weak_teacher_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "cifar10_teacher_short.pt"
    blob = bytearray(teachers.CIFAR10_WEAK_TEACHER_PATH.read_bytes())
    blob[-10] ^= 0xFF
    copy.write_bytes(bytes(blob))
    shutil.copy(teachers.CIFAR10_WEAK_TEACHER_PATH.with_suffix(".json"), copy.with_suffix(".json"))
    monkeypatch.setattr(teachers, "CIFAR10_WEAK_TEACHER_PATH", copy)
    with pytest.raises(RuntimeError, match="corrupted or modified"):
        load_cifar10_teacher(which="weak")


def test_copy_with_or_without_sidecar_loads(tmp_path):
    copy = tmp_path / "teacher.pt"
    shutil.copy(CIFAR10_TEACHER_PATH, copy)
    load_cifar10_teacher(copy)  # no sidecar: checked against the hard-coded digest
    shutil.copy(CIFAR10_TEACHER_PATH.with_suffix(".json"), copy.with_suffix(".json"))
    load_cifar10_teacher(copy)


@pytest.mark.parametrize("where", [100, 2_000_000, -10])
def test_corrupted_copy_is_refused(tmp_path, where):
    copy = tmp_path / "teacher.pt"
    data = bytearray(CIFAR10_TEACHER_PATH.read_bytes())
    data[where] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="corrupted or modified") as info:
        load_cifar10_teacher(copy)
    assert "git checkout kdcourse/assets/" in str(info.value)
    assert "scripts/train_cifar_teacher.py" in str(info.value)


def test_unreadable_file_is_refused_even_without_verification(tmp_path):
    copy = tmp_path / "teacher.pt"
    copy.write_bytes(CIFAR10_TEACHER_PATH.read_bytes()[:100_000])  # truncated
    with pytest.raises(RuntimeError, match="corrupted or modified"):
        load_cifar10_teacher(copy, verify=False)


def test_swapped_sidecar_is_caught(tmp_path, monkeypatch):
    """Another checkpoint whose sidecar vouches for it: fine elsewhere, refused as the shipped one."""
    other = tmp_path / "teacher.pt"
    torch.save(CifarResNet().state_dict(), other)
    info = cifar10_teacher_info()
    info["sha256"] = hashlib.sha256(other.read_bytes()).hexdigest()
    other.with_suffix(".json").write_text(json.dumps(info))
    load_cifar10_teacher(other)  # a retrained teacher at its own path: its sidecar is trusted

    # the same pair in place of the shipped files: the hard-coded digest catches the swap
    monkeypatch.setattr(teachers, "CIFAR10_TEACHER_PATH", other.resolve())
    with pytest.raises(RuntimeError, match="sidecar .* is modified"):
        load_cifar10_teacher()
    # and a swapped checkpoint alone (the sidecar left as shipped) is refused too
    other.with_suffix(".json").write_text(json.dumps(cifar10_teacher_info(CIFAR10_TEACHER_PATH)))
    with pytest.raises(RuntimeError, match="corrupted or modified"):
        load_cifar10_teacher()


def test_missing_file_says_how_to_recreate(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10_teacher(tmp_path / "nowhere.pt")
    message = str(info.value)
    assert "nowhere.pt" in message
    assert "scripts/train_cifar_teacher.py" in message and "git checkout" in message


@pytest.mark.skipif(not os.environ.get("KDCOURSE_CIFAR10"),
                    reason="set KDCOURSE_CIFAR10 to the CIFAR-10 archive to run")
def test_teacher_accuracy_on_real_images():
    from kdcourse.data import load_cifar10_data

    splits = load_cifar10_data(train_size=10, test_size=500)
    x, y = splits.test.tensors
    model = load_cifar10_teacher()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.75


# ------------------------------------------------------------------ the character-level teacher (lesson 09)


def test_lm_teacher_loads_frozen_and_matches_its_sidecar():
    from kdcourse.lm import bits_per_char
    from kdcourse.text import load_text_data

    model = teachers.load_lm_teacher()
    info = teachers.lm_teacher_info()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert info["sha256"] == teachers.LM_TEACHER_SHA256
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    data = load_text_data()
    if data.sha256 == info["corpus_sha256"]:  # the text it was measured on (Python 3.11's pydoc_data)
        assert abs(bits_per_char(model, data.test) - info["test_bpc"]) < 1e-3


def _lm_assets_copy(tmp_path, monkeypatch):
    import shutil

    for name in ("lm_teacher.pt", "lm_teacher.json", "lm_teacher_text.txt"):
        shutil.copy(teachers.ASSETS / name, tmp_path / name)
    monkeypatch.setattr(teachers, "LM_TEACHER_PATH", tmp_path / "lm_teacher.pt")
    monkeypatch.setattr(teachers, "LM_TEXT_PATH", tmp_path / "lm_teacher_text.txt")
    return tmp_path


def test_corrupted_lm_teacher_is_refused(tmp_path, monkeypatch):
    folder = _lm_assets_copy(tmp_path, monkeypatch)
    data = bytearray((folder / "lm_teacher.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "lm_teacher.pt").write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="corrupted or modified.*train_lm_teacher"):
        teachers.load_lm_teacher()


def test_modified_lm_text_and_missing_files_are_explained(tmp_path, monkeypatch):
    folder = _lm_assets_copy(tmp_path, monkeypatch)
    assert teachers.lm_teacher_text().startswith(teachers.LM_TEXT_PATH.read_text()[:20])
    (folder / "lm_teacher_text.txt").write_text("not what the teacher wrote")
    with pytest.raises(RuntimeError, match="teacher's text.*corrupted or modified"):
        teachers.lm_teacher_text()
    (folder / "lm_teacher.pt").unlink()
    with pytest.raises(FileNotFoundError, match="git checkout kdcourse/assets"):
        teachers.load_lm_teacher()


@pytest.mark.skipif(not os.environ.get("KDCOURSE_CIFAR10"), reason="set KDCOURSE_CIFAR10 to run the data tests")
def test_the_fast_recipe_trains_and_loads(tmp_path):
    """scripts/train_cifar_teacher.py --recipe fast: a CifarSpeedNet checkpoint with its sidecar, which
    load_cifar10_teacher reads back (a smoke test on 128 images; the real run needs a GPU)."""
    import importlib.util
    from pathlib import Path

    from kdcourse.models import CifarSpeedNet

    script = Path(__file__).resolve().parent.parent / "scripts" / "train_cifar_teacher.py"
    spec = importlib.util.spec_from_file_location("train_cifar_teacher", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    info = module.main(["--recipe", "fast", "--epochs", "1", "--train-size", "128", "--test-size", "100",
                        "--batch-size", "64", "--device", "cpu", "--out-dir", str(tmp_path)])
    assert info["model"] == "kdcourse.models.CifarSpeedNet" and info["checkpoint"] == "cifar10_teacher_fast.pt"
    assert 0.0 <= info["test_accuracy"] <= 1.0 and "test_accuracy_with_flips" in info
    teacher = load_cifar10_teacher(tmp_path / "cifar10_teacher_fast.pt")
    assert isinstance(teacher, CifarSpeedNet) and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
