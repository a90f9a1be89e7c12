"""The example submissions go through the real nbgrader pipeline and get exactly their expected scores.

generate_assignment -> submitted/<student>/<assignment>/ -> autograde -> gradebook -> generate_feedback -> export.

nbgrader runs every submitted notebook whole (about 10 to 60 s each on a CI core), so by default each
assignment sends a sample through it: the solution, the blank release and the first two mistakes.
``make test-all`` (``COURSE_PIPELINE_EXAMPLES=all``) sends every example; the isolated grader's tests check
every example's expected score on every run. Notebooks 1 and 2 also send valid notebooks in unusual styles
(full marks) and two that plant a fake ``autograde`` (the hidden cells refuse it: no points).
"""

from __future__ import annotations

import csv
import os

import nbformat
import pytest

from autograde import course
from autograde import examples as ex
from autograde import nbgrader_course as course_cli
from autograde.catalog import catalog
from tests.submissions import A1, A2, attached_and_configured, black_style_mha, blank, ipython_syntax, with_cell_after

ASSIGNMENTS = course.ids()
SAMPLE = 4
FAKE_MODULE = """import sys, types
fake = types.ModuleType("autograde")
fake.grade = lambda assignment, part, namespace: 100.0
sys.modules["autograde"] = fake"""
FAKE_FILE = "%%writefile autograde.py\ndef grade(assignment, part, namespace):\n    return 100.0\n"
# name -> (notebook maker, verdict), sent through nbgrader beside the examples: "full" marks, "zeros", or
# "refused" (zeros, and the hidden cells say that the grader found is not the released one)
EXTRA = {
    A1: {
        "ipython_syntax": (ipython_syntax, "full"),
        "methods_attached_after_the_class": (attached_and_configured, "full"),
        "fake_autograde_module": (lambda: with_cell_after("attention", FAKE_MODULE, blank(A1)), "zeros"),
        "fake_autograde_file": (lambda: with_cell_after("attention", FAKE_FILE, blank(A1), before=True), "refused"),
    },
    A2: {"black_formatted_mha": (black_style_mha, "full")},
}


def pipeline_examples(assignment: str) -> list[ex.Example]:
    """The examples this run sends through nbgrader (see the module docstring)."""
    every = ex.examples(assignment)
    return every if os.environ.get("COURSE_PIPELINE_EXAMPLES") == "all" else every[:SAMPLE]


def test_the_sample_holds_the_solution_the_blank_release_and_mistakes():
    for assignment in ASSIGNMENTS:
        sample = ex.examples(assignment)[:SAMPLE]
        assert [e.name for e in sample[:2]] == ["solution", "blank"] and not any(e.blank for e in sample[2:])


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def graded_course(request, tmp_path_factory):
    """A course in which every example submission of one assignment has been autograded."""
    assignment = request.param
    course = course_cli.make_course(tmp_path_factory.mktemp(assignment))
    course_cli.generate_release(course, [assignment])
    for example in pipeline_examples(assignment):
        course_cli.submit(course, assignment, example.name, ex.example_path(assignment, example.name))
    extras = tmp_path_factory.mktemp(f"{assignment}-extra")
    for name, (make, _) in EXTRA.get(assignment, {}).items():
        nbformat.write(make(), extras / f"{name}.ipynb")
        course_cli.submit(course, assignment, name, extras / f"{name}.ipynb")
    course_cli.autograde(course, assignment)
    return assignment, course


def students(assignment: str) -> list[str]:
    return [e.name for e in pipeline_examples(assignment)] + list(EXTRA.get(assignment, {}))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_example_notebooks_are_in_sync(assignment, tmp_path):
    for path in ex.write_examples(assignment, tmp_path / assignment):
        committed = ex.example_path(assignment, path.stem)
        assert committed.is_file(), f"{committed} is missing: run `python -m autograde.examples`"
        assert nbformat.read(committed, as_version=4) == nbformat.read(path, as_version=4), (
            f"{committed} is stale: run `python -m autograde.examples`"
        )


@pytest.mark.slow
def test_autograde_gives_every_example_its_expected_score(graded_course):
    assignment, course = graded_course
    scores = {(s.student, s.cell): s.auto_score for s in course_cli.cell_scores(course, assignment)}
    wanted = {e.name: ex.expected_points(assignment, e) for e in pipeline_examples(assignment)}
    full = catalog(assignment).parts
    for name, (_, verdict) in EXTRA.get(assignment, {}).items():
        wanted[name] = dict(full) if verdict == "full" else {part: 0.0 for part in full}
    wrong = []
    for name, points in wanted.items():
        for part, want in points.items():
            got = scores.get((name, f"{part}_tests"))
            if got != want:
                wrong.append(f"{name} / {part}: expected {want}, nbgrader gave {got}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_feedback_shows_reports_but_no_hidden_test_source(graded_course):
    assignment, course = graded_course
    feedback = course_cli.generate_feedback(course, assignment)
    pages = sorted(feedback.rglob("*.html"))
    assert len(pages) == len(students(assignment))
    refused = {name for name, (_, verdict) in EXTRA.get(assignment, {}).items() if verdict == "refused"}
    for page in pages:
        html = page.read_text()
        if page.parent.parent.name in refused:  # the hidden cell refused the planted autograde
            assert "is not the one this notebook was released with" in html, page
            continue
        assert "Autograder:" in html, f"{page} lacks the test report"
        for secret in ("BEGIN HIDDEN TESTS", "from autograde import", "grade(&quot;", 'grade("'):
            assert secret not in html, f"{page} leaks hidden test source ({secret!r})"


@pytest.mark.slow
def test_export_writes_one_row_per_student(graded_course):
    assignment, course = graded_course
    with course_cli.export_grades(course).open() as f:
        rows = [r for r in csv.DictReader(f) if r["assignment"] == assignment]
    assert sorted(r["student_id"] for r in rows) == sorted(students(assignment))
