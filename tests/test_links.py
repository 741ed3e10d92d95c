"""One address for the repository (kdcourse/links.py): the set-up cells, badges, install command
and pyproject all name it, and `python -m kdcourse.links --write` moves them together."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from kdcourse import links

REPO = Path(__file__).resolve().parents[1]


def test_everything_in_the_repository_points_at_one_address():
    assert links.stale_mentions(REPO) == []
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert links.binder_url() in readme
    for path in sorted((REPO / "lessons").glob("[0-9][0-9]*_*.ipynb")):
        assert links.colab_url(f"lessons/{path.name}") in readme, f"the README has no Colab badge for {path.name}"
    assert f'Repository = "{links.GITHUB_URL}"' in (REPO / "pyproject.toml").read_text(encoding="utf-8")


def test_mentions_finds_every_form():
    text = (f'pip install "{links.PIP_REQUIREMENT}" and {links.colab_url("lessons/01.ipynb")} and '
            f'{links.binder_url()} and https://github.com/HobbitLong/RepDistiller/blob/master/x.py')
    assert links.mentions(text) == [links.REPOSITORY] * 3 + ["HobbitLong/RepDistiller"]


def test_write_moves_every_mention_and_leaves_other_projects(tmp_path, monkeypatch):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "lessons").mkdir()
    shutil.copy(REPO / "solutions" / "02_distillation_loss.ipynb", tmp_path / "solutions")
    other = "https://github.com/HobbitLong/RepDistiller"
    (tmp_path / "README.md").write_text(
        (REPO / "README.md").read_text(encoding="utf-8").replace(links.REPOSITORY, "someone/old-name") + other,
        encoding="utf-8")
    nb_path = tmp_path / "solutions" / "02_distillation_loss.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    first.source = first.source.replace(links.REPOSITORY, "someone/old-name")
    nbformat.write(nb, nb_path)
    assert links.stale_mentions(tmp_path)  # the old name is found ...
    assert links.main(["--root", str(tmp_path)]) == 1

    assert sorted(links.write(tmp_path)) == ["README.md", "solutions/02_distillation_loss.ipynb"]
    assert links.stale_mentions(tmp_path) == []  # ... and gone after --write
    assert other in (tmp_path / "README.md").read_text(encoding="utf-8")  # other projects' links stay
    first = next(c for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "code")
    assert first.source == links.colab_setup_cell()
