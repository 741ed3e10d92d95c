"""Every checker written as a table, from its table: the reference passes, and every listed mistake
gets its own message (kdcourse.checks.EXERCISES, one engine: kdcourse/checks/engine.py)."""

import re

import pytest

from kdcourse import mistakes as catalogue
from kdcourse.checks import EXERCISES
from kdcourse.checks.engine import check, diagnose

ROWS = [(name, row) for name, exercise in sorted(EXERCISES.items()) for row in exercise.mistakes]


def test_every_table_checker_is_listed():
    import kdcourse.checks as checks
    assert len(EXERCISES) == 20
    for name in EXERCISES:
        assert callable(getattr(checks, f"check_{name}")), name


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_every_mistake_is_a_catalogue_entry(name):
    for variant in EXERCISES[name].variants():
        assert all(m in catalogue.CATALOGUE for m in variant.mistakes), variant.mistakes


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_reference_passes(name, capsys):
    check(EXERCISES[name], EXERCISES[name].reference)
    out = capsys.readouterr().out
    assert out.startswith("✓ ") and "\n" not in out.strip(), out


def _pattern(row) -> str:
    """The row's message up to its first number to fill in (a catalogue message is filled with the case's)."""
    (text,) = row.mistakes
    text = catalogue.CATALOGUE[text].fix if text in catalogue.CATALOGUE else text
    return re.escape(re.split(r"\{", text)[0])


@pytest.mark.parametrize("name,row", ROWS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ROWS)])
def test_each_mistake_gets_its_message(name, row):
    exercise = EXERCISES[name]
    outputs = []
    for case in exercise.cases:
        try:
            outputs.append(row.make(*case))
        except Exception:  # a mistake may raise on some case (no regressor for different widths)
            assert exercise.collect_errors, "the checker stops at an exception: this mistake cannot be named"
            outputs.append(None)
    if all(o is not None and exercise.same(o, exercise.reference(*c)) for o, c in zip(outputs, exercise.cases)):
        pytest.fail("the mistake gives the reference's values on every case: the cases cannot tell them apart")
    with pytest.raises(AssertionError) as error:
        check(exercise, row.make)
    found = diagnose(outputs, exercise.cases, exercise.variants(), exercise.same)
    assert found and row.mistakes in [v.mistakes for v in found], "another mistake explains these outputs better"
    assert re.search(_pattern(row), str(error.value)), str(error.value)
