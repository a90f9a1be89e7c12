"""Drive the real nbgrader pipeline: release, collect, autograde, feedback, export.

Every step runs the ``nbgrader`` command line (as an instructor would) in a course directory that holds
``nbgrader_config.py`` and ``solutions/``. Used by ``make release``, the demo and the pipeline tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from autograde.course import COURSE_ID, REPO, SOLUTIONS, ids

CONFIG = REPO / "nbgrader_config.py"


def nbgrader(course: Path, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in ``course``; raise with nbgrader's log when it fails."""
    env = {k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"}
    env.setdefault("PYTHONWARNINGS", "ignore")
    # nbgrader runs `alembic` for its gradebook: find it in this interpreter's environment even when not activated
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_course(course: Path) -> Path:
    """A fresh nbgrader course directory with this course's config and source notebooks."""
    (course / "course").mkdir(parents=True, exist_ok=True)  # holds the gradebook and submissions
    shutil.copy(CONFIG, course / "nbgrader_config.py")
    shutil.copytree(
        SOLUTIONS, course / "solutions", dirs_exist_ok=True, ignore=shutil.ignore_patterns(".ipynb_checkpoints")
    )
    return course


def generate_release(course: Path, assignments: list[str] | None = None) -> None:
    """``nbgrader generate_assignment`` for each assignment (writes ``course/assignments`` and the gradebook)."""
    for assignment in assignments or ids():
        nbgrader(course, "generate_assignment", assignment, "--force")


def submit(course: Path, assignment: str, student: str, notebook: Path) -> Path:
    """Place a student's notebook where ``nbgrader collect`` would: ``submitted/<student>/<assignment>/``."""
    folder = course / "course" / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{assignment}.ipynb"
    shutil.copy(notebook, target)
    (folder / "timestamp.txt").write_text("2026-01-01 00:00:00.000000 UTC")
    return target


def autograde(course: Path, assignment: str) -> None:
    """``nbgrader autograde`` every submission of ``assignment``, with the course's configuration (the sandboxed
    grader; the whole notebook in a kernel under ``AUTOGRADE_IN_KERNEL=1``)."""
    nbgrader(course, "autograde", assignment, "--force")


def generate_feedback(course: Path, assignment: str) -> Path:
    nbgrader(course, "generate_feedback", assignment, "--force")
    return course / "course" / "feedback"


def export_grades(course: Path) -> Path:
    """``nbgrader export`` to ``grades.csv`` in the course directory."""
    nbgrader(course, "export", "--to", "grades.csv")
    return course / "grades.csv"


@dataclass(frozen=True)
class CellScore:
    student: str
    cell: str
    auto_score: float | None
    max_score: float


def cell_scores(course: Path, assignment: str) -> list[CellScore]:
    """The automatic score of every grade cell of every submission, read from the gradebook."""
    from nbgrader.api import Gradebook

    scores = []
    with Gradebook(f"sqlite:///{course / 'course' / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            for notebook in submission.notebooks:
                scores.extend(
                    CellScore(submission.student_id, grade.name, grade.auto_score, grade.max_score)
                    for grade in notebook.grades
                )
    return sorted(scores, key=lambda s: (s.student, s.cell))
