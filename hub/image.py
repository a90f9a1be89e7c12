"""The course-specific steps of the single-user image (hub/Dockerfile), in one script the Dockerfile runs and the
test suite runs too (tests/test_hub_config.py, in a scratch environment).

    python hub/image.py requirements SRC   # the course's packages: pyproject.toml's dependencies, extras course, hub
    python hub/image.py student SRC        # course_utils alone (as the student bundle ships it); students' config
    python hub/image.py instructor SRC     # the project's wheel (autograde: graders, references); instructors' config

SRC is the repository (in the Dockerfile, a bind mount that leaves no layer behind: the student image holds no
solution, grader or reference). Each role's Jupyter configuration goes to ``<sys.prefix>/etc/jupyter/<role>``,
which the image's ``JUPYTER_CONFIG_PATH`` names (hub/roles.py says what it holds).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

EXTRAS = ("course", "hub")  # what a user's server needs; the test extra (pytest, ruff, playwright) stays out


def requirements(src: Path) -> list[str]:
    project = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    found = list(project["dependencies"])
    for extra in EXTRAS:
        found += project["optional-dependencies"][extra]
    return [r.split(";")[0].split("#")[0].strip() for r in found]


def role_folder(role: str) -> Path:
    return Path(sys.prefix) / "etc" / "jupyter" / role


def main(argv: list[str]) -> None:
    step, src = argv[0], Path(argv[1]).resolve()
    if step == "requirements":
        print(" ".join(requirements(src)))
        return
    sys.path.insert(0, str(src))
    from hub.environment import build_wheel, install_student_package
    from hub.roles import write_role_config
    from hub.settings import load

    python = Path(sys.executable)
    if step == "student":
        install_student_package(python, src)
    elif step == "instructor":
        with tempfile.TemporaryDirectory() as dist:
            wheel = build_wheel(Path(dist), src)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True)
    else:
        raise SystemExit(f"unknown step {step!r}: requirements, student or instructor")
    print(f"wrote the {step}s' configuration to {write_role_config(role_folder(step), step, load())}")


if __name__ == "__main__":
    main(sys.argv[1:])
