"""TAs in nbgrader's formgrader, inside JupyterLab, in a real browser.

A scratch course (this course's nbgrader_config.py: solutions/ as source, assignments/ as release, state in
course/) with two submissions autograded, one correct and one with a mistake. JupyterLab runs in the course
folder, as the README tells instructors; the TA opens Nbgrader → Formgrader, goes from Manage Students to the
grading view of one submission and enters a score and a comment for Inline Question 2. The score and the
comment must reach the gradebook, ``nbgrader export`` must show the new total and ``nbgrader
generate_feedback`` the comment.
"""

from __future__ import annotations

import csv
import re
import uuid

import pytest

from autograde import course, nbgrader_cells
from autograde import example_notebooks as ex
from autograde import nbgrader_course as course_cli
from tests.browser.lab import click_menu, jupyter_lab, keep

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Autogrades in seconds (no training) and has an Inline Question 2 graded by hand.
ASSIGNMENT = "02_multi_head_attention"
SCORE = 1.5
COMMENT = "Right idea, but say what the mask does to the weights after the softmax. Browser test 7f3a."


def inline_question_cell(assignment: str, number: int) -> tuple[str, float]:
    """The grade_id and points of the answer cell graded by hand for "Inline Question ``number``"."""
    cells = nbgrader_cells.read(course.get(assignment).source_notebook).cells
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown" and re.search(rf"Inline Question {number}\b", cell.source):
            answer = next(c for c in cells[i + 1 :] if nbgrader_cells.meta(c).get("grade"))
            meta = nbgrader_cells.meta(answer)
            assert answer.cell_type == "markdown" and meta.get("solution"), f"{assignment}: no written answer cell"
            return meta["grade_id"], float(meta["points"])
    raise AssertionError(f"{assignment} has no Inline Question {number}")


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory):
    """A course in which two submissions of ASSIGNMENT have been autograded; the student whose submission
    has a mistake, and the other one."""
    root = course_cli.make_course(tmp_path_factory.mktemp("course"))
    course_cli.generate_release(root, [ASSIGNMENT])
    mistake = next(e.name for e in ex.examples(ASSIGNMENT) if e.name != "solution" and not e.blank)
    for student in ("solution", mistake):
        course_cli.submit(root, ASSIGNMENT, student, ex.example_path(ASSIGNMENT, student))
    course_cli.autograde(root, ASSIGNMENT)
    return root, mistake, "solution"


@pytest.fixture(scope="module")
def lab(graded_course, tmp_path_factory):
    root = graded_course[0]
    with jupyter_lab(root, cwd=root, state=tmp_path_factory.mktemp("jupyter"), env={}) as server:
        yield server


def exported_totals(root) -> dict[str, float]:
    with course_cli.export_grades(root).open() as f:
        return {r["student_id"]: float(r["score"]) for r in csv.DictReader(f) if r["assignment"] == ASSIGNMENT}


def test_a_ta_grades_inline_question_2_in_the_formgrader(graded_course, lab, page, tmp_path):
    root, student, other = graded_course
    cell, points = inline_question_cell(ASSIGNMENT, 2)
    assert 0 < SCORE < points
    before = exported_totals(root)
    assert set(before) == {student, other}

    page.goto(lab.url(workspace=uuid.uuid4().hex))
    page.locator("#jp-main-dock-panel").wait_for()
    click_menu(page, "Nbgrader", "Formgrader")
    frame = page.frame_locator("#formgrader iframe")
    frame.get_by_role("link", name="Manage Students", exact=True).click()
    # the student's row links to the student's page (the link's text is the student's name, "None, None" here)
    frame.locator(f'a[href$="/manage_students/{student}"]').click()
    frame.get_by_role("link", name=ASSIGNMENT, exact=True).click()  # the student's assignment
    frame.get_by_role("link", name=ASSIGNMENT, exact=True).click()  # its notebook: the grading view

    score = frame.locator(f"input.score#{cell}")
    score.wait_for()
    with page.expect_response(lambda r: "/api/grade/" in r.url and r.request.method == "PUT") as saved_score:
        score.fill(str(SCORE))
        score.press("Tab")
    assert saved_score.value.ok, f"saving the score failed: {saved_score.value.status}"
    comment = frame.locator(f"textarea#{cell}-comment")
    with page.expect_response(lambda r: "/api/comment/" in r.url and r.request.method == "PUT") as saved_comment:
        comment.fill(COMMENT)
        comment.press("Tab")
    assert saved_comment.value.ok, f"saving the comment failed: {saved_comment.value.status}"
    comment.scroll_into_view_if_needed()
    shot = tmp_path / "formgrader_grading_view.png"
    page.screenshot(path=shot)
    keep(shot)

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'course' / 'gradebook.db'}", course_id=course.COURSE_ID) as gradebook:
        grade = gradebook.find_grade(cell, ASSIGNMENT, ASSIGNMENT, student)
        assert grade.manual_score == SCORE
        assert gradebook.find_comment(cell, ASSIGNMENT, ASSIGNMENT, student).manual_comment == COMMENT
        assert gradebook.find_grade(cell, ASSIGNMENT, ASSIGNMENT, other).manual_score is None

    after = exported_totals(root)
    assert after[student] == pytest.approx(before[student] + SCORE), (before, after)
    assert after[other] == before[other]

    feedback = course_cli.generate_feedback(root, ASSIGNMENT) / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
    assert COMMENT in feedback.read_text(), f"{feedback} lacks the TA's comment"
