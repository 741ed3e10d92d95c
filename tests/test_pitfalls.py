"""Each broken distiller of kdcourse.pitfalls differs from the correct one in its documented way.

These tests would fail if the bug were fixed: they pin the mistake, not just "some difference".
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from kdcourse import pitfalls as P
from kdcourse.distill import evaluate, train
from kdcourse.losses import kd_loss
from kdcourse.mistakes.wrong_losses import distillation_loss_with, kd_loss_with
from kdcourse.models import DigitsCNN


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(16, 10, generator=g) * 3
    t = torch.randn(16, 10, generator=g) * 3
    return s, t


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 8.0])
def test_missing_t_squared_is_exactly_one_over_t_squared(logits, T):
    s, t = logits
    assert P.kd_loss_missing_t_squared(s, t, T) * T * T == pytest.approx(float(kd_loss(s, t, T)), rel=1e-5)
    if T > 1:
        assert float(P.kd_loss_missing_t_squared(s, t, T)) < float(kd_loss(s, t, T)) / 2


def test_missing_t_squared_gradient_shrinks_like_one_over_t_squared(logits):
    s, t = logits
    grads = {}
    for name, fn in (("right", kd_loss), ("wrong", P.kd_loss_missing_t_squared)):
        x = s.clone().requires_grad_(True)
        fn(x, t, 4.0).backward()
        grads[name] = x.grad
    torch.testing.assert_close(grads["wrong"] * 16, grads["right"])


@pytest.mark.parametrize("classes", [10, 100])
def test_mean_reduction_divides_by_the_number_of_classes(classes):
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(8, classes, generator=g), torch.randn(8, classes, generator=g)
    ratio = float(kd_loss(s, t, 4.0) / P.kd_loss_mean_reduction(s, t, 4.0))
    assert ratio == pytest.approx(classes, rel=1e-4)


def test_mean_reduction_is_what_pytorch_warns_about(logits):
    s, t = logits
    with pytest.warns(UserWarning, match="batchmean"):
        F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="mean")


def test_reversed_kl_swaps_the_roles(logits):
    s, t = logits
    wrong = P.kd_loss_reversed_kl(s, t, 4.0)
    assert float(wrong) == pytest.approx(float(kd_loss(t, s, 4.0)), rel=1e-5)
    grads = []
    for fn in (kd_loss, P.kd_loss_reversed_kl):
        x = s.clone().requires_grad_(True)
        fn(x, t, 4.0).backward()
        grads.append(x.grad)
    assert (grads[0] - grads[1]).norm() > 0.2 * grads[0].norm()  # it pulls the student elsewhere


def test_reversed_kl_ignores_the_teachers_second_guess():
    # the teacher hesitates between classes 0 and 1; the student is sure of class 0
    teacher = torch.tensor([[5.0, 5.0, -5.0, -5.0]])
    student = torch.tensor([[40.0, 0.0, 0.0, 0.0]])
    right = float(kd_loss(student, teacher, 1.0))
    wrong = float(P.kd_loss_reversed_kl(student, teacher, 1.0))
    assert wrong == pytest.approx(math.log(2), rel=1e-3)  # bounded: the missing mode costs log 2
    assert right > 10 * wrong  # the forward KL punishes the ignored class hard


def test_softmax_student_is_not_zero_at_the_match_and_prefers_a_one_hot_student(logits):
    _, t = logits
    at_match = float(P.kd_loss_softmax_student(t, t, 4.0))
    assert float(kd_loss(t, t, 4.0)) == pytest.approx(0.0, abs=1e-5)
    assert at_match < -1.0  # a "divergence" that is negative where it should be 0
    # a student that is certain of the teacher's top class scores lower (better) than a perfect match
    one_hot = F.one_hot(t.argmax(1), 10).float() * 1000.0
    assert float(P.kd_loss_softmax_student(one_hot, t, 4.0)) < at_match - 0.5


def test_softmax_student_gradient_is_not_the_kd_gradient(logits):
    s, t = logits
    grads = []
    for fn in (kd_loss, P.kd_loss_softmax_student):
        x = s.clone().requires_grad_(True)
        fn(x, t, 4.0).backward()
        grads.append(x.grad)
    cos = F.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0)
    assert cos < 0.9


def test_swapped_alpha_exchanges_the_weights():
    right = {t.name: t.weight for t in P.correct_terms(4.0, 0.9)}
    wrong = {t.name: t.weight for t in P.swapped_alpha_terms(4.0, 0.9)}
    assert right == pytest.approx({"ce": 0.1, "kd": 0.9})
    assert wrong == pytest.approx({"ce": 0.9, "kd": 0.1})


def test_pitfall_terms_plug_the_broken_loss_into_the_kd_term(logits):
    s, t = logits
    y = torch.zeros(16, dtype=torch.long)
    for name, ratio in (("missing_t_squared", 16.0), ("mean_reduction", 10.0)):
        kd = [term for term in P.pitfall_terms(name, 4.0, 0.9) if term.name == "kd"][0]
        assert kd.weight == 0.9
        value = kd.fn({"logits": s}, {"logits": t}, y)
        assert float(kd_loss(s, t, 4.0) / value) == pytest.approx(ratio, rel=1e-4)


@pytest.mark.parametrize("name", sorted(P._LOSS_BUGS))
@pytest.mark.parametrize("T", [1.0, 4.0])
def test_broken_losses_compute_what_the_catalogue_says(logits, name, T):
    # lesson 07's broken losses are the checkers' hypotheses of the same id (one catalogue of mistakes)
    s, t = logits
    assert torch.allclose(P._LOSS_BUGS[name](s, t, T), kd_loss_with(name)(s, t, T), rtol=1e-5, atol=1e-7)


def test_a_soft_term_mistake_the_catalogue_cannot_make_is_refused():
    with pytest.raises(ValueError, match="two in one place"):
        kd_loss_with("missing_t_squared", "t_not_squared")
    with pytest.raises(ValueError, match="not a soft-term mistake"):
        kd_loss_with("swapped_alpha")
    with pytest.raises(ValueError, match="one slip of the weights"):
        distillation_loss_with("swapped_alpha", "hard_only")


def test_unknown_or_setup_pitfall_names_give_clear_errors():
    with pytest.raises(ValueError, match="unknown pitfall"):
        P.pitfall_terms("forgot_softmax")
    with pytest.raises(ValueError, match="set-up"):
        P.pitfall_terms("teacher_train_mode")


# ---------------------------------------------------------------- the teacher pitfalls (training)


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (96,), generator=g)
    torch.manual_seed(0)
    teacher = P.digits_teacher_with_dropout(8, p=0.5)
    train(teacher, TensorDataset(x, y), epochs=3, lr=3e-3, progress=False)
    teacher.eval()
    return TensorDataset(x, y), teacher


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model, kind):
    after = model.state_dict()
    keys = [k for k in before if (kind in k)]
    return max(float((after[k].float() - before[k].float()).abs().max()) for k in keys)


def test_teacher_train_mode_moves_batchnorm_statistics_not_weights(tiny):
    data, teacher = tiny
    before = _snapshot(teacher)
    torch.manual_seed(0)
    h = P.train_with_pitfall("teacher_train_mode", DigitsCNN(2), data, teacher, epochs=2, progress=False)
    assert _changed(before, h.teacher, "running_mean") > 1e-3  # BatchNorm statistics drifted
    assert _changed(before, h.teacher, "weight") == 0.0  # but no parameter was trained
    # the caller's teacher is untouched (train_with_pitfall works on a copy)
    assert _changed(before, teacher, "running_mean") == 0.0


def test_teacher_train_mode_gives_noisy_soft_targets(tiny):
    data, teacher = tiny
    x = data.tensors[0][:32]
    model, _ = P.teacher_train_mode_setup(DigitsCNN(2), copy.deepcopy(teacher))
    model.train()  # what every training loop does: the teacher follows
    assert model.teacher.training
    model(x)
    first = model.teacher_logits
    model(x)
    assert not torch.allclose(first, model.teacher_logits)  # dropout: two passes disagree
    model.eval()
    model(x)
    torch.testing.assert_close(model.teacher_logits, model.teacher(x))


def test_teacher_not_frozen_updates_the_teacher(tiny):
    data, teacher = tiny
    before = _snapshot(teacher)
    torch.manual_seed(0)
    h = P.train_with_pitfall("teacher_not_frozen", DigitsCNN(2), data, teacher, epochs=2, progress=False)
    assert _changed(before, h.teacher, "weight") > 1e-3  # the optimiser moved the teacher
    assert all(p.requires_grad for p in h.teacher.parameters())
    assert any(p.grad is not None for p in h.teacher.parameters())  # gradients flowed into it
    assert _changed(before, h.teacher, "running_mean") == 0.0  # kept in eval mode: one bug only
    assert not h.teacher.training


def test_correct_distiller_leaves_the_teacher_alone(tiny):
    data, teacher = tiny
    before = _snapshot(teacher)
    torch.manual_seed(0)
    h = P.train_with_pitfall("correct", DigitsCNN(2), data, teacher, epochs=2, progress=False)
    assert h.teacher is teacher
    assert _changed(before, teacher, "running_mean") == 0.0
    assert _changed(before, teacher, "weight") == 0.0


def test_teacher_not_frozen_has_the_correct_soft_term_at_the_first_step(tiny):
    # the only bug is in the training set-up: before any update, the soft term is the right one
    data, teacher = tiny
    x, y = data.tensors
    torch.manual_seed(0)
    student = DigitsCNN(2)
    model, terms = P.teacher_not_frozen_setup(student, copy.deepcopy(teacher))
    model.train()
    logits = model(x)
    kd = [t for t in terms if t.name == "kd"][0].fn({"logits": logits}, None, y)
    assert float(kd.detach()) == pytest.approx(float(kd_loss(logits.detach(), teacher(x), 4.0)), rel=1e-5)


def test_train_with_pitfall_histories_record_the_pitfall(tiny):
    data, teacher = tiny
    for name in ("swapped_alpha", "teacher_train_mode"):
        torch.manual_seed(0)
        student = DigitsCNN(2)
        h = P.train_with_pitfall(name, student, data, teacher, epochs=1, progress=False)
        assert h.method == name and h.student is student and "kd" in h.parts
        assert 0.0 <= evaluate(student, data) <= 1.0


# ---------------------------------------------------------------- diagnostics and the exercise checker


def test_first_step_parts_show_the_symptoms(tiny):
    data, teacher = tiny
    x, y = data.tensors[0][:32], data.tensors[1][:32]
    torch.manual_seed(0)
    student = DigitsCNN(2)
    right = P.first_step_parts(None, student, teacher, x, y)
    assert right["w_kd"] == pytest.approx(0.9) and right["w_ce"] == pytest.approx(0.1)
    mean_reduction = P.first_step_parts("mean_reduction", student, teacher, x, y)
    assert mean_reduction["kd"] == pytest.approx(right["kd"] / 10, rel=1e-4)
    assert P.first_step_parts("softmax_student", student, teacher, x, y)["kd"] < 0
    assert P.first_step_parts("swapped_alpha", student, teacher, x, y)["soft_share"] < right["soft_share"]
    train_mode = P.first_step_parts("teacher_train_mode", student, teacher, x, y)
    assert train_mode["ce"] == pytest.approx(right["ce"]) and train_mode["kd"] != pytest.approx(right["kd"])
    # seeded, and nothing passed in changes
    assert P.first_step_parts("teacher_train_mode", student, teacher, x, y) == train_mode
    assert not teacher.training


def test_teacher_drift_tells_weights_from_statistics(tiny):
    _, teacher = tiny
    moved = copy.deepcopy(teacher)
    assert P.teacher_drift(teacher, moved) == {"weights": 0.0, "bn_statistics": 0.0}
    moved.stem[1].running_mean += 0.5
    assert P.teacher_drift(teacher, moved) == pytest.approx({"weights": 0.0, "bn_statistics": 0.5})
    with torch.no_grad():
        moved.head[1].weight += 0.25
    assert P.teacher_drift(teacher, moved)["weights"] == pytest.approx(0.25)


def test_mysteries_are_pitfalls_in_disguise(tiny):
    data, teacher = tiny
    x, y = data.tensors[0][:32], data.tensors[1][:32]
    torch.manual_seed(0)
    student = DigitsCNN(2)
    for mystery, name in P._MYSTERY_BUGS.items():
        assert name in P.PITFALLS
        assert P.first_step_parts(mystery, student, teacher, x, y) == P.first_step_parts(name, student, teacher, x, y)
    with pytest.raises(ValueError, match="symptoms"):
        P.pitfall_terms("mystery_a")


def test_check_diagnosis(capsys):
    from kdcourse.checks import check_diagnosis

    for mystery, name in P._MYSTERY_BUGS.items():
        check_diagnosis(mystery, name)
        assert "✓" in capsys.readouterr().out
    check_diagnosis("mystery_a", "Reduction mean")  # spellings are forgiven
    with pytest.raises(AssertionError, match="T\\^2 = 16"):
        check_diagnosis("mystery_a", "missing_t_squared")
    with pytest.raises(AssertionError, match="weights, or only its BatchNorm"):
        check_diagnosis("mystery_b", "teacher not frozen")
    with pytest.raises(AssertionError, match="Hint"):
        check_diagnosis("mystery_b", "swapped_alpha")
    with pytest.raises(AssertionError, match="not one of the pitfalls"):
        check_diagnosis("mystery_a", "bad teacher")
    with pytest.raises(AssertionError, match="string"):
        check_diagnosis("mystery_a", None)
    with pytest.raises(ValueError, match="unknown mystery"):
        check_diagnosis("mystery_z", "mean_reduction")


def test_gain_vs_size_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from kdcourse.plots import gain_vs_size

    fig = gain_vs_size({"40 epochs": ([174, 536, 1854], [[-5, -4], [1, 2], [1.5, 1.0]])},
                       point_labels={174: "width 1"}, title="gain")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_title() == "gain"
    fig.savefig(tmp_path / "gain.png")
    with pytest.raises(ValueError, match="sizes"):
        gain_vs_size({"bad": ([1, 2], [[1.0]])})
