"""Every solution notebook has its py:percent text twin in solutions/py/, as scripts/sync_text.py writes it."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("jupytext", reason="jupytext is in the dev extra: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import sync_text  # noqa: E402

FIX = f"regenerate the text pairs from the notebooks: {sync_text.COMMAND}"


def test_every_solution_has_its_text_pair_and_no_other():
    assert sync_text.notebooks(), "no solution notebooks found"
    found = sync_text.problems()
    assert not found, "the text pairs in solutions/py/ are out of step:\n  " + "\n  ".join(found) + f"\n{FIX}"


def test_pairs_carry_sources_not_outputs_nor_machine_dependent_lines():
    for notebook in sync_text.notebooks():
        path = sync_text.text_path(notebook)
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        assert "jupytext_version:" not in text, f"{path.name}: the header names jupytext's version; {FIX}"
        assert "iopub" not in text, f"{path.name}: run timings in the text; {FIX}"


def _notebook(path: Path, *cells) -> Path:
    nb = nbformat.v4.new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, path)
    return path


def test_problems_names_stale_missing_and_orphaned_pairs(tmp_path):
    solutions, text_dir = tmp_path / "solutions", tmp_path / "solutions" / "py"
    solutions.mkdir()
    code = nbformat.v4.new_code_cell("x = 1\nprint(x)")
    code.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    code.metadata["execution"] = {"iopub.execute_input": "2026-12-01T10:00:00Z"}
    first = _notebook(solutions / "01_a.ipynb", nbformat.v4.new_markdown_cell("# A"), code)
    _notebook(solutions / "02_b.ipynb", nbformat.v4.new_code_cell("y = 2"))
    _notebook(solutions / "notes.ipynb", nbformat.v4.new_code_cell("scratch = 0"))  # not a lesson: no pair

    assert sorted(p.name for p in sync_text.notebooks(solutions)) == ["01_a.ipynb", "02_b.ipynb"]
    assert len(sync_text.problems(solutions, text_dir)) == 2  # no pairs yet
    changed = sync_text.sync(solutions, text_dir)
    assert changed == ["wrote solutions/py/01_a.py", "wrote solutions/py/02_b.py"]
    assert sync_text.problems(solutions, text_dir) == [] and sync_text.sync(solutions, text_dir) == []

    text = (text_dir / "01_a.py").read_text(encoding="utf-8")
    assert "# %% [markdown]\n# # A\n\n# %%\nx = 1\nprint(x)\n" in text
    assert "jupytext_version:" not in text and "iopub" not in text and "1\n1\n" not in text  # no outputs, no timings

    nb = nbformat.read(first, as_version=4)
    nb.cells[0].source = "# A, edited"
    nbformat.write(nb, first)
    (solutions / "02_b.ipynb").rename(solutions / "03_b.ipynb")
    (text_dir / "99_left_over.py").write_text("z = 3\n", encoding="utf-8")
    assert sync_text.problems(solutions, text_dir) == [
        "solutions/py/01_a.py: differs from what 01_a.ipynb gives",
        "03_b.ipynb: no text pair solutions/py/03_b.py",
        "solutions/py/02_b.py: no notebook solutions/02_b.ipynb",
        "solutions/py/99_left_over.py: no notebook solutions/99_left_over.ipynb",
    ]
    assert sync_text.sync(solutions, text_dir) == [
        "wrote solutions/py/01_a.py", "wrote solutions/py/03_b.py",
        "removed solutions/py/02_b.py (no notebook)", "removed solutions/py/99_left_over.py (no notebook)",
    ]
    assert sync_text.problems(solutions, text_dir) == []
    assert sorted(p.name for p in text_dir.iterdir()) == ["01_a.py", "03_b.py"]


def test_the_text_dir_holds_no_notebook_the_other_tools_would_glob():
    from kdcourse.exercises import SOLUTION_GLOB

    assert sync_text.SOLUTION_GLOB == SOLUTION_GLOB
    assert not list(sync_text.TEXT_DIR.glob("*.ipynb"))
    assert not list((ROOT / "solutions").glob("*.py")), "text pairs belong in solutions/py/, not next to the notebooks"
