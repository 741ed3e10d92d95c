"""A skipped exercise does not stop its lesson (kdcourse/checks/fallback.py, issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

import kdcourse.checks as checks
from kdcourse.checks.fallback import is_stub, with_fallback

ROOT = Path(__file__).resolve().parents[1]
WRAPPED = sorted(n for n in dir(checks) if n.startswith("check_") and hasattr(getattr(checks, n), "reference"))


def _stub(x):
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement it")


def test_every_checker_but_the_diagnosis_has_a_reference():
    unwrapped = sorted(n for n in dir(checks) if n.startswith("check_") and n not in WRAPPED)
    assert unwrapped == ["check_diagnosis"]  # lesson 07's answers are not functions


@pytest.mark.parametrize("name", WRAPPED)
def test_each_reference_passes_its_own_checker(name, capsys):
    """The reference a skipped exercise is replaced by is a right answer, by the checker's own test
    (so the cells below run as in the solution)."""
    check = getattr(checks, name)
    check(check.reference)
    out = capsys.readouterr().out
    assert "✓" in out and "not written yet" not in out


def test_a_stub_is_replaced_in_the_callers_namespace_and_said_once(capsys):
    namespace = {"check": with_fallback(lambda fn: 1 / 0, abs, "builtins.abs"), "kd_loss": _stub}
    namespace["kd_loss"].__name__ = "kd_loss"
    exec("result = check(kd_loss)", namespace)
    assert namespace["result"] is None and namespace["kd_loss"] is abs  # the reference took its place
    out = capsys.readouterr().out
    assert out.count("kd_loss is not written yet: the rest of this lesson uses builtins.abs") == 1


def test_a_wrong_or_right_answer_is_never_replaced():
    def wrong(student_logits, teacher_logits, T):
        return (student_logits - teacher_logits).pow(2).mean()

    namespace = {"check_kd_loss": checks.check_kd_loss, "kd_loss": wrong}
    with pytest.raises(AssertionError):
        exec("check_kd_loss(kd_loss)", namespace)
    assert namespace["kd_loss"] is wrong
    from kdcourse.losses import kd_loss

    def mine(student_logits, teacher_logits, T):
        return kd_loss(student_logits, teacher_logits, T)

    namespace["kd_loss"] = mine
    exec("check_kd_loss(kd_loss)", namespace)
    assert namespace["kd_loss"] is mine


def test_is_stub_knows_the_generated_stub_and_nothing_else():
    assert is_stub(_stub)

    def started(x):
        print(x + 1)  # the learner began, but the stub's line is still there
        raise NotImplementedError("Exercise: implement it")

    def written(x):
        return x + 1

    def own_error(x):
        raise NotImplementedError("only for floats")

    assert is_stub(started) and not is_stub(written) and not is_stub(own_error) and not is_stub(abs)



# The lessons themselves, unsolved, run to their end in tests/unsolved/test_unsolved_lessons.py
# (after the solutions, with the training memo).
