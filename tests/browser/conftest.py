"""Fixtures for the browser tests: a throw-away JupyterLab server and a headless Chromium.

Everything stays on this machine: JupyterLab listens on 127.0.0.1 only, behind a random token,
and the browser aborts every request that is not for the server. Both are stopped in `finally`
blocks, so they go away when a test fails or times out too.

Needs Debian's `chromium` (or KDCOURSE_CHROMIUM) and the `browser` extra; see lab_server.py.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lab_server import CHROMIUM_ARGS, LabServer, chromium_path, missing


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary; checked (with playwright) before a server is started for nothing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("the Python package `playwright` is missing: pip install -e '.[browser]'")
    return chromium_path()


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory) -> Path:
    """An empty folder the server serves; tests copy the notebooks they open into it, so the
    committed notebooks are never modified by a browser session."""
    return tmp_path_factory.mktemp("lab-root")


@pytest.fixture(scope="module")
def lab(chromium, lab_root, tmp_path_factory):
    server = LabServer(lab_root, tmp_path_factory.mktemp("lab-state"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(chromium, lab, tmp_path):
    """A page in a fresh headless Chromium profile that can reach only the lab server."""
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    allowed_host = urlsplit(lab.base).hostname

    def only_loopback(route):
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname == allowed_host:
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            context.route("**/*", only_loopback)
            pg = context.pages[0] if context.pages else context.new_page()
            pg.blocked_requests = blocked
            yield pg
        finally:
            context.close()
            lab.shutdown_kernels()
    assert not blocked, f"the page tried to reach addresses outside this machine: {blocked}"
