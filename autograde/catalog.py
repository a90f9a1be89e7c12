"""What the graders say about an assignment, derived once: its tests (with parts and points), the names each
part asks the submission for, and the release's read-only cells (restored before grading, as nbgrader does).

The graders are run once against a :class:`_RecordingStudent`, which answers nothing and records every name
asked for; these are the roots of the definitions a submission must provide.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from autograde import course, nbgrader_cells
from autograde.harness import Context, collect, run_part
from autograde.worker.protocol import Call, CallResult, Describe, ModuleInfo, Student
from autograde.worker.results import Kind, StudentError, TestSpec


class _RecordingStudent(Student):
    """Answers nothing, but records every name the graders ask for (the roots of the graded definitions)."""

    def __init__(self):
        self.names: list[str] = []
        self.by_part: dict[str, list[str]] = {}
        self.part = ""

    def _ask(self, name: str) -> None:
        for names in (self.names, self.by_part.setdefault(self.part, [])):
            if name not in names:
                names.append(name)
        raise StudentError("nothing to grade", Kind.MISSING_DEFINITION)

    def has(self, name: str) -> bool:
        try:
            self._ask(name)
        except StudentError:
            pass
        return False

    def value(self, name: str) -> Any:
        self._ask(name)

    def describe_module(self, request: Describe) -> ModuleInfo:
        self._ask(request.target)

    def call(self, call: Call) -> CallResult:
        self._ask(call.target)


@dataclass(frozen=True)
class Catalog:
    """An assignment's grader tests (in order), the names they ask for and the release's read-only cells."""

    assignment: str
    tests: tuple[TestSpec, ...]
    names: tuple[str, ...]
    names_by_part: dict[str, tuple[str, ...]]
    locked_sources: dict[str, str]

    @property
    def parts(self) -> dict[str, float]:
        """part -> points, in grader order."""
        points: dict[str, float] = {}
        for t in self.tests:
            points[t.part] = points.get(t.part, 0.0) + t.points
        return points

    @property
    def possible(self) -> float:
        return sum(t.points for t in self.tests)


def locked_sources(assignment: str) -> dict[str, str]:
    """grade_id -> source of the release's read-only (not graded, not answer) cells."""
    path = course.get(assignment).release_notebook
    if not path.is_file():
        return {}
    return {
        nbgrader_cells.grade_id(c): nbgrader_cells.source(c)
        for c in nbgrader_cells.read(path).cells
        if nbgrader_cells.is_locked(c) and nbgrader_cells.grade_id(c)
    }


@functools.cache
def catalog(assignment: str) -> Catalog:
    """Run the graders once, part by part, against a recording student."""
    recorder = _RecordingStudent()
    specs: list[TestSpec] = []
    for part in _parts(assignment):
        recorder.part = part
        specs += [o.spec for o in run_part(assignment, part, Context(recorder)).outcomes]
    by_part = {p: tuple(n) for p, n in recorder.by_part.items()}
    return Catalog(assignment, tuple(specs), tuple(recorder.names), by_part, locked_sources(assignment))


def _parts(assignment: str) -> list[str]:
    parts: list[str] = []
    for spec in collect(assignment):
        if spec.part not in parts:
            parts.append(spec.part)
    return parts


@functools.cache
def manual_points(assignment: str) -> float:
    """The points of the answers graded by hand (nbgrader's manually graded answer cells) of the release."""
    path = course.get(assignment).release_notebook
    if not path.is_file():
        return 0.0
    return float(
        sum(
            nbgrader_cells.meta(c).get("points", 0) or 0
            for c in nbgrader_cells.read(path).cells
            if nbgrader_cells.is_answer(c) and nbgrader_cells.meta(c).get("grade")
        )
    )
