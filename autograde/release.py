"""``python -m autograde.release``: regenerate the student release ``assignments/`` from ``solutions/``.

Two steps. First the hidden test cells of ``solutions/`` are written from the graders (:func:`hidden_cell`):
their nbgrader ``points`` and the "(N points)" comment come from the graders' ``@pytest.mark.points``, the only
place points are stated. They hold no code: ``nbgrader autograde`` grades each part with the course's sandboxed
grader and writes the report and score into the cell (:mod:`autograde.nbgrader_grading`). Then nbgrader
generates the release into a scratch course directory; only the release folders are copied back, so the
repository never holds a gradebook or other nbgrader state.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from pathlib import Path

import nbformat

from autograde import course, nbgrader_cells, setup_cell
from autograde.harness import part_points
from autograde.nbgrader_course import generate_release, make_course

HIDDEN_CELL = """{comment}
{begin}
# Part "{part}", graded by the course's grader, autograde/assignments/{folder}/grader.py, when the instructor
# runs `nbgrader autograde` (see nbgrader_config.py): this cell's outputs become the part's report and score.
{end}"""
POINTS = re.compile(r"\s*\(\d+(?:\.\d+)? points?\)")


def points_text(points: float) -> str:
    return f"({points:g} point{'' if points == 1 else 's'})"


def hidden_cell(comment: str, assignment: str, part: str, points: float) -> str:
    """The source of the hidden test cell of ``part``: its comment line (with the points), then what grades it."""
    comment = POINTS.sub("", comment.rstrip().rstrip("."))
    comment = re.sub(r" here$", "", comment) + f" here {points_text(points)}."
    return HIDDEN_CELL.format(
        comment=comment,
        begin=nbgrader_cells.HIDDEN_BEGIN,
        end=nbgrader_cells.HIDDEN_END,
        folder=course.get(assignment).folder,
        part=part,
    )


def synced_source(assignment: str) -> nbformat.NotebookNode:
    """The source notebook with every hidden cell written from the graders (points, comment, code)."""
    nb = nbgrader_cells.read(course.get(assignment).source_notebook)
    points = part_points(assignment)
    hidden = [c for c in nb.cells if nbgrader_cells.is_hidden_test(c)]
    parts = [nbgrader_cells.part_of(c) for c in hidden]
    missing, extra = sorted(set(points) - set(parts)), sorted(set(parts) - set(points))
    if missing or extra:
        raise ValueError(
            f"{assignment}: parts graded without a hidden cell: {missing}; hidden cells without graders: {extra}"
        )
    setup = [c for c in nb.cells if nbgrader_cells.meta(c).get("grade_id") == "setup"]
    if len(setup) != 1:
        raise ValueError(f"{assignment}: needs exactly one cell with grade_id 'setup' (the Colab bootstrap)")
    setup[0].source = setup_cell.with_bootstrap(nbgrader_cells.source(setup[0]), assignment)
    for cell, part in zip(hidden, parts, strict=True):
        comment = nbgrader_cells.source(cell).splitlines()[0] if nbgrader_cells.source(cell).startswith("#") else ""
        comment = comment or f"# Hidden tests: the autograder checks {part}"
        cell.source = hidden_cell(comment, assignment, part, points[part])
        cell.metadata["nbgrader"]["points"] = int(points[part]) if points[part].is_integer() else points[part]
    return nb


def sync_hidden_cells(assignments: list[str]) -> list[Path]:
    """Rewrite the hidden cells of ``solutions/`` from the graders, and the Colab bootstrap of the setup cells;
    the paths of the notebooks that changed."""
    changed = []
    for assignment in assignments:
        path = course.get(assignment).source_notebook
        nb = synced_source(assignment)
        if nbformat.writes(nb) + "\n" != path.read_text():
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def build_release(out: Path, assignments: list[str] | None = None, spec: str | None = None) -> list[Path]:
    """Generate the release of ``assignments`` (all by default) into ``out/<assignment>/``; with ``spec`` (a pip
    address of ``course_utils``) the Colab bootstrap of the release installs from there."""
    assignments = assignments or course.ids()
    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        nbgrader_course = make_course(Path(scratch))
        generate_release(nbgrader_course, assignments)
        written = []
        for assignment in assignments:
            target = out / assignment
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(nbgrader_course / "assignments" / assignment, target)
            if spec:
                _set_spec(target / f"{assignment}.ipynb", assignment, spec)
            written.append(target)
    return written


def _set_spec(path: Path, assignment: str, spec: str) -> None:
    """Write ``spec`` into the bootstrap of a released notebook."""
    nb = nbgrader_cells.read(path)
    for cell in nb.cells:
        if nbgrader_cells.meta(cell).get("grade_id") == "setup":
            cell.source = setup_cell.with_bootstrap(nbgrader_cells.source(cell), assignment, spec)
    nbformat.write(nb, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*", choices=[[], *course.ids()], help="default: every assignment")
    parser.add_argument(
        "--utils-spec",
        default=os.environ.get("COURSE_UTILS_SPEC") or course.COURSE_UTILS_SPEC,
        help="pip address of course_utils for Colab (default: $COURSE_UTILS_SPEC, else course.COURSE_UTILS_SPEC; "
        "without one, Colab students install it from the student bundle in their Google Drive)",
    )
    args = parser.parse_args()
    chosen = args.assignments or course.ids()
    for path in sync_hidden_cells(chosen):
        print(f"updated the hidden and set-up cells of {path.relative_to(course.REPO)}")
    for path in build_release(course.RELEASE, chosen, spec=args.utils_spec or None):
        print(f"released {path.relative_to(course.REPO)}")
    where = args.utils_spec or f"the student bundle in My Drive/{setup_cell.DRIVE_FOLDER_NAME}"
    print(f"on Colab, the release installs course_utils from {where}")


if __name__ == "__main__":
    main()
