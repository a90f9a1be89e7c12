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

from autograde.catalog import catalog
from autograde.example_notebooks import Example, build
from autograde.gradescope import build_autograder_zip
from autograde.settings import Settings

A = "01_self_attention_cnn"
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return build_autograder_zip(
        tmp_path_factory.mktemp("zip") / "autograder.zip", A, Settings(timeout=45, memory_mb=3000)
    )


def test_the_package_holds_the_grader_and_nothing_for_students_to_see(archive):
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in z.infolist()}
        run = z.read("run_autograder").decode()
    assert {
        "setup.sh",
        "run_autograder",
        "requirements.txt",
        "autograde/assignments/self_attention_cnn/grader.py",
        "autograde/assignments/self_attention_cnn/reference.py",
        "autograde/graders.ini",
        "autograde/__main__.py",
        "autograde/worker/protections/seccomp.py",
        "course_utils/__init__.py",
    } <= names
    assert not [n for n in names if n.startswith(("solutions", "tests")) or "__pycache__" in n or "/examples/" in n]
    assert modes["run_autograder"] & stat.S_IXUSR and modes["setup.sh"] & stat.S_IXUSR
    assert f"--assignment {A}" in run and "/autograder" in run
    assert "--timeout 45" in run and "--memory-mb 3000" in run  # the settings chosen when the package was built


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
def test_run_autograder_grades_a_submission_laid_out_as_on_gradescope(archive, tmp_path):
    root = tmp_path / "autograder"
    with zipfile.ZipFile(archive) as z:
        z.extractall(root / "source")
    (root / "submission").mkdir()
    (root / "results").mkdir()
    nbformat.write(build(A, Example("solution", "")), root / "submission" / "my notebook.ipynb")
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
    assert results["score"] == cat.possible
    assert len(results["tests"]) == len(cat.tests)
    assert str(root) not in json.dumps(results)  # no path of the grading machine
    assert "graded by hand" in results["output"]


def test_a_submission_without_a_notebook_scores_zero_on_every_test_and_says_why(tmp_path):
    from autograde.gradescope import run_submission

    (tmp_path / "submission" / "notes.ipynb").mkdir(parents=True)  # a folder named like a notebook
    results = tmp_path / "results" / "results.json"
    run_submission(tmp_path / "submission", results, A)
    written = json.loads(results.read_text())
    validate_results(written)
    assert written["score"] == 0
    assert len(written["tests"]) == len(catalog(A).tests)
    assert all("no .ipynb file was submitted" in test["output"] for test in written["tests"])
