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

from lab_driver import NUMBER, SliderWidget, open_notebook, run_all_cells
from lab_server import ARTIFACTS, REPO

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


# ------------------------------------------------------------------ every other slider of the course

def _widget_notebook(lab_root, name: str, source: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, lab_root / f"{name}.ipynb")
    return f"{name}.ipynb"


LOSS_EXPLORER = (  # lesson 02's alpha/T explorer
    "from kdcourse.widgets import loss_explorer\n"
    "loss_explorer([2.0, 0.5, 0.0, -1.0], [5.0, 2.0, 0.5, -2.0], target=0, class_names=list('abcd'))")
SWEEP_BROWSER = (  # lesson 04's sweep browser, over a synthetic sweep of two seeds
    "from kdcourse.distill import History\n"
    "from kdcourse.widgets import sweep_browser\n"
    "curve = lambda a, T, s: [0.5 + 0.1 * e + 0.02 * a + 0.01 * T + 0.003 * s for e in range(4)]\n"
    "sweep = {(a, T): [History('kd', val_acc=curve(a, T, s)) for s in (0, 1)] for a in (0.0, 0.5, 0.9)\n"
    "         for T in (1.0, 4.0)}\n"
    "sweep_browser(sweep)")
SAMPLING_BROWSER = (  # lesson 09's sampling-temperature slider, over a synthetic table
    "from kdcourse.widgets import sampling_browser\n"
    "table = {t: {'entropy_bits': 1.0 + t, 'teacher_bpc': 2.0 + 3 * t, 'text': f'sample at {t}'}\n"
    "         for t in (0.5, 1.0, 1.5)}\n"
    "sampling_browser(table, start=1.0)")

SLIDERS = {
    "loss_alpha": (LOSS_EXPLORER, dict(prefix="kd-loss", label_pattern=rf"alpha = {NUMBER}",
                                       slider="kd-loss-alpha-slider")),
    "loss_T": (LOSS_EXPLORER, dict(prefix="kd-loss", label_pattern=rf"\bT = {NUMBER}", slider="kd-loss-T-slider")),
    "sweep_alpha": (SWEEP_BROWSER, dict(prefix="kd-sweep", label_pattern=rf"alpha = {NUMBER}",
                                        slider="kd-sweep-alpha-slider", box="kd-sweep-browser")),
    "sweep_T": (SWEEP_BROWSER, dict(prefix="kd-sweep", label_pattern=rf"\bT = {NUMBER}",
                                    slider="kd-sweep-T-slider", box="kd-sweep-browser")),
    "sampling": (SAMPLING_BROWSER, dict(prefix="kd-sampling", label_pattern=rf"sampling temperature {NUMBER}",
                                        box="kd-sampling-browser")),
}


@pytest.mark.parametrize("name", sorted(SLIDERS))
def test_every_slider_renders_and_redraws(lab, lab_root, page, name):
    """Lessons 02, 04 and 09's sliders, each in a tiny notebook: found, moved, label and figure follow."""
    source, where = SLIDERS[name]
    notebook = _widget_notebook(lab_root, f"slider_{name}", source)
    open_notebook(page, lab, notebook)
    with evidence_on_failure(page, lab, f"slider_{name}"):
        run_all_cells(page, timeout_s=120)
        move_and_check(page, SliderWidget(page, **where), f"slider_{name}")
