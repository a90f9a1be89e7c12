"""What a student wrote: the code answer cells of a submitted notebook, and the code the release hands out.

Answer cells are nbgrader's ``solution: true`` cells, read through :mod:`autograde.nbgrader_cells` (the one place
that knows nbgrader's metadata). A notebook whose cells lost that metadata (some editors drop it) is read whole:
every code cell counts, and the release's own code is removed later by the similarity check (whatever matches
the release is not the student's). Notebooks are read as plain JSON, the way the grader reads files (bounded,
no link followed), and never executed.
"""

from __future__ import annotations

import json
from pathlib import Path

from autograde import course, nbgrader_cells
from autograde.report.normalise import Cell
from autograde.settings import DEFAULTS
from autograde.submissions import NotebookError, read_bytes


class UnreadableNotebook(ValueError):
    """The file is missing, too large or not a notebook; the message says which."""


def read_cells(path: Path) -> list[dict]:
    """The cells of the notebook at ``path`` (plain dicts), read as the grader reads files (no link followed,
    never blocking, at most the grader's notebook size) and checked to be a list of cells."""
    try:
        data = json.loads(read_bytes(path, DEFAULTS.notebook_mb * 2**20, f"{path.name}"))
    except (NotebookError, OSError) as exc:
        raise UnreadableNotebook(str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise UnreadableNotebook(f"{path.name} is not a notebook (not JSON: {str(exc)[:200]})") from None
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, list):
        raise UnreadableNotebook(f"{path.name} is not a notebook (it has no list of cells)")
    return [c for c in cells if isinstance(c, dict)]


def _code(cell: dict) -> bool:
    return cell.get("cell_type") == "code"


def answer_cells(cells: list[dict]) -> list[Cell]:
    """The code answer cells, labelled by their grade_id (``cell 7`` for a code cell without one); every code
    cell when no cell carries nbgrader's metadata."""
    marked = [c for c in cells if _code(c) and nbgrader_cells.is_answer(c)]
    chosen = marked if marked else [c for c in cells if _code(c)]
    labelled = []
    for index, cell in enumerate(cells):
        if any(cell is c for c in chosen):
            label = nbgrader_cells.grade_id(cell) or f"cell {index + 1}"
            labelled.append(Cell(label, nbgrader_cells.source(cell)))
    return labelled


def submitted_answers(path: Path) -> list[Cell]:
    """The answer cells of the submitted notebook at ``path``; raises UnreadableNotebook (also when they hold
    more code than the grader reads)."""
    cells = answer_cells(read_cells(path))
    code = sum(len(c.source) for c in cells)
    if code > DEFAULTS.code_kb * 1024:
        raise UnreadableNotebook(f"{path.name} holds {code / 1024:.0f} KiB of answer code, more than the grader reads")
    return cells


def release_code(assignment: str) -> list[Cell] | None:
    """Every code cell of the release notebook of ``assignment`` (what every student was handed), or None when
    the course has no such assignment or its release is missing."""
    try:
        path = course.get(assignment).release_notebook
    except KeyError:
        return None
    if not path.is_file():
        return None
    cells = read_cells(path)
    return [
        Cell(nbgrader_cells.grade_id(c) or f"cell {i + 1}", nbgrader_cells.source(c))
        for i, c in enumerate(cells)
        if _code(c)
    ]
