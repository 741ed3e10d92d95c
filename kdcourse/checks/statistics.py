"""Checker for lesson 08c: the paired per-seed gain, ``paired_gain(method_runs, baseline_runs)``.

Written as a table: the reference, the fixed cases, and the classic mistakes (an id, whose message
is in :mod:`kdcourse.mistakes.studies`, and a function that makes it). A learner's answer that is off is
compared with every mistake on every case, and the one that reproduces it is quoted.

    >>> check_paired_gain(paired_gain)
    ✓ paired_gain matches the reference on 4 cases ...
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from ..study import paired_gain
from . import engine
from .engine import row

__all__ = ["check_paired_gain", "PAIRED_GAIN_MISTAKES"]


def _differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x - y for x, y in zip(a, b)]


PAIRED_GAIN_MISTAKES = (
    row("paired_gain.reversed", lambda a, b: paired_gain(b, a)),
    row("paired_gain.population_std",
         lambda a, b: (statistics.fmean(_differences(a, b)), statistics.pstdev(_differences(a, b)))),
    row("paired_gain.std_of_method", lambda a, b: (statistics.fmean(_differences(a, b)), statistics.stdev(a))),
    row("paired_gain.unpaired",
         lambda a, b: (statistics.fmean(_differences(a, b)), math.hypot(statistics.stdev(a), statistics.stdev(b)))),
    row("paired_gain.sorted", lambda a, b: paired_gain(sorted(a), sorted(b))),
    row("paired_gain.points", lambda a, b: tuple(100 * v for v in paired_gain(a, b))),
)
"""The mistakes the checker names, in the order it tries them."""

_CASES = (
    ([0.452, 0.471, 0.418], [0.372, 0.409, 0.401]),  # 3 seeds, orders differ (sorting changes the pairs)
    ([0.95, 0.96, 0.94, 0.97, 0.95], [0.94, 0.94, 0.93, 0.95, 0.95]),  # 5 seeds
    ([0.30, 0.36], [0.33, 0.31]),  # 2 seeds, one gain and one loss
    ([0.61, 0.55, 0.58], [0.58, 0.57, 0.50]),
)


def _close(got: tuple[float, float], want: tuple[float, float]) -> bool:
    return all(math.isclose(g, w, rel_tol=1e-6, abs_tol=1e-9) for g, w in zip(got, want))


def _as_pair(name: str, shown: str, out, case: tuple) -> tuple[float, float]:
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    try:
        first, second = out
        pair = float(first), float(second)
    except (TypeError, ValueError):
        raise engine.fail("paired_gain.not_a_pair", name=name, shown=shown, out=f"{out!r}") from None
    if any(math.isnan(v) for v in pair):
        raise engine.fail("paired_gain.nan", name=name, shown=shown)
    return pair


def _numbers(exercise, out, want, case) -> str:
    return (f"\n  (with {len(case[0])} seeds: got mean {out[0]:.6g}, std {out[1]:.6g}; "
            f"expected mean {want[0]:.6g}, std {want[1]:.6g})")


def _fallback(exercise, name, out, want, case) -> str:
    which = "the mean" if not math.isclose(out[0], want[0], rel_tol=1e-6) else "the spread"
    return (engine.mistake("paired_gain.unexplained", name=name, which=which,
                           numbers=_numbers(exercise, out, want, case)))


PAIRED_GAIN = engine.Exercise(
    "paired_gain", paired_gain, _CASES, show=lambda case: f"{len(case[0])} seeds",
    variants=lambda: list(PAIRED_GAIN_MISTAKES),
    success="{name} matches the reference on {n} cases (2 to 5 seeds): the mean of the per-seed differences and their "
            "sample standard deviation.",
    fallback=_fallback, output=_as_pair, same=_close, quote=_numbers, in_place="",
)


check_paired_gain = engine.checker(PAIRED_GAIN, """
    Check ``paired_gain(method_runs, baseline_runs) -> (mean, std)`` of the per-seed differences.""")
