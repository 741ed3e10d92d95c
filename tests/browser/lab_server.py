"""A throw-away JupyterLab server for the browser tests, and how to find Chromium.

The server listens on 127.0.0.1 only, behind a random token, with its own config, runtime,
settings and workspace folders, and is stopped with every process below it (kernels included).

Requirements (see the README, "Browser test"): Debian's `chromium` (or set KDCOURSE_CHROMIUM to
another Chromium binary) and the `browser` extra (`pip install -e '.[browser]'`, which
`make test-browser` does). When either is missing the tests are skipped, unless
KDCOURSE_REQUIRE_BROWSER=1 (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

SERVER_START_TIMEOUT_S = 120  # JupyterLab answering /api/status (slow on a busy 2-core machine)
SERVER_LIFETIME_S = 900  # hard cap on the server's life, whatever happens to pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-crash-reporter",
]

# User settings for the throw-away server: never ask about (or fetch) Jupyter news, and keep
# every cell attached to the page so the test sees all outputs without scrolling.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def missing(reason: str):
    """Skip, or fail when the environment promises a browser (KDCOURSE_REQUIRE_BROWSER=1)."""
    if os.environ.get("KDCOURSE_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (KDCOURSE_REQUIRE_BROWSER=1 requires the browser test to run)")
    pytest.skip(reason)


def chromium_path() -> str:
    """The Chromium binary: $KDCOURSE_CHROMIUM, else `chromium` on PATH, else /usr/bin/chromium."""
    candidates = [os.environ.get("KDCOURSE_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    missing("Chromium not found: install it (Debian: `apt-get install -y chromium`) "
             "or set KDCOURSE_CHROMIUM to a Chromium binary")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (bind to port 0, read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when the test process dies, even by
    SIGKILL. `timeout` passes it on to JupyterLab, which shuts its kernels down."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the `timeout` cap still bounds the server's life


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, read from /proc (Linux)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def descendants(pid: int) -> list[int]:
    """Every process below `pid`. Kernels run in their own session, so killing the server's
    process group alone would leave them behind: we collect them by parentage instead."""
    found, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_process_tree(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group (it shuts its kernels down), wait, then SIGKILL
    whatever is left of the group and of the processes that were below it."""
    if proc.poll() is not None:
        return
    tree = descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and (proc.poll() is None or any(map(_alive, tree))):
        time.sleep(0.2)
    for pid in tree:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


class LabServer:
    """A JupyterLab server on 127.0.0.1:<free port> serving `root` with a random token."""

    def __init__(self, root: Path, state: Path):
        self.root = root
        self.state = state
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = state / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def start(self) -> None:
        settings = self.state / "lab-settings"
        for name, value in LAB_SETTINGS.items():
            target = settings / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(value))
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)  # CI sets Agg; the kernel must use the inline backend
        env.pop("JUPYTER_PATH", None)  # only this environment's kernel and lab extensions
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            JUPYTER_CONFIG_DIR=str(self.state / "config"),
            JUPYTER_DATA_DIR=str(self.state / "data"),  # no user-level kernels or extensions
            JUPYTER_RUNTIME_DIR=str(self.state / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(self.state / "workspaces"),
            IPYTHONDIR=str(self.state / "ipython"),
            KDCOURSE_PROFILE=env.get("KDCOURSE_PROFILE", "quick"),
        )
        lab = Path(sys.executable).with_name("jupyter-lab")
        if not lab.exists():
            missing(f"{lab} not found: install the lab extra (`pip install -e '.[lab]'`)")
        cmd = [
            "timeout", "--kill-after=10", str(SERVER_LIFETIME_S),
            str(lab),
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.allow_remote_access=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
        if os.geteuid() == 0:  # CI and containers run as root
            cmd.append("--allow-root")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}:\n"
                                   + self.log_tail())
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer on {self.base} within "
                           f"{SERVER_START_TIMEOUT_S} s:\n" + self.log_tail())

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def shutdown_kernels(self) -> None:
        """Shut down every kernel the server runs (between tests: frees memory and CPU)."""
        try:
            with urllib.request.urlopen(self.url("api/sessions"), timeout=10) as response:
                sessions = json.load(response)
            for session in sessions:
                request = urllib.request.Request(self.url(f"api/sessions/{session['id']}"),
                                                 method="DELETE")
                urllib.request.urlopen(request, timeout=30).close()
        except (OSError, ValueError):
            pass  # stop() kills whatever is left

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_tree(self.proc)
        if getattr(self, "log", None):
            self.log.close()
