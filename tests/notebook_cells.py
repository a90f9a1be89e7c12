"""Reading nbgrader cells out of the course notebooks (shared by the release and notebook tests)."""

from __future__ import annotations

from pathlib import Path

import nbformat

from autograde.nbgrader_course import RELEASE, SOLUTIONS, assignment_ids

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"


def source_notebook(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(SOLUTIONS / assignment / f"{assignment}.ipynb", as_version=4)


def release_notebook(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(RELEASE / assignment / f"{assignment}.ipynb", as_version=4)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def hidden_cells(nb) -> dict[str, nbformat.NotebookNode]:
    """Hidden test cells by grade_id."""
    return {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if HIDDEN_BEGIN in c.source}


def region_lines(source: str, begin: str, end: str) -> list[str]:
    """The lines strictly inside every begin/end region of ``source``."""
    lines, inside = [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            lines.append(line)
    return lines


def all_notebooks() -> list[Path]:
    return [folder / a / f"{a}.ipynb" for a in assignment_ids() for folder in (SOLUTIONS, RELEASE)]
