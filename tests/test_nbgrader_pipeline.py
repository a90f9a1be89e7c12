"""nbgrader's own commands with the course's configuration: generate_assignment -> submitted/ -> autograde ->
gradebook -> generate_feedback -> export.

With the course's ``nbgrader_config.py``, ``nbgrader autograde`` grades with the sandboxed grader
(:mod:`autograde.nbgrader_grading`), so the example submissions of every notebook go through it (about a second
each) and must get exactly their expected scores; notebooks in unusual styles get full marks; and the attacks that beat
nbgrader's own in-kernel grading (a silenced kernel, a forged ``autograde``, writing the gradebook or the course's
configuration) gain nothing and change nothing. The in-kernel configuration (``AUTOGRADE_IN_KERNEL=1``) still runs,
on a sample, and is shown to be fooled by the silenced kernel: what the README says it does not defend.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from autograde import course
from autograde import example_notebooks as ex
from autograde import nbgrader_course as course_cli
from autograde.catalog import catalog
from tests.submissions import (
    A1,
    A2,
    answer_depends_on,
    attached_and_configured,
    black_style_mha,
    blank,
    ipython_syntax,
    solution,
    with_cell_after,
)

pytestmark = pytest.mark.slow
ASSIGNMENTS = course.ids()

SILENCED = 'get_ipython().ast_node_interactivity = "none"'
FORGED_AUTOGRADE = '''import importlib.abc, importlib.util, sys, types


class _Forged(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Reports the real files' location but loads its own code: a hidden cell's checksum of the files passes."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] != "autograde":
            return None
        return importlib.util.spec_from_loader(name, self, origin=REAL, is_package=name == "autograde")

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.grade = lambda assignment, part, namespace: 100.0
        module.__path__ = []


REAL = "{real}"
sys.meta_path.insert(0, _Forged())'''


def write_the_gradebook(gradebook: Path) -> str:
    return f"""def _zero_the_classmates():
    import sqlite3
    try:
        db = sqlite3.connect({str(gradebook)!r})
        db.execute("UPDATE grade SET auto_score = 0")
        db.commit()
        return True
    except Exception:
        return False


ESCAPED = _zero_the_classmates()"""


def write_the_configuration(config: Path, marker: Path) -> str:
    return f"""def _plant():
    try:
        with open({str(config)!r}, "a") as f:
            f.write("\\nopen({str(marker)!r}, 'w').close()\\n")
        return True
    except Exception:
        return False


ESCAPED = _plant()"""


def extra_submissions(assignment: str, root: Path) -> dict[str, tuple[nbformat.NotebookNode, str]]:
    """name -> (notebook, verdict) sent through nbgrader beside the examples: "full" marks or "zeros"."""
    if assignment == A2:
        return {"black_formatted_mha": (black_style_mha(), "full")}
    if assignment != A1:
        return {}
    real = course.PACKAGE_DIR / "__init__.py"
    return {
        "ipython_syntax": (ipython_syntax(), "full"),
        "methods_attached_after_the_class": (attached_and_configured(), "full"),
        "silenced_blank_release": (with_cell_after("attention", SILENCED, blank(A1)), "zeros"),
        "forged_autograde_package": (
            with_cell_after("attention", FORGED_AUTOGRADE.format(real=real), blank(A1), before=True),
            "zeros",
        ),
        "writes_the_gradebook": (
            solution(answer_depends_on(write_the_gradebook(root / "course/gradebook.db"))),
            "full",
        ),
        "writes_the_configuration": (
            solution(answer_depends_on(write_the_configuration(root / "nbgrader_config.py", root / "PLANTED"))),
            "full",
        ),
    }


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def outside_nbgraders_writes(root: Path) -> dict[str, str]:
    """Everything of a course folder that ``nbgrader autograde`` must leave alone: all but its own outputs."""
    own = ("course/autograded", "course/gradebook.db", "course/grading", "course/feedback", "grades.csv")
    return {k: v for k, v in fingerprint(root).items() if not k.startswith(own)}


def through_nbgrader(assignment: str) -> list[ex.Example]:
    """The examples sent through nbgrader: the solution, the blank release and the first two named mistakes.
    Every example goes through the same grading run on the command line (tests/test_isolated_grader.py); here
    nbgrader must store what that run gives, part by part, full, partial and zero."""
    examples = ex.examples(assignment)
    mistakes = [e for e in examples if e.name not in ("solution", "blank")]
    return [e for e in examples if e.name in ("solution", "blank")] + mistakes[:2]


@pytest.fixture(scope="module")
def graded_courses(tmp_path_factory) -> dict[str, tuple[Path, dict, dict]]:
    """Assignment -> (course root, extras, what nbgrader must leave alone): one course per assignment, in which its
    examples and extras have been autograded, then exported to ``grades.csv``. The releases are generated once and
    the course copied; the five `nbgrader autograde` runs go two at a time (each grades one notebook at a time)."""
    template = course_cli.make_course(tmp_path_factory.mktemp("template") / "course-root")
    course_cli.generate_release(template, ASSIGNMENTS)
    prepared = {}
    for assignment in ASSIGNMENTS:
        root = tmp_path_factory.mktemp(assignment) / "course-root"
        shutil.copytree(template, root)
        for example in through_nbgrader(assignment):
            course_cli.submit(root, assignment, example.name, ex.example_path(assignment, example.name))
        extras = extra_submissions(assignment, root)
        folder = tmp_path_factory.mktemp(f"{assignment}-extra")
        for name, (nb, _) in extras.items():
            nbformat.write(nb, folder / f"{name}.ipynb")
            course_cli.submit(root, assignment, name, folder / f"{name}.ipynb")
        prepared[assignment] = (root, extras, outside_nbgraders_writes(root))
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda a: course_cli.autograde(prepared[a][0], a), ASSIGNMENTS))
    for root, _, _ in prepared.values():
        course_cli.export_grades(root)  # nbgrader reads the course's configuration again: nothing planted in it runs
    return prepared


@pytest.fixture(params=ASSIGNMENTS)
def graded_course(request, graded_courses):
    """(assignment, course root, extras, what nbgrader must leave alone) of one assignment's graded course."""
    root, extras, before = graded_courses[request.param]
    return request.param, root, extras, before


def students(assignment: str, extras: dict) -> list[str]:
    return [e.name for e in through_nbgrader(assignment)] + list(extras)


def test_every_example_and_extra_gets_its_expected_score(graded_course):
    assignment, root, extras, _ = graded_course
    scores = {(s.student, s.cell): s.auto_score for s in course_cli.cell_scores(root, assignment)}
    wanted = {e.name: ex.expected_points(assignment, e) for e in through_nbgrader(assignment)}
    full = catalog(assignment).parts
    for name, (_, verdict) in extras.items():
        wanted[name] = dict(full) if verdict == "full" else {part: 0.0 for part in full}
    wrong = [
        f"{name} / {part}: expected {want}, nbgrader gave {scores.get((name, f'{part}_tests'))}"
        for name, points in wanted.items()
        for part, want in points.items()
        if scores.get((name, f"{part}_tests")) != want
    ]
    assert not wrong, "\n".join(wrong)


def test_a_hostile_run_changes_nothing_but_nbgraders_own_outputs(graded_course):
    assignment, root, _, before = graded_course
    assert outside_nbgraders_writes(root) == before
    assert (root / "grades.csv").is_file()  # nbgrader ran again, with the course's configuration, to export
    assert not (root / "PLANTED").exists()


def test_feedback_shows_reports_but_no_hidden_test_source(graded_course):
    assignment, root, extras, _ = graded_course
    feedback = course_cli.generate_feedback(root, assignment)
    pages = sorted(feedback.rglob("*.html"))
    assert len(pages) == len(students(assignment, extras))
    for page in pages:
        html = page.read_text()
        assert "Autograder:" in html and "Score:" in html, f"{page} lacks the test report"
        submitted = root / "course" / "submitted" / page.parent.parent.name / assignment
        own_code = " ".join(nb.read_text() for nb in submitted.glob("*.ipynb"))
        for secret in ("BEGIN HIDDEN TESTS", "grader.py", "from autograde import", str(root)):
            if secret in own_code:
                continue  # the student wrote it (an attack aims at the course folder by its path): their own code
            assert secret not in html, f"{page} leaks {secret!r}"


def test_export_writes_one_row_per_student(graded_course):
    assignment, root, extras, _ = graded_course
    with (root / "grades.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["assignment"] == assignment]
    assert sorted(r["student_id"] for r in rows) == sorted(students(assignment, extras))


def test_each_graded_submission_is_also_written_for_the_class_report(graded_course):
    assignment, root, extras, _ = graded_course
    folders = {p.parent.name for p in (root / "course" / "grading").rglob("results.json")}
    assert folders == set(students(assignment, extras))
    assert (root / "course" / "grading" / "summary.json").is_file()


def nbgrader_unchecked(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"} | (env or {})
    environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environ.get("PATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=root, env=environ, capture_output=True, text=True, timeout=900
    )


def test_a_notebook_nbgrader_cannot_read_does_not_stop_the_others(tmp_path):
    root = course_cli.make_course(tmp_path / "course-root")
    course_cli.generate_release(root, [A2])
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    corrupt = nbformat.read(ex.example_path(A2, "solution"), as_version=4)
    for cell in corrupt.cells:
        if cell.metadata.get("nbgrader"):
            cell.metadata["nbgrader"]["schema_version"] = 99  # nbgrader itself stops a whole run on this
    nbformat.write(corrupt, tmp_path / "corrupt.ipynb")
    for name, path in (("a_broken", broken), ("b_corrupt", tmp_path / "corrupt.ipynb")):
        course_cli.submit(root, A2, name, path)
    course_cli.submit(root, A2, "c_solution", ex.example_path(A2, "solution"))
    proc = nbgrader_unchecked(root, "autograde", A2, "--force")
    assert proc.returncode != 0 and "a_broken" in proc.stderr  # nbgrader reports the file it could not read
    scores = {(s.student, s.cell): s.auto_score for s in course_cli.cell_scores(root, A2)}
    for student in ("b_corrupt", "c_solution"):  # a claimed schema version no longer stops nbgrader's run
        assert all(scores[(student, f"{p}_tests")] == v for p, v in catalog(A2).parts.items()), student


def test_the_in_kernel_mode_runs_and_is_fooled_by_a_silenced_kernel(tmp_path):
    """AUTOGRADE_IN_KERNEL=1: nbgrader's Execute runs each notebook whole in a kernel with the instructor's
    permissions. A mistake scores as in the sandbox (tests/test_notebooks.py runs solutions this way); the blank
    release with one silencing line takes every point: why the sandbox is the default."""
    root = course_cli.make_course(tmp_path / "course-root")
    course_cli.generate_release(root, [A2])
    silenced = with_cell_after("sdpa", SILENCED, blank(A2), before=True)
    nbformat.write(silenced, tmp_path / "silenced.ipynb")
    mistake = ex.examples(A2)[2]
    course_cli.submit(root, A2, mistake.name, ex.example_path(A2, mistake.name))
    course_cli.submit(root, A2, "silenced", tmp_path / "silenced.ipynb")
    proc = nbgrader_unchecked(root, "autograde", A2, "--force", env={"AUTOGRADE_IN_KERNEL": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = {(s.student, s.cell): s.auto_score for s in course_cli.cell_scores(root, A2)}
    parts = catalog(A2).parts
    assert {p: scores[(mistake.name, f"{p}_tests")] for p in parts} == ex.expected_points(A2, mistake)
    assert {p: scores[("silenced", f"{p}_tests")] for p in parts} == dict(parts)


def test_the_gradebook_attack_would_work_with_the_instructors_permissions(tmp_path):
    """The attack of ``writes_the_gradebook`` is real: run with the instructor's permissions (as the in-kernel mode
    runs a notebook), it zeroes a classmate. In the sandbox it fails (see the extras above)."""
    gradebook = tmp_path / "gradebook.db"
    db = sqlite3.connect(gradebook)
    db.execute("CREATE TABLE grade (auto_score REAL)")
    db.execute("INSERT INTO grade VALUES (10)")
    db.commit()
    namespace: dict = {}
    exec(write_the_gradebook(gradebook), namespace)
    assert namespace["ESCAPED"] and db.execute("SELECT auto_score FROM grade").fetchone() == (0.0,)
