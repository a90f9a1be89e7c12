"""Run the pytest graders of one part of an assignment against a submission and report the points.

Each grader test carries two markers: ``@pytest.mark.part("attention")`` (the nbgrader ``grade_id`` of the
hidden test cell that runs it) and ``@pytest.mark.points(2)``. A test earns its points when it passes and
nothing otherwise; the part's score is the sum. Tests reach the submission only through the ``student``
fixture (see :mod:`autograde.student`).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from autograde.student import InProcessStudent, Student, StudentError

GRADERS_DIR = Path(__file__).parent / "graders"


@dataclass
class TestOutcome:
    """One grader test: what it checks (its docstring's first line), its points and why it failed."""

    name: str
    part: str
    description: str
    points: float
    earned: float = 0.0
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.earned == self.points


@dataclass
class PartReport:
    """The outcomes of one part's tests, in the order they ran."""

    assignment: str
    part: str
    outcomes: list[TestOutcome] = field(default_factory=list)

    @property
    def earned(self) -> float:
        return sum(o.earned for o in self.outcomes)

    @property
    def possible(self) -> float:
        return sum(o.points for o in self.outcomes)

    def text(self) -> str:
        lines = [f"Autograder: {self.assignment} / {self.part}"]
        for o in self.outcomes:
            mark = "PASS" if o.passed else "FAIL"
            lines.append(f"  [{mark}] {o.description} ({o.earned:g}/{o.points:g})")
            if o.message:
                lines.extend(f"         {line}" for line in o.message.splitlines())
        lines.append(f"Score: {self.earned:g} / {self.possible:g}")
        return "\n".join(lines)


def grader_path(assignment: str) -> Path:
    """The grader module of an assignment: ``autograde/graders/test_<assignment>.py``."""
    path = GRADERS_DIR / f"test_{assignment}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no grader for assignment {assignment!r}: expected {path}")
    return path


def _marker_arg(item: pytest.Item, name: str) -> Any:
    marker = item.get_closest_marker(name)
    if marker is None or not marker.args:
        raise pytest.UsageError(f"grader test {item.nodeid} needs @pytest.mark.{name}(...)")
    return marker.args[0]


def _failure_message(excinfo: pytest.ExceptionInfo) -> str:
    exc = excinfo.value
    if isinstance(exc, (AssertionError, StudentError)):
        return str(exc).strip() or "the check failed"
    return f"the grader could not check this ({type(exc).__name__}: {exc}); tell your instructor."


class _GraderPlugin:
    """Selects one part's tests, provides the ``student`` fixture and records each outcome."""

    def __init__(self, student: Student, part: str | None):
        self._student = student
        self.part = part
        self.outcomes: list[TestOutcome] = []
        self._by_id: dict[str, TestOutcome] = {}
        self.errors: list[str] = []

    @pytest.fixture(scope="session")
    def student(self) -> Student:
        return self._student

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line("markers", "part(name): the nbgrader grade_id of the hidden cell running the test")
        config.addinivalue_line("markers", "points(n): points earned when the test passes")

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
            points = float(_marker_arg(item, "points"))
            outcome = TestOutcome(item.nodeid, _marker_arg(item, "part"), description, points)
            self._by_id[item.nodeid] = outcome
            self.outcomes.append(outcome)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        yield
        outcome = self._by_id.get(item.nodeid)
        if outcome is None or call.when not in ("setup", "call"):
            return
        if call.excinfo is not None and not outcome.message:
            outcome.message = _failure_message(call.excinfo)
        elif call.when == "call" and call.excinfo is None and not outcome.message:
            outcome.earned = outcome.points

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.errors.append(str(report.longrepr))


def _run_pytest(assignment: str, plugin: _GraderPlugin, *extra: str) -> None:
    args = [
        str(grader_path(assignment)),
        "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:unraisableexception", "--assert=plain",
        "--tb=native",
        "--import-mode=importlib", "--rootdir", str(GRADERS_DIR), "-c", str(GRADERS_DIR / "pytest.ini"), *extra,
    ]
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.main(args, plugins=[plugin])


def part_points(assignment: str) -> dict[str, float]:
    """The points of every part of ``assignment``, from the grader tests' markers (no test is run)."""
    plugin = _GraderPlugin(InProcessStudent({}), None)
    _run_pytest(assignment, plugin, "--collect-only")
    if plugin.errors:
        raise RuntimeError(f"the grader for {assignment} failed to load:\n" + "\n".join(plugin.errors))
    points: dict[str, float] = {}
    for outcome in plugin.outcomes:
        points[outcome.part] = points.get(outcome.part, 0.0) + outcome.points
    return points


def run_part(assignment: str, part: str | None, student: Student) -> PartReport:
    """Run the tests of ``part`` (all parts when None) of ``assignment`` against ``student``."""
    plugin = _GraderPlugin(student, part)
    _run_pytest(assignment, plugin)
    if plugin.errors:
        raise RuntimeError(f"the grader for {assignment} failed to load:\n" + "\n".join(plugin.errors))
    if not plugin.outcomes:
        raise RuntimeError(f"no grader tests for part {part!r} of {assignment}")
    return PartReport(assignment, part or "all", plugin.outcomes)


def grade(assignment: str, part: str, namespace: dict[str, Any]) -> float:
    """Entry point of a hidden test cell: grade ``part`` against the kernel's globals.

    Prints the per-test report and returns the points earned, which nbgrader reads as partial credit.
    Nothing is written to stderr, so a warning cannot zero the cell.
    """
    report = run_part(assignment, part, InProcessStudent(namespace))
    print(report.text())
    return report.earned
