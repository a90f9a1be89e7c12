"""The project installed as a wheel (what a hub image or `pip install .` does), not the editable .venv, grades.

A regression test for a wheel that lacked the grader settings the harness reads (every hidden cell then failed
with "no grader tests for part ..." and every student scored 0): the wheel is built from the sources, installed
without dependencies into a fresh virtual environment that holds this environment's third-party packages as hard
links (hub.environment.dependency_environment: not this project's editable install; a plain path entry would do
for imports, but the sandboxed grader shows its workers the environment's own site-packages only), and
``autograde`` is checked to come from the wheel. Then a correct and a buggy submission of notebook 2 are graded by
``python -m autograde grade`` and by ``nbgrader autograde`` (the course's nbgrader_config.py, in a scratch course),
both run by the wheel's Python: the scores are the examples' expected scores, part by part, in both.
"""

from __future__ import annotations

import csv
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from autograde import course
from autograde import example_notebooks as ex
from autograde.course import REPO
from autograde.nbgrader_course import cell_scores, make_course, submit
from hub.environment import build_wheel, dependency_environment

pytestmark = pytest.mark.slow

ASSIGNMENT = "02_multi_head_attention"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def wheel_python(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with this environment's packages (hard links, not this project's editable
    install) and the wheel installed in it."""
    python = dependency_environment(tmp_path_factory.mktemp("wheel-env") / "venv")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        env=clean_env(),
        cwd=python.parent,
    )
    return python


def clean_env() -> dict[str, str]:
    """No PYTHONPATH, NBGRADER_EXECUTION or virtual environment; a PATH without any environment's scripts
    (nbgrader must find `alembic` through the course's nbgrader_config.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NBGRADER_EXECUTION", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(python), *args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def expected_scores(names: list[str]) -> dict[str, dict[str, float]]:
    return {e.name: ex.expected_points(ASSIGNMENT, e) for e in ex.examples(ASSIGNMENT) if e.name in names}


def submissions() -> list[str]:
    mistake = next(e.name for e in ex.examples(ASSIGNMENT) if e.name != "solution" and not e.blank)
    return ["solution", mistake]


def test_the_wheel_ships_every_file_the_grader_reads(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "autograde/graders.ini" in names
    package_files = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "autograde").rglob("*.py")
        if "__pycache__" not in p.parts and not p.name.startswith(".")
    }
    missing = sorted(package_files - names)
    assert not missing, f"the wheel lacks {missing[:5]} (a package folder without __init__.py?)"
    assert any(n.startswith("course_utils/") for n in names)


def test_autograde_comes_from_the_wheel(wheel_python, tmp_path):
    found = run(
        wheel_python,
        "-c",
        "import autograde, course_utils; print(autograde.__file__); print(course_utils.__file__)",
        cwd=tmp_path,
    ).stdout.split()
    site = wheel_python.parent.parent
    assert all(Path(f).is_relative_to(site) for f in found), f"not the wheel's copy: {found}"
    assert not any(Path(f).is_relative_to(REPO) for f in found), found


def test_the_cli_grades_from_the_wheel(wheel_python, tmp_path):
    names = submissions()
    paths = [str(course.get(ASSIGNMENT).examples_dir / f"{name}.ipynb") for name in names]
    run(wheel_python, "-m", "autograde", "grade", *paths, "--assignment", ASSIGNMENT, "--out", "grading", cwd=tmp_path)
    with (tmp_path / "grading" / "grades.csv").open() as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    for name, parts in expected_scores(names).items():
        assert rows[name]["error"] == "", rows[name]
        assert {part: float(rows[name][part]) for part in parts} == pytest.approx(parts), (name, rows[name])


def test_nbgrader_autograde_grades_from_the_wheel(wheel_python, tmp_path):
    root = make_course(tmp_path / "course-dir")
    (root / "course").rmdir()  # a course never graded: nbgrader_config.py makes the folder
    run(wheel_python, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force", cwd=root)
    names = submissions()
    for name in names:
        submit(root, ASSIGNMENT, name, course.get(ASSIGNMENT).examples_dir / f"{name}.ipynb")
    run(wheel_python, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force", cwd=root)
    scores: dict[str, dict[str, float]] = {}
    for score in cell_scores(root, ASSIGNMENT):
        if score.cell.endswith("_tests"):
            scores.setdefault(score.student, {})[score.cell.removesuffix("_tests")] = score.auto_score
    expected = expected_scores(names)
    assert set(scores) == set(expected), scores
    for name, parts in expected.items():
        assert scores[name] == pytest.approx(parts), (name, scores[name])
