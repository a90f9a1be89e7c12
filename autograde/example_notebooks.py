"""Example submissions, kept as notebooks: the full solution, the untouched release and realistic mistakes.

Each example is the student release with its answer cells filled in: as the solution fills them, or with a
known mistake written into a copy of the solution (an :class:`Edit`). An example states which grader tests
it fails (``fails``), never points: its expected score per part is derived from the graders' points.
``python -m autograde.example_notebooks`` rewrites ``autograde/assignments/<folder>/examples/*.ipynb``; tests check
that they are in sync with the notebooks and that both graders give each its expected score.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograde import course, nbgrader_cells


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (which must occur exactly once) by ``new`` in the answer cell ``cell`` (a grade_id)."""

    cell: str
    old: str
    new: str


@dataclass(frozen=True)
class Example:
    """A submission and the grader tests it fails (their function names, ``name[param]`` when parametrized;
    every test when ``blank``)."""

    name: str
    description: str
    fails: tuple[str, ...] = ()
    edits: tuple[Edit, ...] = ()
    blank: bool = False


def solution(*fails: str) -> Example:
    """The full solution (it fails only the checks no solution can pass here, such as a missing checkpoint)."""
    return Example("solution", "the full solution", fails)


BLANK = Example("blank", "the untouched release", blank=True)


def examples(assignment: str) -> list[Example]:
    return course.get(assignment).examples()


def test_name(spec_name: str) -> str:
    """``grader.py::test_x[a]`` -> ``test_x[a]`` (the form examples use)."""
    return spec_name.rsplit("::", 1)[-1]


def expected_points(assignment: str, example: Example) -> dict[str, float]:
    """Part -> the points ``example`` must earn: every test of the part except those it fails."""
    from autograde.catalog import catalog

    tests = catalog(assignment).tests
    known = {test_name(t.name) for t in tests}
    unknown = sorted(set(example.fails) - known)
    if unknown:
        raise ValueError(f"{assignment}/{example.name} fails tests the grader does not have: {unknown}")
    points: dict[str, float] = {}
    for t in tests:
        passes = not example.blank and test_name(t.name) not in example.fails
        points[t.part] = points.get(t.part, 0.0) + (t.points if passes else 0.0)
    return points


def answer_sources(assignment: str) -> dict[str, str]:
    """The solution's answer for every solution cell (by grade_id), with the solution markers removed."""
    nb = nbgrader_cells.read(course.get(assignment).source_notebook)
    return {
        nbgrader_cells.grade_id(c): nbgrader_cells.without_markers(c.source)
        for c in nb.cells
        if nbgrader_cells.is_answer(c)
    }


def build(assignment: str, example: Example) -> nbformat.NotebookNode:
    """The release notebook with its answer cells filled in as ``example`` says."""
    nb = nbgrader_cells.read(course.get(assignment).release_notebook)
    if example.blank:
        return nb
    answers = answer_sources(assignment)
    for edit in example.edits:
        count = answers[edit.cell].count(edit.old)
        if count != 1:
            raise ValueError(
                f"{example.name}: {edit.old!r} occurs {count} times in answer cell {edit.cell!r}; "
                "update the example to the current solution"
            )
        answers[edit.cell] = answers[edit.cell].replace(edit.old, edit.new)
    for cell in nb.cells:
        if nbgrader_cells.is_answer(cell):
            cell.source = answers[nbgrader_cells.grade_id(cell)]
    return nb


def example_path(assignment: str, name: str) -> Path:
    return course.get(assignment).examples_dir / f"{name}.ipynb"


def write_examples(assignment: str, folder: Path | None = None) -> list[Path]:
    """Write the example notebooks of ``assignment`` (to its examples folder, or to ``folder``)."""
    folder = folder or course.get(assignment).examples_dir
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for example in examples(assignment):
        path = folder / f"{example.name}.ipynb"
        nbformat.write(build(assignment, example), path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description="Rewrite the example submissions from the release and examples.py.")
    parser.add_argument("assignments", nargs="*", choices=[[], *course.ids()], help="default: every assignment")
    for assignment in parser.parse_args().assignments or course.ids():
        for path in write_examples(assignment):
            print(f"wrote {path.relative_to(course.REPO)}")


if __name__ == "__main__":
    main()
