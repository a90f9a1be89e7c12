"""The conda environment and the pip project name the same packages."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda package name -> pip distribution name


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def pyproject_packages() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return {_name(r) for r in requirements}


def conda_packages() -> set[str]:
    names = set()
    text = (REPO / "environment.yml").read_text()
    for line in text.split("\ndependencies:\n", 1)[1].splitlines():
        match = re.match(r"^  - ([A-Za-z0-9_.-]+)", line)
        if match and match.group(1) not in ("python", "pip"):
            name = _name(match.group(1))
            names.add(CONDA_NAMES.get(name, name))
    return names


def test_environment_and_pyproject_name_the_same_packages():
    pip, conda = pyproject_packages(), conda_packages()
    assert pip, "no dependencies read from pyproject.toml"
    assert conda == pip, (
        f"only in environment.yml: {sorted(conda - pip)}; only in pyproject.toml: {sorted(pip - conda)}"
    )


def test_environment_pins_python_311():
    assert "  - python=3.11" in (REPO / "environment.yml").read_text().splitlines()


def test_the_student_bundle_requires_what_the_project_requires():
    """Students install course_utils from the bundle's wheel: it declares the same versions (torch.optim.Muon: 2.9).

    tests/test_bundle.py checks that the wheel's METADATA lists exactly ``DEPENDENCIES``."""
    from autograde.bundle import DEPENDENCIES

    assert list(DEPENDENCIES) == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def test_every_conda_package_comes_from_conda_forge():
    """PyTorch's own conda channel stopped at 2.5; mixing channels under strict priority cannot resolve torch>=2.9."""
    text = (REPO / "environment.yml").read_text()
    channels = re.search(r"^channels:\n((?:  - .+\n)+)", text, re.MULTILINE).group(1)
    assert [line.strip("- \n") for line in channels.splitlines()] == ["conda-forge", "nodefaults"]
