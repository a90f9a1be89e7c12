"""Students in JupyterLab, in a real browser: every release notebook filled in and run, and the Validate button.

One JupyterLab server for the module serves a copy of the release, started as the README tells students
(``jupyter lab assignments/`` from the folder holding ``nbgrader_config.py``, which the Validate button reads),
in fast mode, with CIFAR-10 from ``$COURSE_TEST_DATA``. For each notebook of the course registry the test
opens it, pastes the solution into every answer cell through the cell's editor (select all, paste), saves,
runs Run → Run All Cells and waits for the kernel to go idle, then checks what the page shows: no error
output, every check cell's success line, tqdm progress widgets that reach 100% (not a text bar or a broken
widget), rendered matplotlib figures; and, from the saved notebook, that no cell ran longer than nbgrader's
cell timeout. Screenshots and timings go to the test's folder and to outputs/browser/.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid

import pytest

from autograde import course, nbgrader_cells
from autograde import example_notebooks as ex
from tests.browser.lab import NotebookPage, cell_seconds, jupyter_lab, keep, nbgrader_cell_timeout

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ASSIGNMENTS = course.ids()
# The notebooks run whole in JupyterLab: what only a browser shows (the editor's paste, progress widgets, figures,
# check lines) on notebook 2 (no training) and notebook 5 (with trainings). Every notebook runs whole on a simulated
# Colab runtime (tests/test_colab.py); notebooks 2, 3 and 5 also in a kernel (tests/test_notebooks.py).
RUN_IN_THE_BROWSER = ("02_multi_head_attention", "05_local_attention")
# The Validate button's notebook: the solution and the blank release validate in seconds (no training).
VALIDATE_ASSIGNMENT = "02_multi_head_attention"
RUN_ALL_TIMEOUT_S = 900  # a guard against a hung kernel, far above any fast-mode notebook
SUCCESS_LINE = "All checks passed."
# The course_utils calls that draw a tqdm progress bar: train's "train" bar (train_with_recipe calls train),
# the "runs" bar of compare_recipes and compare_over_seeds.
PROGRESS_CALL = re.compile(r"(?<![\w.])(train|train_with_recipe|compare_recipes|compare_over_seeds)\(")
# What the page shows instead of a progress widget when the widget cannot render: the widget manager's
# error box, tqdm's fallback warning (no ipywidgets in the kernel), the raw model of an unrendered widget.
BROKEN_WIDGET = ("Error displaying widget", "IProgress not found", "HBox(children=", "model not found")
TEXT_BAR = re.compile(r"\d+/\d+ \[\d+:\d+<")  # tqdm's text bar: " 4/4 [00:01<00:00, ...]"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """The student's folder: the course's nbgrader_config.py and a copy of the release in assignments/."""
    home = tmp_path_factory.mktemp("student")
    shutil.copy(course.REPO / "nbgrader_config.py", home / "nbgrader_config.py")
    for assignment in ASSIGNMENTS:
        shutil.copytree(
            course.get(assignment).release_notebook.parent,
            home / "assignments" / assignment,
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.pt", "data"),
        )
    # handed-in notebooks to validate: the solution example and the untouched release
    for name, source in {
        "solution": ex.example_path(VALIDATE_ASSIGNMENT, "solution"),
        "blank": course.get(VALIDATE_ASSIGNMENT).release_notebook,
    }.items():
        target = home / "assignments" / "validate" / name / f"{VALIDATE_ASSIGNMENT}.ipynb"
        target.parent.mkdir(parents=True)
        shutil.copy(source, target)
    return home


@pytest.fixture(scope="module")
def lab(home, cifar_subset_root, tmp_path_factory):
    env = {"COURSE_FAST": "1", "COURSE_DATA": str(cifar_subset_root)}
    with jupyter_lab(home / "assignments", cwd=home, state=tmp_path_factory.mktemp("jupyter"), env=env) as server:
        yield server


@pytest.fixture(scope="module")
def cell_timeout(home) -> int:
    return nbgrader_cell_timeout(home)


@pytest.fixture(autouse=True)
def close_kernels(lab):
    """After each test, shut down its kernel (also when it failed mid-run), as closing the notebook would."""
    yield
    lab.shutdown_kernels()


def answer_cells(assignment: str, release) -> list[tuple[int, str, str]]:
    """(index, cell type, the solution's text) of every answer cell of the release notebook."""
    answers = ex.answer_sources(assignment)
    found = [
        (i, c.cell_type, answers[nbgrader_cells.grade_id(c)])
        for i, c in enumerate(release.cells)
        if nbgrader_cells.is_answer(c)
    ]
    assert found, f"{assignment}: the release has no answer cells"
    return found


def summary(saved, views, seconds: float) -> dict:
    durations = [(s, i) for i, c in enumerate(saved.cells) if (s := cell_seconds(c)) is not None]
    assert durations, "JupyterLab recorded no execution timing (recordTiming) in the saved notebook"
    slowest, slowest_index = max(durations)
    return {
        "run_all_seconds": round(seconds, 1),
        "slowest_cell_seconds": round(slowest, 1),
        "slowest_cell": f"{slowest_index} {nbgrader_cells.grade_id(saved.cells[slowest_index])}".strip(),
        "progress_widgets": sum(len(v.progress) for v in views),
        "images": sum(len(v.images) for v in views),
    }


@pytest.mark.parametrize("assignment", RUN_IN_THE_BROWSER)
def test_a_student_fills_in_and_runs_the_notebook(assignment, lab, page, cell_timeout, tmp_path):
    path = f"{assignment}/{assignment}.ipynb"
    notebook = NotebookPage(page, lab, path).open(workspace=uuid.uuid4().hex)
    release = notebook.saved()
    answers = answer_cells(assignment, release)
    pasted = notebook.paste_answers(answers)
    for index, _, text in answers:
        assert pasted.cells[index].source == text, f"cell {index}: the editor holds something else than was pasted"

    seconds = notebook.run_all(RUN_ALL_TIMEOUT_S)
    views = notebook.read()
    notebook.save()
    saved = notebook.saved()
    shot = tmp_path / f"{assignment}.png"
    notebook.show_first(".widget-hprogress", ".jp-OutputArea-output img")  # a progress widget, else a figure
    page.screenshot(path=shot)
    keep(shot)
    report = summary(saved, views, seconds) | {"screenshot": str(shot)}
    (tmp_path / "timing.json").write_text(json.dumps(report, indent=2))
    keep(tmp_path / "timing.json", f"{assignment}.json")
    print(assignment, report)

    # every code cell ran, and none raised
    errors = [
        f"cell {i} ({nbgrader_cells.grade_id(c) or 'no id'}): {o.ename}: {o.evalue}"
        for i, c in enumerate(saved.cells)
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors, "error outputs in the browser:\n" + "\n".join(errors)
    not_run = [i for i, c in enumerate(saved.cells) if c.cell_type == "code" and c.execution_count is None]
    assert not not_run, f"cells never ran: {not_run}"
    stderr = [
        f"cell {i} ({nbgrader_cells.grade_id(c) or 'no id'}): {o.text[:300]!r}"
        for i, c in enumerate(saved.cells)
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stderr"
    ]
    assert not stderr, "output on stderr (shown in red to the student):\n" + "\n".join(stderr)

    # the check cells print their success lines on the page
    checks = [
        i for i, c in enumerate(release.cells) if c.cell_type == "code" and f'print("{SUCCESS_LINE}")' in c.source
    ]
    assert checks, f"{assignment}: no check cell prints {SUCCESS_LINE!r}"
    silent = [i for i in checks if SUCCESS_LINE not in views[i].text]
    assert not silent, (
        f"check cells without {SUCCESS_LINE!r} on the page: {[(i, views[i].text[-300:]) for i in silent]}"
    )

    # progress bars are widgets that reach 100%
    page_text = "\n".join(v.text for v in views)
    broken = [marker for marker in BROKEN_WIDGET if marker in page_text]
    assert not broken, f"a progress widget did not render: {broken}"
    text_bars = [v.index for v in views if TEXT_BAR.search(v.text) and not v.progress]
    assert not text_bars, f"text progress bars instead of widgets in cells {text_bars}"
    training = [i for i, c in enumerate(release.cells) if c.cell_type == "code" and PROGRESS_CALL.search(c.source)]
    without = [i for i in training if not views[i].progress]
    assert not without, f"training cells without a progress widget: {without}"
    unfinished = [
        (v.index, bar)
        for v in views
        for bar in v.progress
        if bar["width"] != "100%" or "100%" not in bar["text"] or "danger" in bar["classes"]
    ]
    assert not unfinished, f"progress widgets short of 100%: {unfinished}"

    # figures render as images
    images = [img for v in views for img in v.images]
    assert images, "no matplotlib figure on the page"
    blank = [img for img in images if not (img["complete"] and img["width"] > 0 and img["height"] > 0)]
    assert not blank, f"figures that did not render: {blank}"

    # no cell ran longer than nbgrader lets it run when it executes the notebook
    too_slow = [
        (i, round(s, 1)) for i, c in enumerate(saved.cells) if (s := cell_seconds(c)) is not None and s >= cell_timeout
    ]
    assert not too_slow, f"cells that ran past nbgrader's {cell_timeout} s cell timeout: {too_slow}"


@pytest.mark.parametrize("handed_in, verdict", [("solution", "validation-success"), ("blank", "validation-failed")])
def test_the_validate_button_runs_the_visible_checks(handed_in, verdict, lab, page, cell_timeout, tmp_path):
    path = f"validate/{handed_in}/{VALIDATE_ASSIGNMENT}.ipynb"
    notebook = NotebookPage(page, lab, path).open(workspace=uuid.uuid4().hex)
    button = notebook.panel.locator(".jp-Toolbar .validate-button")
    start = time.monotonic()
    button.click()
    message = page.locator(".jp-Dialog #validation-message")
    message.wait_for(timeout=cell_timeout * 1000)
    seconds = time.monotonic() - start
    classes = message.get_attribute("class") or ""
    text = message.text_content() or ""
    if "NotImplementedError" in text:  # show the first stub's traceback in the dialog, not only the cell's code
        message.locator(":text('NotImplementedError')").first.scroll_into_view_if_needed()
    shot = tmp_path / f"validate_{handed_in}.png"
    page.screenshot(path=shot)
    keep(shot)
    print(f"validate {handed_in}: {seconds:.1f} s, {classes}")
    assert verdict in classes.split(), f"Validate on the {handed_in} notebook: {classes}\n{text[:2000]}"
    if handed_in == "blank":
        assert "NotImplementedError" in text, f"the failure does not name the unimplemented stubs:\n{text[:2000]}"
    assert seconds < cell_timeout, f"Validate took {seconds:.0f} s, past nbgrader's {cell_timeout} s"
