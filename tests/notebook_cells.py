"""Reading the course notebooks in tests (the nbgrader metadata itself is read by autograde.notebooks)."""

from __future__ import annotations

from pathlib import Path

import nbformat

from autograde import course, notebooks


def source_notebook(assignment: str) -> nbformat.NotebookNode:
    return notebooks.read(course.get(assignment).source_notebook)


def release_notebook(assignment: str) -> nbformat.NotebookNode:
    return notebooks.read(course.get(assignment).release_notebook)


def hidden_cells(nb) -> dict[str, nbformat.NotebookNode]:
    """Hidden test cells by grade_id."""
    return {notebooks.grade_id(c): c for c in nb.cells if notebooks.HIDDEN_BEGIN in c.source}


def region_lines(source: str) -> list[str]:
    """The lines inside the solution and hidden-test regions of ``source``."""
    return notebooks.inside_regions(source)[0]


def all_notebooks() -> list[Path]:
    return [p for a in course.ASSIGNMENTS for p in (a.source_notebook, a.release_notebook)]
