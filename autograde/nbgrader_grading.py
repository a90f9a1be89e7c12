"""``nbgrader autograde``, graded by the course's sandboxed grader: the nbgrader door of the one grading pipeline.

nbgrader's ``Autograde`` takes its autograde preprocessors from configuration. The course's ``nbgrader_config.py``
puts :class:`SandboxedGrading` where nbgrader's ``Execute`` was: it grades each notebook with
:class:`autograde.pipeline.GradingRun` (the sandbox, the settings and the graders of ``python -m autograde grade``,
one zygote kept for the whole ``nbgrader autograde`` run), and writes into every hidden-test cell the part's
per-test report and its score as nbgrader's partial-credit output, so that nbgrader's own ``SaveAutoGrades`` stores
exactly the isolated grader's scores in the gradebook. Student code never runs in nbgrader's process, and training
cells never run. A notebook that cannot be read or recognised scores 0 on every part, with the reason in the cells.
Each graded submission's ``results.json`` and feedback also go to ``course/grading/`` (as the command line writes
them), for the class report.

:class:`InKernelGrading` is the other, optional configuration (``AUTOGRADE_IN_KERNEL=1``): nbgrader's ``Execute``
runs the whole notebook in a kernel with the instructor's permissions, after this preprocessor wrote the grader
call into the hidden cells. It defends against nothing a hostile notebook does (see the README).

Importing this module is cheap (nbgrader reads it with its configuration); the grader loads on first use.
"""

from __future__ import annotations

import atexit
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbformat.notebooknode import NotebookNode
from nbgrader.nbgraderformat import MetadataValidator
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    Execute,
    IgnorePattern,
    LimitOutput,
    NbGraderPreprocessor,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
)
from traitlets import Dict, Unicode

from autograde import nbgrader_cells, settings
from autograde.inert import inert, public_text

PACKAGE = Path(__file__).resolve().parent


def sanitize_preprocessors() -> list[type]:
    """``c.Autograde.sanitize_preprocessors`` for the course: nbgrader's own, after :class:`CourseSchema`."""
    return [CourseSchema, ClearOutput, DeduplicateIds, OverwriteKernelspec, RestoreCells, CheckCellMetadata]


class CourseSchema(NbGraderPreprocessor):
    """Every cell's nbgrader metadata claims the schema version of this nbgrader. nbgrader stops a whole run when
    one notebook's metadata claims another version (``SchemaTooNewError`` ends ``nbgrader autograde`` for every
    student after it); with this, a tampered cell fails that notebook's own checks, and the others are graded."""

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader")
            if isinstance(meta, dict) and meta.get("schema_version") != MetadataValidator.schema_version:
                meta["schema_version"] = MetadataValidator.schema_version
        return nb, resources


def _grade_id(cell: NotebookNode) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


class RestoreCells(OverwriteCells):
    """nbgrader's ``OverwriteCells``, whose ``add_missing_cells`` puts back what a student deleted without failing
    the notebook. nbgrader's own version looks for the deleted cell's predecessor among the answer and graded cells
    only, so a hidden-test cell after a read-only cell (every check cell here) raises ``KeyError`` and the whole
    submission is removed from the gradebook; and a cell whose nbgrader metadata lost its ``grade_id`` (a duplicate
    that ``DeduplicateIds`` cleared) raises too. Here a missing graded cell goes after the nearest earlier cell of
    the release that is still there (any kind), or first; a missing task cell goes last, as nbgrader does. The
    empty metadata ``DeduplicateIds`` leaves on the earlier copy of a duplicated cell is removed (nbgrader's metadata
    check would otherwise fail the notebook as written by an old nbgrader), so that copy is an ordinary cell; so is
    a cell whose id the release does not have (nbgrader removes the id and would then fail the notebook)."""

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        for cell in nb.cells:
            if cell.get("metadata", {}).get("nbgrader") == {}:
                del cell.metadata["nbgrader"]
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: NotebookNode, resources: dict[str, Any], index: int) -> tuple[NotebookNode, dict]:
        cell, resources = super().preprocess_cell(cell, resources, index)
        meta = cell.get("metadata", {}).get("nbgrader")
        if isinstance(meta, dict) and "grade_id" not in meta:
            # an id the release does not have (nbgrader removed it): an ordinary cell, not a corrupt notebook
            del cell.metadata["nbgrader"]
        return cell, resources

    def add_missing_grade_cells(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict]:
        source = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        order = [cell.name for cell in source.source_cells]
        by_name = dict(zip(order, source.source_cells, strict=True))
        solutions = {cell.name for cell in source.solution_cells}
        present: dict[str, NotebookNode] = {}
        for cell in nb.cells:
            grade_id = _grade_id(cell)
            if grade_id is not None:
                present.setdefault(grade_id, cell)
        for grade_cell in sorted(source.grade_cells, key=lambda c: order.index(c.name)):
            name = grade_cell.name
            if name in present:
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook", name)
            restored = self.missing_cell_transform(by_name[name], grade_cell.max_score, is_solution=name in solutions)
            earlier = order[: order.index(name)]
            anchor = next((present[n] for n in reversed(earlier) if n in present), None)
            position = 0 if anchor is None else next(i for i, c in enumerate(nb.cells) if c is anchor) + 1
            nb.cells.insert(position, restored)
            present[name] = restored
        return nb, resources

    def add_missing_task_cells(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict]:
        source = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        by_name = {cell.name: cell for cell in source.source_cells}
        submitted = {_grade_id(cell) for cell in nb.cells}
        for task in source.task_cells:
            if task.name not in submitted:
                nb.cells.append(self.missing_cell_transform(by_name[task.name], task.max_score, is_task=True))
        return nb, resources


def autograde_preprocessors(in_kernel: bool = False) -> list[type]:
    """``c.Autograde.autograde_preprocessors`` for the course: the sandbox in place of nbgrader's ``Execute``
    (default), or nbgrader's own in-kernel execution of the whole notebook."""
    after = [ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    if in_kernel:
        return [InKernelGrading, Execute, IgnorePattern, *after]
    return [SandboxedGrading, *after]


def _hidden_cells(nb: NotebookNode) -> list[NotebookNode]:
    return [c for c in nb.cells if c.get("cell_type") == "code" and nbgrader_cells.is_hidden_test(c)]


# ----------------------------------------------------------------------------------------------- sandboxed
class _Process:
    """What one ``nbgrader autograde`` process keeps: a grading run per assignment (started on its first notebook,
    closed at exit) and every result, written to ``results_directory`` at exit."""

    def __init__(self, chosen: settings.Settings, results_directory: Path):
        self.chosen, self.results_directory = replace(chosen, jobs=1), results_directory
        self.scratch = Path(tempfile.mkdtemp(prefix="nbgrader-"))  # 0700: the notebooks as nbgrader hands them over
        self.runs: dict = {}
        self.results: list = []
        self.start = time.monotonic()
        atexit.register(self.close)

    def grade(self, nb: NotebookNode, student: str, assignment: str, folder: Path, notebook: Path):
        """Grade ``nb`` (nbgrader's sanitized copy of ``notebook``, whose folder holds the files handed in)."""
        from autograde.pipeline import GradingRun, Options
        from autograde.submissions import Submission

        if assignment not in self.runs:
            hide = (Path.cwd().resolve(), self.results_directory.resolve())
            self.runs[assignment] = GradingRun(self.chosen, Options(assignment=assignment, hide=hide))
        path = self.scratch / f"{len(self.results)}.ipynb"
        path.write_text(json.dumps(nb))
        try:
            (result,) = self.runs[assignment].grade([Submission(student, path, assignment, folder)])
        finally:
            path.unlink(missing_ok=True)
        result.path = str(notebook)  # what the class report compares with the others
        self.results.append(result)
        return result

    def close(self) -> None:
        import shutil

        from autograde.outputs import write_run

        for run in self.runs.values():
            run.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self.results:
            write_run(self.results_directory, self.results, time.monotonic() - self.start)


_PROCESSES: dict[tuple, _Process] = {}


def _process(chosen: settings.Settings, results_directory: Path) -> _Process:
    key = (chosen, str(results_directory))
    if key not in _PROCESSES:
        _PROCESSES[key] = _Process(chosen, results_directory)
    return _PROCESSES[key]


class SandboxedGrading(NbGraderPreprocessor):
    """Grade the notebook with the isolated grader and write each part's report and score into its hidden cell."""

    settings = Dict(
        {},
        help="Settings of the grader to change for nbgrader, e.g. {'timeout': 60, 'memory_mb': 4096} (the names of "
        "`python -m autograde grade --help`; AUTOGRADE_<NAME> environment variables work too).",
    ).tag(config=True)
    results_directory = Unicode(
        "course/grading",
        help="Where each graded submission's results.json and feedback are written (as `python -m autograde "
        "grade --out` writes them), for the class report.",
    ).tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        info = resources["nbgrader"]
        folder = Path(resources.get("metadata", {}).get("path") or ".")
        chosen = replace(settings.from_env(), **dict(self.settings))
        process = _process(chosen, Path(self.results_directory))
        notebook = folder / f"{info['notebook']}.ipynb"
        result = process.grade(nb, info["student"], info["assignment"], folder, notebook)
        fill_hidden_cells(nb, result)
        self.log.info("%s: %g / %g automatic", info["student"], result.earned, result.possible)
        return nb, resources


def part_report(result, part: str) -> str:
    """The per-test report of ``part`` as the hidden cell shows it (student text made inert, no machine paths)."""
    outcomes = [o for o in result.outcomes if o.part == part]
    lines = [f"Autograder: {result.assignment} / {part}"]
    for o in outcomes:
        lines.append(f"  [{'PASS' if o.passed else 'FAIL'}] {o.description} ({o.earned:g}/{o.points:g})")
        lines += [f"         {line}" for line in inert(public_text(o.message)).splitlines()]
    lines.append(f"Score: {sum(o.earned for o in outcomes):g} / {sum(o.points for o in outcomes):g}")
    return "\n".join(lines)


def fill_hidden_cells(nb: NotebookNode, result) -> None:
    """Each hidden cell's outputs: its part's report (stdout) and its score (the partial credit nbgrader reads).
    The first hidden cell also lists what went wrong reading the notebook; a notebook that could not be graded
    gets its reason in every hidden cell and 0 points."""
    graded = {o.part for o in result.outcomes}
    notes = [inert(public_text(p)) for p in result.problems]
    for index, cell in enumerate(_hidden_cells(nb)):
        part = nbgrader_cells.part_of(cell)
        if result.error or part not in graded:
            text = f"The autograder could not grade this: {inert(public_text(result.error or 'no tests ran'))}"
            score = 0.0
        else:
            text = part_report(result, part)
            score = sum(o.earned for o in result.outcomes if o.part == part)
        if index == 0 and notes:
            text = "Your notebook:\n" + "\n".join(f"  {n}" for n in notes) + "\n\n" + text
        cell.outputs = [
            nbformat_output("stream", name="stdout", text=text + "\n"),
            nbformat_output("execute_result", data={"text/plain": f"{score:g}"}, metadata={}, execution_count=1),
        ]
        cell.execution_count = 1


def nbformat_output(output_type: str, **fields) -> NotebookNode:
    from nbformat.v4 import new_output

    return new_output(output_type, **fields)


# ----------------------------------------------------------------------------------------------- in-kernel
IN_KERNEL_CELL = '''{comment}
def _trusted_grade(digest):
    """The installed autograde package, after checking it is the one that was there when grading started."""
    import hashlib, importlib.util, pathlib, sys

    for name in [n for n in sys.modules if n.split(".")[0] == "autograde"]:
        del sys.modules[name]
    root = pathlib.Path(importlib.util.find_spec("autograde").origin).parent
    files = sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix())
    found = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
    assert found == digest, "the autograde package found here is not the one grading started with"
    from autograde.harness import grade

    return grade


_trusted_grade("{digest}")("{assignment}", "{part}", globals())
'''


def package_digest(package: Path = PACKAGE) -> str:
    """SHA-256 of every ``.py`` file of the autograde package, in path order (what in-kernel hidden cells check)."""
    import hashlib

    files = sorted(package.rglob("*.py"), key=lambda p: p.relative_to(package).as_posix())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


class InKernelGrading(NbGraderPreprocessor):
    """Write the grader call into each hidden cell, for nbgrader's ``Execute`` to run in the student's kernel."""

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        assignment, digest = resources["nbgrader"]["assignment"], package_digest()
        for cell in _hidden_cells(nb):
            comment = nbgrader_cells.source(cell).splitlines()[0] if nbgrader_cells.source(cell) else ""
            cell.source = IN_KERNEL_CELL.format(
                comment=comment if comment.startswith("#") else "",
                digest=digest,
                assignment=assignment,
                part=nbgrader_cells.part_of(cell),
            )
        return nb, resources
