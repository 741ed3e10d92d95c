"""The lesson 03-04 checkers accept the reference and name each deliberately planted mistake."""

import pytest
import torch
import torch.nn.functional as F

from checker_frames import shown_checker_frames
from kdcourse import losses
from kdcourse.checks import check_accuracy, check_count_parameters, check_kd_training_step


def expect_hint(check, fn, *fragments):
    with pytest.raises(AssertionError) as info:
        check(fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in: {message}"
    return message


# ---------------------------------------------------------------- count_parameters


def test_count_parameters_reference_passes(capsys):
    check_count_parameters(lambda m: sum(p.numel() for p in m.parameters()))
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, fragments", [
    (lambda m: len(list(m.parameters())), ("tensors", "numel")),
    (lambda m: sum(v.numel() for v in m.state_dict().values()), ("buffer", "running")),
    (lambda m: sum(p.numel() for n, p in m.named_parameters() if n.endswith("weight")), ("biases",)),
    (lambda m: sum(p.numel() for n, p in m.named_parameters() if not n.startswith("bn")), ("batchnorm",)),
    (lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad), ("frozen", "requires_grad")),
    (lambda m: torch.tensor(sum(p.numel() for p in m.parameters())), ("tensor", "int")),
    (lambda m: 3, ("299",)),
])
def test_count_parameters_mistakes_are_named(wrong, fragments):
    expect_hint(check_count_parameters, wrong, *fragments)


def test_count_parameters_not_implemented():
    def stub(model):
        raise NotImplementedError("Exercise: count the parameters")

    # the checker itself; the lessons' wrapper answers the untouched stub with the reference (tests/test_fallback.py)
    expect_hint(check_count_parameters.__wrapped__, stub, "not implemented yet")


# ---------------------------------------------------------------- accuracy


def test_accuracy_reference_passes(capsys):
    check_accuracy(lambda z, y: float((z.argmax(1) == y).float().mean()))
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, fragments", [
    (lambda z, y: (z.argmax(1) == y).float().mean(), ("tensor", "float")),
    (lambda z, y: (z.argmax(1) == y).float(), ("shape",)),
    (lambda z, y: int((z.argmax(1) == y).sum()), ("number of correct", "divide")),
    (lambda z, y: float((z.argmax(1) == y).sum()), ("number of correct", "divide")),
    (lambda z, y: 100 * float((z.argmax(1) == y).float().mean()), ("percentage",)),
    (lambda z, y: float((z.argmax(1) != y).float().mean()), ("error rate",)),
    (lambda z, y: float((z.argmax(0) == y).float().mean()), ("dim=1",)),
    (lambda z, y: float((z.max(1).values == y).float().mean()), ("argmax(dim=1)",)),
])
def test_accuracy_mistakes_are_named(wrong, fragments):
    expect_hint(check_accuracy, wrong, *fragments)


# ---------------------------------------------------------------- kd_training_step


def reference_step(student, teacher, x, y, optimizer, T, alpha):
    teacher.eval()
    with torch.no_grad():
        t = teacher(x)
    s = student(x)
    loss = alpha * losses.kd_loss(s, t, T) + (1 - alpha) * F.cross_entropy(s, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def make_step(*, eval_teacher=True, no_grad=True, zero_grad="before", step=True, backward=True,
              loss=None, returns="item", detach_student=False, eval_student=None, own_optimizer=False):
    """A KD step with one planted mistake."""

    def kd_step(student, teacher, x, y, optimizer, T, alpha):
        if own_optimizer:
            optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
        if eval_student == "before":
            student.eval()
        if eval_student == "instead of the teacher":
            student.eval()
        elif eval_teacher:
            teacher.eval()
        if no_grad:
            with torch.no_grad():
                t = teacher(x)
        else:
            t = teacher(x)
        s = student(x)
        if detach_student:
            s = s.detach()
        if loss is not None:
            value = loss(s, t, y, T, alpha)
        else:
            value = alpha * losses.kd_loss(s, t, T) + (1 - alpha) * F.cross_entropy(s, y)
        if zero_grad == "before":
            optimizer.zero_grad()
        if backward:
            value.backward()
        if zero_grad == "between":
            optimizer.zero_grad(set_to_none=False)
        if zero_grad == "between, set to None":
            optimizer.zero_grad()  # the default since PyTorch 2.0: the gradients become None
        if zero_grad == "student between":
            student.zero_grad()
        if step:
            optimizer.step()
        if eval_student == "after":
            student.eval()
        return {"item": lambda: value.item(), "tensor": lambda: value, "none": lambda: None}[returns]()

    return kd_step


def kl_no_t2(s, t, T):
    return losses.kd_loss(s, t, T) / T**2


def reversed_kl(s, t, T):
    return F.kl_div(F.log_softmax(t / T, 1), F.log_softmax(s / T, 1), reduction="batchmean",
                    log_target=True) * T * T


def test_kd_step_reference_passes(capsys):
    check_kd_training_step(reference_step)
    assert "✓" in capsys.readouterr().out


def distillation_loss(s, t, y, T, alpha):
    return losses.distillation_loss(s, t, y, T=T, alpha=alpha)


def test_kd_step_with_distillation_loss_passes(capsys):
    check_kd_training_step(make_step(loss=distillation_loss))
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, fragments", [
    (make_step(eval_teacher=False), ("train mode", "teacher.eval()")),
    (make_step(no_grad=False), ("gradients flowed into the teacher", "no_grad")),
    (make_step(zero_grad=None), ("accumulates", "zero_grad")),
    (make_step(step=False), ("optimizer.step()",)),
    (make_step(backward=False), ("backward",)),
    (make_step(zero_grad="between"), ("zero_grad", "before loss.backward()")),
    (make_step(detach_student=True), ("no_grad", "detach")),
    (make_step(returns="tensor"), ("loss.item()",)),
    (make_step(returns="none"), ("float",)),
    (make_step(loss=lambda s, t, y, T, a: (1 - a) * losses.kd_loss(s, t, T) + a * F.cross_entropy(s, y)),
     ("swapped", "alpha weights the soft")),
    (make_step(loss=lambda s, t, y, T, a: a * kl_no_t2(s, t, T) + (1 - a) * F.cross_entropy(s, y)),
     ("T^2",)),
    (make_step(loss=lambda s, t, y, T, a: a * reversed_kl(s, t, T) + (1 - a) * F.cross_entropy(s, y)),
     ("reversed",)),
    (make_step(loss=lambda s, t, y, T, a: a * losses.kd_loss(s, t, T) + (1 - a) * F.cross_entropy(s / T, y)),
     ("T = 1",)),
    (make_step(loss=lambda s, t, y, T, a: F.cross_entropy(s, y)), ("teacher is missing",)),
    (make_step(loss=lambda s, t, y, T, a: losses.kd_loss(s, t, T)), ("labels y is missing",)),
    (make_step(loss=lambda s, t, y, T, a: a * T**2 * F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1),
                                                             reduction="mean") + (1 - a) * F.cross_entropy(s, y)),
     ("batchmean",)),
])
@pytest.mark.filterwarnings("ignore:reduction:UserWarning")  # the planted reduction="mean" warns
def test_kd_step_mistakes_are_named(wrong, fragments):
    expect_hint(check_kd_training_step, wrong, *fragments)


@pytest.mark.parametrize("where", ["before", "after"])
def test_kd_step_student_in_eval_mode_is_named(where):
    message = expect_hint(check_kd_training_step, make_step(eval_student=where),
                          "student", "eval mode", "train mode", "BatchNorm", "remove student.eval()")
    assert "teacher ran in train mode" not in message


def test_kd_step_student_eval_instead_of_teacher_is_named():
    expect_hint(check_kd_training_step, make_step(eval_student="instead of the teacher"),
                "STUDENT in eval mode", "teacher.eval() was meant", "teacher.eval()")


def test_kd_step_student_train_call_passes(capsys):
    def step(student, teacher, x, y, optimizer, T, alpha):
        student.train()  # harmless: the student is in train mode already
        return reference_step(student, teacher, x, y, optimizer, T, alpha)

    check_kd_training_step(step)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("zero_grad", ["between", "between, set to None", "student between"])
def test_kd_step_zero_grad_between_backward_and_step_is_named(zero_grad):
    message = expect_hint(check_kd_training_step, make_step(zero_grad=zero_grad),
                          "erased", "before optimizer.step() ran", "learned nothing",
                          "zero_grad() clears the OLD gradients, so it goes before loss.backward()")
    assert "call loss.backward() before optimizer.step()" not in message


def test_kd_step_missing_backward_is_still_named():
    expect_hint(check_kd_training_step, make_step(backward=False), "call loss.backward() before optimizer.step()")


@pytest.mark.parametrize("wrong, fragments", [
    (make_step(loss=lambda s, t, y, T, a: a * losses.kd_loss(s, t, T) + (1 - a) * F.cross_entropy(s, y) * T**2),
     ("cross-entropy is multiplied by T^2", "Only the soft term needs T^2")),
    (make_step(loss=lambda s, t, y, T, a: T**2 * (a * kl_no_t2(s, t, T) + (1 - a) * F.cross_entropy(s, y))),
     ("cross-entropy is multiplied by T^2",)),
    (make_step(loss=lambda s, t, y, T, a: a * losses.kd_loss(s, t, T) + (1 - a) * F.nll_loss(s, y)),
     ("F.nll_loss on the raw logits", "LOG-probabilities", "F.cross_entropy")),
])
def test_kd_step_hard_term_mistakes_are_named(wrong, fragments):
    expect_hint(check_kd_training_step, wrong, *fragments)


def test_kd_step_own_optimizer_is_flagged():
    expect_hint(check_kd_training_step, make_step(loss=distillation_loss, own_optimizer=True), "optimizer passed in")


def test_kd_step_not_implemented():
    def stub(student, teacher, x, y, optimizer, T, alpha):
        raise NotImplementedError("Exercise: one KD training step")

    expect_hint(check_kd_training_step.__wrapped__, stub, "not implemented yet")  # the checker itself




def crashing_step(student, teacher, x, y, optimizer, T, alpha):
    return {}["no such key"]


@pytest.mark.parametrize("check, wrong", [
    (check_count_parameters, lambda m: m.no_such_attribute),
    (check_count_parameters, lambda m: 3),
    (check_accuracy, lambda z, y: float((z.argmax(0) == y).float().mean())),
    (check_kd_training_step, crashing_step),
    (check_kd_training_step, make_step(eval_student="before")),
    (check_kd_training_step, make_step(zero_grad="between, set to None")),
    (check_kd_training_step, make_step(loss=lambda s, t, y, T, a: F.cross_entropy(s, y))),
])
def test_tracebacks_hide_the_checkers_frames(check, wrong):
    with pytest.raises(AssertionError) as info:
        check(wrong)
    assert shown_checker_frames(info.value) == []


def test_kd_step_evaluating_the_student_under_no_grad_then_train_passes(capsys):
    def step(student, teacher, x, y, optimizer, T, alpha):
        loss = reference_step(student, teacher, x, y, optimizer, T, alpha)
        student.eval()
        with torch.no_grad():
            student(x)  # a look at the updated student, in eval mode, trains nothing
        student.train()
        return loss

    check_kd_training_step(step)
    assert "✓" in capsys.readouterr().out
