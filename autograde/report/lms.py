"""Grades for the LMS: one row per student, one column per assignment, as Canvas's and Moodle's CSV import take them.

An assignment's points are the grading run's automatic points, part by part, except where a grader set a part's
points by hand in formgrader, plus the written answers graded by hand (nbgrader's gradebook, when the course uses
formgrader). A student without a submission gets an empty cell, which both LMSs read as "no grade" (nothing is
overwritten).

- **Canvas** (its ``GradebookImporter``): a header ``Student, ID, SIS User ID, SIS Login ID, Section`` and then the
  assignments; a second row ``Points Possible`` giving each new assignment its points. Canvas finds a student by
  ``ID`` (its own user id, nbgrader's ``lms_user_id``), else by ``SIS User ID`` or ``SIS Login ID``, else by name;
  the course's student id goes in ``SIS Login ID`` (or ``SIS User ID`` with ``--student-id-column sis``). An
  assignment column named ``Title (123)`` updates Canvas's assignment 123; a plain title matches an assignment of
  that title or creates one.
- **Moodle** (its ``gradeimport_csv``): a header row and one row per student; at import the instructor maps the
  ``Student ID`` column to the Moodle user field that holds it (username or ID number; or ``Email address`` to
  email) and each assignment column to a grade item (or a new one).
- **csv**: ``student_id`` and one column per assignment, for anything else.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autograde.inert import csv_cell
from autograde.report.gradebook import CourseGradebook, Person
from autograde.report.run import Run

FORMATS = ("canvas", "moodle", "csv")
CANVAS_STUDENT_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_POINTS_ROW = "Points Possible"
MOODLE_STUDENT_COLUMNS = ("Student ID", "First name", "Last name", "Email address")


@dataclass(frozen=True)
class Column:
    assignment: str
    header: str
    possible: float


@dataclass
class Grades:
    columns: list[Column]
    students: list[str]
    points: dict[tuple[str, str], float]  # (student, assignment) -> points
    people: dict[str, Person] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the instructor should know (printed by export)


def _points(x: float) -> str:
    return f"{round(x, 2):g}"


def collect(
    runs: Sequence[Run], gradebook: CourseGradebook | None = None, headers: dict[str, str] | None = None
) -> Grades:
    """Every student's points per assignment, from grading runs and (optionally) the course's gradebook."""
    headers = headers or {}
    automatic: dict[tuple[str, str], float] = {}
    possible: dict[str, float] = {}
    notes: list[str] = []
    for run in runs:
        for g in run.submissions:
            key = (g.student, g.assignment)
            if key in automatic:
                raise ValueError(
                    f"{g.assignment} of student {g.student!r} is graded twice in the folders given: pass each "
                    "assignment's grading folder once"
                )
            parts = g.parts
            hand = gradebook.grades.get(key) if gradebook is not None else None
            for part, points in (hand.overrides if hand else {}).items():
                if part in parts:
                    parts[part] = (points, parts[part][1])
            automatic[key] = sum(earned for earned, _ in parts.values())
            possible[g.assignment] = max(possible.get(g.assignment, 0.0), g.possible)
    points = dict(automatic)
    people: dict[str, Person] = {}
    students = {student for student, _ in automatic}
    if gradebook is not None:
        people = gradebook.people
        students |= set(people)
        ungraded = 0
        for (student, assignment), hand in gradebook.grades.items():
            if assignment not in possible:
                continue
            ungraded += hand.ungraded
            if (student, assignment) in points:
                points[(student, assignment)] += hand.manual
            elif hand.manual:
                notes.append(f"{student!r} has hand-graded points in {assignment} but no graded submission")
        for assignment in possible:
            possible[assignment] += gradebook.manual_max.get(assignment, 0.0)
        if ungraded:
            notes.append(f"{ungraded} answer(s) still need grading by hand in formgrader; they count 0 here")
    columns = [Column(a, headers.get(a, a), possible[a]) for a in sorted(possible)]
    return Grades(columns, sorted(students), points, people, notes)


def _scores(grades: Grades, student: str) -> list[str]:
    return [
        _points(grades.points[(student, c.assignment)]) if (student, c.assignment) in grades.points else ""
        for c in grades.columns
    ]


def canvas_rows(grades: Grades, student_id_column: str = "login") -> list[list[str]]:
    """Canvas's gradebook CSV: header, ``Points Possible``, one row per student."""
    rows = [[*CANVAS_STUDENT_COLUMNS, *(c.header for c in grades.columns)]]
    rows.append([CANVAS_POINTS_ROW, "", "", "", "", *(_points(c.possible) for c in grades.columns)])
    for student in grades.students:
        person = grades.people.get(student, Person(student))
        name = f"{person.last_name}, {person.first_name}" if person.last_name and person.first_name else student
        sis_user, sis_login = (student, "") if student_id_column == "sis" else ("", student)
        rows.append(
            [
                csv_cell(name),
                csv_cell(person.lms_user_id),
                csv_cell(sis_user),
                csv_cell(sis_login),
                "",
                *_scores(grades, student),
            ]
        )
    return rows


def moodle_rows(grades: Grades) -> list[list[str]]:
    rows = [[*MOODLE_STUDENT_COLUMNS, *(c.header for c in grades.columns)]]
    for student in grades.students:
        person = grades.people.get(student, Person(student))
        rows.append(
            [
                csv_cell(student),
                csv_cell(person.first_name),
                csv_cell(person.last_name),
                csv_cell(person.email),
                *_scores(grades, student),
            ]
        )
    return rows


def plain_rows(grades: Grades) -> list[list[str]]:
    rows = [["student_id", *(c.header for c in grades.columns)]]
    rows += [[csv_cell(student), *_scores(grades, student)] for student in grades.students]
    return rows


def write(grades: Grades, path: Path, form: str, student_id_column: str = "login") -> Path:
    """Write ``grades`` as ``form`` (one of FORMATS) to ``path`` (UTF-8, comma-separated)."""
    if form == "canvas":
        rows = canvas_rows(grades, student_id_column)
    elif form == "moodle":
        rows = moodle_rows(grades)
    elif form == "csv":
        rows = plain_rows(grades)
    else:
        raise ValueError(f"unknown format {form!r}: choose one of {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path
