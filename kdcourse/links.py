"""Where the course lives online: the repository's address, written once.

Everything that points at the repository is made from :data:`REPOSITORY`: the Colab set-up
cell that opens every lesson, the Colab and Binder badges of the README, the README's install
command and ``[project.urls]`` in ``pyproject.toml``. The set-up cell runs before the package
is installed, so it cannot import this module: the notebooks and the README hold copies, and
``tests/test_links.py`` fails when one of them differs. To move the course to another
repository, change :data:`REPOSITORY` here and in ``pyproject.toml``, then run::

    python -m kdcourse.links --write     # rewrites the solutions' set-up cells and the README
    python -m kdcourse.exercises         # regenerates lessons/ from the solutions
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

__all__ = ["REPOSITORY", "BRANCH", "GITHUB_URL", "PIP_REQUIREMENT", "colab_setup_cell", "colab_url",
           "binder_url", "mentions", "stale_mentions", "main"]

REPOSITORY = "kdcourse/kdcourse"  # owner/name on GitHub
BRANCH = "main"
GITHUB_URL = f"https://github.com/{REPOSITORY}"
PIP_REQUIREMENT = f"kdcourse @ git+{GITHUB_URL}"

# Every form in which the course names a repository: the owner/name each one holds is group "repo".
_FORMS = [
    re.compile(r"git\+https://github\.com/(?P<repo>[\w.-]+/[\w.-]+?)(?=[\"'`)\s]|\.git|$)"),
    re.compile(r"colab\.research\.google\.com/github/(?P<repo>[\w.-]+/[\w.-]+)/blob/"),
    re.compile(r"mybinder\.org/v2/gh/(?P<repo>[\w.-]+/[\w.-]+)/"),
    re.compile(r"(?<!git\+)https://github\.com/(?P<repo>[\w.-]+/[\w.-]+?)(?=[\"'`)\s/#]|\.git|$)"),
]


def colab_setup_cell() -> str:
    """The first code cell of every lesson: on Google Colab it installs the course package from
    the repository; anywhere else (a clone, Binder, CI) it does nothing."""
    return (
        "# Set-up: on Google Colab, install the course package first (does nothing elsewhere).\n"
        "import sys\n"
        'if "google.colab" in sys.modules:\n'
        "    import subprocess\n"
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q",\n'
        f'                    "{PIP_REQUIREMENT}"], check=True)'
    )


def colab_url(notebook: str) -> str:
    """The "Open in Colab" address of a notebook given by its path in the repository."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/{notebook}"


def binder_url(folder: str = "lessons") -> str:
    """Binder's address of the repository, opening JupyterLab on ``folder``."""
    return f"https://mybinder.org/v2/gh/{REPOSITORY}/{BRANCH}?urlpath=lab/tree/{folder}"


def mentions(text: str) -> list[str]:
    """Every repository (owner/name) that ``text`` points at, in order, in any of the course's forms."""
    found = []
    for form in _FORMS:
        found += [(m.start(), m.group("repo")) for m in form.finditer(text)]
    return [repo for _, repo in sorted(found)]


def _texts(root: Path) -> dict[str, str]:
    """The files that may name the repository: README, pyproject, and every notebook's cells."""
    texts = {}
    for name in ("README.md", "pyproject.toml"):
        if (root / name).exists():
            texts[name] = (root / name).read_text(encoding="utf-8")
    for folder in ("solutions", "lessons"):
        for path in sorted((root / folder).glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            texts[f"{folder}/{path.name}"] = "\n".join(cell.source for cell in nb.cells)
    return texts


def stale_mentions(root) -> list[str]:
    """``"file: owner/name"`` for every mention of a repository other than :data:`REPOSITORY`
    (links to other projects, e.g. the reference implementations, are allowed in prose: only the
    course's own forms -- pip from git, Colab, Binder -- and ``pyproject.toml`` must name ours)."""
    stale = []
    for name, text in _texts(Path(root)).items():
        own_forms = _FORMS if name == "pyproject.toml" else _FORMS[:3]
        for form in own_forms:
            stale += [f"{name}: {m.group('repo')}" for m in form.finditer(text) if m.group("repo") != REPOSITORY]
    return stale


def _rewrite(text: str) -> str:
    for form in _FORMS[:3]:
        text = form.sub(lambda m: m.group(0).replace(m.group("repo"), REPOSITORY), text)
    return text


def write(root) -> list[str]:
    """Point the solutions' set-up cells and the README's badges and install command at
    :data:`REPOSITORY`; return the files changed."""
    root, changed = Path(root), []
    readme = root / "README.md"
    if readme.exists():
        old = readme.read_text(encoding="utf-8")
        if _rewrite(old) != old:
            readme.write_text(_rewrite(old), encoding="utf-8")
            changed.append("README.md")
    for path in sorted((root / "solutions").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = next((cell for cell in nb.cells if cell.cell_type == "code"), None)
        if first is not None and first.source.startswith("# Set-up: on Google Colab") \
                and first.source != colab_setup_cell():
            first.source = colab_setup_cell()
            nbformat.write(nb, path)
            changed.append(f"solutions/{path.name}")
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdcourse.links", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true",
                        help="rewrite the solutions' set-up cells and the README to point at REPOSITORY")
    parser.add_argument("--root", default=".", help="the repository's root (default: the current folder)")
    args = parser.parse_args(argv)
    if args.write:
        changed = write(args.root)
        print("\n".join(changed) if changed else "nothing to change")
        if changed:
            print("now run: python -m kdcourse.exercises   (the lessons copy the solutions' set-up cells)")
        return 0
    stale = stale_mentions(args.root)
    print(f"repository: {REPOSITORY}")
    print("\n".join(f"points elsewhere: {s}" for s in stale) if stale else "every link points at it")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
