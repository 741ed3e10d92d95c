"""Grade learners' notebooks: run each one in a fresh kernel and collect its checkers' verdicts.

Usage, from a shell where the course is installed::

    python -m kdcourse grade alice/02_distillation_loss.ipynb bob/02_distillation_loss.ipynb
    python -m kdcourse grade submissions/ --json grades.json --timeout 900

A folder stands for every notebook under it. Each notebook runs from top to bottom in a new
kernel started in the notebook's folder, with the ``quick`` profile (``--profile full`` to
change it), progress bars off, and errors allowed, so one broken cell does not stop the cells
after it. ``--timeout`` limits the whole notebook's cells (the kernel's start is not counted):
at the limit its kernel is killed, the checks not yet run are reported as ``timeout``, and
grading goes on with the next notebook.

The exercises are learned from the notebook itself: every statement that calls a ``check_*``
function (``check_kd_loss(kd_loss)``) is one exercise, named after the learner's function or
variable it checks. Its result is

- ``pass``: the checker ran without an error (it printed its ✓ line);
- ``fail: <message>``: the checker raised an ``AssertionError``; the message is its first line,
  which names the mistake ("kd_loss: the soft term is off by a factor T^2 ...");
- ``not done``: the exercise is still the stub (the checker then lets the lesson go on with the
  package's reference and says so; an answer left as ``...`` is said to be not answered yet), or it
  raises the stub's ``NotImplementedError``;
- ``timeout``: the notebook ran out of time before this check finished;
- ``error: <message>``: anything else (the cell raised another error, the kernel died).

It prints one row per notebook x exercise and a score line per notebook; ``--json FILE`` also
writes them as JSON (with each checker's whole message).

The kernel inherits the grader's environment (``KDCOURSE_CIFAR10``, ``KDCOURSE_CACHE``, ...).
The course downloads nothing except CIFAR-10 for lessons 08-08d, and only when it is neither in
``KDCOURSE_CIFAR10`` nor in the cache: prepare it once before grading those lessons offline.
The kernel is the ``python3`` kernel of the Python running the grader (``--kernel`` to pick
another), not the one named in the learner's notebook, so every notebook runs against the
course package installed here. A notebook can run any code: grade learners' work under an
account (or in a container) that holds nothing else of value. The exit status is 0 whenever
grading ran, even if learners failed; 2 when a notebook given does not exist (or an option is
wrong), before anything runs.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .checks.fallback import SKIPPED, UNANSWERED  # how a checker words a stub it replaced / an answer left out

__all__ = ["Exercise", "NotebookGrade", "add_arguments", "find_exercises", "format_table", "grade",
           "grade_notebook", "run", "to_json"]

RESULTS = ("pass", "fail", "not done", "timeout", "error")
DEFAULT_TIMEOUT = 1200  # seconds per notebook: a lesson takes 1-4 min in the quick profile, longer on a busy machine
CHECKER = re.compile(r"check_\w+")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CELL_LINE = re.compile(r"Cell In\[\d*\], line (\d+)")  # IPython's traceback header of a cell frame
NOT_IMPLEMENTED = "is not implemented yet"  # how the checkers word a stub they were given


@dataclass
class Exercise:
    """One checker call in a notebook and, after grading, its result."""

    exercise: str  # the learner's function or variable it checks, e.g. "kd_loss"
    checker: str  # e.g. "check_kd_loss"
    cell: int  # 1-based index of the cell among all the notebook's cells
    lines: tuple[int, int]  # first and last line of the call inside the cell
    result: str = "not run"
    message: str = ""  # the first line of the checker's (or the error's) message
    details: str = ""  # the whole message

    def shown(self) -> str:
        """The result as the table prints it: ``fail: <message>``, ``error: <message>``, ``pass``..."""
        return f"{self.result}: {self.message}" if self.result in ("fail", "error") and self.message else self.result


@dataclass
class NotebookGrade:
    """The exercises of one notebook and how its run went (``graded``, ``timeout`` or ``error``)."""

    notebook: str
    status: str = "graded"
    detail: str = ""
    seconds: float = 0.0
    exercises: list[Exercise] = field(default_factory=list)

    def score(self) -> str:
        passed = sum(e.result == "pass" for e in self.exercises)
        return f"{passed} of {len(self.exercises)} pass"


# ------------------------------------------------------------------ finding the exercises


def _parse(source: str) -> ast.Module | None:
    """The cell's syntax tree; IPython magics (``%time``, ``!pip``) are translated first."""
    try:
        return ast.parse(source)
    except SyntaxError:
        pass
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ImportError, ValueError):
        return None  # a cell Python cannot read holds no exercise we can name


def _checker_name(call: ast.Call) -> str | None:
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return name if name and CHECKER.fullmatch(name) else None


def _exercise_name(call: ast.Call, checker: str) -> str:
    """The first argument that names the learner's work (``kd_loss``), else a quoted name, else
    the checker's name without ``check_``."""
    for arg in call.args:
        if isinstance(arg, ast.Name):
            return arg.id
    for arg in call.args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return checker.removeprefix("check_")


def find_exercises(nb) -> list[Exercise]:
    """Every top-level statement of a code cell of ``nb`` (an ``nbformat`` notebook) that calls a
    ``check_*`` function, in order.

    Calls inside a ``def`` or a loop are not exercises (a helper that calls a checker is not a
    learner's answer). Two exercises with the same name get ``#2``, ``#3`` ... appended.
    """
    found: list[Exercise] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "check_" not in cell.source:
            continue
        tree = _parse(cell.source)
        if tree is None:
            continue
        for statement in tree.body:
            value = getattr(statement, "value", None)  # `check_x(f)` or `result = check_x(f)`
            if isinstance(statement, (ast.Expr, ast.Assign)) and isinstance(value, ast.Call):
                checker = _checker_name(value)
                if checker:
                    found.append(Exercise(_exercise_name(value, checker), checker, index + 1,
                                          (statement.lineno, statement.end_lineno or statement.lineno)))
    seen: dict[str, int] = {}
    for exercise in found:
        seen[exercise.exercise] = seen.get(exercise.exercise, 0) + 1
        if seen[exercise.exercise] > 1:
            exercise.exercise += f"#{seen[exercise.exercise]}"
    return found


# ------------------------------------------------------------------ reading the results


def _first_line(text: str) -> str:
    """The first non-empty line; a line ending in ':' ("kd_loss has 2 mistakes:") keeps the
    list that follows it, joined with '; '."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].endswith(":"):
        items = []
        for line in lines[1:]:
            if not line.startswith("- "):
                break
            items.append(line[2:])
        if items:
            return lines[0] + " " + "; ".join(items)
    return lines[0]


def _error_of(cell) -> dict | None:
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def _error_line(error: dict) -> int | None:
    """The line of the cell where the error was raised, from IPython's traceback."""
    for entry in error.get("traceback", []):
        match = CELL_LINE.search(ANSI.sub("", entry))
        if match:
            return int(match[1])
    return None


def _stub_raised(nb, start: int, stop: int) -> bool:
    """Whether a cell in ``nb.cells[start:stop]`` raised the exercise stub's NotImplementedError."""
    return any((_error_of(c) or {}).get("ename") == "NotImplementedError" for c in nb.cells[start:stop])


def _judge(exercise: Exercise, error: dict | None, nb, since: int) -> None:
    """Set ``exercise.result`` from the error its checker call raised (``None``: it passed).

    ``since`` is the index of the cell after the previous exercise's: a stub raised between the
    two explains a NameError in this check ("name 'diagnosis_a' is not defined").
    """
    if error is None:
        # a checker given the untouched stub lets the lesson go on with the reference, and says so
        skipped = f"{exercise.exercise} {SKIPPED}"
        said = "".join(o.get("text", "") for o in nb.cells[exercise.cell - 1].get("outputs", [])
                       if o.get("output_type") == "stream")
        unanswered = f" {UNANSWERED}"  # a diagnosis left as ... (its checker names the mystery, not the variable)
        left = next((line for line in said.splitlines() if skipped in line or unanswered in line), None)
        exercise.result = "not done" if left else "pass"
        if left:
            exercise.details = left
        return
    name, value = error.get("ename", "Error"), ANSI.sub("", error.get("evalue", ""))
    exercise.details = f"{name}: {value}" if value else name
    stub = (name == "NotImplementedError"  # the stub itself
            or (name == "AssertionError" and NOT_IMPLEMENTED in value)  # a checker that was given the stub
            or (name == "NameError" and _stub_raised(nb, since, exercise.cell - 1)))  # what the stub left undefined
    if stub:
        exercise.result = "not done"
    elif name == "AssertionError":
        exercise.result, exercise.message = "fail", _first_line(value) or "AssertionError (no message)"
    else:
        exercise.result, exercise.message = "error", _first_line(exercise.details)


def _collect(grade: NotebookGrade, nb, finished: set[int], stopped: str) -> None:
    """Fill in every exercise's result from the executed notebook ``nb``.

    ``finished`` holds the indices of the cells that ran to their end; ``stopped`` is
    ``"timeout"`` or ``"error"`` when the run stopped early (``grade.detail`` says where).
    """
    since = 0
    for exercise in grade.exercises:
        index = exercise.cell - 1
        if index not in finished:
            exercise.result = "timeout" if stopped == "timeout" else "error"
            if stopped != "timeout":
                exercise.message = grade.detail if stopped else "the cell was not run (tagged skip-execution?)"
            continue
        error = _error_of(nb.cells[index])
        if error is not None:
            line = _error_line(error)
            first, last = exercise.lines
            if line is not None and line < first:  # an earlier statement of the cell raised
                if error.get("ename") == "NotImplementedError":  # the stub, just above the check
                    exercise.result, exercise.details = "not done", ANSI.sub("", error.get("evalue", ""))
                else:
                    exercise.result = "error"
                    exercise.message = f"not run: line {line} of the cell raised {error.get('ename', 'an error')}"
                continue
            if line is not None and line > last:  # raised after this check had passed
                error = None
        _judge(exercise, error, nb, since)
        since = index + 1


# ------------------------------------------------------------------ running a notebook


def kernel_environment(profile: str = "quick") -> dict[str, str]:
    """The grader's environment, with the course profile set and progress bars off."""
    env = dict(os.environ)
    env["KDCOURSE_PROFILE"] = profile
    env["KDCOURSE_PROGRESS"] = "0"
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # silences a debugger warning
    return env


def grade_notebook(path, timeout: float = DEFAULT_TIMEOUT, profile: str = "quick",
                   kernel: str = "python3") -> NotebookGrade:
    """Run the notebook at ``path`` in a fresh kernel (its cells at most ``timeout`` seconds) and
    return its exercises with their results. Never raises for a learner's notebook: an unreadable
    file, a dead kernel or the time limit become the grade's ``status`` and ``detail``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    path = Path(path)
    grade = NotebookGrade(str(path))
    try:
        original = nbformat.read(path, as_version=4)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as error:  # unreadable, not JSON, not a notebook
        grade.status, grade.detail = "error", f"cannot read the notebook ({type(error).__name__}: {error})"
        return grade
    grade.exercises = find_exercises(original)
    nb = copy.deepcopy(original)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None

    start = time.monotonic()
    finished: set[int] = set()
    current = {"cell": None, "deadline": math.inf}

    def on_notebook_start(notebook):  # the kernel is ready: the notebook's time starts now
        current["deadline"] = time.monotonic() + timeout

    def on_cell_start(cell, cell_index):
        current["cell"] = cell_index
        if time.monotonic() >= current["deadline"]:
            raise CellTimeoutError(f"the notebook ran out of time ({timeout:g} s) before cell {cell_index + 1}")

    def on_cell_executed(cell, cell_index, execute_reply):
        finished.add(cell_index)

    def remaining(cell) -> int:  # what is left of the notebook's time, for the cell about to run
        return max(1, math.ceil(current["deadline"] - time.monotonic()))

    client = NotebookClient(
        nb, kernel_name=kernel, allow_errors=True, timeout_func=remaining, interrupt_on_timeout=False,
        shutdown_kernel="immediate", record_timing=False, startup_timeout=60,
        resources={"metadata": {"path": str(path.parent.resolve())}},
        on_notebook_start=on_notebook_start, on_cell_start=on_cell_start, on_cell_executed=on_cell_executed,
    )
    stopped = ""
    try:
        client.execute(env=kernel_environment(profile), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except CellTimeoutError:
        stopped = "timeout"
        cell = current["cell"]
        grade.status = "timeout"
        grade.detail = f"stopped after {timeout:g} s" + (f" in cell {cell + 1}" if cell is not None else "")
    except DeadKernelError:
        stopped, grade.status = "error", "error"
        cell = current["cell"]
        grade.detail = "the kernel died" + (f" in cell {cell + 1}" if cell is not None else "")
    except (KeyError, RuntimeError, TimeoutError, OSError) as error:  # no such --kernel, it did not start, ...
        stopped, grade.status = "error", "error"
        grade.detail = f"could not run the notebook: {type(error).__name__}: {_first_line(str(error))}"
    grade.seconds = round(time.monotonic() - start, 1)
    _collect(grade, nb, finished, stopped)
    return grade


def grade(paths, timeout: float = DEFAULT_TIMEOUT, profile: str = "quick", kernel: str = "python3",
          progress=None) -> list[NotebookGrade]:
    """Grade the notebooks one after the other; ``progress(text)`` hears about each one."""
    grades = []
    for path in paths:
        if progress:
            progress(f"grading {path} ...")
        g = grade_notebook(path, timeout=timeout, profile=profile, kernel=kernel)
        if progress:
            extra = f", {g.status}: {g.detail}" if g.status != "graded" else ""
            progress(f"  {g.score()} ({g.seconds:g} s{extra})")
        grades.append(g)
    return grades


# ------------------------------------------------------------------ reporting


def format_table(grades: list[NotebookGrade]) -> str:
    """One row per notebook x exercise, then one score line per notebook."""
    rows = []
    for g in grades:
        if g.exercises:
            rows += [(g.notebook, e.exercise, e.shown()) for e in g.exercises]
        else:
            why = f"{g.status}: {g.detail}" if g.status != "graded" else "error: no check_* call found in the notebook"
            rows.append((g.notebook, "-", why))
    header = ("notebook", "exercise", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    lines = [f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]}"]
    lines.append(f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 6}")
    lines += [f"{n:<{widths[0]}}  {e:<{widths[1]}}  {r}" for n, e, r in rows]
    lines.append("")
    for g in grades:
        extra = f"; {g.status}: {g.detail}" if g.status != "graded" else ""
        lines.append(f"{g.notebook}: {g.score()} ({g.seconds:g} s{extra})")
    return "\n".join(lines)


def to_json(grades: list[NotebookGrade]) -> dict:
    """The grades as plain data: ``{"notebooks": [{"notebook", "status", "detail", "seconds",
    "score", "exercises": [{"exercise", "checker", "cell", "result", "message", "details"}]}]}``."""
    notebooks = []
    for g in grades:
        entry = {k: v for k, v in asdict(g).items() if k != "exercises"}
        entry["score"] = g.score()
        entry["exercises"] = [{k: v for k, v in asdict(e).items() if k != "lines"} for e in g.exercises]
        notebooks.append(entry)
    return {"notebooks": notebooks}


# ------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m kdcourse grade``."""
    parser.add_argument("notebooks", nargs="+", metavar="NOTEBOOK",
                        help="learners' notebooks (.ipynb), or folders holding them")
    parser.add_argument("--json", metavar="FILE", help="also write the grades as JSON")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time limit per notebook (default {DEFAULT_TIMEOUT}); at the limit its kernel "
                             "is killed and the next notebook is graded")
    parser.add_argument("--profile", choices=["quick", "full"], default="quick",
                        help="KDCOURSE_PROFILE in the kernel (default quick, what the lessons' outputs show)")
    parser.add_argument("--kernel", default="python3",
                        help="the Jupyter kernel to run every notebook in (default python3: this Python)")


def _notebook_paths(names: list[str]) -> tuple[list[Path], list[str]]:
    """The notebooks to grade (folders expanded) and the problems with the names given."""
    paths, problems = [], []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            if not found:
                problems.append(f"{name}: a folder without any .ipynb notebook")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            problems.append(f"{name}: no such file (give the paths of learners' .ipynb files, or of folders "
                            "holding them)")
    return paths, problems


def run(args: argparse.Namespace) -> int:
    """Grade ``args.notebooks``; print the table (and write ``args.json``). 0 when it graded,
    2 when a notebook given does not exist or the options are wrong."""
    missing = [name for name in ("nbformat", "nbclient", "ipykernel") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: grading runs notebooks with nbformat, nbclient and ipykernel; missing: {', '.join(missing)}. "
              f"Install them: pip install {' '.join(missing)} (all come with 'kdcourse[dev]')", file=sys.stderr)
        return 2
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    paths, problems = _notebook_paths(args.notebooks)
    try:
        KernelSpecManager().get_kernel_spec(args.kernel)
    except NoSuchKernel:
        problems.append(f"--kernel {args.kernel}: no Jupyter kernel of that name (`jupyter kernelspec list` "
                        "shows the installed ones; the default, python3, is usually the Python running the grader)")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        problems.append(f"--json {args.json}: the folder {Path(args.json).resolve().parent} does not exist")
    if args.timeout <= 0:
        problems.append(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print("Nothing was graded.", file=sys.stderr)
        return 2
    grades = grade(paths, timeout=args.timeout, profile=args.profile, kernel=args.kernel,
                   progress=lambda text: print(text, file=sys.stderr, flush=True))
    print(format_table(grades))
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(grades), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0
