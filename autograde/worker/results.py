"""What grading produces, as one family of plain types shared by the harness, the batch, the outputs and
Gradescope: the kinds of failure, one test's outcome, a part's report and a whole submission's result.

Standard library only: the sandboxed worker loads this module too (for :class:`StudentError` and
:class:`Kind`), so nothing here may import torch or the grader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Kind(str, Enum):
    """Why a check failed. Decided by the code that saw the failure, never by parsing a message."""

    WRONG_RESULT = "wrong result"
    MISSING_DEFINITION = "missing definition"
    STUDENT_ERROR = "error in student code"
    FORBIDDEN_CALL = "forbidden call"
    TIMEOUT = "timeout"
    BUDGET = "time budget used up"
    CRASH = "crash"
    UNUSABLE_RESULT = "unusable result"
    MISSING_FILE = "missing or unusable file"
    UNREADABLE = "unreadable submission"
    GRADER_ERROR = "grader error"


# What a sandboxed worker may report about itself; any other kind on the wire becomes STUDENT_ERROR.
WORKER_KINDS = frozenset({Kind.STUDENT_ERROR, Kind.MISSING_DEFINITION, Kind.TIMEOUT, Kind.UNUSABLE_RESULT})


class StudentError(Exception):
    """The student's code raised, timed out or returned something unusable; the message says which.

    kind: a :class:`Kind`; exc_type: the name of the exception the student's code raised, if any.
    """

    def __init__(self, message: str, kind: Kind = Kind.STUDENT_ERROR, exc_type: str | None = None):
        super().__init__(message)
        self.kind = Kind(kind)
        self.exc_type = exc_type

    def raised(self, *names: str) -> bool:
        """Whether the student's code raised one of the exception types ``names``."""
        return self.exc_type in names


class GradingFailure(AssertionError):
    """A failed check of a kind other than a wrong result (a forbidden call, a missing file)."""

    def __init__(self, message: str, kind: Kind):
        super().__init__(message)
        self.kind = Kind(kind)


class KnownMistake(AssertionError):
    """A wrong result that matches a known mistake; ``mistake`` is its name (``"no_scale"``), for class reports."""

    def __init__(self, message: str, mistake: str):
        super().__init__(message)
        self.kind = Kind.WRONG_RESULT
        self.mistake = mistake


@dataclass(frozen=True)
class TestSpec:
    """One grader test: its pytest id, its part, what it checks (its docstring's first line), its points, and
    the resources the grading run must prepare for it (``@pytest.mark.needs("evaluation_set")``)."""

    __test__ = False  # not a pytest test class
    name: str
    part: str
    description: str
    points: float
    needs: tuple[str, ...] = ()


@dataclass
class TestOutcome:
    """A test's result: the points earned and, when it failed, why (``kind``) and what to fix."""

    __test__ = False  # not a pytest test class
    spec: TestSpec
    earned: float = 0.0
    message: str = ""
    kind: Kind | None = None
    mistake: str | None = None  # the name of the known mistake the failure matched, if any

    @property
    def part(self) -> str:
        return self.spec.part

    @property
    def points(self) -> float:
        return self.spec.points

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def passed(self) -> bool:
        return self.kind is None


def part_totals(outcomes: list[TestOutcome]) -> dict[str, tuple[float, float]]:
    """part -> (earned, possible), in the order the parts first appear."""
    parts: dict[str, tuple[float, float]] = {}
    for o in outcomes:
        earned, possible = parts.get(o.part, (0.0, 0.0))
        parts[o.part] = (earned + o.earned, possible + o.points)
    return parts


class _Totals:
    """Points earned and possible over ``self.outcomes``."""

    outcomes: list[TestOutcome]

    @property
    def earned(self) -> float:
        return sum(o.earned for o in self.outcomes)

    @property
    def possible(self) -> float:
        return sum(o.points for o in self.outcomes)

    @property
    def parts(self) -> dict[str, tuple[float, float]]:
        return part_totals(self.outcomes)


@dataclass
class PartReport(_Totals):
    """The outcomes of one part's tests (or of every part), in the order they ran."""

    assignment: str
    part: str
    outcomes: list[TestOutcome] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"Autograder: {self.assignment} / {self.part}"]
        for o in self.outcomes:
            mark = "PASS" if o.passed else "FAIL"
            lines.append(f"  [{mark}] {o.description} ({o.earned:g}/{o.points:g})")
            if o.message:
                lines.extend(f"         {line}" for line in o.message.splitlines())
        lines.append(f"Score: {self.earned:g} / {self.possible:g}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Incident:
    """Something that went wrong while grading one submission, for the instructor's summary.

    kind: a :class:`Kind` (timeout, crash, unusable result, budget, grader error) or ``"definition"`` for a
    cell of the notebook that could not be run.
    """

    kind: str
    message: str


@dataclass(frozen=True)
class Measurement:
    """A number a grader measured, for the instructor's class report (a checkpoint's accuracy).

    tiers: the thresholds that earn points, in the measurement's unit.
    """

    part: str
    name: str
    value: float
    unit: str = ""
    tiers: tuple[float, ...] = ()


@dataclass(frozen=True)
class Review:
    """A line of a submission that an instructor should look at (code that could evade a detector), and why."""

    line: str
    reason: str


@dataclass
class SubmissionResult(_Totals):
    """Everything the outputs need about one graded submission (plain data: it crosses process boundaries).

    student: the id (the file's name, or the nbgrader student folder), exactly as submitted.
    problems: what went wrong reading and running the notebook's definitions (shown to the student).
    error: why the submission could not be graded at all (empty when it was).
    """

    student: str
    assignment: str
    path: str
    outcomes: list[TestOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    measurements: list[Measurement] = field(default_factory=list)
    review: list[Review] = field(default_factory=list)


MAX_MESSAGE = 4_000  # characters of one message that a submission's outputs keep
MAX_ITEMS = 50  # problems, incidents and marks for review that a submission's outputs keep


def _cut(text: str) -> str:
    if len(text) <= MAX_MESSAGE:
        return text
    return f"{text[:MAX_MESSAGE]}\n[... {len(text) - MAX_MESSAGE:,} more characters were cut]"


def _first(items: list, what: str, make) -> list:
    if len(items) <= MAX_ITEMS:
        return items
    return [*items[:MAX_ITEMS], make(f"... and {len(items) - MAX_ITEMS:,} more {what} were cut")]


def bounded(result: SubmissionResult) -> SubmissionResult:
    """``result`` with every message cut to :data:`MAX_MESSAGE` characters and every list to :data:`MAX_ITEMS`
    entries, each saying what was cut: what a submission stores and shows is bounded whatever its code prints."""
    for o in result.outcomes:
        o.message = _cut(o.message)
    result.problems = _first([_cut(p) for p in result.problems], "problems", str)
    result.incidents = _first(
        [Incident(i.kind, _cut(i.message)) for i in result.incidents], "incidents", lambda m: Incident("cut", m)
    )
    result.review = _first(result.review, "marks for review", lambda m: Review("", m))
    result.error = _cut(result.error)
    return result


def failed_everywhere(specs: list[TestSpec], message: str, kind: Kind) -> list[TestOutcome]:
    """Every test failed with one message (a submission that could not be graded at all)."""
    return [TestOutcome(s, 0.0, message, kind) for s in specs]
