"""What the in-process grader tests share: grade one part of a namespace and read its report."""

from __future__ import annotations

from autograde.harness import PartReport, run_part
from autograde.worker.in_process import InProcessStudent


def grade_part(assignment: str, namespace: dict, part: str) -> PartReport:
    """Run one part's hidden tests on ``namespace`` (name -> object, as a notebook defines them), in process."""
    return run_part(assignment, part, InProcessStudent(namespace))


def failed(report: PartReport) -> dict[str, str]:
    """Description -> message of every test that lost points (or, for a diagnostic, failed)."""
    return {o.description: o.message for o in report.outcomes if not o.passed}


def assert_full_marks(report: PartReport, points: float) -> None:
    """The part is worth ``points`` and all of them were earned."""
    assert report.possible == points
    assert report.earned == points, report.text()
