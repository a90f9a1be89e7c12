"""Where each graded notebook is: an instructor-only index a grading run writes beside its results.

``DIR/submissions_index.json`` lists, for every submission of the run, the student id exactly as submitted, the
assignment, the folder of its results (relative to ``DIR``) and the absolute path of the notebook that was
graded. The similarity check reads the notebooks through it. It names students and paths of the grading
machine, so it stays with the instructor like ``grades.csv`` (students only ever receive their own folder).

Without an index (results downloaded from elsewhere), ``python -m autograde report DIR --submissions PATH...``
finds the notebooks the way ``grade`` found them, so the student ids agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

INDEX = "submissions_index.json"
VERSION = 1


@dataclass(frozen=True)
class Entry:
    student: str
    assignment: str
    folder: str  # the submission's results folder, relative to the grading folder
    notebook: str  # the graded notebook's absolute path


def write_index(out: Path, entries: Iterable[Entry]) -> Path:
    """Record ``entries`` in ``out``'s index, keeping the entries of other submissions already there (a folder
    that several runs write into, one assignment each, as nbgrader's ``course/grading``)."""
    path = Path(out) / INDEX
    entries = list(entries)
    new = {(e.student, e.assignment) for e in entries}
    kept = [e for e in _entries(out) if (e.student, e.assignment) not in new]
    data = {
        "about": "instructors only: where each graded notebook is (student ids and paths of the grading machine)",
        "version": VERSION,
        "submissions": [asdict(e) for e in kept + entries],
    }
    path.write_text(json.dumps(data, indent=1))
    return path


def _entries(root: Path) -> list[Entry]:
    """The index's entries under ``root`` ([] when there is none or it is malformed)."""
    path = Path(root) / INDEX
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    fields = ("student", "assignment", "folder", "notebook")
    rows = data.get("submissions", []) if isinstance(data, dict) else []
    return [
        Entry(*(row[f] for f in fields))
        for row in rows
        if isinstance(row, dict) and all(isinstance(row.get(f), str) for f in fields)
    ]


def read_index(root: Path) -> dict[tuple[str, str], Path]:
    """(student, assignment) -> notebook, from the index under ``root`` ({} when there is none)."""
    return {(e.student, e.assignment): Path(e.notebook) for e in _entries(root)}


def discovered_notebooks(paths: Iterable[Path], known: Iterable[str]) -> list[tuple[str, str | None, Path]]:
    """(student, assignment or None, notebook) for the notebooks under ``paths``, found as ``grade`` finds them
    (so that the student ids are the same)."""
    from autograde.submissions import discover

    return [(s.student, s.assignment, s.path) for s in discover(list(paths), list(known)) if not s.problem]
