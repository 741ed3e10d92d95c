"""lessons/ must be exactly what `make lessons` generates from solutions/ (never hand-edited)."""

from pathlib import Path

import pytest

from kdcourse.exercises import SOLUTION_GLOB, expected_lessons

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, LESSONS = ROOT / "solutions", ROOT / "lessons"
FIX = "regenerate with `make lessons` (python -m kdcourse.exercises) and commit lessons/"


@pytest.fixture(scope="module")
def expected():
    return expected_lessons(SOLUTIONS, LESSONS)


@pytest.mark.parametrize("name", sorted(p.name for p in SOLUTIONS.glob(SOLUTION_GLOB)))
def test_lesson_matches_its_solution(name, expected):
    lesson = LESSONS / name
    assert lesson.exists(), f"lessons/{name} is missing: {FIX}"
    assert lesson.read_text(encoding="utf-8") == expected[lesson], f"lessons/{name} is stale: {FIX}"


def test_no_orphan_lessons(expected):
    orphans = sorted(p.name for p in LESSONS.glob("*.ipynb") if p not in expected)
    assert not orphans, f"lessons without a solutions/ notebook: {orphans}; delete them"
