"""Write the text twin of every solution notebook: solutions/NN_*.ipynb -> solutions/py/NN_*.py.

The notebooks (with their outputs) stay the source the course edits; the py:percent scripts are
what people diff, review and lint (ruff, in `make test`). Run after editing a solution:

    python scripts/sync_text.py           # (re)write every pair, remove pairs whose notebook is gone
    python scripts/sync_text.py --check   # write nothing; exit 1 if a pair is stale, missing or orphaned

(`make text` runs the first.) tests/test_text_pairs.py fails when the pairs drift.

The text comes from jupytext's Python API, the same for every machine: the header keeps the
kernelspec and the format, not jupytext's version (NOTEBOOK_METADATA_FILTER). The pairing is kept
by this script, not by a jupytext `formats` pairing: the notebooks are also rewritten outside
JupyterLab (re-executed, edited by scripts), which jupytext's contents manager never sees, and that
contents manager refuses to open a paired notebook whose text is older than its .ipynb and differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
from jupytext.config import JupytextConfiguration

from kdcourse.exercises import SOLUTION_GLOB  # the notebooks that become lessons: NN_*.ipynb, 08b_*.ipynb

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
TEXT_DIR = SOLUTIONS / "py"
TEXT_FORMAT = "py:percent"
# jupytext writes its own version into the header: leave it out so every machine writes the same text.
NOTEBOOK_METADATA_FILTER = "-jupytext.text_representation.jupytext_version"
COMMAND = "make text (or: python scripts/sync_text.py)"


def notebooks(solutions: Path = SOLUTIONS) -> list[Path]:
    return sorted(solutions.glob(SOLUTION_GLOB))


def text_path(notebook: Path, text_dir: Path = TEXT_DIR) -> Path:
    return text_dir / (notebook.stem + ".py")


def text_of(notebook: Path) -> str:
    """The py:percent text of `notebook`: its cells' sources and metadata, never its outputs."""
    config = JupytextConfiguration(notebook_metadata_filter=NOTEBOOK_METADATA_FILTER)
    return jupytext.writes(jupytext.read(notebook), fmt=TEXT_FORMAT, config=config)


def problems(solutions: Path = SOLUTIONS, text_dir: Path = TEXT_DIR) -> list[str]:
    """What is out of step between the notebooks and their text twins, one line each ([] if none)."""
    found = []
    expected = set()
    for notebook in notebooks(solutions):
        path = text_path(notebook, text_dir)
        expected.add(path.name)
        if not path.exists():
            found.append(f"{notebook.name}: no text pair {path.relative_to(solutions.parent)}")
        elif path.read_text(encoding="utf-8") != text_of(notebook):
            found.append(f"{path.relative_to(solutions.parent)}: differs from what {notebook.name} gives")
    for path in sorted(text_dir.glob("*.py")) if text_dir.is_dir() else []:
        if path.name not in expected:
            found.append(f"{path.relative_to(solutions.parent)}: no notebook {solutions.name}/{path.stem}.ipynb")
    return found


def sync(solutions: Path = SOLUTIONS, text_dir: Path = TEXT_DIR) -> list[str]:
    """(Re)write every pair and remove orphaned ones; return the paths changed."""
    text_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    expected = set()
    for notebook in notebooks(solutions):
        path = text_path(notebook, text_dir)
        expected.add(path.name)
        text = text_of(notebook)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            changed.append(f"wrote {path.relative_to(solutions.parent)}")
    for path in sorted(text_dir.glob("*.py")):
        if path.name not in expected:
            path.unlink()
            changed.append(f"removed {path.relative_to(solutions.parent)} (no notebook)")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a pair is out of step")
    args = parser.parse_args(argv)
    if args.check:
        found = problems()
        for line in found:
            print(line)
        if found:
            print(f"run: {COMMAND}")
        return 1 if found else 0
    changed = sync()
    for line in changed:
        print(line)
    print(f"{len(notebooks())} notebooks, {len(changed)} text pairs changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
