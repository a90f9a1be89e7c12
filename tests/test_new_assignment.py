"""A fifth notebook is one folder and one registry entry: a throw-away assignment added to a copy of the course.

The copy gets a source notebook ``solutions/05_toy/`` (one graded part), ``autograde/assignments/toy/`` (grader,
reference, one example) and one line in ``autograde/course.py``, and nothing else is edited. Then, in the copy
and from the command line: the release step writes the hidden cell and releases it with nbgrader, the examples
are written, the isolated grader and nbgrader's autograde both give the example full marks, and the student
bundle and the Gradescope package carry the new notebook.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograde import course

pytestmark = pytest.mark.slow
ID, FOLDER = "05_toy", "toy"
NBGRADER = {"schema_version": 3, "locked": False, "grade": False, "solution": False}

GRADER = '''"""Hidden graders of the toy notebook."""

import pytest
import torch

from autograde.assignments.toy import reference as ref
from autograde.checks import seeded, student_call
from autograde.compare import assert_matches
from autograde.worker.protocol import Call


@pytest.mark.part("double")
@pytest.mark.points(2)
def test_double(student):
    """double(x) is 2 x"""
    x = seeded((3, 4), 0)
    result = student_call(student, Call("double", build=False, inputs=(x,)))
    assert_matches(result.output, ref.double(x), what="double(x)")
'''
REFERENCE = '''"""Reference of the toy notebook."""

import torch


def double(x: torch.Tensor) -> torch.Tensor:
    """2 x, of the same shape as x."""
    return 2 * x


SOLUTION = {"double": double}  # what the solution notebook defines
'''
EXAMPLES = '''"""Example submissions of the toy notebook."""

from autograde.example_notebooks import Example

EXAMPLES = [Example("solution", "the solution")]
'''


def source_notebook() -> nbformat.NotebookNode:
    def cell(make, source, **meta):
        return make(source, metadata={"nbgrader": {**NBGRADER, **meta}} if meta else {})

    return new_notebook(
        cells=[
            new_markdown_cell("# Notebook 5: a toy\n\nWrite `double`."),
            cell(new_code_cell, "import torch", grade_id="setup", locked=True),
            cell(
                new_code_cell,
                "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                grade_id="double",
                solution=True,
            ),
            cell(
                new_code_cell,
                "# Hidden tests: the autograder checks your double here.\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS",
                grade_id="double_tests",
                grade=True,
                locked=True,
                points=0,
            ),
        ]
    )


def run(copy: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def git(copy: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=copy, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """A copy of the course (as committed files would be), with the toy assignment added."""
    root = tmp_path_factory.mktemp("course") / "repo"
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", "outputs", "grading", "course")
    shutil.copytree(course.REPO, root, ignore=ignore)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")

    (root / "solutions" / ID).mkdir()
    nbformat.write(source_notebook(), root / "solutions" / ID / f"{ID}.ipynb")
    package = root / "autograde" / "assignments" / FOLDER
    package.mkdir()
    (package / "__init__.py").write_text('"""The toy notebook."""\n')
    (package / "grader.py").write_text(GRADER)
    (package / "reference.py").write_text(REFERENCE)
    (package / "examples.py").write_text(EXAMPLES)
    registry = root / "autograde" / "course.py"
    text = registry.read_text()
    entry = f'    Assignment("{ID}", "A toy", "{FOLDER}"),\n'
    registry.write_text(text.replace("\n)\n\n\ndef ids()", f"\n{entry})\n\n\ndef ids()", 1))
    assert entry in registry.read_text()

    run(root, "-m", "autograde.release", ID)
    run(root, "-m", "autograde.example_notebooks")
    return root


def test_only_the_new_folders_and_one_registry_entry_were_touched(copy):
    changed = {line[3:] for line in git(copy, "status", "--porcelain", "--untracked-files=all").splitlines()}
    edited = {
        path
        for path in changed
        if not path.startswith(("solutions/05_toy/", "assignments/05_toy/", "autograde/assignments/toy/"))
    }
    assert edited == {"autograde/course.py"}, edited
    diff = git(copy, "diff", "--numstat", "autograde/course.py").split()
    assert diff[:2] == ["1", "0"], diff  # one line added, none removed


def test_the_release_step_writes_the_points_and_nbgrader_releases_it(copy):
    source = nbformat.read(copy / "solutions" / ID / f"{ID}.ipynb", as_version=4)
    hidden = next(c for c in source.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "double_tests")
    assert hidden.metadata["nbgrader"]["points"] == 2 and "(2 points)." in hidden.source.splitlines()[0]
    release = copy / "assignments" / ID / f"{ID}.ipynb"
    assert release.is_file() and "BEGIN SOLUTION" not in release.read_text()
    assert (copy / "autograde" / "assignments" / FOLDER / "examples" / "solution.ipynb").is_file()


def test_the_isolated_grader_grades_it(copy, tmp_path):
    example = copy / "autograde" / "assignments" / FOLDER / "examples" / "solution.ipynb"
    run(copy, "-m", "autograde", "grade", str(example), "--out", str(tmp_path / "out"), "--quiet")
    rows = list(csv.DictReader((tmp_path / "out" / "grades.csv").open()))
    assert [(r["assignment"], r["double"], r["total"], r["max"]) for r in rows] == [(ID, "2", "2", "2")]


def test_nbgrader_autogrades_it(copy, tmp_path):
    example = copy / "autograde" / "assignments" / FOLDER / "examples" / "solution.ipynb"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from autograde import nbgrader_course as c
        course = c.make_course(Path({str(tmp_path / "nbgrader")!r}))
        c.generate_release(course, [{ID!r}])
        c.submit(course, {ID!r}, "alice", Path({str(example)!r}))
        c.autograde(course, {ID!r})
        print([(s.cell, s.auto_score) for s in c.cell_scores(course, {ID!r})])
        """
    )
    assert "('double_tests', 2.0)" in run(copy, "-c", script).stdout


def test_the_bundle_and_the_gradescope_package_carry_it(copy, tmp_path):
    run(copy, "-m", "autograde", "student-bundle", "--out", str(tmp_path / "bundle.zip"))
    with zipfile.ZipFile(tmp_path / "bundle.zip") as z:
        assert f"attention-course/{ID}/{ID}.ipynb" in z.namelist()
    run(copy, "-m", "autograde", "gradescope-zip", "--out", str(tmp_path / "autograder.zip"), "--assignment", ID)
    with zipfile.ZipFile(tmp_path / "autograder.zip") as z:
        assert "autograde/assignments/toy/grader.py" in z.namelist() and f"assignments/{ID}/{ID}.ipynb" in z.namelist()
