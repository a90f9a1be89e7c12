"""Grade a class: find the submissions, run the graders against each one in a sandbox, in parallel lanes.

A lane is a trusted process forked from this one (graders and references already loaded). It grades one
submission at a time: it runs the same pytest graders as nbgrader (:func:`autograde.harness.run_part`, all
parts in one session) against a :class:`WorkerStudent` whose sandboxed child it gets from the shared
:class:`~autograde.isolation.sandbox.Zygote`. ``--jobs N`` runs N lanes. Neither lanes nor the zygote run
student code, so a submission can only lose its own points.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import re
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import util as mp_util
from pathlib import Path
from typing import Any

import torch

from autograde.checkpoint_grading import SUBMISSION_DIR_VARIABLE
from autograde.harness import GRADERS_DIR, run_part
from autograde.isolation.sandbox import Limits, SandboxError, Zygote
from autograde.isolation.worker_student import WorkerStudent
from autograde.nbgrader_course import RELEASE
from autograde.notebook_source import (
    NotebookError,
    detect_assignment,
    graded_source,
    nbgrader_meta,
    read_notebook,
)
from autograde.student import Call, CallResult, ModuleInfo, StudentError


# ----------------------------------------------------------------------------------------------- catalog
class _RecordingStudent:
    """Answers nothing, but records every name the graders ask for (the roots of the graded definitions)."""

    def __init__(self, message: str = "nothing to grade"):
        self.message = message
        self.names: list[str] = []

    def _ask(self, name: str) -> None:
        if name not in self.names:
            self.names.append(name)
        raise StudentError(self.message)

    def has(self, name: str) -> bool:
        if name not in self.names:
            self.names.append(name)
        return False

    def value(self, name: str) -> Any:
        self._ask(name)

    def describe(
        self, target: str, args: tuple = (), kwargs: dict | None = None, attrs: tuple[str, ...] = ()
    ) -> ModuleInfo:
        self._ask(target)

    def call(self, call: Call) -> CallResult:
        self._ask(call.target)


@dataclass(frozen=True)
class TestSpec:
    name: str
    part: str
    description: str
    points: float


@dataclass(frozen=True)
class Catalog:
    """An assignment's grader tests (in order), the names they ask for and the release's read-only cells."""

    assignment: str
    tests: tuple[TestSpec, ...]
    names: tuple[str, ...]
    locked_sources: dict[str, str]

    @property
    def parts(self) -> dict[str, float]:
        points: dict[str, float] = {}
        for t in self.tests:
            points[t.part] = points.get(t.part, 0.0) + t.points
        return points


def assignments() -> list[str]:
    """Every assignment that has a grader module."""
    return sorted(p.stem.removeprefix("test_") for p in GRADERS_DIR.glob("test_*.py"))


def _locked_sources(assignment: str) -> dict[str, str]:
    path = RELEASE / assignment / f"{assignment}.ipynb"
    if not path.is_file():
        return {}
    cells = read_notebook(path).cells
    return {
        nbgrader_meta(c)["grade_id"]: c.source
        for c in cells
        if nbgrader_meta(c).get("locked")
        and not nbgrader_meta(c).get("grade")
        and not nbgrader_meta(c).get("solution")
        and nbgrader_meta(c).get("grade_id")
    }


def catalog(assignment: str) -> Catalog:
    """Run the graders once against a recording student: every test, its part and points, the names asked."""
    recorder = _RecordingStudent()
    report = run_part(assignment, None, recorder)
    tests = tuple(TestSpec(o.name, o.part, o.description, o.points) for o in report.outcomes)
    return Catalog(assignment, tests, tuple(recorder.names), _locked_sources(assignment))


# ------------------------------------------------------------------------------------------- submissions
@dataclass(frozen=True)
class Submission:
    student: str
    path: Path
    assignment: str | None = None


def _student_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name).strip("._") or "student"


def _notebooks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def discover(paths: Iterable[Path], known: Iterable[str]) -> list[Submission]:
    """The submissions under ``paths``: notebooks, folders of notebooks (one per student, named after the
    student) or an nbgrader ``submitted/`` tree (``<student>/<assignment>/*.ipynb``)."""
    known = set(known)
    found: list[Submission] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(Submission(_student_id(path.stem), path))
            continue
        if not path.is_dir():
            raise FileNotFoundError(
                f"{path} does not exist: pass notebooks, folders of notebooks or an nbgrader "
                "submitted/ folder"
            )
        root = path / "submitted" if (path / "submitted").is_dir() else path
        tree = [
            (s, a)
            for s in sorted(root.iterdir())
            if s.is_dir()
            for a in sorted(s.iterdir())
            if a.is_dir() and a.name in known
        ]
        if tree:
            for student, folder in tree:
                found.extend(
                    Submission(_student_id(student.name), nb, folder.name) for nb in _notebooks(folder)
                )
        else:
            found.extend(Submission(_student_id(nb.stem), nb) for nb in _notebooks(path))
    seen: dict[tuple[str, str | None], int] = {}
    unique = []
    for sub in found:
        key = (sub.student, sub.assignment)
        seen[key] = seen.get(key, 0) + 1
        name = sub.student if seen[key] == 1 else f"{sub.student}-{seen[key]}"
        unique.append(Submission(name, sub.path, sub.assignment))
    return unique


# ----------------------------------------------------------------------------------------------- results
@dataclass
class TestResult:
    name: str
    part: str
    description: str
    points: float
    earned: float
    message: str


@dataclass
class SubmissionResult:
    """Everything the outputs need about one graded submission (plain data: it crosses process boundaries)."""

    student: str
    assignment: str
    path: str
    tests: list[TestResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    incidents: list[tuple[str, str]] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def parts(self) -> dict[str, tuple[float, float]]:
        """part -> (earned, possible), in grader order."""
        parts: dict[str, tuple[float, float]] = {}
        for t in self.tests:
            earned, possible = parts.get(t.part, (0.0, 0.0))
            parts[t.part] = (earned + t.earned, possible + t.points)
        return parts

    @property
    def earned(self) -> float:
        return sum(t.earned for t in self.tests)

    @property
    def possible(self) -> float:
        return sum(t.points for t in self.tests)


# ------------------------------------------------------------------------------------------------- lanes
_LANE: dict[str, Any] = {}


def prepare_grading_process() -> None:
    """Settings for a process that runs many grader sessions: one torch thread per lane, short tracebacks.

    pytest formats a long traceback (parsing the grader's source) for every failed check although only the
    message is kept; ``--tb=native`` makes that cheap. Objects alive now are frozen out of garbage collection,
    which pytest runs after every session.
    """
    os.environ["PYTEST_ADDOPTS"] = (os.environ.get("PYTEST_ADDOPTS", "") + " --tb=native").strip()
    torch.set_num_threads(1)
    gc.collect()
    gc.freeze()


def _lane_init(zygote: Zygote, catalogs: dict[str, Catalog]) -> None:
    prepare_grading_process()
    _LANE.update(zygote=zygote, catalogs=catalogs)


def _unreadable(sub: Submission, assignment: str, cat: Catalog, reason: str) -> SubmissionResult:
    message = f"the submission could not be graded: {reason}"
    tests = [TestResult(t.name, t.part, t.description, t.points, 0.0, message) for t in cat.tests]
    return SubmissionResult(sub.student, assignment, str(sub.path), tests, error=reason)


def grade_submission(sub: Submission, assignment: str, cat: Catalog, zygote: Zygote) -> SubmissionResult:
    """Grade one submission in a fresh sandbox (read in this process, run only in the sandbox)."""
    start = time.monotonic()
    try:
        nb = read_notebook(sub.path)
    except NotebookError as exc:
        result = _unreadable(sub, assignment, cat, str(exc))
        result.seconds = time.monotonic() - start
        return result
    source = graded_source(nb, cat.names, cat.locked_sources)
    student = WorkerStudent(zygote, source, zygote.limits.timeout)
    # Files submitted with the notebook (notebook 4's checkpoint) are read here, by the trusted graders.
    previous = os.environ.get(SUBMISSION_DIR_VARIABLE)
    os.environ[SUBMISSION_DIR_VARIABLE] = str(sub.path.resolve().parent)
    try:
        report = run_part(assignment, None, student)
    finally:
        if previous is None:
            del os.environ[SUBMISSION_DIR_VARIABLE]
        else:
            os.environ[SUBMISSION_DIR_VARIABLE] = previous
        if not zygote.failure:
            student.close()
    if zygote.failure:
        raise SandboxError(zygote.failure)
    tests = [
        TestResult(o.name, o.part, o.description, o.points, o.earned, o.message) for o in report.outcomes
    ]
    return SubmissionResult(
        sub.student,
        assignment,
        str(sub.path),
        tests,
        student.problems,
        [(i.kind, i.message) for i in student.incidents if i.kind != "definition"],
        seconds=time.monotonic() - start,
    )


def _lane_grade(sub: Submission, assignment: str) -> SubmissionResult:
    """Grade in this lane; a zygote that died is replaced (by a lane-own one) and the grading redone."""
    cat = _LANE["catalogs"][assignment]
    try:
        try:
            return grade_submission(sub, assignment, cat, _LANE["zygote"])
        except SandboxError:
            lost: Zygote = _LANE["zygote"]
            if not lost.lost:
                raise
            _LANE["zygote"] = Zygote(lost.limits, [Path(h) for h in lost.hidden], lost.namespaces)
            mp_util.Finalize(_LANE["zygote"], _LANE["zygote"].close, exitpriority=10)
            return grade_submission(sub, assignment, cat, _LANE["zygote"])
    except SandboxError:
        raise
    except Exception:  # a grader bug must not stop the batch; the submission is flagged for a re-grade
        result = _unreadable(
            sub, assignment, cat, "the grader failed on this submission; tell your instructor"
        )
        result.incidents.append(("grader", traceback.format_exc(limit=8)))
        return result


def assign(
    subs: list[Submission], catalogs: dict[str, Catalog], forced: str | None
) -> list[tuple[Submission, str]]:
    """Each submission with its assignment: ``forced``, its nbgrader folder, or what its notebook holds."""
    parts = {a: c.parts for a, c in catalogs.items()}
    pairs = []
    for sub in subs:
        assignment = forced or sub.assignment
        if assignment is None:
            try:
                assignment = detect_assignment(read_notebook(sub.path), parts, sub.path.name)
            except NotebookError:
                assignment = None
            if assignment is None and len(catalogs) == 1:
                assignment = next(iter(catalogs))
            if assignment is None:
                raise ValueError(
                    f"cannot tell which assignment {sub.path} is: pass --assignment "
                    f"({', '.join(sorted(catalogs))})"
                )
        pairs.append((sub, assignment))
    return pairs


def grade_batch(
    pairs: list[tuple[Submission, str]],
    catalogs: dict[str, Catalog],
    zygote: Zygote,
    jobs: int = 2,
    progress: Callable[[SubmissionResult], None] | None = None,
) -> list[SubmissionResult]:
    """Grade every (submission, assignment) pair in ``jobs`` lanes sharing ``zygote``; results in order.

    A lane that dies (it never runs student code, so this means a grader bug) is replaced once; what it was
    grading is graded again in a fresh pool, and reported as a grader failure if that dies too.
    """
    zygote.share()
    results: dict[int, SubmissionResult] = {}
    pending = list(range(len(pairs)))
    for _ in range(2):
        if not pending:
            break
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            max_workers=max(1, min(jobs, len(pending))),
            mp_context=context,
            initializer=_lane_init,
            initargs=(zygote, catalogs),
        ) as pool:
            futures = {pool.submit(_lane_grade, *pairs[i]): i for i in pending}
            broken = []
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except BrokenProcessPool:
                    broken.append(i)
                    continue
                if progress:
                    progress(results[i])
        pending = sorted(broken)
    for i in pending:
        sub, assignment = pairs[i]
        results[i] = _unreadable(
            sub,
            assignment,
            catalogs[assignment],
            "the grader crashed twice on this submission; tell your instructor",
        )
        if progress:
            progress(results[i])
    return [results[i] for i in range(len(pairs))]


def sandbox_for(
    submissions: list[Submission], limits: Limits, hide: Iterable[Path] = (), namespaces: bool = True
) -> Zygote:
    """Start (in the background) the zygote for ``submissions``; it hides ``hide`` and their folders.

    Many folders (an nbgrader tree) are hidden through their common parent, so a sandbox needs few mounts,
    unless that parent is too near the root (``/``, ``/home``) to hide.
    """
    folders = sorted({sub.path.resolve().parent for sub in submissions})
    if len(folders) > 8 and len(Path(os.path.commonpath(folders)).parts) >= 3:
        folders = [Path(os.path.commonpath(folders))]
    return Zygote(limits, [*map(Path, hide), *folders], namespaces=namespaces)
