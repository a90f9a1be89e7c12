"""The one grading pipeline, behind every door: ``python -m autograde grade``, Gradescope's ``run_autograder`` and
``nbgrader autograde`` (through :mod:`autograde.nbgrader_grading`), and the benchmarks and tests.

Submissions, settings, an optional assignment and evaluation data go in; one :class:`SubmissionResult` per
submission comes out, in order. A :class:`GradingRun` holds what a run prepares once: the graders' catalogs, the
resources the graded parts declare they need (prepared before any student code runs), the sandbox's zygote and the
lanes. It lives as long as the door needs it: one CLI run, one Gradescope submission, or a whole
``nbgrader autograde`` run.

Per submission, a lane (:mod:`autograde.isolation.lanes`) reads the notebook (bounded: :mod:`autograde.submissions`),
recognises its assignment, finds the graded definitions (:mod:`autograde.graded_source`) and runs the part's pytest
graders (:func:`autograde.harness.run_part`) against a :class:`WorkerStudent`, whose definitions live in a confined
worker. Every failure becomes that submission's row with its reason.
"""

from __future__ import annotations

import os
import site
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograde import course, eval_data
from autograde.catalog import Catalog, catalog
from autograde.graded_source import graded_source
from autograde.harness import Context, run_part
from autograde.isolation.lanes import Lanes
from autograde.isolation.sandbox import SandboxError, Zygote
from autograde.isolation.worker_student import WorkerStudent
from autograde.settings import DEFAULTS, Settings
from autograde.submissions import NotebookError, ReadingTimeout, Submission, read_notebook, recognise, time_cap
from autograde.worker.in_process import InProcessStudent
from autograde.worker.results import Incident, Kind, SubmissionResult, bounded, failed_everywhere

UNRECOGNISED = "(unrecognised)"

__all__ = ["GradingRun", "Options", "SandboxError", "grade", "grader_paths"]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Options:
    """How a run grades, besides the :class:`Settings` (limits).

    assignment: grade every submission as this assignment (else recognised from each one); eval_data: a private
    held-out set for checkpoints (``.npz``); hide: more paths workers must not see (outputs, the course folder);
    disable: protections switched off (testing); allow_unprotected: run even where no protection of the
    filesystem is available; notify: where messages for the instructor go (once each).
    """

    assignment: str | None = None
    eval_data: Path | None = None
    hide: tuple[Path, ...] = ()
    disable: tuple[str, ...] = ()
    allow_unprotected: bool = False
    notify: Callable[[str], None] = _stderr


def grader_paths() -> list[Path]:
    """Every copy of the grader a worker could otherwise reach: this package, any installed copy, and the other
    entries of the repository it lives in (solutions, tests, release, examples, outputs)."""
    packages = [Path(p) for p in site.getsitepackages() if os.path.isdir(p)]
    paths = [course.PACKAGE_DIR, *(p / "autograde" for p in packages)]
    for p in packages:
        paths += [p / n for n in os.listdir(p) if n.startswith(("__editable__", "attention_course"))]
    if (course.REPO / "pyproject.toml").is_file():
        paths += [p for p in course.REPO.iterdir() if p.name != "course_utils"]
    return paths


def unreadable(sub: Submission, assignment: str | None, cat: Catalog | None, reason: str) -> SubmissionResult:
    """A submission that could not be graded at all: every check fails with ``reason``."""
    message = f"the submission could not be graded: {reason}"
    outcomes = failed_everywhere(list(cat.tests), message, Kind.UNREADABLE) if cat else []
    return SubmissionResult(sub.student, assignment or UNRECOGNISED, str(sub.path), outcomes, error=reason)


@dataclass
class _Job:
    submission: Submission
    assignment: str | None  # known before reading (forced, or the nbgrader folder)


@dataclass
class GradingRun:
    """A grading run: use it as a context manager, then :meth:`grade` as often as needed.

    The zygote and the lanes start on the first :meth:`grade` (or :meth:`start`) and stay until :meth:`close`.
    """

    settings: Settings = DEFAULTS
    options: Options = field(default_factory=Options)

    def __post_init__(self) -> None:
        self.known = [self.options.assignment] if self.options.assignment else course.ids()
        self.catalogs: dict[str, Catalog] = {}
        self.resources: dict[str, Any] = {}
        self._lanes: Lanes | None = None
        self._peak = 0
        self.protections_text = ""

    # ------------------------------------------------------------------------------------------ preparing
    def start(self) -> GradingRun:
        """Load the catalogs, prepare what the graded parts need, start the zygote and wait until it is ready.

        Raises SandboxError when the sandbox cannot start (nothing can be graded then).
        """
        if self._lanes is not None:
            return self
        import torch

        torch.set_num_threads(1)
        self.catalogs = {a: catalog(a) for a in self.known}
        needs = {n for c in self.catalogs.values() for t in c.tests for n in t.needs}
        self.resources = eval_data.prepare_resources(needs, self.options.eval_data, self.options.notify)
        first = self._new_zygote()  # it imports torch in the background, while this process warms the graders up
        self._warm_up()
        zygotes = iter([first])
        self._lanes = Lanes(
            lambda: self._ready(next(zygotes, None) or self._new_zygote()),
            self._grade_one,
            jobs=self.settings.jobs,
            cap=self._cap,
            failed=self._grader_failed,
            charge=self._charged,
        )
        return self

    def _hidden(self) -> list[Path]:
        data = [Path(os.environ["COURSE_DATA"])] if os.environ.get("COURSE_DATA") else []
        extra = [self.options.eval_data] if self.options.eval_data else []
        return [*grader_paths(), *self.options.hide, *data, *extra]

    def _warm_up(self) -> None:
        """Grade each assignment's reference solution once, here, before the lanes fork: what the graders compute
        that does not depend on the student (reference outputs, inputs, weights) is then cached once for the whole
        run, in every lane. Nothing here runs student code."""
        with tempfile.TemporaryDirectory(prefix="warm-up-") as empty:  # no checkpoint to evaluate
            for assignment in self.known:
                solution = getattr(course.get(assignment).reference(), "SOLUTION", None)
                if solution is None:
                    continue
                student = InProcessStudent(dict(solution), time_limit=None)
                try:
                    run_part(assignment, None, Context(student, submission_dir=Path(empty), resources={}))
                except Exception as exc:  # a cache left cold costs time, never a grade
                    self.options.notify(f"warning: warming up the graders of {assignment} failed ({exc!r})")

    def _new_zygote(self) -> Zygote:
        extra = max((course.get(a).extra_seconds for a in self.known), default=0.0)
        return Zygote(
            self.settings,
            self._hidden(),
            extra,
            disable=self.options.disable,
            allow_unprotected=self.options.allow_unprotected,
        )

    def _ready(self, zygote: Zygote) -> Zygote:
        """``zygote``, once it is ready (SandboxError when it cannot start)."""
        try:
            zygote.wait_ready()
        except SandboxError:
            zygote.close()
            raise
        if not self.protections_text:
            self.protections_text = zygote.protections.text()
            self.options.notify(self.protections_text)
        return zygote

    def __enter__(self) -> GradingRun:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def peak_lane_mb(self) -> float:
        """The most memory one lane (the trusted side of one submission at a time) has held so far, in MiB."""
        return self._peak / 2**20 if self._lanes is None else max(self._peak, self._lanes.peak_bytes) / 2**20

    def close(self) -> None:
        if self._lanes is not None:
            self._lanes.close()
            self._peak = max(self._peak, self._lanes.peak_bytes)
            self._lanes = None

    # -------------------------------------------------------------------------------------------- grading
    def grade(
        self, submissions: Sequence[Submission], progress: Callable[[SubmissionResult], None] | None = None
    ) -> list[SubmissionResult]:
        """Grade ``submissions``; one result per submission, in order. SandboxError when the sandbox is broken."""
        self.start()
        jobs = [_Job(s, self.options.assignment or s.assignment) for s in submissions]
        return self._lanes.run(jobs, progress)

    def _extra_seconds(self, assignment: str | None) -> float:
        if assignment is not None:
            return course.get(assignment).extra_seconds
        return max((course.get(a).extra_seconds for a in self.known), default=0.0)

    def _cap(self, job: _Job) -> float:
        return self.settings.read_seconds + self.settings.wall_cap(self._extra_seconds(job.assignment))

    def _grade_one(self, job: _Job, zygote: Zygote) -> SubmissionResult:
        """In a lane: read, recognise and grade one submission."""
        start = time.monotonic()
        sub, assignment = job.submission, job.assignment
        cat = self.catalogs.get(assignment) if assignment else None
        if sub.problem:
            return self._timed(unreadable(sub, assignment, cat, sub.problem), start)
        try:
            with time_cap(self.settings.read_seconds, "reading the notebook"):
                nb = read_notebook(sub.path, self.settings)
                if assignment is None:
                    assignment = self._recognise(nb, sub)
                    if assignment is None:
                        reason = (
                            "the grader could not tell which assignment this notebook is (its nbgrader cells are gone "
                            f"and it defines none of the graded names): pass --assignment ({', '.join(self.known)})"
                        )
                        return self._timed(unreadable(sub, None, None, reason), start)
                    cat = self.catalogs[assignment]
                source = graded_source(nb, cat.names, cat.locked_sources)
        except NotebookError as exc:
            return self._timed(unreadable(sub, assignment, cat, str(exc)), start)
        except ReadingTimeout as exc:
            return self._timed(unreadable(sub, assignment, cat, f"{exc}; the grader gives up on it"), start)
        except Exception as exc:  # whatever the file does to the parsers, it is this file's row
            reason = f"the grader could not read it ({type(exc).__name__})"
            return self._timed(unreadable(sub, assignment, cat, reason), start)
        student = WorkerStudent(zygote, source, self.settings.budget(course.get(assignment).extra_seconds))
        context = Context(student, submission_dir=sub.files, resources=self.resources)
        try:
            report = run_part(assignment, None, context)
        finally:
            if not zygote.failure:
                student.close()
        if zygote.failure:
            raise SandboxError(zygote.failure)
        result = SubmissionResult(
            sub.student,
            assignment,
            str(sub.path),
            report.outcomes,
            student.problems,
            [i for i in student.incidents if i.kind != "definition"],
            measurements=list(context.measurements),
            review=[*source.review, *context.review],
        )
        return self._timed(result, start)

    def _recognise(self, nb, sub: Submission) -> str | None:
        parts = {a: list(c.parts) for a, c in self.catalogs.items()}
        names = {a: c.names for a, c in self.catalogs.items()}
        found = recognise(nb, parts, names, sub.path.name)
        if found is None and len(self.catalogs) == 1:
            return next(iter(self.catalogs))
        return found

    @staticmethod
    def _timed(result: SubmissionResult, start: float) -> SubmissionResult:
        result.seconds = time.monotonic() - start
        return bounded(result)

    def _grader_failed(self, job: _Job, reason: str, details: str = "") -> SubmissionResult:
        """The grader's side failed on this submission: every check fails, flagged for a re-grade."""
        assignment = job.assignment
        reason = f"{reason}; tell your instructor"
        result = unreadable(job.submission, assignment, self.catalogs.get(assignment) if assignment else None, reason)
        for o in result.outcomes:
            o.kind = Kind.GRADER_ERROR
        result.incidents.append(Incident(Kind.GRADER_ERROR.value, details or reason))
        return result

    def _charged(self, job: _Job, message: str) -> SubmissionResult:
        """The sandbox stopped twice while this submission was graded: its checks fail, charged to it."""
        assignment = job.assignment
        reason = "grading this submission stopped the grader's sandbox twice, so its checks could not run"
        result = unreadable(job.submission, assignment, self.catalogs.get(assignment) if assignment else None, reason)
        for o in result.outcomes:
            o.kind = Kind.CRASH
        result.incidents.append(Incident(Kind.CRASH.value, f"the sandbox stopped twice: {message}"))
        return result


def grade(
    submissions: Iterable[Submission],
    settings: Settings = DEFAULTS,
    options: Options | None = None,
    progress: Callable[[SubmissionResult], None] | None = None,
) -> list[SubmissionResult]:
    """Grade ``submissions`` in one run (see :class:`GradingRun`); one result each, in order."""
    with GradingRun(settings, options or Options()) as run:
        return run.grade(list(submissions), progress)
