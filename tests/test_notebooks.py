"""Solution notebooks run end to end in fast mode on a CPU, and graded in their own kernel (nbgrader's in-kernel
mode: the grader's call written into the hidden cells) they earn every point.

Notebooks 2, 3 and 5 run here. Notebooks 1 and 4, the slowest, run to their end in fast mode on a simulated Colab
runtime, and in full mode through a disconnect (tests/test_colab.py); the graders of their parts are the ones the
sandbox runs for every example submission (tests/test_isolated_grader.py)."""

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


IN_KERNEL = ("02_multi_head_attention", "03_positional_encoding", "05_local_attention")


@pytest.mark.slow
@pytest.mark.parametrize("assignment", IN_KERNEL)
def test_solution_runs_in_fast_mode_and_earns_every_point(assignment, tmp_path):
    nb = execute_fast(course.get(assignment).source_notebook, tmp_path, assignment)
    errors = [c.source[:80] for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"cells raised: {errors}"
    for grade_id, cell in hidden_cells(nb).items():
        results = [o for o in cell.outputs if o.output_type == "execute_result"]
        report = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert results, f"hidden cell {grade_id} returned no score:\n{report}"
        earned = float(results[-1]["data"]["text/plain"])
        assert earned == float(nbgrader_meta(cell)["points"]), f"{grade_id}: {earned} points\n{report}"
        assert not any(o.output_type == "stream" and o.name == "stderr" for o in cell.outputs)
