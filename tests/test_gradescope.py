"""The Gradescope autograder package, run locally the way Gradescope runs it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograde.examples import Example, build
from autograde.gradescope import build_autograder_zip
from autograde.isolation.batch import catalog
from autograde.nbgrader_course import RELEASE, SOLUTIONS

A = "01_self_attention_cnn"
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return build_autograder_zip(tmp_path_factory.mktemp("zip") / "autograder.zip", A)


def test_the_package_holds_the_grader_and_nothing_for_students_to_see(archive):
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in z.infolist()}
        run = z.read("run_autograder").decode()
    assert {
        "setup.sh",
        "run_autograder",
        "requirements.txt",
        f"autograde/graders/test_{A}.py",
        "autograde/references/attention_cnn.py",
        "autograde/graders/pytest.ini",
        "autograde/__main__.py",
        "autograde/isolation/worker.py",
        "course_utils/__init__.py",
    } <= names
    assert not [
        n for n in names if n.startswith(("autograde/examples", "solutions", "tests")) or "__pycache__" in n
    ]
    assert modes["run_autograder"] & stat.S_IXUSR and modes["setup.sh"] & stat.S_IXUSR
    assert f"--assignment {A}" in run and "/autograder" in run


def validate_results(results: dict) -> None:
    """The fields Gradescope reads, with their types."""
    assert isinstance(results["score"], (int, float)) and isinstance(results["tests"], list)
    assert results.get("visibility", "visible") in VISIBILITY
    for test in results["tests"]:
        assert isinstance(test["name"], str) and test["name"]
        assert 0 <= test["score"] <= test["max_score"]
        assert isinstance(test["output"], str) and test["visibility"] in VISIBILITY
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))


@pytest.mark.slow
@pytest.mark.skipif(not (RELEASE / A).is_dir() or not (SOLUTIONS / A).is_dir(), reason="needs notebook 1")
def test_run_autograder_grades_a_submission_laid_out_as_on_gradescope(archive, tmp_path):
    root = tmp_path / "autograder"
    with zipfile.ZipFile(archive) as z:
        z.extractall(root / "source")
    (root / "submission").mkdir()
    (root / "results").mkdir()
    nbformat.write(build(A, Example("solution", "", {})), root / "submission" / "my notebook.ipynb")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    validate_results(results)
    cat = catalog(A)
    assert results["score"] == sum(cat.parts.values())
    assert len(results["tests"]) == len(cat.tests)
