"""Run the pytest graders of one part of an assignment against a submission and report the points.

Each grader test carries two markers: ``@pytest.mark.part("attention")`` (the nbgrader ``grade_id`` of the
hidden test cell that runs it, without ``_tests``) and ``@pytest.mark.points(2)``. A test earns its points
when it passes and nothing otherwise; the part's score is the sum. Tests reach the submission only through
fixtures: ``student`` (the :class:`~autograde.worker.protocol.Student` protocol), ``submission_dir`` (the folder of
files handed in beside the notebook, read here on the trusted side) and ``resources`` (data the grading run
prepared before any student code ran, such as the evaluation images).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from autograde import course, settings
from autograde.worker.in_process import InProcessStudent
from autograde.worker.protocol import Student
from autograde.worker.results import (
    GradingFailure,
    Kind,
    KnownMistake,
    Measurement,
    PartReport,
    Review,
    StudentError,
    TestOutcome,
    TestSpec,
)

PYTEST_INI = Path(__file__).parent / "graders.ini"


@dataclass
class Context:
    """What the grader tests of one submission may use (see the module docstring), and what they measured."""

    student: Student
    submission_dir: Path | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    review: list[Review] = field(default_factory=list)


def _marker_arg(item: pytest.Item, name: str) -> Any:
    marker = item.get_closest_marker(name)
    if marker is None or not marker.args:
        raise pytest.UsageError(f"grader test {item.nodeid} needs @pytest.mark.{name}(...)")
    return marker.args[0]


def failure(exc: BaseException) -> tuple[Kind, str, str | None]:
    """The kind, the student-facing message and the known mistake's name (or None) of a failed test. Kinds come
    from the exception's type."""
    if isinstance(exc, KnownMistake):
        return exc.kind, str(exc).strip(), exc.mistake
    if isinstance(exc, (StudentError, GradingFailure)):
        return exc.kind, str(exc).strip() or "the check failed", None
    if isinstance(exc, AssertionError):
        return Kind.WRONG_RESULT, str(exc).strip() or "the check failed", None
    return (
        Kind.GRADER_ERROR,
        f"the grader could not check this ({type(exc).__name__}: {exc}); tell your instructor.",
        None,
    )


class _GraderPlugin:
    """Selects one part's tests, provides the fixtures and records each outcome."""

    def __init__(self, context: Context, part: str | None):
        self.context = context
        self.part = part
        self.outcomes: list[TestOutcome] = []
        self._by_id: dict[str, TestOutcome] = {}
        self.errors: list[str] = []

    @pytest.fixture(scope="session")
    def student(self) -> Student:
        return self.context.student

    @pytest.fixture(scope="session")
    def submission_dir(self) -> Path | None:
        return self.context.submission_dir

    @pytest.fixture(scope="session")
    def resources(self) -> dict[str, Any]:
        return self.context.resources

    @pytest.fixture
    def measure(self, request: pytest.FixtureRequest):
        """``measure(name, value, unit="", tiers=())``: record a number for the instructor's class report."""

        def record(name: str, value: float, unit: str = "", tiers: tuple[float, ...] = ()) -> None:
            part = _marker_arg(request.node, "part")
            self.context.measurements.append(Measurement(part, name, float(value), unit, tuple(tiers)))

        return record

    @pytest.fixture
    def mark_for_review(self):
        """``mark_for_review(reason, line="")``: ask an instructor to look at this submission (the score stays)."""

        def mark(reason: str, line: str = "") -> None:
            self.context.review.append(Review(line, reason))

        return mark

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line("markers", "part(name): the graded part (hidden cell grade_id without _tests)")
        config.addinivalue_line("markers", "points(n): points earned when the test passes")
        config.addinivalue_line(
            "markers", "needs(*resources): what the grading run must prepare before any student code runs"
        )

    def pytest_collection_modifyitems(self, session, config, items: list[pytest.Item]) -> None:
        keep, drop = [], []
        for item in items:
            (keep if self.part is None or _marker_arg(item, "part") == self.part else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep
        for item in keep:
            doc = (getattr(item, "function", None).__doc__ or "").strip().splitlines()
            description = doc[0] if doc else item.name
            if hasattr(item, "callspec"):
                description += f" [{item.callspec.id}]"
            needs = item.get_closest_marker("needs")
            spec = TestSpec(
                item.nodeid,
                _marker_arg(item, "part"),
                description,
                float(_marker_arg(item, "points")),
                tuple(needs.args) if needs else (),
            )
            outcome = TestOutcome(spec)
            self._by_id[item.nodeid] = outcome
            self.outcomes.append(outcome)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        yield
        outcome = self._by_id.get(item.nodeid)
        if outcome is None or call.when not in ("setup", "call"):
            return
        if call.excinfo is not None and not outcome.message:
            outcome.kind, outcome.message, outcome.mistake = failure(call.excinfo.value)
        elif call.when == "call" and call.excinfo is None and not outcome.message:
            outcome.earned = outcome.points

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.errors.append(str(report.longrepr))


def _run_pytest(assignment: str, plugin: _GraderPlugin, *extra: str) -> None:
    grader = course.get(assignment).grader_path
    args = [
        str(grader),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-p",
        "no:unraisableexception",
        "--assert=plain",
        "--tb=native",
        "--import-mode=importlib",
        "--rootdir",
        str(grader.parent.parent),
        "-c",
        str(PYTEST_INI),
        *extra,
    ]
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.main(args, plugins=[plugin])


def collect(assignment: str) -> list[TestSpec]:
    """Every grader test of ``assignment`` (its part, description and points), in order; none is run."""
    plugin = _GraderPlugin(Context(InProcessStudent({})), None)
    _run_pytest(assignment, plugin, "--collect-only")
    if plugin.errors:
        raise RuntimeError(f"the grader for {assignment} failed to load:\n" + "\n".join(plugin.errors))
    return [o.spec for o in plugin.outcomes]


def part_points(assignment: str) -> dict[str, float]:
    """The points of every part of ``assignment``, from the grader tests' markers (no test is run)."""
    points: dict[str, float] = {}
    for spec in collect(assignment):
        points[spec.part] = points.get(spec.part, 0.0) + spec.points
    return points


def run_part(assignment: str, part: str | None, student: Student | Context) -> PartReport:
    """Run the tests of ``part`` (all parts when None) of ``assignment`` against a student (or a context)."""
    context = student if isinstance(student, Context) else Context(student)
    plugin = _GraderPlugin(context, part)
    _run_pytest(assignment, plugin)
    if plugin.errors:
        raise RuntimeError(f"the grader for {assignment} failed to load:\n" + "\n".join(plugin.errors))
    if not plugin.outcomes:
        raise RuntimeError(f"no grader tests for part {part!r} of {assignment}")
    return PartReport(assignment, part or "all", plugin.outcomes)


def grade(assignment: str, part: str, namespace: dict[str, Any]) -> float:
    """Entry point of a hidden test cell in nbgrader's optional in-kernel mode: grade ``part`` against the kernel's
    globals.

    Prints the per-test report and returns the points earned, which nbgrader reads as partial credit. Each call
    into the student's code gets the time and memory limits of :mod:`autograde.settings` (set them with
    ``AUTOGRADE_TIMEOUT`` and ``AUTOGRADE_MEMORY_MB``). Nothing is written to stderr, so a warning cannot zero the
    cell. Files handed in beside the notebook are read from the working directory (nbgrader runs the notebook in
    the submission's folder).
    """
    from autograde import eval_data

    limits = settings.from_env()
    student = InProcessStudent(namespace, time_limit=limits.timeout, memory_mb=limits.memory_mb)
    needs = {n for spec in collect(assignment) if spec.part == part for n in spec.needs}
    resources = eval_data.prepare_resources(needs, notify=print)
    report = run_part(assignment, part, Context(student, submission_dir=Path.cwd(), resources=resources))
    print(report.text())
    return report.earned
