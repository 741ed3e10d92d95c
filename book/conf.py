"""Sphinx configuration of the course site (`make book`).

The site is the README as a landing page plus the twelve solution notebooks as stored, with
their outputs: nothing is executed (nb_execution_mode = "off"). It builds and reads offline:
the theme (sphinx-book-theme) ships its CSS, JavaScript and icon fonts, MathJax 3 comes from the
PyPI package sphinx-mathjax-offline and is copied into _static/mathjax, the README's badge
images (the only remote images) become plain links, and widgets are drawn from their saved
state without the widget manager's CDN JavaScript (book/static_widgets.py).

The source folder is the repository root (so the notebooks are read where they are and the
README's links `solutions/NN_*.ipynb` resolve); this folder holds the configuration only:

    sphinx-build -b html -c book . book/_build/html

The landing page is book/index.html; book/_extra/index.html forwards the site's root to it.
"""

from __future__ import annotations

import importlib.util
import json
import posixpath
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from static_widgets import staticize  # noqa: E402

from kdcourse.links import BRANCH, GITHUB_URL  # noqa: E402

project = "Knowledge distillation, hands-on"
author = "the kdcourse authors"
copyright = "the kdcourse authors"

extensions = ["myst_nb", "sphinx.ext.mathjax"]

root_doc = "book/index"
# Read only the landing page and the solutions; never walk into environments or caches.
include_patterns = ["book/index.md", "solutions/*.ipynb"]
exclude_patterns = [".*", "**/.*", "_build", "book/_build", "build", "dist", "*.egg-info",
                    "node_modules", "venv", "lessons", "kdcourse", "tests", "results", "scripts",
                    "shared", "**/.ipynb_checkpoints"]
templates_path: list[str] = []

# --- notebooks: as stored, never executed -------------------------------------------------
nb_execution_mode = "off"
nb_ipywidgets_js: dict = {}  # no widget manager from a CDN: static_widgets draws them instead
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# --- offline MathJax 3 (the PyPI package sphinx-mathjax-offline ships MathJax 3.2.2) --------
_spec = importlib.util.find_spec("sphinx-mathjax-offline")
if _spec is None or not _spec.submodule_search_locations:
    raise RuntimeError("MathJax for the offline site is missing: pip install -e '.[book]'")
MATHJAX_STATIC = Path(list(_spec.submodule_search_locations)[0]) / "static"  # holds mathjax/
mathjax_path = "mathjax/tex-chtml.js"  # relative to _static

# --- HTML ----------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "kdcourse"
html_static_path = ["_static", str(MATHJAX_STATIC)]
html_css_files = ["kdcourse.css"]
html_extra_path = ["_extra"]  # index.html at the site's root -> book/index.html
html_last_updated_fmt = None
html_show_sourcelink = False  # the download button still offers the .ipynb (_sources/)
html_theme_options = {
    "repository_url": GITHUB_URL,
    "repository_branch": BRANCH,
    "path_to_docs": "",
    "use_repository_button": True,
    "use_download_button": True,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    # links only (nothing is loaded from them): open a solution on Colab or Binder
    "launch_buttons": {"colab_url": "https://colab.research.google.com",
                       "binderhub_url": "https://mybinder.org"},
}

# --- links and images ----------------------------------------------------------------------
# The README is read through offline_markdown, and so is every markdown cell of a notebook.
# A badge ([![alt](https://...svg)](target)) or any image from another host would be fetched by
# the reader's browser: keep the link, drop the image.
_REMOTE_BADGE = re.compile(r"\[!\[([^\]]*)\]\((?:https?:)?//[^)\s]+\)\]\(([^)\s]+)\)")
_REMOTE_IMAGE = re.compile(r"!\[([^\]]*)\]\(((?:https?:)?//[^)\s]+)\)")
# A relative link (not an image) to a file of the repository that is not a page of the site
# (lessons/, docs/, kdcourse/, ...) goes to that file on GitHub; solutions/*.ipynb stay: they are
# the lesson pages.
_RELATIVE_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\((?![a-zA-Z][a-zA-Z0-9+.-]*:|#|/)([^)\s]+)\)")


def offline_markdown(text: str, folder: str = "") -> str:
    """`text` (markdown of a file in `folder`, relative to the repository root) for the site."""
    text = _REMOTE_BADGE.sub(r"[\1](\2)", text)
    text = _REMOTE_IMAGE.sub(r"[\1](\2)", text)

    def to_repository(m: re.Match) -> str:
        path, hash_, fragment = m[2].partition("#")
        resolved = posixpath.normpath(posixpath.join(folder, path))
        if resolved.startswith("..") or (resolved.startswith("solutions/")
                                         and resolved.endswith(".ipynb")):
            return m[0]
        return f"[{m[1]}]({GITHUB_URL}/blob/{BRANCH}/{resolved}{hash_}{fragment})"

    return _RELATIVE_LINK.sub(to_repository, text)


def _include_read(app, relative_path, parent_docname, content):
    if Path(relative_path).suffix == ".md":  # the README
        content[0] = offline_markdown(content[0], posixpath.dirname(Path(relative_path).as_posix()))


def _source_read(app, docname, source):
    if not docname.startswith("solutions/"):
        return
    nb = json.loads(source[0])
    staticize(nb)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            text = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            cell["source"] = offline_markdown(text, posixpath.dirname(docname))
    source[0] = json.dumps(nb, ensure_ascii=False)


def setup(app):
    app.connect("include-read", _include_read)
    app.connect("source-read", _source_read)
