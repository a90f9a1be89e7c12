"""Example submissions, kept as notebooks: the full solution, the untouched release and realistic mistakes.

Each example is the student release with its answer cells filled in: as the solution fills them, or with a
known mistake written into a copy of the solution (an :class:`Edit`). ``python -m autograde.examples``
rewrites ``autograde/examples/<assignment>/*.ipynb``; a test checks they are in sync with the notebooks and
that nbgrader gives each one its expected score.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograde.nbgrader_course import RELEASE, SOLUTIONS

HERE = Path(__file__).resolve().parent
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
# assignment id -> module of this package holding its EXAMPLES
SPECS = {
    "01_self_attention_cnn": "self_attention_cnn",
    "02_multi_head_attention": "multi_head_attention",
    "03_positional_encoding": "positional_encoding",
    "04_vision_transformer": "vision_transformer",
}


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (which must occur exactly once) by ``new`` in the answer cell ``cell`` (a grade_id)."""

    cell: str
    old: str
    new: str


@dataclass(frozen=True)
class Example:
    """A submission and the points nbgrader must give each hidden test cell (by grade_id)."""

    name: str
    description: str
    expected: dict[str, float]
    edits: tuple[Edit, ...] = ()
    blank: bool = False


def examples(assignment: str) -> list[Example]:
    return importlib.import_module(f"autograde.examples.{SPECS[assignment]}").EXAMPLES


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def answer_sources(assignment: str) -> dict[str, str]:
    """The solution's answer for every solution cell (by grade_id), with the solution markers removed."""
    nb = nbformat.read(SOLUTIONS / assignment / f"{assignment}.ipynb", as_version=4)
    answers = {}
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if meta.get("solution"):
            lines = [line for line in cell.source.splitlines() if line.strip() not in SOLUTION_MARKERS]
            answers[meta["grade_id"]] = "\n".join(lines)
    return answers


def build(assignment: str, example: Example) -> nbformat.NotebookNode:
    """The release notebook with its answer cells filled in as ``example`` says."""
    nb = nbformat.read(RELEASE / assignment / f"{assignment}.ipynb", as_version=4)
    if example.blank:
        return nb
    answers = answer_sources(assignment)
    for edit in example.edits:
        count = answers[edit.cell].count(edit.old)
        if count != 1:
            raise ValueError(f"{example.name}: {edit.old!r} occurs {count} times in answer cell {edit.cell!r}; "
                             "update the example to the current solution")
        answers[edit.cell] = answers[edit.cell].replace(edit.old, edit.new)
    for cell in nb.cells:
        grade_id = _nbgrader(cell).get("grade_id")
        if _nbgrader(cell).get("solution"):
            cell.source = answers[grade_id]
    return nb


def example_path(assignment: str, name: str) -> Path:
    return HERE / assignment / f"{name}.ipynb"


def write_examples(assignment: str, out: Path | None = None) -> list[Path]:
    folder = (out or HERE) / assignment
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for example in examples(assignment):
        path = folder / f"{example.name}.ipynb"
        nbformat.write(build(assignment, example), path)
        paths.append(path)
    return paths
