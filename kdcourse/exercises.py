"""Generate the exercise notebooks (``lessons/``) from the solution notebooks (``solutions/``).

The solutions are the single source of truth; the lessons are never edited by hand. In every
code cell of a solution notebook:

- each region from a line ``### BEGIN SOLUTION [hint]`` to the next line ``### END SOLUTION``
  (both included) becomes two lines, indented like the BEGIN line::

      # YOUR CODE HERE
      raise NotImplementedError("Exercise: <hint>")

- a region that is one assignment of a string (``diagnosis_a = "mean_reduction"``, an answer to
  write rather than code) becomes ``# YOUR ANSWER HERE: <hint>`` and ``diagnosis_a = ...``: its
  checker reads ``...`` as not answered yet and lets the lesson go on;
- a cell whose first line is ``# SOLUTION CELL [hint]``, or a cell tagged ``solution``, becomes
  just that stub;
- nbval marker comments (``# NBVAL_CHECK_OUTPUT``, ...) and ``nbval-*`` tags are removed: only
  nbval reads them, and nbval runs the solutions, never the lessons.

A cell of any type tagged ``answer-key`` (in ``cell.metadata.tags``) is dropped from the lesson
altogether: the answers to a lesson's end-of-lesson questions live in the solution only, in a
markdown cell right after the questions that starts with ``### Answer key (solutions only)``.
Every other cell is generated as if the answer key were not there.

Outputs and execution counts are cleared and metadata is trimmed to the kernel's, so the same
solution always gives a byte-identical lesson. Usage, from the repository root::

    python -m kdcourse.exercises            # (re)write lessons/NN_*.ipynb
    python -m kdcourse.exercises --check    # exit 1, listing them, when lessons/ is stale
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import nbformat

__all__ = ["make_exercise", "lesson_text", "expected_lessons", "stale_lessons", "main"]

BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION\b(?P<hint>.*)$")
END = re.compile(r"^\s*### END SOLUTION\b")
SOLUTION_CELL = re.compile(r"^\s*# SOLUTION CELL\b(?P<hint>.*)$")
SOLUTION_TAG = "solution"
ANSWER_KEY_TAG = "answer-key"  # a cell for the solutions only: dropped from the lesson
STRING_ANSWER = re.compile(r"""^\s*(?P<name>[A-Za-z_]\w*) = (?:"[^"]*"|'[^']*')\s*$""")  # an answer, not code
NBVAL_MARKER = re.compile(r"^\s*#\s*NBVAL_[A-Z_]+\s*$")
DEFAULT_HINT = "replace this line with your code"
SOLUTION_GLOB = "[0-9][0-9]*_*.ipynb"  # 08_..., 08b_...


def _stub(indent: str, hint: str) -> list[str]:
    """The two lines that replace a solution: a prompt and a ``NotImplementedError``."""
    message = json.dumps(f"Exercise: {hint.strip(' :') or DEFAULT_HINT}", ensure_ascii=False)
    return [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError({message})"]


def _answer_stub(indent: str, hint: str, name: str) -> list[str]:
    """The lines that replace a written answer (``name = "..."``): ``name = ...``, which the checker reads as
    not answered yet, so the lesson goes on (a raise would stop it)."""
    return [f"{indent}# YOUR ANSWER HERE: {hint.strip(' :') or DEFAULT_HINT}",
            f"{indent}{name} = ...  # replace ... with your answer, a string"]


def _strip_source(source: str, where: str) -> str:
    """Replace the solution regions of one code cell's source and drop nbval marker lines.

    A region that is one assignment of a string (``diagnosis_a = "mean_reduction"``) is an answer to
    write, not code: its stub assigns ``...`` instead of raising (:func:`_answer_stub`)."""
    out: list[str] = []
    opened = None  # line number of the BEGIN marker of the region being skipped
    region: list[str] = []
    for number, line in enumerate(source.split("\n"), start=1):
        begin = BEGIN.match(line)
        if begin:
            if opened is not None:
                raise ValueError(
                    f"{where}: '### BEGIN SOLUTION' on line {number} inside the region "
                    f"opened on line {opened} (regions cannot nest)"
                )
            opened, region, start = number, [], begin
        elif END.match(line):
            if opened is None:
                raise ValueError(
                    f"{where}: '### END SOLUTION' on line {number} has no '### BEGIN SOLUTION'"
                )
            answer = STRING_ANSWER.match(region[0]) if len(region) == 1 else None
            out.extend(_answer_stub(start["indent"], start["hint"], answer["name"]) if answer
                       else _stub(start["indent"], start["hint"]))
            opened = None
        elif opened is not None:
            region.append(line)
        elif not NBVAL_MARKER.match(line):
            out.append(line)
    if opened is not None:
        raise ValueError(
            f"{where}: '### BEGIN SOLUTION' on line {opened} is never closed by '### END SOLUTION'"
        )
    return "\n".join(out)


def _trim_notebook_metadata(metadata: dict) -> dict:
    """Keep only what Jupyter needs to pick the kernel: ``kernelspec`` and the language name."""
    trimmed = {}
    if "kernelspec" in metadata:
        trimmed["kernelspec"] = copy.deepcopy(metadata["kernelspec"])
    if "name" in metadata.get("language_info", {}):
        trimmed["language_info"] = {"name": metadata["language_info"]["name"]}
    return trimmed


def make_exercise(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """Return the exercise version of the solution notebook ``nb`` (which is left unchanged).

    ``name`` only appears in error messages. Raises ``ValueError`` naming the notebook and the
    cell when ``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers are unbalanced or nested.
    Cells tagged ``answer-key`` are left out; cell numbers in messages and generated ids count
    the solution's cells.
    """
    nb = copy.deepcopy(nb)
    nb.metadata = nbformat.from_dict(_trim_notebook_metadata(nb.get("metadata", {})))
    needs_ids = (nb.nbformat, nb.nbformat_minor) >= (4, 5)
    kept = []
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if ANSWER_KEY_TAG in tags:
            continue
        kept.append(cell)
        where = f"{name}, cell {index + 1}" + (f" (id {cell.id})" if "id" in cell else "")
        if needs_ids and "id" not in cell:
            cell.id = f"cell-{index + 1}"  # nbformat would otherwise invent a random one
        kept_tags = [t for t in tags if t != SOLUTION_TAG and not t.startswith("nbval-")]
        cell.metadata = nbformat.from_dict({"tags": kept_tags} if kept_tags else {})
        if cell.cell_type != "code":
            continue
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        source = _strip_source(source, where)
        first_line = source.split("\n", 1)[0]
        marked = SOLUTION_CELL.match(first_line)
        if marked or SOLUTION_TAG in tags:
            source = "\n".join(_stub("", marked["hint"] if marked else ""))
        cell.source = source
        cell.outputs = []
        cell.execution_count = None
    nb.cells = kept
    return nb


def lesson_text(nb: nbformat.NotebookNode) -> str:
    """Serialise a notebook the one way lessons are stored (nbformat's sorted JSON, final newline)."""
    text = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def expected_lessons(solutions_dir, lessons_dir=None) -> dict[Path, str]:
    """Map each lesson path to the text generated from ``solutions_dir/NN_*.ipynb``.

    ``lessons_dir`` defaults to the ``lessons`` folder beside ``solutions_dir``. A missing or
    empty solutions folder gives an empty dict.
    """
    solutions_dir = Path(solutions_dir)
    lessons_dir = Path(lessons_dir) if lessons_dir is not None else solutions_dir.parent / "lessons"
    lessons = {}
    for solution in sorted(solutions_dir.glob(SOLUTION_GLOB)):
        nb = nbformat.read(solution, as_version=4)
        lessons[lessons_dir / solution.name] = lesson_text(make_exercise(nb, name=str(solution)))
    return lessons


def _orphans(expected: dict[Path, str], lessons_dir: Path) -> list[Path]:
    """Lesson notebooks that no solution notebook generates."""
    return sorted(p for p in Path(lessons_dir).glob("*.ipynb") if p not in expected)


def stale_lessons(solutions_dir, lessons_dir) -> list[str]:
    """Describe every lesson that is missing, differs from its generated text, or is orphaned."""
    expected = expected_lessons(solutions_dir, lessons_dir)
    problems = []
    for path, text in expected.items():
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from what {Path(solutions_dir) / path.name} generates")
    problems += [f"{p}: no solution notebook generates it" for p in _orphans(expected, lessons_dir)]
    return problems


def main(argv=None) -> int:
    """Command line: write the lessons, or with ``--check`` report the stale ones (exit 1)."""
    parser = argparse.ArgumentParser(
        prog="python -m kdcourse.exercises",
        description="Generate lessons/NN_*.ipynb (exercises) from solutions/NN_*.ipynb.",
    )
    parser.add_argument("--check", action="store_true", help="only report stale lessons")
    parser.add_argument("--solutions", type=Path, default=Path("solutions"))
    parser.add_argument("--lessons", type=Path, default=Path("lessons"))
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale_lessons(args.solutions, args.lessons)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                print("Run `make lessons` (python -m kdcourse.exercises).", file=sys.stderr)
            return 1 if problems else 0
        expected = expected_lessons(args.solutions, args.lessons)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.lessons.mkdir(parents=True, exist_ok=True)
    for path, text in expected.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8", newline="\n")
            print(f"wrote {path}")
    for orphan in _orphans(expected, args.lessons):
        print(f"warning: {orphan} has no solution notebook; delete it", file=sys.stderr)
    print(f"{len(expected)} lesson(s) up to date in {args.lessons}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
