"""Reading the course notebooks in tests (the nbgrader metadata itself is read by autograde.nbgrader_cells)."""

from __future__ import annotations

from pathlib import Path

import nbformat

from autograde import course, nbgrader_cells


def source_notebook(assignment: str) -> nbformat.NotebookNode:
    return nbgrader_cells.read(course.get(assignment).source_notebook)


def release_notebook(assignment: str) -> nbformat.NotebookNode:
    return nbgrader_cells.read(course.get(assignment).release_notebook)


def hidden_cells(nb) -> dict[str, nbformat.NotebookNode]:
    """Hidden test cells by grade_id."""
    return {nbgrader_cells.grade_id(c): c for c in nb.cells if nbgrader_cells.HIDDEN_BEGIN in c.source}


def region_lines(source: str) -> list[str]:
    """The lines inside the solution and hidden-test regions of ``source``."""
    return nbgrader_cells.inside_regions(source)[0]


def all_notebooks() -> list[Path]:
    return [p for a in course.ASSIGNMENTS for p in (a.source_notebook, a.release_notebook)]


def code_strings(assignment: str) -> set[str]:
    """Every string constant of the source notebook's code cells (adjacent literals joined, as Python joins them):
    what the visible checks can say."""
    import ast

    strings: set[str] = set()
    for cell in source_notebook(assignment).cells:
        if cell.cell_type == "code":
            tree = ast.parse(cell.source)
            strings |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return strings
