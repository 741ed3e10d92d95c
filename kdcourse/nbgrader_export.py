"""Export the lessons as an nbgrader course: ``python -m kdcourse nbgrader-export OUTDIR``.

For every solution notebook ``solutions/NN_name.ipynb`` it writes
``OUTDIR/source/NN_name/NN_name.ipynb``, the teacher's version in nbgrader's format:

- each cell with a solution region (``### BEGIN SOLUTION`` / ``### END SOLUTION``, which
  nbgrader uses too) is an nbgrader *solution* cell; the region's hint is kept as a comment line
  ``# Exercise: <hint>`` above it, since nbgrader replaces the region with its own stub;
- each cell that calls a checker (``check_kd_loss(kd_loss)``) is a locked, *autograded test*
  cell worth ``--points`` per check (1 by default): it scores when the checker raises nothing;
- nbval markers are dropped and outputs cleared, as for the lessons.

It also writes ``OUTDIR/nbgrader_config.py`` when there is none. Then, in ``OUTDIR``::

    nbgrader generate_assignment 02_distillation_loss   # -> release/02_distillation_loss/
    nbgrader autograde 02_distillation_loss             # after collecting submitted/<student>/...

This module does not need nbgrader (``pip install 'kdcourse[nbgrader]'`` for the commands
above): it only writes notebooks whose cells carry nbgrader's metadata (schema version 3).
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

from .grade import find_exercises

__all__ = ["add_arguments", "export", "main", "nbgrader_notebook"]

SCHEMA_VERSION = 3
CONFIG = """# nbgrader configuration written by `python -m kdcourse nbgrader-export` (edit freely).
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "kdcourse"
# Lessons train small networks: allow a cell 10 minutes (nbgrader's default is 30 s). The kernel
# inherits this shell's environment: export KDCOURSE_PROFILE=quick before `nbgrader autograde`.
c.Execute.timeout = 600
"""


def _meta(grade_id: str, *, solution=False, grade=False, points=0.0) -> dict:
    meta = {"grade": grade, "solution": solution, "locked": grade, "task": False,
            "grade_id": grade_id, "schema_version": SCHEMA_VERSION}
    if grade:
        meta["points"] = points
    return meta


def _answer_name(source: str, fallback: str) -> str:
    """What a solution cell defines (``kd_loss``), for its grade_id."""
    match = re.search(r"^(?:def\s+(\w+)|(\w+)\s*=)", source, re.MULTILINE)
    return (match[1] or match[2]) if match else fallback


def _unique(grade_id: str, taken: set[str]) -> str:
    grade_id = re.sub(r"[^A-Za-z0-9_-]", "-", grade_id)
    candidate, n = grade_id, 1
    while candidate in taken:
        n += 1
        candidate = f"{grade_id}-{n}"
    taken.add(candidate)
    return candidate


def _solution_source(source: str) -> tuple[str, bool]:
    """``source`` with each ``### BEGIN SOLUTION <hint>`` line split into a ``# Exercise: <hint>``
    comment and a bare ``### BEGIN SOLUTION``; a ``# SOLUTION CELL`` cell becomes one region.
    Returns the new source and whether the cell holds a solution."""
    from .exercises import BEGIN, END, NBVAL_MARKER, SOLUTION_CELL
    lines = [line for line in source.split("\n") if not NBVAL_MARKER.match(line)]
    whole = SOLUTION_CELL.match(lines[0]) if lines else None
    if whole:
        hint = whole["hint"].strip(" :")
        body = lines[1:]
        return "\n".join(([f"# Exercise: {hint}"] if hint else []) + ["### BEGIN SOLUTION", *body,
                                                                     "### END SOLUTION"]), True
    out, found = [], False
    for line in lines:
        begin = BEGIN.match(line)
        if begin:
            found = True
            hint = begin["hint"].strip(" :")
            if hint:
                out.append(f"{begin['indent']}# Exercise: {hint}")
            out.append(f"{begin['indent']}### BEGIN SOLUTION")
        elif END.match(line):
            out.append(re.sub(r"### END SOLUTION.*", "### END SOLUTION", line))
        else:
            out.append(line)
    return "\n".join(out), found


def nbgrader_notebook(nb, name: str = "notebook", points: float = 1.0):
    """The nbgrader source version of the solution notebook ``nb`` (left unchanged).

    Raises ``ValueError`` naming the cell when one cell holds both a solution and a check:
    nbgrader grades a cell either as an answer or as a test, so the check needs its own cell.
    """
    import nbformat

    from .exercises import ANSWER_KEY_TAG, SOLUTION_TAG

    nb = copy.deepcopy(nb)
    # the end-of-lesson answer keys stay with the teacher: generate_assignment would release them
    nb.cells = [c for c in nb.cells if ANSWER_KEY_TAG not in c.get("metadata", {}).get("tags", [])]
    kernelspec = dict(nb.metadata.get("kernelspec", {}))
    kernelspec.setdefault("name", "python3")
    kernelspec.setdefault("display_name", "Python 3")
    kernelspec.setdefault("language", "python")  # nbgrader picks its stub by this language
    nb.metadata = nbformat.from_dict({"kernelspec": kernelspec, "language_info": {"name": "python"}})
    checks: dict[int, list] = {}
    for exercise in find_exercises(nb):
        checks.setdefault(exercise.cell - 1, []).append(exercise)
    taken: set[str] = set()
    for index, cell in enumerate(nb.cells):
        tags = [t for t in cell.get("metadata", {}).get("tags", []) if t != SOLUTION_TAG and not t.startswith("nbval-")]
        was_tagged = SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])
        cell.metadata = nbformat.from_dict({"tags": tags} if tags else {})
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        source, is_solution = _solution_source(cell.source)
        if was_tagged and not is_solution:
            source, is_solution = "### BEGIN SOLUTION\n" + source + "\n### END SOLUTION", True
        cell.source = source
        if is_solution and index in checks:
            raise ValueError(f"{name}, cell {index + 1}: a solution and a check ({checks[index][0].checker}) in "
                             "one cell; put the check in a cell of its own for nbgrader")
        if is_solution:
            grade_id = _unique(_answer_name(source, f"answer-{index + 1}"), taken)
            cell.metadata["nbgrader"] = _meta(grade_id, solution=True)
        elif index in checks:
            grade_id = _unique("check_" + checks[index][0].exercise, taken)
            cell.metadata["nbgrader"] = _meta(grade_id, grade=True, points=points * len(checks[index]))
    return nb


def export(outdir, solutions_dir="solutions", points: float = 1.0) -> list[Path]:
    """Write ``outdir/source/<lesson>/<lesson>.ipynb`` for every solution notebook (and
    ``outdir/nbgrader_config.py`` if missing); return the notebooks written."""
    import nbformat

    from .exercises import SOLUTION_GLOB
    solutions = sorted(Path(solutions_dir).glob(SOLUTION_GLOB))
    if not solutions:
        raise FileNotFoundError(f"no solution notebooks (NN_name.ipynb) in {solutions_dir}: run this from the "
                                "course's root folder or pass --solutions")
    outdir = Path(outdir)
    written = []
    for solution in solutions:
        lesson = solution.stem
        nb = nbgrader_notebook(nbformat.read(solution, as_version=4), name=str(solution), points=points)
        target = outdir / "source" / lesson / f"{lesson}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    config = outdir / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG, encoding="utf-8")
    return written


def add_arguments(parser) -> None:
    """The options of ``python -m kdcourse nbgrader-export``."""
    parser.add_argument("outdir", metavar="OUTDIR", help="the nbgrader course folder to write (source/ goes in it)")
    parser.add_argument("--solutions", default="solutions", help="the solution notebooks' folder (default solutions)")
    parser.add_argument("--points", type=float, default=1.0, help="points per checker call (default 1)")


def main(args) -> int:
    """Run the export for parsed ``args``; 2 with a message when there is nothing to export."""
    try:
        written = export(args.outdir, args.solutions, args.points)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} lesson(s) in {Path(args.outdir) / 'source'}; next, in {args.outdir}: "
          "nbgrader generate_assignment <lesson>")
    return 0
