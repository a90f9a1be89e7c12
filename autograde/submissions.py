"""The submissions of a grading run: found on disk, read and recognised, all as bounded work that never trusts a file.

:func:`discover` only lists: notebooks, folders of notebooks (one per student) or an nbgrader ``submitted/`` tree.
It looks at each entry with ``lstat`` and never follows a symbolic link or opens anything; an entry that is not a
regular file (a link, a folder or a FIFO named ``x.ipynb``) becomes a submission with a ``problem``, so that it
gets its own "unreadable" row. :func:`read_notebook` opens a file without following links and without blocking,
refuses what is not a regular file or is too large, and :func:`recognise` tells which assignment a notebook is.
Both run in a lane (a trusted process of the grading run, see :mod:`autograde.isolation.lanes`), never in the
process that holds the run together, under a time cap (:func:`time_cap`); every failure of either becomes that
file's row with its reason.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograde import nbgrader_cells
from autograde.graded_source import defined_names
from autograde.settings import DEFAULTS, Settings
from autograde.worker.alarm import alarm


class NotebookError(ValueError):
    """The file is not a notebook the grader can read; the message tells the student what to fix."""


class DuplicateStudents(ValueError):
    """Two submissions would have the same student id for the same assignment; nothing was graded."""


@dataclass(frozen=True)
class Submission:
    """One file to grade.

    student: the id exactly as submitted (the file's name without .ipynb, or the nbgrader student folder);
    assignment: known from where it was found (an nbgrader ``submitted/<student>/<assignment>/`` folder), else
    recognised from the notebook; folder: where the files handed in beside the notebook are (default: the
    notebook's folder); problem: why it cannot be read at all, found while listing it (then it is not opened).
    """

    student: str
    path: Path
    assignment: str | None = None
    folder: Path | None = None
    problem: str = ""

    @property
    def files(self) -> Path:
        return self.folder if self.folder is not None else self.path.parent


# ------------------------------------------------------------------------------------------------ listing
def _kind(path: Path) -> str:
    """``file``, ``folder``, ``link``, ``missing`` or ``other`` (a FIFO, a socket, a device); links not followed."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "missing"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return "other"


_NOT_A_FILE = {
    "link": "it is a symbolic link, and the grader does not follow links: submit the notebook file itself",
    "folder": "it is a folder, not a notebook file: submit the .ipynb file",
    "other": "it is not a regular file (a pipe or a device?): submit the .ipynb file",
    "missing": "it disappeared while the grader read the folder",
}


def _entries(folder: Path) -> list[Path]:
    """The entries of ``folder`` (not followed if links), sorted, hidden ones left out."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return []


def entry(path: Path, student: str, assignment: str | None = None, folder: Path | None = None) -> Submission:
    """The submission at ``path``, looked at without following a link; with a ``problem`` if it is not a file."""
    kind = _kind(path)
    return Submission(student, path, assignment, folder, "" if kind == "file" else _NOT_A_FILE[kind])


def discover(paths: Iterable[Path], known: Iterable[str]) -> list[Submission]:
    """The submissions under ``paths``: notebooks, folders of notebooks (one per student, named after the
    student) or an nbgrader ``submitted/`` tree (``<student>/<assignment>/*.ipynb``; the notebook named after the
    assignment, else the folder's first notebook). Raises DuplicateStudents on an id collision and
    FileNotFoundError for a path that does not exist."""
    known = set(known)
    found: list[Submission] = []
    for path in map(Path, paths):
        kind = _kind(path)
        if kind == "missing":
            raise FileNotFoundError(
                f"{path} does not exist: pass notebooks, folders of notebooks or an nbgrader submitted/ folder"
            )
        if kind != "folder":
            found.append(entry(path, path.name.removesuffix(".ipynb")))
            continue
        root = path / "submitted" if _kind(path / "submitted") == "folder" else path
        tree = [
            (s, a)
            for s in _entries(root)
            if _kind(s) == "folder"
            for a in _entries(s)
            if a.name in known and _kind(a) in ("folder", "link")
        ]
        if tree:
            for student, folder in tree:
                if _kind(folder) == "link":
                    found.append(Submission(student.name, folder, folder.name, problem=_NOT_A_FILE["link"]))
                    continue
                named = folder / f"{folder.name}.ipynb"
                notebooks = [named] if _kind(named) != "missing" else [p for p in _entries(folder) if _is_ipynb(p)][:1]
                found.extend(entry(nb, student.name, folder.name, folder) for nb in notebooks)
        else:
            found.extend(entry(nb, nb.name.removesuffix(".ipynb")) for nb in _entries(path) if _is_ipynb(nb))
    _refuse_duplicates(found)
    unique = {(s.student, s.assignment, os.path.abspath(s.path)): s for s in found}
    return list(unique.values())


def _is_ipynb(path: Path) -> bool:
    return path.name.endswith(".ipynb")


def _refuse_duplicates(found: list[Submission]) -> None:
    seen: dict[tuple[str, str | None], Path] = {}
    clashes = []
    for sub in found:
        key = (sub.student, sub.assignment)
        if key in seen and os.path.abspath(seen[key]) != os.path.abspath(sub.path):
            clashes.append(f"{seen[key]} and {sub.path} both belong to student {sub.student!r}")
        seen.setdefault(key, sub.path)
    if clashes:
        raise DuplicateStudents(
            "two files have the same student id, so one would overwrite the other's grade; rename one of them "
            "and run again:\n  " + "\n  ".join(clashes)
        )


# ------------------------------------------------------------------------------------------------ reading
class ReadingTimeout(Exception):
    """Reading or recognising a notebook took longer than its cap."""


def time_cap(seconds: float, what: str):
    """Raise :class:`ReadingTimeout` in the block after ``seconds`` (main thread only; elsewhere no cap)."""
    return alarm(seconds, lambda: ReadingTimeout(f"{what} took more than {seconds:g} s"))


def read_bytes(path: Path, limit: int, what: str = "the file") -> bytes:
    """The bytes of the regular file ``path``, opened without following a link and without blocking, at most
    ``limit`` of them; :class:`NotebookError` (for a notebook) or OSError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        why = "it is a symbolic link, which the grader does not follow" if exc.errno == 40 else exc.strerror
        raise NotebookError(f"{what} could not be opened ({why})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotebookError(f"{what} is not a regular file")
        if info.st_size > limit:
            raise NotebookError(f"{what} is {info.st_size / 2**20:.0f} MiB, over the limit of {limit / 2**20:.0f} MiB")
        chunks, got = [], 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise NotebookError(f"{what} grew past the limit of {limit / 2**20:.0f} MiB while it was read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_notebook(path: Path, settings: Settings = DEFAULTS) -> nbformat.NotebookNode:
    """The notebook at ``path`` (nbformat 4), or :class:`NotebookError` saying why it cannot be read."""
    limit = settings.notebook_mb * 2**20
    try:
        data = read_bytes(path, limit)
    except NotebookError as exc:
        if "over the limit" in str(exc):
            raise NotebookError(
                f"the file is larger than {settings.notebook_mb} MiB, so it cannot be graded: clear its outputs "
                "(Edit > Clear All Outputs) and resubmit"
            ) from None
        raise
    try:
        text = data.decode("utf-8")
        content = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise NotebookError(
            f"the file is not valid notebook JSON ({type(exc).__name__}: {str(exc)[:200]}); "
            "download it again from Jupyter or Colab with File > Download > .ipynb"
        ) from None
    if not isinstance(content, dict) or not isinstance(content.get("cells", content.get("worksheets")), list):
        raise NotebookError(
            "the file is JSON but not a Jupyter notebook (it has no list of cells); submit the .ipynb file of "
            "the assignment"
        )
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several types for malformed notebooks
        raise NotebookError(f"the notebook could not be read ({type(exc).__name__}: {str(exc)[:200]})") from None
    code = sum(len(nbgrader_cells.source(c)) for c in nb.cells if c.get("cell_type") == "code")
    if code > settings.code_kb * 1024:
        raise NotebookError(
            f"the notebook holds {code / 1024:.0f} KiB of code; the grader reads at most {settings.code_kb} KiB"
        )
    return nb


# -------------------------------------------------------------------------------------------- recognising
def recognise(
    nb: nbformat.NotebookNode,
    parts: Mapping[str, Iterable[str]],
    names: Mapping[str, Iterable[str]] | None = None,
    filename: str = "",
) -> str | None:
    """The assignment the notebook is: by its graded cells (answer cells ``<part>``, hidden cells
    ``<part>_tests``), else by an assignment id in ``filename``, else (a download whose nbgrader metadata was
    stripped) by the names the graders ask for that the notebook defines. None when nothing tells.

    parts: assignment -> its part names; names: assignment -> the names its graders ask the submission for.
    """
    ids = {nbgrader_cells.grade_id(c) for c in nb.cells if nbgrader_cells.grade_id(c)}
    best, best_count = None, 0
    for assignment, part_names in parts.items():
        count = len(ids & ({*part_names} | {f"{p}{nbgrader_cells.TESTS_SUFFIX}" for p in part_names}))
        if count > best_count:
            best, best_count = assignment, count
    if best is not None:
        return best
    matches = [a for a in parts if a in filename]
    if len(matches) == 1:
        return matches[0]
    if names:
        defined = defined_names(nb)
        scores = sorted(((len(defined & set(n)) / max(len(set(n)), 1), a) for a, n in names.items()), reverse=True)
        if scores and scores[0][0] >= 0.5 and (len(scores) == 1 or scores[0][0] > scores[1][0]):
            return scores[0][1]
    return None
