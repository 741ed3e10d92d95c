"""Unit tests of the Distiller and the training loop."""

import pytest
import torch

from kdcourse.compare import DIGITS_REGIME
from kdcourse.data import load_digits_data, subset
from kdcourse.distill import (
    DEFAULT_WEIGHTS,
    METHODS,
    Distiller,
    LossTerm,
    TrainConfig,
    _precision_key,
    evaluate,
    method_terms,
    seed_everything,
    teacher_outputs,
    train,
)
from kdcourse.losses import kd_loss
from kdcourse.models import MLP, DigitsCNN


@pytest.fixture(scope="module")
def digits():
    d = load_digits_data(images=True)
    return d, subset(d.train, 200, seed=0)


@pytest.fixture(scope="module")
def teacher(digits):
    d, _ = digits
    seed_everything(0)
    model = DigitsCNN(16)
    train(model, d.train, epochs=5, progress=False)
    return model


def fresh_student(seed=0, width=4):
    seed_everything(seed)
    return DigitsCNN(width)


def test_same_seed_same_numbers(digits, teacher):
    _, small = digits
    runs = []
    for _ in range(2):
        s = fresh_student()
        h = train(s, small, teacher=teacher, method="kd", epochs=3, seed=5, progress=False)
        runs.append((h.train_loss, [p.clone() for p in s.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    s = fresh_student()
    other = train(s, small, teacher=teacher, method="kd", epochs=3, seed=6, progress=False)
    assert other.train_loss != runs[0][0]


@pytest.mark.parametrize("method", [m for m in METHODS] + ["kd+at", "kd+hint"])
def test_every_method_trains_and_keeps_teacher_frozen(digits, teacher, method):
    d, small = digits
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    s = fresh_student()
    h = train(s, small, teacher=None if method == "baseline" else teacher, method=method,
              val_data=d.val, epochs=2, progress=False)
    assert len(h.train_loss) == 2 and len(h.val_acc) == 2
    assert all(torch.isfinite(torch.tensor(h.train_loss)))
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "teacher weights or BN statistics changed"
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())


def test_distiller_train_mode_keeps_teacher_in_eval(teacher):
    distiller = Distiller(DigitsCNN(4), teacher, method_terms("kd", teacher=teacher))
    distiller.train()
    assert distiller.student.training and not distiller.teacher.training


def test_hint_regressor_is_trained(digits, teacher):
    _, small = digits
    s = fresh_student()
    terms = method_terms("hint", student=s, teacher=teacher, sample_input=small.tensors[0][:2])
    regressor = next(t.module for t in terms if t.name == "hint")
    w0 = regressor.weight.detach().clone()
    train(s, small, teacher=teacher, terms=terms, epochs=1, progress=False)
    assert not torch.equal(w0, regressor.weight)


def test_hint_default_weight_is_the_reference_implementations(digits, teacher):
    # mdistiller FITNET.LOSS.FEAT_WEIGHT = 100 and RepDistiller's "--distill hint -b 100", both x the MSE
    assert DEFAULT_WEIGHTS["hint"] == 100.0
    x = digits[1].tensors[0][:2]
    by_default = method_terms("hint", student=fresh_student(), teacher=teacher, sample_input=x)
    assert next(t.weight for t in by_default if t.name == "hint") == 100.0
    # a lesson that tuned the weight passes it, as compare.DIGITS_REGIME does (hint 10)
    tuned = method_terms("hint", student=fresh_student(), teacher=teacher, sample_input=x,
                         weights=DIGITS_REGIME.weights)
    assert next(t.weight for t in tuned if t.name == "hint") == DIGITS_REGIME.weights["hint"] == 10.0


def test_teacher_cache_gives_same_result_as_live_teacher(digits, teacher):
    _, small = digits
    histories = []
    for cache in (True, False):
        s = fresh_student()
        h = train(s, small, teacher=teacher, method="kd+at", epochs=2, cache_teacher=cache, progress=False)
        histories.append(h.train_loss)
    assert histories[0] == pytest.approx(histories[1], rel=1e-5)
    shared = teacher_outputs(teacher, small.tensors[0])
    s = fresh_student()
    h = train(s, small, teacher=teacher, method="kd", epochs=2, teacher_cache=shared, progress=False)
    s2 = fresh_student()
    h2 = train(s2, small, teacher=teacher, method="kd", epochs=2, progress=False)
    assert h.train_loss == pytest.approx(h2.train_loss, rel=1e-6)


def test_custom_term_is_used(digits, teacher):
    _, small = digits
    calls = []

    def my_loss(s, t, y):
        calls.append(1)
        return kd_loss(s["logits"], t["logits"], 2.0)

    s = fresh_student()
    h = train(s, small, teacher=teacher, terms=[LossTerm("mine", 1.0, my_loss)], epochs=1, progress=False)
    assert calls and "mine" in h.parts and h.method == "custom"


def test_training_learns(digits):
    d, _ = digits
    seed_everything(0)
    model = MLP(hidden=32)
    flat = load_digits_data()
    h = train(model, flat.train, val_data=flat.val, epochs=15, lr=3e-3, progress=False)
    assert h.val_acc[-1] > 0.9 and h.train_loss[-1] < h.train_loss[0]
    assert evaluate(model, flat.test) > 0.9


def test_bad_arguments(digits, teacher):
    _, small = digits
    with pytest.raises(ValueError, match="needs a teacher"):
        train(fresh_student(), small, method="kd", epochs=1, progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        train(fresh_student(), small, teacher=teacher, method="kd+magic", epochs=1, progress=False)
    with pytest.raises(ValueError, match="convolutional feature maps"):
        method_terms("at", student=MLP(), teacher=MLP())
    with pytest.raises(ValueError, match="alpha must lie"):
        train(fresh_student(), small, teacher=teacher, method="kd", alpha=2.0, epochs=1, progress=False)
    with pytest.raises(ValueError, match="teacher_cache does not match"):
        train(fresh_student(), small, teacher=teacher, method="kd", epochs=1, progress=False,
              teacher_cache={"logits": torch.zeros(3, 10)})


def test_diverging_training_is_reported(digits):
    _, small = digits

    def explode(s, t, y):
        return s["logits"].sum() * float("inf")

    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train(fresh_student(), small, terms=[LossTerm("bad", 1.0, explode, needs_teacher=False)], epochs=1,
              progress=False)


def test_divergence_off_the_cpu_is_reported_at_the_end_of_its_epoch(digits, monkeypatch):
    """On a GPU (or under torchrun) the loss is checked once per epoch, on its sum: still an error."""
    import kdcourse.distill as distill

    _, small = digits
    monkeypatch.setattr(distill, "_check_every_step", lambda device: False)

    def explode(s, t, y):
        return s["logits"].sum() * float("inf")

    with pytest.raises(FloatingPointError, match=r"in epoch 1 \(its mean over the epoch\): lower the learning rate"):
        train(fresh_student(), small, terms=[LossTerm("bad", 1.0, explode, needs_teacher=False)], epochs=2,
              progress=False)


def _count_reads(monkeypatch) -> list[str]:
    """Every read of a tensor's value into Python (item, tolist, float, int, bool) made by kdcourse's code."""
    import os
    import sys

    import kdcourse

    package = os.path.dirname(kdcourse.__file__)
    reads: list[str] = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
        original = getattr(torch.Tensor, name)

        def read(self, *args, _original=original, **kwargs):
            frame = sys._getframe(1)
            if frame.f_code.co_filename.startswith(package):
                reads.append(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, read)
    return reads


def test_training_reads_no_tensor_value_per_step(digits, teacher, monkeypatch):
    """With the GPU's per-epoch check, train() reads the device a fixed number of times per epoch
    however many steps it takes (no host sync per step). The terms are plain PyTorch losses:
    labeled_cross_entropy and the input checks of kdcourse.losses still read values per step."""
    import torch.nn.functional as F

    import kdcourse.distill as distill

    _, small = digits
    cache = teacher_outputs(teacher, small.tensors[0])
    terms = [LossTerm("ce", 0.5, lambda s, t, y: F.cross_entropy(s["logits"], y)),
             LossTerm("soft", 0.5, lambda s, t, y: F.mse_loss(s["logits"], t["logits"]))]
    monkeypatch.setattr(distill, "_check_every_step", lambda device: False)
    reads = _count_reads(monkeypatch)
    counts = []
    for batch_size in (8, 100):  # 25 and 2 steps per epoch
        reads.clear()
        train(fresh_student(), small, teacher=teacher, terms=terms, epochs=2, batch_size=batch_size,
              teacher_cache=cache, progress=False)
        counts.append(len(reads))
    assert counts[0] == counts[1] <= 2 * 2, reads  # at most two reads per epoch, whatever the steps


def test_history_holds_the_means_that_per_step_floats_give(digits, teacher):
    """The epoch's sums stay on the device now; they must be the numbers the old loop made by
    reading every step's values as Python floats (recorded here inside the terms)."""
    _, small = digits
    steps: list[dict] = []

    def ce(s, t, y):
        value = torch.nn.functional.cross_entropy(s["logits"], y)
        steps.append({"n": len(y), "ce": float(value.detach()), "correct": int((s["logits"].argmax(1) == y).sum())})
        return value

    def kd(s, t, y):
        value = kd_loss(s["logits"], t["logits"], 4.0)
        steps[-1]["kd"] = float(value.detach())
        return value

    terms = [LossTerm("ce", 0.1, ce, needs_teacher=False), LossTerm("kd", 0.9, kd)]
    h = train(fresh_student(), small, teacher=teacher, terms=terms, epochs=3, batch_size=48, seed=2,
              progress=False)
    per_epoch = -(-len(small) // 48)
    assert len(steps) == 3 * per_epoch
    for epoch in range(3):
        rows = steps[epoch * per_epoch:(epoch + 1) * per_epoch]
        for part in ("ce", "kd"):  # the same float64 sums of float32 values
            assert h.parts[part][epoch] == pytest.approx(sum(r[part] * r["n"] for r in rows) / len(small), rel=1e-12)
        total = sum((0.1 * r["ce"] + 0.9 * r["kd"]) * r["n"] for r in rows) / len(small)
        assert h.train_loss[epoch] == pytest.approx(total, rel=1e-6)  # the float32 total vs its float64 remake
        assert h.train_acc[epoch] == sum(r["correct"] for r in rows) / len(small)


def test_compute_loss_gives_floats_or_device_tensors():
    torch.manual_seed(0)
    student, teacher = MLP(64, (8,)), MLP(64, (16,))
    distiller = Distiller(student, teacher, method_terms("kd", student=student, teacher=teacher))
    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    total, floats, _ = distiller.compute_loss(x, y)
    _, tensors, _ = distiller(x, y)  # what train() calls: compute_loss(..., floats=False)
    assert all(type(v) is float for v in floats.values())
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in tensors.values())
    assert {k: float(v) for k, v in tensors.items()} == floats


def test_dkd_warmup_ramps_the_weight_like_mdistiller():
    from kdcourse.distill import LossTerm

    term = LossTerm("dkd", 2.0, lambda s, t, y: torch.zeros(()), warmup_epochs=20)
    assert [term.weight_at(e) for e in (1, 10, 20, 40)] == [0.1, 1.0, 2.0, 2.0]
    assert LossTerm("kd", 2.0, lambda s, t, y: torch.zeros(())).weight_at(1) == 2.0


def test_dkd_warmup_reaches_the_loss():
    from kdcourse.distill import Distiller, method_terms
    from kdcourse.models import MLP

    torch.manual_seed(0)
    student, teacher = MLP(64, (8,)), MLP(64, (16,))
    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    full = Distiller(student, teacher, method_terms("dkd", student=student, teacher=teacher))
    ramped = Distiller(student, teacher, method_terms("dkd", student=student, teacher=teacher, dkd_warmup=4))
    total_full, parts, _ = full.compute_loss(x, y)
    total_ramped, _, _ = ramped.compute_loss(x, y)  # epoch 1 of 4: a quarter of the DKD term
    assert float(total_ramped.detach()) == pytest.approx(parts["ce"] + parts["dkd"] / 4, rel=1e-5)
    ramped.epoch = 4
    assert float(ramped.compute_loss(x, y)[0].detach()) == pytest.approx(float(total_full.detach()), rel=1e-6)


def test_method_info_describes_what_method_terms_builds(capsys):
    """`python -m kdcourse methods` lists every method; its table says which terms each one builds
    and which weights it reads, and both agree with method_terms."""
    import importlib

    from kdcourse.__main__ import main
    from kdcourse.methods import DEFAULT_WEIGHTS, METHODS, REGISTRY, method_terms
    from kdcourse.models import DigitsCNN

    assert tuple(REGISTRY) == METHODS and all(REGISTRY[m].name == m for m in METHODS)
    teacher, student = DigitsCNN(8), DigitsCNN(4)
    x = torch.randn(2, 1, 8, 8)
    for name in METHODS:
        info = REGISTRY[name]
        terms = method_terms(name, student=student, teacher=teacher, sample_input=x)
        assert tuple(t.name for t in terms) == info.term_names, name
        assert all(k in DEFAULT_WEIGHTS for k in info.weights), name
        for w in info.weights:  # each listed weight is the one its term gets by default
            assert next(t for t in terms if t.name == w).weight == DEFAULT_WEIGHTS[w], (name, w)
        for function in info.function.split(", "):
            module, attr = function.split(".")
            assert callable(getattr(importlib.import_module(f"kdcourse.{module}"), attr)), function
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{name} " in out for name in METHODS) and "hint 100" in out and "rkd_distance 25" in out


def test_bfloat16_and_channels_last_train_close_to_float32(digits, teacher):
    """The GPU's fast path (issue 13): bfloat16 autocast and channels-last, here on the CPU. KD trains to about
    the same loss (bfloat16 keeps 8 bits of mantissa), the student stays channels-last, and the memo key
    tells the runs apart (a float32 run's key is as before)."""
    _, small = digits
    plain = train(fresh_student(), small, teacher=teacher, method="kd", epochs=3, seed=5, progress=False)
    student = fresh_student()
    fast = train(student, small, teacher=teacher, method="kd", epochs=3, seed=5, progress=False,
                 precision="bfloat16", channels_last=True)
    print(f"float32 losses {plain.train_loss}, bfloat16 + channels-last {fast.train_loss}")
    assert fast.train_loss != plain.train_loss  # autocast did run in bfloat16
    assert all(abs(a - b) < 0.05 * a for a, b in zip(plain.train_loss, fast.train_loss))
    conv = next(m for m in student.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    conv = next(m for m in teacher.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()  # the shared teacher is back in the usual layout
    assert _precision_key(TrainConfig()) == ()
    assert _precision_key(TrainConfig(precision="bfloat16")) != _precision_key(TrainConfig(channels_last=True))
    with pytest.raises(ValueError, match="precision must be one of 'float32', 'bfloat16'"):
        TrainConfig(precision="float16")
