"""The optional hints of the release, in a real browser: JupyterLab shows each one collapsed, and a click opens it.

A hint is a markdown cell holding a ``<details>`` block (its ``<summary>`` is the line a student sees). JupyterLab
sanitises the HTML of markdown cells; this test proves that the block survives, that the hint's text is hidden
until the student opens it, and that the markdown inside it (lists, tables, code) is rendered, not shown raw.
"""

from __future__ import annotations

import shutil
import uuid

import nbformat
import pytest

from autograde import course
from tests.browser.lab import NotebookPage, jupyter_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def hint_cells(assignment: str) -> list[int]:
    """The indices of the release's hint cells (markdown cells that are a <details> block)."""
    release = nbformat.read(course.get(assignment).release_notebook, as_version=4)
    return [i for i, c in enumerate(release.cells) if c.cell_type == "markdown" and c.source.startswith("<details>")]


HINTS = [(a, i) for a in course.ids() for i in hint_cells(a)]


def test_every_notebook_with_a_stub_to_work_out_has_a_hint():
    assert {a for a, _ in HINTS} == set(course.ids()), HINTS


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("hints")
    for assignment in course.ids():
        shutil.copytree(
            course.get(assignment).release_notebook.parent,
            home / assignment,
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.pt", "data"),
        )
    with jupyter_lab(home, cwd=home, state=tmp_path_factory.mktemp("jupyter"), env={"COURSE_FAST": "1"}) as server:
        yield server
        server.shutdown_kernels()


@pytest.mark.parametrize("assignment", sorted({a for a, _ in HINTS}))
def test_hints_render_collapsed_and_open_on_a_click(assignment, lab, page):
    notebook = NotebookPage(page, lab, f"{assignment}/{assignment}.ipynb").open(workspace=uuid.uuid4().hex)
    for index in [i for a, i in HINTS if a == assignment]:
        cell = notebook.cells.nth(index)
        cell.scroll_into_view_if_needed()
        details = cell.locator(".jp-MarkdownOutput details")
        details.wait_for(state="attached")
        summary = details.locator("summary")
        assert summary.inner_text().startswith("Hint"), summary.inner_text()
        body = details.locator(":scope > :not(summary)").first
        assert details.evaluate("(el) => el.open") is False, f"cell {index}: the hint is open before a click"
        assert not body.is_visible(), f"cell {index}: the hint's text shows before a click"
        summary.click()
        assert details.evaluate("(el) => el.open") is True, f"cell {index}: a click did not open the hint"
        assert body.is_visible(), f"cell {index}: the hint's text is hidden after a click"
        raw = details.inner_text()
        assert "<summary>" not in raw and "| step |" not in raw and "`" not in raw, (
            f"cell {index}: the hint's markdown is shown raw:\n{raw[:300]}"
        )
