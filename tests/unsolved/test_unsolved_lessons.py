"""Every lesson runs to its end unsolved (issue 12): each exercise skipped, the notebook goes on with
the package's reference and says so (kdcourse/checks/fallback.py).

``make test`` runs this after the solutions (a second pytest call), with the training memo on
(``KDCOURSE_TRAIN_MEMO=1``, :mod:`kdcourse.memo`): a training whose every input -- initial weights,
data, teacher, loss terms and their code, settings, seed, the package's source -- is the one a
solution notebook just ran is put back instead of trained again, so the unsolved lessons cost
minutes, not another half hour. Every cell still runs. Trainings that use a learner's function (the
fallback's reference here, the solution's own code there) differ in their code and train again.
Run alone (``pytest tests/unsolved``) it trains everything and fills the memo itself.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
LESSONS = sorted(p.name for p in (ROOT / "lessons").glob("*.ipynb"))


def test_every_lesson_is_here():
    assert len(LESSONS) >= 12, LESSONS


@pytest.mark.timeout(2400)  # alone, without the solutions' trainings to put back, a lesson takes minutes
@pytest.mark.parametrize("name", LESSONS)
def test_the_unsolved_lesson_runs_to_its_end(name):
    """The exercise notebook, every exercise skipped, runs top to bottom and says, for each checked
    function, that the rest of the lesson uses the package's reference."""
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "lessons" / name, as_version=4)
    env = {**os.environ, "KDCOURSE_PROFILE": "quick", "KDCOURSE_PROGRESS": "0", "MPLBACKEND": "Agg",
           "KDCOURSE_TRAIN_MEMO": "1"}
    client = NotebookClient(nb, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "lessons")}})
    start = time.perf_counter()
    client.execute(env=env)  # raises CellExecutionError, naming the cell, if any cell stops
    print(f"{name}: ran to its end unsolved in {time.perf_counter() - start:.0f} s")
    said = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.get("output_type") == "stream")
    checked = re.findall(r"^check_\w+\((\w+)\)", "\n".join(c.source for c in nb.cells if c.cell_type == "code"), re.M)
    missing = [f for f in checked if f"{f} is not written yet" not in said]
    answers = re.findall(r'^check_diagnosis\("(\w+)"', "\n".join(c.source for c in nb.cells if c.cell_type == "code"), re.M)
    missing += [m for m in answers if f"{m} is not answered yet" not in said]
    assert not missing, f"{name}: no 'not written yet' message for {missing}"
