"""Lesson 08c's checker: the paired per-seed gain (mean and sample std of the differences)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from kdcourse.checks import check_paired_gain
from kdcourse.checks.statistics import PAIRED_GAIN_MISTAKES
from kdcourse.transfer import paired_differences


def right(method_runs, baseline_runs):
    d = np.array(method_runs) - np.array(baseline_runs)
    return d.mean(), d.std(ddof=1)


def test_the_reference_and_a_numpy_answer_pass(capsys):
    check_paired_gain(right)
    assert "✓ right matches" in capsys.readouterr().out


def test_the_checker_agrees_with_the_package():
    a, b = [0.452, 0.471, 0.418], [0.372, 0.409, 0.401]
    ref = paired_differences({"m": {"runs": a}, "baseline": {"runs": b}}, "m")
    mean, std = right(a, b)
    assert math.isclose(ref["mean"], mean) and math.isclose(ref["std"], std)


@pytest.mark.parametrize("mistake", PAIRED_GAIN_MISTAKES, ids=lambda m: m.id)
def test_each_mistake_gets_its_message(mistake):
    with pytest.raises(AssertionError) as info:
        check_paired_gain(mistake.make)
    assert mistake.message in str(info.value)


def test_other_errors_are_explained():
    with pytest.raises(AssertionError, match="return two numbers"):
        check_paired_gain(lambda a, b: statistics.fmean(a) - statistics.fmean(b))
    with pytest.raises(AssertionError, match="no classic mistake"):
        check_paired_gain(lambda a, b: (statistics.fmean(a) - statistics.fmean(b) + 0.01, 0.0))

    def todo(a, b):
        raise NotImplementedError("paired_gain")

    with pytest.raises(AssertionError, match="not implemented yet"):
        check_paired_gain(todo)
