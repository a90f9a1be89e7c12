"""Grades for the LMS: the exports read back the way Canvas and Moodle read a gradebook CSV, with the points graded
by hand in nbgrader's formgrader merged in.

The readers below follow each LMS's documented import, as its code implements it:
- Canvas, ``GradebookImporter`` (canvas-lms, app/models/gradebook_importer.rb): the header's first cells contain
  ``Student`` and ``ID``; the student columns are ``Student, ID, [SIS User ID,] [SIS Login ID,] Section`` (an
  ``SIS Login ID`` at the third place, or ``SIS User ID`` then ``SIS Login ID``) and the last of them contains
  ``Section``; every later column is an assignment (``Title (id)`` for an existing one, else a title); a row whose
  first cell contains ``Points Possible`` gives the assignments' points; a student row is matched by ``ID``, else
  by an SIS id, else by name; an empty or ``-`` cell is no score.
- Moodle, ``gradeimport_csv_load_data`` (moodle, grade/import/csv/classes/load_data.php): a header row; one column
  is mapped to a user field (``userid``, ``useridnumber``, ``useremail`` or ``username``) and must identify every
  row; a grade cell is empty or ``-`` (no grade) or a number (``unformat_float``), else the import fails.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import warnings
from pathlib import Path

import pytest

from autograde import course
from autograde.report import lms
from autograde.report.gradebook import read_gradebook
from autograde.report.run import load_run

A1, A2 = "01_self_attention_cnn", "02_multi_head_attention"


# ------------------------------------------------------------------------------------- the LMSs' readers
def canvas_import(path: Path) -> tuple[dict[str, float], dict[str, dict[str, str]]]:
    """(assignment -> points possible, student identifier -> assignment -> score cell), as Canvas reads the file;
    fails where Canvas would reject it."""
    rows = list(csv.reader(path.open(encoding="utf-8")))
    header = rows[0]
    assert len(header) > 3 and "Student" in header[0] and "ID" in header[1], "Canvas: invalid header row"
    columns = 3
    if re.search(r"SIS\s+Login\s+ID", header[2]):
        columns += 1
    elif re.search(r"SIS\s+User\s+ID", header[2]) and re.search(r"SIS\s+Login\s+ID", header[3]):
        columns += 2
    assert "Section" in header[columns - 1], "Canvas: invalid header row (no Section after the student columns)"
    assignments = header[columns:]
    non_assignment = ("Current Score", "Current Points", "Final Score", "Final Points", "Final Grade", "Override")
    assert not any(x in a for a in assignments for x in non_assignment)
    possible, students = {}, {}
    for row in rows[1:]:
        assert len(row) == len(header)
        if "Points Possible" in row[0]:
            possible = {a: float(p) for a, p in zip(assignments, row[columns:], strict=True)}
            continue
        identifier = row[1] or (row[2] if columns == 5 else "") or row[columns - 2] or row[0]
        assert identifier, "Canvas: a student row without ID, SIS id or name"
        grades = dict(zip(assignments, row[columns:], strict=True))
        for cell in grades.values():
            assert cell in ("", "-") or re.fullmatch(r"-?[0-9.,]+%?", cell), f"Canvas: {cell!r} is not a score"
        students[identifier] = grades
    return possible, students


def moodle_import(path: Path, map_from: str) -> dict[str, dict[str, float | None]]:
    """user identifier -> grade item -> grade, as Moodle's CSV import reads the file with ``map_from`` as the
    user column and every other column but the profile fields mapped to a grade item."""
    rows = list(csv.reader(path.open(encoding="utf-8")))
    header = [h.strip() for h in rows[0]]
    assert map_from in header, "Moodle: the mapped user column is missing"
    profile = {"First name", "Last name", "Email address", map_from}
    out: dict[str, dict[str, float | None]] = {}
    for row in rows[1:]:
        if len(row) <= 1:
            continue
        values = dict(zip(header, (v.strip() for v in row), strict=True))
        user = values[map_from]
        assert user, "Moodle: usermappingerrorusernotfound (a row without a user identifier)"
        grades = {}
        for item, value in values.items():
            if item in profile:
                continue
            grades[item] = None if value in ("", "-") else float(value)  # badgrade otherwise
        out[user] = grades
    return out


# ------------------------------------------------------------------------------------------- the course
def _grading(root: Path) -> Path:
    from autograde.outputs import write_run
    from autograde.worker.results import Kind, SubmissionResult, TestOutcome, TestSpec

    def result(student: str, assignment: str, scores: dict[str, tuple[float, float]]) -> SubmissionResult:
        outcomes = [
            TestOutcome(
                TestSpec(f"g.py::{p}", p, p, most),
                got,
                "" if got == most else "wrong",
                None if got == most else Kind.WRONG_RESULT,
            )
            for p, (got, most) in scores.items()
        ]
        return SubmissionResult(student, assignment, f"/submitted/{student}.ipynb", outcomes)

    results = [
        result("alice", A1, {"attention": (5.0, 5.0), "q1": (0.0, 1.0)}),
        result("bob", A1, {"attention": (3.0, 5.0), "q1": (1.0, 1.0)}),
        result("=HYPERLINK(1)", A1, {"attention": (0.0, 5.0), "q1": (0.0, 1.0)}),
        result("alice", A2, {"sdpa": (4.0, 6.0)}),
    ]
    out = root / "grading"
    write_run(out, results, 1.0, report=False)
    return out


def _gradebook(root: Path) -> Path:
    """A formgrader gradebook: A1 has its two hidden-test cells and a written answer worth 2 points; alice's
    answer got 1.5, bob's is not graded yet, and a TA set bob's attention part to 4 by hand."""
    from nbgrader.api import Gradebook

    db = root / "gradebook.db"
    with Gradebook(f"sqlite:///{db}", course_id=course.COURSE_ID) as gb:
        gb.add_assignment(A1)
        gb.add_notebook(A1, A1)
        gb.add_grade_cell("attention_tests", A1, A1, max_score=5, cell_type="code")
        gb.add_grade_cell("q1_tests", A1, A1, max_score=1, cell_type="code")
        gb.add_grade_cell("written_q2", A1, A1, max_score=2, cell_type="markdown")
        gb.add_solution_cell("written_q2", A1, A1)
        gb.add_student("alice", first_name="Alice", last_name="Liddell", email="alice@example.edu", lms_user_id="1001")
        gb.add_student("bob", first_name="Bob", last_name="Kay", email="bob@example.edu")
        gb.add_student("=HYPERLINK(1)")
        for student in ("alice", "bob"):
            gb.add_submission(A1, student)
        gb.find_grade("written_q2", A1, A1, "alice").manual_score = 1.5
        gb.find_grade("attention_tests", A1, A1, "bob").manual_score = 4.0
        gb.db.commit()
    return db


@pytest.fixture(scope="module")
def course_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        # nbgrader stamps a new gradebook with `alembic`, found beside this interpreter (as nbgrader_course does)
        patch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        warnings.simplefilter("ignore")  # SQLAlchemy's warnings about nbgrader's own session handling
        return _grading(root), _gradebook(root)


# ------------------------------------------------------------------------------------------------- tests
def test_canvas_reads_every_student_with_the_hand_graded_points(course_dir, tmp_path):
    grading, db = course_dir
    grades = lms.collect([load_run(grading)], read_gradebook(db), {A1: "Lab 1 (1234)"})
    path = lms.write(grades, tmp_path / "canvas.csv", "canvas")
    possible, students = canvas_import(path)
    assert possible == {"Lab 1 (1234)": 8.0, A2: 6.0}  # 6 automatic + 2 by hand; A2 automatic only
    assert students["1001"] == {"Lab 1 (1234)": "6.5", A2: "4"}  # alice by her Canvas id: 5 + 1.5 by hand
    assert students["bob"] == {"Lab 1 (1234)": "5", A2: ""}  # the TA's 4 for attention + 1; no A2 submission
    assert students["'=HYPERLINK(1)"] == {"Lab 1 (1234)": "0", A2: ""}  # shown as text, never a formula
    assert any("need grading by hand" in note for note in grades.notes)


def test_moodle_reads_the_export_mapped_by_student_id(course_dir, tmp_path):
    grading, db = course_dir
    path = lms.write(lms.collect([load_run(grading)], read_gradebook(db)), tmp_path / "moodle.csv", "moodle")
    grades = moodle_import(path, "Student ID")
    assert grades["alice"] == {A1: 6.5, A2: 4.0}
    assert grades["bob"] == {A1: 5.0, A2: None}
    emails = {row["Student ID"]: row["Email address"] for row in csv.DictReader(path.open())}
    assert emails["alice"] == "alice@example.edu"


def test_without_a_gradebook_the_columns_hold_the_automatic_points(course_dir, tmp_path):
    grading, _ = course_dir
    path = lms.write(lms.collect([load_run(grading)]), tmp_path / "plain.csv", "csv")
    rows = {r["student_id"]: r for r in csv.DictReader(path.open())}
    assert (rows["alice"][A1], rows["bob"][A1], rows["alice"][A2]) == ("5", "4", "4")
    assert set(rows) == {"alice", "bob", "'=HYPERLINK(1)"}


def test_the_export_command_writes_the_file_and_reads_the_gradebook_without_changing_it(course_dir, tmp_path, capsys):
    from autograde.__main__ import main

    grading, db = course_dir
    before = db.read_bytes()
    out = tmp_path / "export.csv"
    assert main(["export", str(grading), "--format", "canvas", "--gradebook", str(db), "--out", str(out)]) == 0
    assert db.read_bytes() == before
    printed = capsys.readouterr().out
    assert "Merged the points graded by hand" in printed and str(out) in printed
    possible, _ = canvas_import(out)
    assert possible[A1] == 8.0
    assert main(["export", str(grading), "--format", "moodle", "--column", "no-equals-sign"]) == 2
