"""Numbers checked by CI (issue 12, item 5): every number in the prose of a solution notebook must be
shown, at the precision the prose gives it, by the outputs (or the code) of the cells above it.

The rules are in tests/numbers_audit.py (its docstring). Numbers that are unmatched today are listed in
tests/numbers_pending.json: a notebook fails on an unmatched number that is not listed there, and on a
listed one that no longer occurs, so the list only shrinks. Static: the stored notebooks are read,
never executed.
"""

from __future__ import annotations

from collections import Counter

import nbformat
import pytest

import numbers_audit as na

HOW = (f"fix the prose (or print the number in a cell above it); if it is not a result, add it to ALLOW in "
       f"tests/numbers_audit.py with a reason; to accept it for now, `{na.REGENERATE}`. "
       f"Details: `.venv/bin/python tests/numbers_audit.py --report`")


@pytest.fixture(scope="module")
def audits():
    return na.audit_all()


@pytest.fixture(scope="module")
def pending():
    return na.load_pending()


def _lines(findings):
    return "\n".join(f"  cell {f.cell}: {f.number!r}{' (the ± pair is not shown together)' if f.kind == 'pair' else ''}"
                     f"  ...{f.context}..." for f in findings)


@pytest.mark.parametrize("name", [p.name for p in na.notebooks()])
def test_prose_numbers_are_in_the_outputs_above(name, audits, pending):
    audit = audits[name]
    listed = na.pending_keys({name: pending.get(name, [])})
    found = Counter(f.key for f in audit.unmatched)
    new = [f for f in audit.unmatched if found[f.key] > listed[f.key]]
    stale = [(number, context) for (_, number, context), n in listed.items() for _ in range(n - found[(name, number, context)])]
    message = []
    if new:
        message.append(f"{name}: {len(new)} number(s) in the prose with no match in the outputs or code above "
                       f"them (not in tests/numbers_pending.json):\n{_lines(new)}")
    if stale:
        message.append(f"{name}: {len(stale)} entries of tests/numbers_pending.json no longer occur (fixed, or "
                       "the text around them changed): remove them with `" + na.REGENERATE + "`\n" +
                       "\n".join(f"  {number!r}  ...{context}..." for number, context in stale))
    if message:
        pytest.fail("\n\n".join(message) + "\n\n" + HOW, pytrace=False)


def test_pending_file_names_existing_notebooks(pending):
    names = {p.name for p in na.notebooks()}
    missing = sorted(set(pending) - names)
    assert not missing, f"tests/numbers_pending.json names notebooks that do not exist: {missing}; `{na.REGENERATE}`"


def test_every_allow_entry_is_still_needed(audits):
    stale = na.unused_allow_entries(audits)
    assert not stale, "remove from ALLOW in tests/numbers_audit.py (or fix its context):\n" + "\n".join(stale)


# ------------------------------------------------------------------------------------------------
# The rules, on made-up text
# ------------------------------------------------------------------------------------------------
def one(text):
    (num,) = na.parse_numbers(text)
    return num


def shown_by(prose, output):
    return any(na.matches(one(prose), o) for o in na.parse_numbers(output))


@pytest.mark.parametrize("prose, output", [
    ("94.8 %", "test accuracy 94.83%"),
    ("94.8 %", "accuracy 0.9483"),  # a fraction, as percent
    ("94.8", "94.8"),
    ("+0.6 points", "gain 0.0063"),  # points from fractions
    ("+0.6 points", "+0.63 pt"),
    ("0.57", "agreement 57.4%"),  # a percentage, as a fraction
    ("−5.2", "per seed -5.2"),  # unicode minus in the prose
    ("3.9", "-3.9 points"),  # "loses by 3.9 points": an unsigned number takes either sign
    ("26,682", "26682 parameters"),
    ("6.9k", "6,866 parameters"),
    ("0.70 M", "696,618 parameters"),
    ("9.058e-05", "9.058e-05"),
    ("15x", "(15.1x fewer)"),
])
def test_matches_at_the_precision_shown(prose, output):
    assert shown_by(prose, output)


@pytest.mark.parametrize("prose, output", [
    ("94.83 %", "94.8%"),  # the prose claims a digit the output does not show
    ("94.9 %", "94.83%"),
    ("−5.2", "5.2"),  # a negative number needs a negative output
    ("+0.4", "-0.4"),
    ("0.87", "1.02"),
    ("100k", "103,466"),  # 100k is 100,000 to the thousand
    ("90 %", "alpha 0.9"),  # 0.9 is 90 % only to the ten percent
])
def test_does_not_match(prose, output):
    assert not shown_by(prose, output)


def test_parsing_ranges_units_and_names():
    text = "76–81 %, 3.1 to 4.2 points, CIFAR-10 layer3 08b 10th 8x8 32 x 32 missing 3s top-20 SHA-256 0.6–0.9"
    numbers = na.parse_numbers(text)
    assert [(n.text, n.unit) for n in numbers] == [
        ("76", "%"), ("81 %", "%"), ("3.1", "points"), ("4.2 points", "points"), ("0.6", ""), ("0.9", "")]
    assert all(n.value > 0 for n in numbers)  # the dash of a range is not a minus sign


def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    for kind, source, *outputs in cells:
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(source, outputs=[
                nbformat.v4.new_output("stream", name="stdout", text=text) for text in outputs]))
    return nb


def _unmatched(tmp_path, nb):
    path = tmp_path / "99_made_up.ipynb"
    nbformat.write(nb, path)
    return [f.number for f in na.audit_notebook(path).unmatched]


def test_audit_of_a_made_up_notebook(tmp_path):
    nb = _notebook(
        ("md", "# Lesson 99\n\nIntroduction: the student reaches 95.1 % (previewed from below)."),
        ("code", "T, EPOCHS = 4.0, 30\nprint(acc)", "accuracy 95.1%, gain +0.63 points\nmean -5.2 ± 4.7\n5.8"),
        ("md", "With $T = 4$ and 30 epochs (`lr=3e-3`, see [lesson 03](https://example.org/03)) it reaches "
               "95.1 %, +0.6 points (Hinton et al. 2015, eq. 2), $\\alpha = 0.9$, 2 seeds. Section 4 shows "
               "the rest: a gap of −5.2 ± 5.8 and 12.5 points."),
        ("md", "A claim about the cell below: 0.31."),
        ("code", "x = 1", "0.31"),
    )
    # 0.9 and 12.5: in no output or code above; −5.2 ± 5.8: both shown, never together; 0.31: shown only below
    assert _unmatched(tmp_path, nb) == ["0.9", "−5.2 ± 5.8", "12.5 points", "0.31"]


def test_error_outputs_do_not_count(tmp_path):
    nb = _notebook(("code", "raise ValueError"), ("md", "It printed 0.42."))
    nb.cells[0].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="0.42", traceback=["0.42"])]
    assert _unmatched(tmp_path, nb) == ["0.42"]
