"""The points a course's formgrader holds: nbgrader's gradebook (``course/gradebook.db``), read without changing it.

nbgrader's ``Gradebook`` creates tables and a course row when they are missing, so it is opened on a copy of the
database: the course's own file is never written (and formgrader may keep running). Read per student and
assignment: the points of the written answers graded by hand (with extra credit), the points a grader set by
hand on an autograded part (an override), and the answers nobody has graded yet; per student, the name, email
and LMS id nbgrader knows.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autograde.course import COURSE_ID
from autograde.nbgrader_cells import TESTS_SUFFIX

DEFAULT_GRADEBOOK = Path("course") / "gradebook.db"  # nbgrader_config.py: c.CourseDirectory.db_url


@dataclass(frozen=True)
class Person:
    id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_user_id: str = ""


@dataclass
class HandGrades:
    """What graders entered by hand for one submission."""

    manual: float = 0.0  # the written answers' points, extra credit included
    overrides: dict[str, float] = field(default_factory=dict)  # part -> points set by hand on its hidden tests
    ungraded: int = 0  # answers that still need grading by hand


@dataclass
class CourseGradebook:
    people: dict[str, Person] = field(default_factory=dict)
    grades: dict[tuple[str, str], HandGrades] = field(default_factory=dict)  # (student, assignment) -> ...
    manual_max: dict[str, float] = field(default_factory=dict)  # assignment -> points graded by hand


def read_gradebook(db: Path, course_id: str = COURSE_ID) -> CourseGradebook:
    """Everything :class:`CourseGradebook` holds, from the SQLite gradebook at ``db`` (opened on a copy)."""
    from nbgrader.api import Gradebook

    db = Path(db)
    if not db.is_file():
        raise FileNotFoundError(f"{db} does not exist: pass --gradebook with the course's gradebook.db")
    book = CourseGradebook()
    with tempfile.TemporaryDirectory(prefix="gradebook-") as scratch:
        copy = Path(scratch) / "gradebook.db"
        shutil.copyfile(db, copy)
        with Gradebook(f"sqlite:///{copy}", course_id=course_id) as gradebook:
            for s in gradebook.students:
                book.people[s.id] = Person(
                    s.id, s.first_name or "", s.last_name or "", s.email or "", s.lms_user_id or ""
                )
            for assignment in gradebook.assignments:
                book.manual_max[assignment.name] = sum(
                    cell.max_score
                    for notebook in assignment.notebooks
                    for cell in [*notebook.grade_cells, *notebook.task_cells]
                    if not cell.name.endswith(TESTS_SUFFIX)
                )
                for submission in gradebook.assignment_submissions(assignment.name):
                    hand = book.grades.setdefault((submission.student_id, assignment.name), HandGrades())
                    for notebook in submission.notebooks:
                        for grade in notebook.grades:
                            if grade.name.endswith(TESTS_SUFFIX):
                                if grade.manual_score is not None:
                                    part = grade.name.removesuffix(TESTS_SUFFIX)
                                    hand.overrides[part] = grade.manual_score + (grade.extra_credit or 0.0)
                            else:
                                hand.manual += grade.score or 0.0
                                hand.ungraded += bool(grade.needs_manual_grade)
    return book
