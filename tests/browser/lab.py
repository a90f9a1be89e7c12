"""JupyterLab and nbgrader's formgrader in headless Chromium, driven by Playwright (the browser tests).

Playwright's own browser download is not reachable where the course is tested, so the tests drive the
Chromium of the system's packages (Debian's ``chromium``), passed to Playwright as its executable.
``find_chromium`` finds it: ``$COURSE_CHROMIUM`` first, then ``chromium`` / ``chromium-browser`` on the PATH.

A :class:`Lab` is a JupyterLab server started by the test on a free local port, with a token the test sets
and its own Jupyter configuration, data, runtime, settings and workspace folders (nothing of the user's
``~/.jupyter`` is read or written). :class:`NotebookPage` does to a notebook what a student does: open it,
paste answers into its cells through the editor, save, run all cells, and read what the page shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat

from autograde.course import REPO

CHROMIUM_ENV = "COURSE_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Where screenshots and timings are copied for a person to look at (outputs/ is not committed).
OUTPUTS = REPO / "outputs" / "browser"

# Inherited settings that would change what the notebooks do in the browser: the tests set fast mode and the
# data themselves, and a student's kernel has none of nbgrader's, pytest's or the other tests' variables.
# (MPLBACKEND=Agg, set by some tools, would stop matplotlib from drawing inline figures.)
SCRUBBED_ENV = (
    "NBGRADER_EXECUTION",
    "NBGRADER_VALIDATING",
    "MPLBACKEND",
    "PYTHONWARNINGS",
    "COURSE_FAST",
    "COURSE_DATA",
    "COURSE_DATASET",
    "JUPYTER_CONFIG_DIR",
    "JUPYTER_DATA_DIR",
    "JUPYTER_RUNTIME_DIR",
    "JUPYTERLAB_SETTINGS_DIR",
    "JUPYTERLAB_WORKSPACES_DIR",
    "IPYTHONDIR",
)

# JupyterLab settings of the test's user: no news or update checks (no network, no toast over the page),
# execution timing recorded in each cell's metadata (read back from the saved notebook), and every cell laid out
# (no windowing: with the default "contentVisibility" off-screen cells have estimated heights, so scrolling to an
# output for a screenshot lands beside it).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension:tracker": {"recordTiming": True, "windowingMode": "none"},
}


def find_chromium() -> tuple[str | None, str]:
    """The Chromium executable for Playwright, and why there is none when there is none."""
    override = os.environ.get(CHROMIUM_ENV, "").strip()
    if override:
        path = shutil.which(override)
        if path:
            return path, ""
        return None, f"{CHROMIUM_ENV}={override!r} is not an executable Chromium"
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path, ""
    return None, (
        "no Chromium found for the browser tests (looked for $COURSE_CHROMIUM, then `chromium` and "
        "`chromium-browser` on the PATH): install Debian's package (`apt-get install chromium`, which .ci/run "
        "does when it runs as root) or set COURSE_CHROMIUM to a Chromium executable"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_lab_settings(settings_dir: Path, settings: dict[str, dict]) -> None:
    """Write JupyterLab user settings ``{"@scope/pkg:plugin": {...}}`` as ``@scope/pkg/plugin.jupyterlab-settings``."""
    for plugin_id, values in settings.items():
        package, plugin = plugin_id.split(":")
        path = settings_dir / package / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


@dataclass
class Lab:
    """A running JupyterLab server."""

    base_url: str  # http://127.0.0.1:PORT/
    token: str
    root_dir: Path
    log: Path
    process: subprocess.Popen

    def url(self, path: str = "", workspace: str | None = None) -> str:
        """The JupyterLab page opening ``path`` (relative to the server's root); a fresh workspace when named,
        so that nothing another test opened is restored with it."""
        page = "lab" if workspace is None else f"lab/workspaces/{urllib.parse.quote(workspace)}"
        if path:
            page += "/tree/" + urllib.parse.quote(path)
        return f"{self.base_url}{page}?token={self.token}"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def shutdown_kernels(self) -> None:
        """Shut down every session's kernel (a student closing the notebook with its kernel)."""
        for session in self.api("GET", "api/sessions"):
            with contextlib.suppress(urllib.error.HTTPError):
                self.api("DELETE", f"api/sessions/{session['id']}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def jupyter_lab(root_dir: Path, *, cwd: Path, state: Path, env: dict[str, str], timeout: float = 120) -> Iterator[Lab]:
    """Run ``jupyter lab`` serving ``root_dir`` from ``cwd`` with ``env`` added, its Jupyter folders in ``state``."""
    state.mkdir(parents=True, exist_ok=True)
    folders = {
        "JUPYTER_CONFIG_DIR": state / "config",
        "JUPYTER_DATA_DIR": state / "data",
        "JUPYTER_RUNTIME_DIR": state / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": state / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": state / "lab-workspaces",
        "IPYTHONDIR": state / "ipython",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    write_lab_settings(folders["JUPYTERLAB_SETTINGS_DIR"], LAB_SETTINGS)
    full_env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    full_env.update({k: str(v) for k, v in folders.items()})
    # the kernel and nbgrader (which runs `alembic`) find this interpreter's environment even when not activated
    full_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), full_env.get("PATH", "")])
    full_env.update(env)
    port, token = free_port(), secrets.token_hex(16)
    log = state / "jupyterlab.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.allow_root=True",  # CI runs as root
    ]
    with log.open("w") as log_file:
        process = subprocess.Popen(command, cwd=cwd, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    lab = Lab(f"http://127.0.0.1:{port}/", token, root_dir, log, process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{lab.log_tail()}")
            try:
                lab.api("GET", "api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"jupyter lab did not answer within {timeout:.0f} s:\n{lab.log_tail()}"
                    ) from None
                time.sleep(0.25)
        yield lab
    finally:
        if process.poll() is None:
            with contextlib.suppress(Exception):
                lab.shutdown_kernels()
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# A paste, as the browser delivers one: a ClipboardEvent holding the text, dispatched on the editor
# (CodeMirror inserts the event's text/plain data in place of the selection, as for Ctrl+V).
_PASTE = """(editor, text) => {
    const data = new DataTransfer();
    data.setData('text/plain', text);
    editor.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
}"""

# What the page shows for each cell of the open notebook.
_READ_CELLS = """(notebook) => [...notebook.querySelectorAll('.jp-Cell')].map((cell) => {
    const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')];
    const progress = [...cell.querySelectorAll('.widget-hprogress, .widget-vprogress')].map((bar) => {
        const fill = bar.querySelector('.progress-bar');
        const box = bar.closest('.widget-hbox') || bar;
        return {width: fill ? fill.style.width : null, classes: fill ? fill.className : '', text: box.textContent};
    });
    const images = [...cell.querySelectorAll('.jp-OutputArea-output img')].map((img) => ({
        width: img.naturalWidth, height: img.naturalHeight, complete: img.complete,
        mime: img.closest('[data-mime-type]')?.getAttribute('data-mime-type') ?? null,
    }));
    return {
        prompt: cell.querySelector('.jp-InputPrompt')?.textContent.trim() ?? '',
        mimes: outputs.map((o) => o.getAttribute('data-mime-type')),
        text: outputs.map((o) => o.textContent).join('\\n'),
        progress, images,
    };
})"""

# Run All has finished: the kernel is idle, no cell is queued or running ([*]) and some cell ran ([n]).
_RUN_FINISHED = """(panel) => {
    const status = panel.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status');
    const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map((p) => p.textContent);
    return status === 'idle' && !prompts.some((p) => p.includes('*')) && prompts.some((p) => /\\d/.test(p));
}"""


def click_menu(page, menu: str, item: str) -> None:
    """Click a menu of JupyterLab's menu bar, then one of its items (by their labels)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(menu)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")).click()


@dataclass
class CellView:
    """One cell as the page shows it."""

    index: int
    prompt: str
    mimes: list[str]
    text: str
    progress: list[dict]
    images: list[dict]


class NotebookPage:
    """A notebook open in JupyterLab, used as a student uses it."""

    def __init__(self, page, lab: Lab, path: str):
        self.page, self.lab, self.path = page, lab, path
        self.file = lab.root_dir / path
        self.panel = page.locator("#jp-main-dock-panel .jp-NotebookPanel")
        self.cells = self.panel.locator(".jp-Notebook .jp-Cell")

    def open(self, workspace: str, timeout_s: float = 120) -> NotebookPage:
        self.page.goto(self.lab.url(self.path, workspace=workspace))
        self.panel.wait_for(timeout=timeout_s * 1000)
        self.wait_for_kernel("idle", timeout_s)
        count = len(nbformat.read(self.file, as_version=4).cells)
        self.page.wait_for_function(
            "([cells, n]) => document.querySelectorAll(cells).length === n",
            arg=["#jp-main-dock-panel .jp-NotebookPanel .jp-Notebook .jp-Cell", count],
            timeout=timeout_s * 1000,
        )
        return self

    def wait_for_kernel(self, status: str, timeout_s: float) -> None:
        self.panel.locator(f'.jp-Notebook-ExecutionIndicator[data-status="{status}"]').wait_for(
            timeout=timeout_s * 1000
        )

    def paste(self, index: int, text: str, *, markdown: bool) -> None:
        """Replace cell ``index``'s text by ``text`` through its editor: select all, paste."""
        cell = self.cells.nth(index)
        cell.scroll_into_view_if_needed()
        rendered = cell.locator(".jp-MarkdownOutput")
        if markdown and rendered.is_visible():  # a rendered markdown cell opens its editor on a double click
            rendered.dblclick()
        editor = cell.locator(".cm-content")
        editor.click()
        # the editor has the focus before Ctrl+A (else the notebook takes the shortcut: "select all cells")
        cell.locator(".cm-editor.cm-focused").wait_for()
        self.page.keyboard.press("Control+a")
        editor.evaluate(_PASTE, text)

    def paste_answers(self, answers: list[tuple[int, str, str]], tries: int = 3) -> nbformat.NotebookNode:
        """Paste each ``(index, cell type, text)`` as :meth:`paste` does, save, and paste again the cells whose
        saved text differs (a keystroke lost to a busy page); the saved notebook."""
        pending = answers
        for _ in range(tries):
            for index, cell_type, text in pending:
                self.paste(index, text, markdown=cell_type == "markdown")
            self.save()
            saved = self.saved()
            pending = [(i, kind, text) for i, kind, text in pending if saved.cells[i].source != text]
            if not pending:
                break
        return saved

    def save(self, timeout_s: float = 60) -> None:
        """Ctrl+S, then wait until the file is rewritten and the document is no longer marked dirty."""
        written = self.file.stat().st_mtime_ns
        self.page.keyboard.press("Escape")  # command mode: the shortcut then belongs to the notebook
        self.page.keyboard.press("Control+s")
        deadline = time.monotonic() + timeout_s
        while self.file.stat().st_mtime_ns == written:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.path} was not saved within {timeout_s:.0f} s of Ctrl+S")
            time.sleep(0.2)
        self.page.locator("#jp-main-dock-panel .lm-TabBar-tab.jp-mod-current:not(.jp-mod-dirty)").wait_for(
            timeout=timeout_s * 1000
        )

    def run_all(self, timeout_s: float) -> float:
        """Run → Run All Cells; wait for the kernel to finish; the seconds it took."""
        start = time.monotonic()
        click_menu(self.page, "Run", "Run All Cells")
        self.page.wait_for_function(
            _RUN_FINISHED, arg=self.panel.element_handle(), timeout=timeout_s * 1000, polling=500
        )
        return time.monotonic() - start

    def show_first(self, *selectors: str) -> None:
        """Scroll the first element matching one of ``selectors`` (tried in order) to the middle of the page."""
        for selector in selectors:
            found = self.panel.locator(f".jp-Notebook {selector}")
            if found.count():
                found.first.evaluate("(el) => el.scrollIntoView({block: 'center'})")
                self.page.wait_for_timeout(500)  # let the windowed notebook lay out what scrolled in
                return

    def read(self) -> list[CellView]:
        views = self.panel.locator(".jp-Notebook").evaluate(_READ_CELLS)
        return [CellView(i, **v) for i, v in enumerate(views)]

    def saved(self) -> nbformat.NotebookNode:
        return nbformat.read(self.file, as_version=4)


def cell_seconds(cell: nbformat.NotebookNode) -> float | None:
    """How long a code cell ran, from the timing JupyterLab records in its metadata (recordTiming)."""
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def nbgrader_cell_timeout(course_dir: Path) -> int:
    """The seconds nbgrader lets a cell run (``Execute.timeout``) under the ``nbgrader_config.py`` of
    ``course_dir``: what the Validate button and ``nbgrader autograde`` started from there allow."""
    from nbgrader.preprocessors import Execute
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config()
    return int(Execute(config=config).timeout)


def keep(path: Path, name: str | None = None) -> Path:
    """Copy a screenshot (or report) to outputs/browser/ for a person to look at; the copy's path."""
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    target = OUTPUTS / (name or path.name)
    shutil.copy(path, target)
    return target
