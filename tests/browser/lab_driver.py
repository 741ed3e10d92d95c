"""Drive JupyterLab like a learner: open a notebook, run all cells, move a slider, read the plot.

Only the JupyterLab and ipywidgets DOM is used (menu labels, cell prompts, the noUiSlider
handle that ipywidgets 8 draws); the course's widgets add CSS classes (``kd-temperature-slider``,
``kd-temperature-label``, ``kd-temperature-output``, see kdcourse/widgets.py) so the test finds
them without guessing.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

PAGE_LOAD_TIMEOUT_S = 90  # the Lab front end and the kernel start (busy 2-core machine)
RUN_ALL_TIMEOUT_S = 480  # lesson 01: ~1-2 min alone on 2 cores, ~6 min when the machine is shared
REDRAW_TIMEOUT_S = 60  # the kernel redraws the figure after the slider moves

NUMBER = r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)"

# The notebook's state in one call: prompts of code cells, kernel status, open dialog.
_STATE_JS = """() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
    .map(e => e.textContent.trim());
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const dialog = document.querySelector('.jp-Dialog');
  return {prompts, status: indicator ? indicator.dataset.status : null,
          dialog: dialog ? dialog.innerText : null};
}"""


def _wait(predicate, timeout_s: float, what: str, interval_s: float = 0.5, describe=None):
    """Poll `predicate()` until it returns a truthy value; fail after `timeout_s` saying `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\nlast state: {describe()}" if describe else ""
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}")
        time.sleep(interval_s)


def notebook_state(page) -> dict:
    return page.evaluate(_STATE_JS)


def kernel_of(lab, path: str) -> dict | None:
    """The server's view of the kernel behind the notebook at `path` (REST API /api/sessions)."""
    with urllib.request.urlopen(lab.url("api/sessions"), timeout=10) as response:
        sessions = json.load(response)
    return next((s["kernel"] for s in sessions if s.get("path") == path and s.get("kernel")), None)


def open_notebook(page, lab, path: str) -> None:
    """Open the notebook at `path` (relative to the server's root) and wait until its kernel is
    started, connected to the page and idle. The page's own indicator says "idle" before the
    kernel even exists, so the server is asked too."""
    page.set_default_timeout(PAGE_LOAD_TIMEOUT_S * 1000)
    # `reset`: start from an empty workspace, so no notebook of an earlier test is reopened
    # beside this one (the workspace is stored by the server, not the browser).
    page.goto(lab.url(f"lab/tree/{path}") + "&reset", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", state="attached")
    panels = page.locator(".jp-NotebookPanel").count()
    assert panels == 1, f"expected only {path} open, found {panels} notebook panels"

    def ready():
        state = notebook_state(page)
        if state["dialog"]:
            raise AssertionError(f"JupyterLab opened a dialog instead of the kernel: {state['dialog']}")
        kernel = kernel_of(lab, path)
        return (kernel is not None and kernel["execution_state"] == "idle"
                and kernel["connections"] >= 1 and state["status"] == "idle")

    _wait(ready, PAGE_LOAD_TIMEOUT_S, "the notebook's kernel to be started and idle",
          describe=lambda: (notebook_state(page), kernel_of(lab, path)))


def menu(page, top: str, item: str) -> None:
    """Click a menu bar entry, then one of its items, by their visible labels."""
    page.click(f".lm-MenuBar-item:has(.lm-MenuBar-itemLabel:text-is('{top}'))")
    page.click(f".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('{item}'))")


def run_all_cells(page, timeout_s: float = RUN_ALL_TIMEOUT_S) -> float:
    """Clear the stored outputs, run all cells, wait for the end; return the seconds it took.

    Clearing first makes the stored outputs (solutions are saved with them) impossible to
    mistake for fresh ones: every prompt must go from ``[ ]`` to a number. JupyterLab stops a
    "Run All" at the first error, leaving the cells below it at ``[ ]``: that is reported with
    the error output.
    """
    menu(page, "Edit", "Clear Outputs of All Cells")
    _wait(lambda: all(p in ("[ ]:", "[ ]") for p in notebook_state(page)["prompts"]), 30,
          "the outputs to be cleared", describe=lambda: notebook_state(page))
    start = time.monotonic()
    menu(page, "Run", "Run All Cells")

    def finished():
        state = notebook_state(page)
        if state["dialog"]:
            raise AssertionError(f"a dialog opened while running the notebook: {state['dialog']}")
        busy = any("*" in p for p in state["prompts"])
        ran = any(re.search(r"\d", p) for p in state["prompts"])
        return ran and not busy and state["status"] == "idle"

    _wait(finished, timeout_s, "'Run All Cells' to finish", interval_s=1.0,
          describe=lambda: notebook_state(page))
    seconds = time.monotonic() - start
    prompts = notebook_state(page)["prompts"]
    not_run = [i for i, p in enumerate(prompts) if not re.search(r"\d", p)]
    if not_run:
        errors = page.evaluate("""() => [...document.querySelectorAll(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
            .map(e => e.innerText).slice(-2)""")
        raise AssertionError(f"'Run All Cells' stopped: code cells {not_run} did not run "
                             f"(prompts {prompts}).\nLast error output:\n" + "\n".join(errors)[-3000:])
    return seconds


class SliderWidget:
    """One explorer in the page: a slider's handle and readout, the value label, the figure.

    `prefix` is the explorer's CSS prefix (kdcourse/widgets.py): ``kd-temperature`` finds
    ``.kd-temperature-slider``, ``.kd-temperature-label`` and the ``img`` inside
    ``.kd-temperature-output``, all within the first ``.kd-temperature-explorer`` box.
    `slider` names another slider class of the same explorer (``kd-loss-alpha-slider``), and
    `label_pattern` reads the slider's value from the label text (group 1).
    """

    def __init__(self, page, prefix: str, label_pattern: str, slider: str | None = None,
                 box: str | None = None):
        self.page = page
        self.box = page.locator(f".{box or prefix + '-explorer'}").first
        self.slider = self.box.locator(f".{slider or prefix + '-slider'}")
        self.handle = self.slider.locator(".noUi-handle")
        self.readout = self.slider.locator(".widget-readout")
        self.label = self.box.locator(f".{prefix}-label")
        self.image = self.box.locator(f".{prefix}-output img")
        self.label_pattern = re.compile(label_pattern)

    def wait_rendered(self, timeout_s: float = REDRAW_TIMEOUT_S) -> None:
        for part, name in [(self.handle, "slider handle"), (self.label, "value label"),
                           (self.image, "figure")]:
            try:
                part.first.wait_for(state="visible", timeout=timeout_s * 1000)
            except Exception as error:  # playwright's TimeoutError: say which part is missing
                raise AssertionError(f"the explorer's {name} did not appear") from error
        self.wait_image_loaded()

    def wait_image_loaded(self) -> None:
        _wait(lambda: self.image.first.evaluate("img => img.complete && img.naturalWidth > 0"),
              REDRAW_TIMEOUT_S, "the figure image to load")

    def state(self) -> dict:
        label = self.label.first.inner_text().strip()
        match = self.label_pattern.search(label)
        return {
            "readout": self.readout.first.inner_text().strip(),
            "label": label,
            "label_value": float(match.group(1)) if match else None,
            "image": self.image.first.get_attribute("src") or "",
            "images": self.image.count(),
        }

    def move_to_end(self) -> str:
        """Focus the handle like a keyboard user and press End (Home if already at the end)."""
        self.handle.first.focus()
        before = self.readout.first.inner_text().strip()
        self.handle.first.press("End")
        if self.readout.first.inner_text().strip() == before:
            self.handle.first.press("Home")
        return self.readout.first.inner_text().strip()

    def wait_redrawn(self, before: dict, timeout_s: float = REDRAW_TIMEOUT_S) -> dict:
        """Wait until the label states the slider's new value and a new figure is shown, then
        until the figure stops changing (the kernel may redraw more than once)."""
        def updated():
            now = self.state()
            target = float(now["readout"])
            done = (now["label_value"] is not None and abs(now["label_value"] - target) < 1e-6
                    and now["image"] and now["image"] != before["image"] and now["images"] == 1)
            return now if done else None

        _wait(updated, timeout_s, "the label and the figure to follow the slider",
              describe=lambda: {k: (v[:60] if isinstance(v, str) else v) for k, v in self.state().items()})
        last, stable_since = self.state()["image"], time.monotonic()
        deadline = stable_since + timeout_s
        while time.monotonic() - stable_since < 1.5 and time.monotonic() < deadline:
            time.sleep(0.25)
            current = self.state()["image"]
            if current != last:
                last, stable_since = current, time.monotonic()
        self.wait_image_loaded()
        return self.state()
