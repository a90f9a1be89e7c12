"""Every solution notebook runs end to end in fast mode on a CPU, and graded in its own kernel (nbgrader's in-kernel
mode: the grader's call written into the hidden cells) it earns every point."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from autograde import course
from autograde.nbgrader_cells import meta as nbgrader_meta
from autograde.nbgrader_grading import InKernelGrading
from tests.notebook_cells import hidden_cells


def execute_fast(path, workdir, assignment: str | None = None) -> nbformat.NotebookNode:
    """Run a notebook as nbgrader's in-kernel mode would (fast mode), with the offline data set, in ``workdir``;
    with ``assignment``, its hidden cells hold the grader's call, as that mode writes them."""
    nb = nbformat.read(path, as_version=4)
    if assignment is not None:
        nb, _ = InKernelGrading().preprocess(nb, {"nbgrader": {"assignment": assignment}})
    env = {"COURSE_FAST": "1", "COURSE_DATASET": "synthetic", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


# Hidden cells that cannot earn points in a fast-mode run, with the message their report must give instead.
# A fast-mode run never writes the ViT checkpoint; tests/test_checkpoint_grading.py grades a trained one.
NO_POINTS_IN_FAST_MODE = {"checkpoint_tests": "no checkpoint: vit_checkpoint.pt is not in the submission folder"}


@pytest.mark.slow
@pytest.mark.parametrize("assignment", course.ids())
def test_solution_runs_in_fast_mode_and_earns_every_point(assignment, tmp_path):
    nb = execute_fast(course.get(assignment).source_notebook, tmp_path, assignment)
    errors = [c.source[:80] for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"cells raised: {errors}"
    for grade_id, cell in hidden_cells(nb).items():
        results = [o for o in cell.outputs if o.output_type == "execute_result"]
        report = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert results, f"hidden cell {grade_id} returned no score:\n{report}"
        earned = float(results[-1]["data"]["text/plain"])
        if grade_id in NO_POINTS_IN_FAST_MODE:
            assert earned == 0 and NO_POINTS_IN_FAST_MODE[grade_id] in report, f"{grade_id}: {earned}\n{report}"
        else:
            assert earned == float(nbgrader_meta(cell)["points"]), f"{grade_id}: {earned} points\n{report}"
        assert not any(o.output_type == "stream" and o.name == "stderr" for o in cell.outputs)
