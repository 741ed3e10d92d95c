"""End to end: in JupyterLab, in headless Chromium, a learner moves the temperature slider and
the plot follows.

Unit tests (tests/test_widgets*.py) prove the callbacks' logic; this proves the whole chain a
learner relies on: JupyterLab renders the ipywidgets, the slider's new value reaches the kernel,
the callback redraws the figure, and the new image and label reach the page.

Run with `make test-browser` (see conftest.py for what it needs). Screenshots of the explorer
land in tests/browser/artifacts/ (git-ignored): slider_before.png, slider_after.png.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import nbformat
import pytest

from lab_server import ARTIFACTS, REPO
from lab_driver import NUMBER, SliderWidget, open_notebook, run_all_cells

SOLUTION_01 = REPO / "solutions" / "01_softmax_temperature.ipynb"
T_LABEL = rf"\bT = {NUMBER}"  # the label reads "T = 4.0, entropy = ..."

pytestmark = pytest.mark.timeout(600)  # server + browser + one notebook run, on a busy machine


@contextmanager
def evidence_on_failure(page, lab, name: str):
    """On failure, keep a full-page screenshot and say where it is, with the server's log."""
    try:
        yield
    except BaseException as error:
        shot = ARTIFACTS / f"{name}_failure.png"
        try:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
        except Exception:  # the page may be gone: the original error matters more
            shot = None
        note = f"page screenshot: {shot}\nJupyterLab log (tail):\n{lab.log_tail(20)}"
        if hasattr(error, "add_note"):  # Python >= 3.11
            error.add_note(note)
        else:
            print(note)
        raise


def move_and_check(page, explorer: SliderWidget, name: str) -> dict:
    """Read the explorer, move its slider to the end, check label and figure follow; screenshot."""
    explorer.wait_rendered()
    explorer.box.scroll_into_view_if_needed()
    before = explorer.state()
    assert before["label_value"] is not None, f"no value in the label: {before['label']!r}"
    assert abs(before["label_value"] - float(before["readout"])) < 1e-6, before
    ARTIFACTS.mkdir(exist_ok=True)
    explorer.box.screenshot(path=str(ARTIFACTS / f"{name}_before.png"))

    new_value = explorer.move_to_end()
    assert new_value != before["readout"], "the slider did not move when End was pressed"
    after = explorer.wait_redrawn(before)

    assert after["readout"] == new_value
    assert after["label_value"] == pytest.approx(float(new_value)), after["label"]
    assert after["label"] != before["label"]
    assert after["image"].startswith("data:image/png"), after["image"][:40]
    assert after["image"] != before["image"], "the figure was not redrawn"
    assert after["images"] == 1, "the old figure was not replaced (figures pile up)"
    explorer.box.screenshot(path=str(ARTIFACTS / f"{name}_after.png"))
    return {"before": before, "after": after}


def test_temperature_explorer_renders_and_redraws(lab, lab_root, page):
    """The widget alone, in a tiny notebook: proves the harness, independent of lesson 01."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
        "from kdcourse.widgets import temperature_explorer\n"
        "temperature_explorer([6.0, 3.0, 2.5, 0.5, -1.0], class_names=list('abcde'), true_class=0)")]
    nbformat.write(nb, lab_root / "explorer_only.ipynb")

    open_notebook(page, lab, "explorer_only.ipynb")
    with evidence_on_failure(page, lab, "explorer_only"):
        run_all_cells(page, timeout_s=120)
        move_and_check(page, SliderWidget(page, "kd-temperature", T_LABEL), "explorer_only")


def test_solution_01_temperature_slider_redraws_plot(lab, lab_root, page):
    """Lesson 01's solution, run top to bottom in JupyterLab: its T slider redraws the plot."""
    assert SOLUTION_01.exists(), f"{SOLUTION_01} is missing"
    shutil.copy(SOLUTION_01, lab_root / SOLUTION_01.name)  # never touch the committed notebook

    open_notebook(page, lab, SOLUTION_01.name)
    with evidence_on_failure(page, lab, "slider"):
        seconds = run_all_cells(page)
        print(f"Run All Cells took {seconds:.0f} s")
        move_and_check(page, SliderWidget(page, "kd-temperature", T_LABEL), "slider")
    print(f"screenshot: {ARTIFACTS / 'slider_after.png'}")
