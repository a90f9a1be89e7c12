"""Grade a class: find the submissions, recognise each one's assignment, grade them in parallel lanes.

A lane is a trusted process forked from this one (graders and references already loaded). It grades one
submission at a time: it runs the same pytest graders as nbgrader (:func:`autograde.harness.run_part`, all
parts in one session) against a :class:`WorkerStudent` whose confined worker it gets from the shared
:class:`~autograde.isolation.sandbox.Zygote`, over a control channel of its own. Neither lanes nor the zygote
run student code, so a submission can only lose its own points. Every submission also has a wall-clock cap
on the trusted side (its time budget, with a margin): a lane that passes it is killed, with its workers, the
submission is marked, and a new lane takes over. A file that cannot be read or recognised is one row with its
reason; the others are graded.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import re
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import torch

from autograde import course
from autograde.catalog import Catalog
from autograde.harness import Context, run_part
from autograde.isolation.sandbox import SandboxError, Zygote
from autograde.isolation.worker_student import WorkerStudent
from autograde.notebook_source import NotebookError, detect_assignment, graded_source, read_notebook
from autograde.results import Incident, Kind, SubmissionResult, failed_everywhere
from autograde.settings import Settings

UNRECOGNISED = "(unrecognised)"


# ------------------------------------------------------------------------------------------- submissions
@dataclass(frozen=True)
class Submission:
    """student: the id exactly as submitted (the file's name without .ipynb, or the nbgrader student folder)."""

    student: str
    path: Path
    assignment: str | None = None


class DuplicateStudents(ValueError):
    """Two submissions would have the same student id for the same assignment; nothing was graded."""


def folder_name(student: str) -> str:
    """A file-system-safe folder name for ``student``; ids that had to change get a short hash, so that
    different ids never share a folder (``alice!`` -> ``alice_-3f2a1c``)."""
    safe = re.sub(r"[^A-Za-z0-9._@-]+", "_", student).strip(".") or "student"
    if safe == student:
        return safe
    return f"{safe}-{hashlib.sha256(student.encode()).hexdigest()[:6]}"


def _notebooks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def discover(paths: Iterable[Path], known: Iterable[str]) -> list[Submission]:
    """The submissions under ``paths``: notebooks, folders of notebooks (one per student, named after the
    student) or an nbgrader ``submitted/`` tree (``<student>/<assignment>/*.ipynb``; the notebook named
    after the assignment, else the folder's first notebook). Raises DuplicateStudents on an id collision."""
    known = set(known)
    found: list[Submission] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(Submission(path.stem, path))
            continue
        if not path.is_dir():
            raise FileNotFoundError(
                f"{path} does not exist: pass notebooks, folders of notebooks or an nbgrader submitted/ folder"
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
                candidates = [folder / f"{folder.name}.ipynb"] if (folder / f"{folder.name}.ipynb").is_file() else []
                candidates = candidates or _notebooks(folder)[:1]
                found.extend(Submission(student.name, nb, folder.name) for nb in candidates)
        else:
            found.extend(Submission(nb.stem, nb) for nb in _notebooks(path))
    seen: dict[tuple[str, str | None], Path] = {}
    clashes = []
    for sub in found:
        key = (sub.student, sub.assignment)
        if key in seen and seen[key].resolve() != sub.path.resolve():
            clashes.append(f"{seen[key]} and {sub.path} both belong to student {sub.student!r}")
        seen.setdefault(key, sub.path)
    if clashes:
        raise DuplicateStudents(
            "two files have the same student id, so one would overwrite the other's grade; rename one of them "
            "and run again:\n  " + "\n  ".join(clashes)
        )
    unique = {(s.student, s.assignment, s.path.resolve()): s for s in found}
    return list(unique.values())


def assign(
    subs: list[Submission], catalogs: dict[str, Catalog], forced: str | None, settings: Settings
) -> list[tuple[Submission, str | None, str]]:
    """Each submission with its assignment (``forced``, its nbgrader folder or what its notebook holds), or
    None and the reason it could not be recognised."""
    parts = {a: list(c.parts) for a, c in catalogs.items()}
    names = {a: c.names for a, c in catalogs.items()}
    out = []
    for sub in subs:
        assignment = forced or sub.assignment
        reason = ""
        if assignment is None:
            try:
                assignment = detect_assignment(read_notebook(sub.path, settings), parts, names, sub.path.name)
            except NotebookError as exc:
                reason = f"the file could not be read: {exc}"
            if assignment is None and len(catalogs) == 1:
                assignment, reason = next(iter(catalogs)), ""
            if assignment is None and not reason:
                reason = (
                    "the grader could not tell which assignment this notebook is (its nbgrader cells are gone and "
                    f"it defines none of the graded names): pass --assignment ({', '.join(sorted(catalogs))})"
                )
        out.append((sub, assignment, reason))
    return out


# -------------------------------------------------------------------------------------------- grading
def unreadable(sub: Submission, assignment: str | None, cat: Catalog | None, reason: str) -> SubmissionResult:
    message = f"the submission could not be graded: {reason}"
    outcomes = failed_everywhere(list(cat.tests), message, Kind.UNREADABLE) if cat else []
    return SubmissionResult(sub.student, assignment or UNRECOGNISED, str(sub.path), outcomes, error=reason)


def grade_submission(
    sub: Submission, assignment: str, cat: Catalog, zygote: Zygote, resources: dict[str, Any] | None = None
) -> SubmissionResult:
    """Grade one submission in a fresh sandbox (read in this process, run only in the sandbox)."""
    start = time.monotonic()
    try:
        nb = read_notebook(sub.path, zygote.settings)
    except NotebookError as exc:
        result = unreadable(sub, assignment, cat, str(exc))
        result.seconds = time.monotonic() - start
        return result
    source = graded_source(nb, cat.names, cat.locked_sources)
    budget = zygote.settings.submission_seconds + course.get(assignment).extra_seconds
    student = WorkerStudent(zygote, source, budget)
    context = Context(student, submission_dir=sub.path.resolve().parent, resources=resources or {})
    try:
        report = run_part(assignment, None, context)
    finally:
        if not zygote.failure:
            student.close()
    if zygote.failure:
        raise SandboxError(zygote.failure)
    return SubmissionResult(
        sub.student,
        assignment,
        str(sub.path),
        report.outcomes,
        student.problems,
        [i for i in student.incidents if i.kind != "definition"],
        seconds=time.monotonic() - start,
    )


def prepare_grading_process() -> None:
    """Settings for a process that runs many grader sessions: one torch thread, objects frozen out of gc."""
    os.environ["PYTEST_ADDOPTS"] = (os.environ.get("PYTEST_ADDOPTS", "") + " --tb=native").strip()
    torch.set_num_threads(1)
    gc.collect()
    gc.freeze()


def _lane(conn, channel, zygote: Zygote, catalogs: dict[str, Catalog], resources: dict) -> None:
    """A lane's loop: (index, submission, assignment) in, (index, result) or ("sandbox", message) out."""
    prepare_grading_process()
    zygote.use_channel(channel)
    while True:
        job = conn.recv()
        if job is None:
            return
        index, sub, assignment = job
        try:
            result = grade_submission(sub, assignment, catalogs[assignment], zygote, resources)
        except SandboxError as exc:
            conn.send(("sandbox", str(exc)))
            return
        except Exception:  # a grader bug must not stop the batch; the submission is flagged for a re-grade
            result = grader_failed(
                sub,
                assignment,
                catalogs[assignment],
                "the grader failed on this submission; tell your instructor",
                traceback.format_exc(limit=8),
            )
        conn.send((index, result))


class _LaneProcess:
    def __init__(self, zygote: Zygote, catalogs: dict[str, Catalog], resources: dict):
        context = multiprocessing.get_context("fork")
        self.conn, theirs = context.Pipe()
        channel = zygote.open_channel()
        self.process = context.Process(target=_lane, args=(theirs, channel, zygote, catalogs, resources), daemon=True)
        self.process.start()
        theirs.close()
        channel.close()
        self.job: tuple[int, float] | None = None  # (index, deadline)

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def wall_cap(settings: Settings, assignment: str) -> float:
    """The trusted side's wall-clock cap on one submission: its budget with a margin for the grader's work."""
    budget = settings.submission_seconds + course.get(assignment).extra_seconds
    return 1.5 * budget + 120.0


def grade_batch(
    pairs: list[tuple[Submission, str]],
    catalogs: dict[str, Catalog],
    zygote: Zygote,
    jobs: int = 2,
    progress: Callable[[SubmissionResult], None] | None = None,
    resources: dict[str, Any] | None = None,
    cap: Callable[[str], float] | None = None,
) -> list[SubmissionResult]:
    """Grade every (submission, assignment) pair in ``jobs`` lanes; results in order.

    A lane that dies (it never runs student code, so this means a grader bug or the trusted-side cap) is
    replaced; a submission whose lane died is graded once more, and marked as the grader's failure if that
    lane dies too. SandboxError stops everything.
    """
    zygote.wait_ready()
    cap = cap or (lambda assignment: wall_cap(zygote.settings, assignment))
    results: dict[int, SubmissionResult] = {}
    attempts: dict[int, int] = {}
    pending = list(range(len(pairs)))
    lanes: list[_LaneProcess] = []

    def finish(index: int, result: SubmissionResult) -> None:
        results[index] = result
        if progress:
            progress(result)

    def failed(index: int, reason: str) -> None:
        """The grader's side failed on this submission (its lane died or passed the cap)."""
        sub, assignment = pairs[index]
        finish(index, grader_failed(sub, assignment, catalogs[assignment], reason))

    try:
        while pending or any(lane.job for lane in lanes):
            lanes = [lane for lane in lanes if lane.process.is_alive() or lane.job]
            idle = [lane for lane in lanes if lane.job is None]
            while pending and (idle or len(lanes) < max(1, jobs)):
                lane = idle.pop() if idle else _LaneProcess(zygote, catalogs, resources or {})
                if lane not in lanes:
                    lanes.append(lane)
                index = pending.pop(0)
                attempts[index] = attempts.get(index, 0) + 1
                lane.job = (index, time.monotonic() + cap(pairs[index][1]))
                lane.conn.send((index, *pairs[index]))
            busy = [lane for lane in lanes if lane.job]
            now = time.monotonic()
            timeout = max(0.0, min(lane.job[1] for lane in busy) - now) if busy else 0.0
            ready = wait([lane.conn for lane in busy] + [lane.process.sentinel for lane in busy], timeout)
            for lane in busy:
                index, deadline = lane.job
                message = None
                if lane.conn in ready:
                    try:
                        message = lane.conn.recv()
                    except (EOFError, OSError):
                        message = None
                if message is not None:
                    if message[0] == "sandbox":
                        raise SandboxError(message[1])
                    lane.job = None
                    finish(message[0], message[1])
                elif lane.process.sentinel in ready or not lane.process.is_alive():
                    lane.job = None
                    lane.stop()
                    if attempts[index] < 2:
                        pending.insert(0, index)
                    else:
                        failed(index, "the grader crashed twice on this submission; tell your instructor")
                elif time.monotonic() >= deadline:
                    lane.job = None
                    lane.stop()
                    failed(
                        index,
                        f"grading this submission took more than {cap(pairs[index][1]):g} s on the grader's side, so "
                        "it was stopped; tell your instructor",
                    )
    finally:
        for lane in lanes:
            try:
                lane.conn.send(None)
            except OSError:
                pass
            lane.process.join(timeout=5)
            lane.stop()
    return [results[i] for i in range(len(pairs))]


def grader_failed(sub: Submission, assignment: str, cat: Catalog, reason: str, details: str = "") -> SubmissionResult:
    """The grader's side failed on this submission: every check fails with ``reason``, flagged for a re-grade."""
    result = unreadable(sub, assignment, cat, reason)
    for o in result.outcomes:
        o.kind = Kind.GRADER_ERROR
    result.incidents.append(Incident(Kind.GRADER_ERROR.value, details or reason))
    return result


def sandbox_for(submissions: list[Submission], settings: Settings, hide: Iterable[Path] = (), **options) -> Zygote:
    """Start (in the background) the zygote for ``submissions``; workers never see ``hide`` or the
    submissions' folders. ``options`` go to :class:`Zygote` (disable, allow_unprotected)."""
    folders = sorted({sub.path.resolve().parent for sub in submissions})
    data = [Path(os.environ["COURSE_DATA"])] if os.environ.get("COURSE_DATA") else []
    return Zygote(settings, [*map(Path, hide), *folders, *data], **options)
