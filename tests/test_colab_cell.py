"""Every lesson opens on Google Colab: its first code cell installs the course package there,
and does nothing anywhere else (a local clone, Binder, CI)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from kdcourse import links

REPO = Path(__file__).resolve().parents[1]

# The set-up cell (COURSE.md "Conventions"), made from the repository's one address in
# kdcourse/links.py: every solution has it as its first code cell, and `make lessons` copies it
# into the exercises unchanged.
COLAB_CELL = links.colab_setup_cell()

PIP_COMMAND = [sys.executable, "-m", "pip", "install", "-q", links.PIP_REQUIREMENT]

NOTEBOOKS = sorted((REPO / "solutions").glob("[0-9][0-9]*_*.ipynb")) + sorted(
    (REPO / "lessons").glob("[0-9][0-9]*_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_first_code_cell_is_the_colab_setup(path):
    nb = nbformat.read(path, as_version=4)
    first = next((cell for cell in nb.cells if cell.cell_type == "code"), None)
    assert first is not None, f"{path.name} has no code cell"
    assert first.source.strip() == COLAB_CELL, (
        f"{path.relative_to(REPO)}: the first code cell must be the Colab set-up cell, verbatim "
        f"(`python -m kdcourse.links --write` writes it from kdcourse/links.py); it is:\n{first.source}")


def _run_cell(monkeypatch) -> list:
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    exec(compile(COLAB_CELL, "<colab set-up cell>", "exec"), {})
    return calls


def test_setup_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert _run_cell(monkeypatch) == []


def test_setup_cell_installs_the_package_from_git_on_colab(monkeypatch):
    google = sys.modules.get("google") or types.ModuleType("google")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    calls = _run_cell(monkeypatch)
    assert calls == [((PIP_COMMAND,), {"check": True})]
