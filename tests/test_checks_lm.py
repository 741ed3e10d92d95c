"""Lesson 09's checkers, from their tables: the reference passes, every listed mistake gets its message."""

import pytest
import torch
import torch.nn.functional as F

from kdcourse import losses
from kdcourse.checks import engine, lm
from kdcourse.checks.lm import EXERCISES


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_reference_passes(name, capsys):
    engine.check(EXERCISES[name], EXERCISES[name].reference)
    assert capsys.readouterr().out.startswith("✓")


CASES = [(name, m) for name, e in EXERCISES.items() for m in e.mistakes]


@pytest.mark.parametrize("name,mistake", CASES, ids=[f"{n}-{m.id}" for n, m in CASES])
def test_each_mistake_is_named(name, mistake):
    with pytest.raises(AssertionError) as err:
        engine.check(EXERCISES[name], mistake.make)
    assert mistake.message in str(err.value)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_mistakes_are_told_apart(name):
    exercise = EXERCISES[name]
    for mistake in exercise.mistakes:
        outputs = [mistake.make(*case) for case in exercise.cases]
        assert [m.id for m in engine.diagnose(outputs, exercise.cases, exercise.variants())] == [mistake.id]
        assert not all(torch.allclose(o, exercise.reference(*c)) for o, c in zip(outputs, exercise.cases))


def test_not_implemented_and_none_are_explained():
    def todo(s, t, m, T):
        raise NotImplementedError("your code here")

    with pytest.raises(AssertionError, match="not implemented yet"):
        lm.check_masked_token_kd(todo)
    with pytest.raises(AssertionError, match="forget the `return`"):
        lm.check_masked_token_kd(lambda s, t, m, T: None)


def test_item_and_detach_are_caught():
    with pytest.raises(AssertionError, match=r"\.item\(\)"):
        lm.check_masked_token_kd(lambda s, t, m, T: losses.token_kd_loss(s, t, m, T=T).item())
    with pytest.raises(AssertionError, match="no gradient flows"):
        lm.check_reverse_kl(lambda s, t, m: losses.token_kd_loss(s.detach(), t, m, divergence="reverse"))


def test_gradient_into_padding_is_caught():
    def leaky(s, t, m, T):  # right value, but padding gets a gradient through a non-masking trick
        right = losses.token_kd_loss(s, t, m, T=T)
        return right + 0.0 * s.sum() * 0 + (s - s.detach()).masked_fill(m[..., None], 0).sum() * 1e-12

    with pytest.raises(AssertionError, match="padded positions receive a gradient"):
        lm.check_masked_token_kd(leaky)


def test_unknown_error_is_generic_with_formula():
    with pytest.raises(AssertionError, match="(?s)No classic mistake.*formula"):
        lm.check_renormalize_top_k(lambda lp: F.softmax(lp * 2, -1))


def test_a_detached_student_weight_is_caught_by_the_gradient():
    def half_detached(s, t, m):  # the right value, but q_s is a constant weight: a wrong gradient
        log_q, log_p = F.log_softmax(s, -1), F.log_softmax(t, -1)
        per = (log_q.exp().detach() * (log_q - log_p)).sum(-1)
        return (per * m).sum() / m.sum()

    with pytest.raises(AssertionError, match="gradient with respect to the student's logits is not"):
        lm.check_reverse_kl(half_detached)


def test_kl_div_without_log_target_is_explained():
    def no_log_target(s, t, m, T):
        per = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="none").sum(-1)
        return (per * m).sum() / m.sum() * T**2

    with pytest.raises(AssertionError, match="log_target=True"):
        lm.check_masked_token_kd(no_log_target)


def test_tensor_outputs_show_a_row_when_unexplained():
    with pytest.raises(AssertionError, match=r"in row \d+ of the flattened output: got \[.*\(sum"):
        lm.check_renormalize_top_k(lambda lp: F.softmax(-lp, -1))
