"""Each solution's run time, measured, into the README's lesson map (not typed).

By default the times come from the stored solutions themselves: nbclient records when each code
cell started and finished (``cell.metadata.execution``), so the time of a lesson is the span
from its first cell's start to its last cell's reply in the run that made the committed outputs
(kernel start excluded). ``--run`` re-executes every solution first, one after the other, in the
quick profile, and stores the new outputs and times (minutes of CPU). Usage, from the
repository's root::

    python scripts/lesson_times.py                 # print the table from the stored runs
    python scripts/lesson_times.py --write-readme  # ... and put it in README.md's "run time" column
    python scripts/lesson_times.py --run --write-readme

``tests/test_lesson_times.py`` fails when the README's column differs from the stored runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (?P<lesson>\d\d[a-z]?) \| \[")


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stored_seconds(path) -> float | None:
    """Seconds from the first code cell's start to the last one's reply in the stored run; None
    when the notebook carries no timing (e.g. it was never executed by nbclient)."""
    nb = nbformat.read(path, as_version=4)
    timing = [c.metadata.get("execution", {}) for c in nb.cells if c.cell_type == "code"]
    starts = [t["iopub.execute_input"] for t in timing if "iopub.execute_input" in t]
    ends = [t["shell.execute_reply"] for t in timing if "shell.execute_reply" in t]
    if not starts or not ends:
        return None
    return (_stamp(max(ends)) - _stamp(min(starts))).total_seconds()


def shown(seconds: float | None) -> str:
    """How the README writes a run time: ``24 s``, ``2.5 min``."""
    if seconds is None:
        return "not measured"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def lesson_times(root=ROOT) -> dict[str, str]:
    """``{"01": "17 s", ...}`` for every solution notebook, from its stored run."""
    return {p.name[:3].rstrip("_"): shown(stored_seconds(p))
            for p in sorted(Path(root, "solutions").glob("[0-9][0-9]*_*.ipynb"))}


def readme_with_times(readme: str, times: dict[str, str]) -> str:
    """The README with the "run time" column of its lesson map set to ``times``."""
    lines = readme.split("\n")
    header = next(i for i, line in enumerate(lines) if line.startswith("| # |") and "run time" in line)
    column = [c.strip() for c in lines[header].strip("|").split("|")].index("run time")
    for i in range(header + 2, len(lines)):
        match = ROW.match(lines[i])
        if not match:
            break
        cells = lines[i].strip().strip("|").split(" | ")
        if match["lesson"] in times:
            cells[column] = times[match["lesson"]]
        lines[i] = "| " + " | ".join(c.strip() for c in cells) + " |"
    return "\n".join(lines)


def readme_times(readme: str) -> dict[str, str]:
    """The README's "run time" column, ``{"01": "17 s", ...}``."""
    lines = readme.split("\n")
    header = next(i for i, line in enumerate(lines) if line.startswith("| # |") and "run time" in line)
    column = [c.strip() for c in lines[header].strip("|").split("|")].index("run time")
    out = {}
    for line in lines[header + 2:]:
        match = ROW.match(line)
        if not match:
            break
        out[match["lesson"]] = line.strip().strip("|").split(" | ")[column].strip()
    return out


def _run_all(root: Path) -> None:
    import os

    from nbclient import NotebookClient

    os.environ.setdefault("KDCOURSE_PROFILE", "quick")
    for path in sorted(Path(root, "solutions").glob("[0-9][0-9]*_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=1800, kernel_name="python3", record_timing=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(nb, path)
        print(f"{path.name}: {shown(stored_seconds(path))}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="re-execute every solution first (minutes)")
    parser.add_argument("--write-readme", action="store_true", help="write the times into README.md")
    args = parser.parse_args(argv)
    if args.run:
        _run_all(ROOT)
    times = lesson_times(ROOT)
    for lesson, time in times.items():
        print(f"{lesson:<4} {time}")
    if args.write_readme:
        readme = ROOT / "README.md"
        readme.write_text(readme_with_times(readme.read_text(encoding="utf-8"), times), encoding="utf-8")
        print("README.md: run time column written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
