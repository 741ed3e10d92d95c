"""The course site (`make book`) in headless Chromium, offline.

The site is (re)built with `make book`'s sphinx-build command when it is missing or older than
its sources, served from book/_build/html on 127.0.0.1, and every page is opened in one
browser: its title is the page's heading, every image has loaded, MathJax (copied into the site,
never from a CDN) has typeset every formula, no script raised, no file it loads or links to is
missing from the site, and no request tried to leave 127.0.0.1 (each is recorded and aborted;
the test fails if there is one).

Needs the `book` and `browser` extras (`make test-browser` installs both) and Chromium.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lab_server import CHROMIUM_ARGS, REPO, missing

SITE = REPO / "book" / "_build" / "html"
LANDING = "book/index.html"
# The same command as `make book` (Makefile); -W: a warning fails the build.
BUILD = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
         "-c", "book", "-d", "book/_build/doctrees", ".", str(SITE.relative_to(REPO))]
BUILD_TIMEOUT_S = 300
PAGE_TIMEOUT_MS = 30_000

SOLUTIONS = sorted((REPO / "solutions").glob("[0-9][0-9]*_*.ipynb"))


def _sources() -> list[Path]:
    book = [p for p in (REPO / "book").rglob("*") if p.is_file() and "_build" not in p.parts
            and "__pycache__" not in p.parts]
    return [REPO / "README.md", *SOLUTIONS, *book]


def _heading(markdown: str) -> str:
    """The first '# ' heading of a markdown text, as it reads (no backticks, no emphasis)."""
    for line in markdown.splitlines():
        if line.startswith("# "):
            return re.sub(r"[`*_]", "", line[2:]).strip()
    raise AssertionError("no '# ' heading")


def _notebook_heading(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            return _heading("".join(cell["source"]))
    raise AssertionError(f"{path.name}: no markdown cell")


def expected_titles() -> dict[str, str]:
    """Page (relative to the site) -> the start of its <title>."""
    titles = {LANDING: _heading((REPO / "README.md").read_text(encoding="utf-8")),
              "index.html": _heading((REPO / "README.md").read_text(encoding="utf-8")),
              "genindex.html": "Index", "search.html": "Search"}
    for nb in SOLUTIONS:
        titles[f"solutions/{nb.stem}.html"] = _notebook_heading(nb)
    return titles


@pytest.fixture(scope="module")
def site() -> Path:
    """book/_build/html, built now if it is missing or older than a source."""
    try:
        import myst_nb  # noqa: F401 - only whether it is installed
        import sphinx_book_theme  # noqa: F401 - only whether it is installed
    except ImportError:
        missing("the `book` extra is missing: pip install -e '.[book]' (make test-browser does)")
    landing = SITE / LANDING
    newest = max(p.stat().st_mtime for p in _sources())
    if not landing.exists() or landing.stat().st_mtime < newest:
        done = subprocess.run(BUILD, cwd=REPO, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
        assert done.returncode == 0, (f"the site did not build ({' '.join(BUILD[1:])}):\n"
                                      + done.stdout[-3000:] + done.stderr[-6000:])
        landing.touch()  # up to date even when sphinx wrote nothing new
    return SITE


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def browser_page(chromium, server):
    """One page in headless Chromium that can reach only the site's server; what it tried
    beyond that, and what failed, is recorded on the page."""
    from playwright.sync_api import sync_playwright

    allowed = urlsplit(server).netloc
    blocked: list[str] = []
    failed: list[str] = []
    errors: list[str] = []

    def only_this_server(route):
        url = route.request.url
        if url.startswith(("data:", "blob:", "about:")) or urlsplit(url).netloc == allowed:
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    def on_response(response):
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            failed.append(f"{response.status} {response.url}")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900},
                                          service_workers="block")
            context.route("**/*", only_this_server)
            page = context.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.on("response", on_response)
            page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
            page.blocked_requests, page.failed_requests = blocked, failed
            page.script_errors = errors
            yield page
        finally:
            browser.close()


# Every <img> loaded (decode() rejects a broken or missing image); lazy ones are made eager.
IMAGES_JS = """async () => Promise.all([...document.images].map(async img => {
    img.loading = 'eager';
    try { await img.decode(); } catch (e) {}
    return {src: img.currentSrc || img.src, width: img.naturalWidth};
}))"""

# Sphinx writes each formula as span.math / div.math holding \\(...\\) or \\[...\\]; MathJax
# replaces the TeX with an mjx-container. Waits for MathJax's first typeset to finish.
MATH_JS = """async () => {
    const formulas = [...document.querySelectorAll('span.math, div.math')];
    if (formulas.length === 0) return {formulas: 0};
    const start = Date.now();
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
        if (Date.now() - start > 5000) return {formulas: formulas.length, loaded: false};
        await new Promise(r => setTimeout(r, 50));
    }
    await MathJax.startup.promise;
    return {
        formulas: formulas.length, loaded: true,
        version: MathJax.version,
        untypeset: formulas.filter(f => !f.querySelector('mjx-container'))
                           .map(f => f.textContent.slice(0, 80)),
        errors: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent.slice(0, 80)),
    };
}"""


def site_pages(site: Path) -> list[str]:
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if not p.relative_to(site).parts[0].startswith("_"))


def test_every_page_offline(site, server, browser_page):
    page = browser_page
    titles = expected_titles()
    pages = site_pages(site)
    assert set(titles) <= set(pages), f"pages missing from the site: {set(titles) - set(pages)}"
    problems: list[str] = []
    math_pages = 0
    links: dict[str, str] = {}  # every link within the site -> the first page that has it
    for rel in pages:
        page.goto(f"{server}/{rel}", wait_until="load")
        if rel == "index.html":  # the site's root forwards to the landing page
            page.wait_for_url(f"**/{LANDING}")
        title = page.title()
        want = titles.get(rel)
        if want is not None and not title.startswith(want):
            problems.append(f"{rel}: title {title!r}, expected it to start with {want!r}")
        elif want is None and not title.strip():
            problems.append(f"{rel}: no title")
        broken = [img["src"] for img in page.evaluate(IMAGES_JS) if img["width"] == 0]
        if broken:
            problems.append(f"{rel}: images that did not load: {broken}")
        math = page.evaluate(MATH_JS)
        if math["formulas"]:
            math_pages += 1
            if not math["loaded"]:
                problems.append(f"{rel}: {math['formulas']} formulas, but MathJax never started")
            elif math["untypeset"] or math["errors"]:
                problems.append(f"{rel}: formulas not typeset {math['untypeset'][:5]}, "
                                f"MathJax errors {math['errors'][:5]}")
        for href in page.locator("a[href]").evaluate_all("els => els.map(e => e.href)"):
            link = urlsplit(href)
            if link.netloc == urlsplit(server).netloc and link.path not in links:
                links[link.path] = rel
        widget_js = page.locator('script[type^="application/vnd.jupyter.widget"]').count()
        if widget_js:
            problems.append(f"{rel}: {widget_js} widget scripts left (they need a CDN manager)")
    for path, rel in links.items():
        target = site / path.lstrip("/")
        if not (target / "index.html" if target.is_dir() else target).is_file():
            problems.append(f"{rel}: a link to {path}, which the site does not have")
    if page.blocked_requests:
        problems.append("pages tried to reach addresses outside this machine: "
                        f"{sorted(set(page.blocked_requests))}")
    if page.failed_requests:
        problems.append(f"requests that failed: {page.failed_requests}")
    if page.script_errors:
        problems.append(f"script errors: {page.script_errors}")
    assert not problems, "\n".join(problems)
    assert math_pages >= len(SOLUTIONS) - 1, f"only {math_pages} pages with math were checked"


def test_landing_page_reaches_every_lesson(site, server, browser_page):
    """The landing page is the README, its navigation lists the twelve lessons in order, and
    the README's links to solutions/NN_*.ipynb lead to the rendered pages."""
    page = browser_page
    page.goto(f"{server}/{LANDING}", wait_until="load")
    nav = page.locator("nav.bd-links a.reference.internal")
    hrefs = [urlsplit(h).path for h in nav.evaluate_all("els => els.map(e => e.href)")]
    lessons = [f"/solutions/{nb.stem}.html" for nb in SOLUTIONS]
    assert [h for h in hrefs if h.startswith("/solutions/")] == lessons, hrefs
    here = urlsplit(server).netloc
    body_links = [urlsplit(h) for h in
                  page.locator("article a").evaluate_all("els => els.map(e => e.href)")]
    body_paths = {link.path for link in body_links if link.netloc == here}
    assert set(lessons) <= body_paths, f"README links not resolved: {set(lessons) - body_paths}"
    stale = sorted(p for p in body_paths if p.endswith(".ipynb"))
    assert not stale, f"README links that still point at a notebook file of the site: {stale}"
    # The saved widgets are drawn statically: lesson 01's temperature slider and its figure.
    page.goto(f"{server}/solutions/01_softmax_temperature.html", wait_until="load")
    assert page.locator(".kd-widget-slider input[type=range]").count() >= 1
    assert page.locator(".kd-widget-progress progress").count() >= 1
