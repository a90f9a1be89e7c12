"""nbgrader's cell metadata and markers, read in one place (release, examples, bundle, grader and tests).

Standard library and nbformat only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import nbformat

SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
REGIONS = ((SOLUTION_BEGIN, SOLUTION_END), (HIDDEN_BEGIN, HIDDEN_END))
TESTS_SUFFIX = "_tests"  # the hidden cell grading part P has grade_id P_tests


def meta(cell: Mapping) -> dict:
    """The cell's nbgrader metadata ({} when it has none or it is malformed)."""
    value = cell.get("metadata", {}).get("nbgrader", {})
    return value if isinstance(value, dict) else {}


def grade_id(cell: Mapping) -> str:
    return str(meta(cell).get("grade_id", "") or "")


def is_answer(cell: Mapping) -> bool:
    """A cell the student writes in (nbgrader ``solution: true``)."""
    return bool(meta(cell).get("solution"))


def is_hidden_test(cell: Mapping) -> bool:
    """An autograder cell (graded, not an answer), or any cell holding the hidden-tests marker."""
    m = meta(cell)
    return (bool(m.get("grade")) and not m.get("solution")) or HIDDEN_BEGIN in source(cell)


def is_locked(cell: Mapping) -> bool:
    """A read-only cell that is neither graded nor an answer (set-up, checks): nbgrader restores these."""
    m = meta(cell)
    return bool(m.get("locked")) and not m.get("grade") and not m.get("solution")


def source(cell: Mapping) -> str:
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else str(text)


def part_of(hidden_cell: Mapping) -> str:
    """The graded part a hidden test cell runs (its grade_id without ``_tests``)."""
    return grade_id(hidden_cell).removesuffix(TESTS_SUFFIX)


def inside_regions(text: str, regions: Iterable[tuple[str, str]] = REGIONS) -> tuple[list[str], list[str]]:
    """The lines of ``text`` inside begin/end regions (markers excluded), and the lines outside."""
    regions = tuple(regions)
    inside, outside, depth = [], [], 0
    for line in text.splitlines():
        stripped = line.strip()
        if any(stripped.startswith(begin) for begin, _ in regions):
            depth += 1
        elif any(stripped.startswith(end) for _, end in regions):
            depth = max(depth - 1, 0)
        else:
            (inside if depth else outside).append(line)
    return inside, outside


def without_markers(text: str) -> str:
    """An answer cell's solution as a student would write it: the solution markers removed."""
    return "\n".join(line for line in text.splitlines() if line.strip() not in (SOLUTION_BEGIN, SOLUTION_END))


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)
