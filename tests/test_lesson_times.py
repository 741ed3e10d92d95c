"""The README's run times are the stored solutions' measured times (scripts/lesson_times.py), not typed."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import lesson_times  # noqa: E402


def test_readme_run_times_are_the_stored_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert lesson_times.readme_times(readme) == lesson_times.lesson_times(ROOT), (
        "README.md's run-time column differs from the stored solutions' runs: "
        "python scripts/lesson_times.py --write-readme")


def test_stored_seconds_spans_first_start_to_last_reply(tmp_path):
    nb = nbformat.v4.new_notebook()
    for start, end in [("2026-12-01T10:00:00.5Z", "2026-12-01T10:00:03Z"), ("2026-12-01T10:00:03Z", "2026-12-01T10:02:10Z")]:
        cell = nbformat.v4.new_code_cell("pass")
        cell.metadata["execution"] = {"iopub.execute_input": start, "shell.execute_reply": end}
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_markdown_cell("no timing here"))
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, path)
    assert lesson_times.stored_seconds(path) == 129.5
    assert lesson_times.shown(129.5) == "2.2 min" and lesson_times.shown(17.4) == "17 s"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("pass")]), path)
    assert lesson_times.stored_seconds(path) is None


def test_readme_with_times_changes_only_that_column():
    readme = ("intro\n\n| # | lesson | run time | open |\n|---|---|---|---|\n"
              "| 01 | [A](a.ipynb) | 3 s | x |\n| 08b | [B](b.ipynb) | typed | y |\n\nafter | 01 | [C](c) | z |\n")
    out = lesson_times.readme_with_times(readme, {"01": "17 s", "08b": "2.1 min"})
    assert lesson_times.readme_times(out) == {"01": "17 s", "08b": "2.1 min"}
    assert out.replace("17 s", "3 s").replace("2.1 min", "typed") == readme
