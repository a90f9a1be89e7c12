"""A Gradescope autograder package, and the command its ``run_autograder`` calls for one submission.

Gradescope builds an image by running ``setup.sh`` once (Ubuntu, as root, sources in /autograder/source), then
runs ``run_autograder`` in a fresh container per submission with the student's files in
/autograder/submission; it reads /autograder/results/results.json. The package holds the grader (this package
without its example submissions), the references, ``course_utils`` and the release notebooks (so read-only
cells are restored as nbgrader does); the project itself is not pip-installed, so the worker's site-packages
never holds the graders.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
import torchvision

from autograde.isolation.batch import (
    Submission,
    SubmissionResult,
    assign,
    assignments,
    catalog,
    grade_submission,
    prepare_grading_process,
    sandbox_for,
)
from autograde.isolation.sandbox import Limits
from autograde.nbgrader_course import RELEASE
from autograde.outputs import gradescope_results

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("autograde", "course_utils")
EXCLUDED = ("autograde/examples", "__pycache__", ".ipynb_checkpoints")
REQUIREMENTS = ("numpy", "matplotlib", "tqdm", "nbformat", "pytest")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
apt-get update -q && apt-get install -y -q python3 python3-pip
cd /autograder/source
CPU=https://download.pytorch.org/whl/cpu
python3 -m pip install --quiet --break-system-packages {torch} --index-url "$CPU" \\
    || python3 -m pip install --quiet {torch} --index-url "$CPU"
python3 -m pip install --quiet --break-system-packages -r requirements.txt \\
    || python3 -m pip install --quiet -r requirements.txt
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this once per submission. AUTOGRADER_ROOT and AUTOGRADER_PYTHON let it run locally too.
set -euo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
cd "$ROOT/source"
exec "${{AUTOGRADER_PYTHON:-python3}}" -m autograde gradescope-run --submission "$ROOT/submission" \\
    --results "$ROOT/results/results.json"{assignment}
"""


def _version(module) -> str:
    return module.__version__.split("+")[0]


def package_files(assignment: str | None = None) -> dict[str, bytes]:
    """Archive name -> content of everything the autograder image needs."""
    files: dict[str, bytes] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            name = path.relative_to(REPO).as_posix()
            if (
                path.is_file()
                and not any(part in name for part in EXCLUDED)
                and path.suffix in (".py", ".ini")
            ):
                files[name] = path.read_bytes()
    for path in sorted(RELEASE.rglob("*.ipynb")):
        name = path.relative_to(REPO).as_posix()
        if ".ipynb_checkpoints" not in name and (assignment is None or path.parent.name == assignment):
            files[name] = path.read_bytes()
    torch_pins = f"torch=={_version(torch)} torchvision=={_version(torchvision)}"
    files["requirements.txt"] = "\n".join(REQUIREMENTS).encode() + b"\n"
    files["setup.sh"] = SETUP_SH.format(torch=torch_pins).encode()
    files["run_autograder"] = RUN_AUTOGRADER.format(
        assignment=f" --assignment {assignment}" if assignment else ""
    ).encode()
    return files


def build_autograder_zip(out: Path, assignment: str | None = None) -> Path:
    """Write the Gradescope autograder zip (``setup.sh`` and ``run_autograder`` at its root)."""
    if assignment is not None and assignment not in assignments():
        raise ValueError(f"no grader for {assignment!r}; choose one of {', '.join(assignments())}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in package_files(assignment).items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return out


def _no_notebook(results: Path, message: str) -> SubmissionResult:
    result = SubmissionResult("submission", "", "", error=message, problems=[message])
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({**gradescope_results(result), "output": message}, indent=2))
    return result


def run_submission(
    submission: Path, results: Path, assignment: str | None = None, timeout: float = 30.0
) -> SubmissionResult:
    """Grade the notebook in ``submission`` (a Gradescope submission folder) and write ``results``."""
    prepare_grading_process()
    notebooks = sorted(p for p in submission.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not notebooks:
        return _no_notebook(results, "No .ipynb file was submitted: upload the assignment's notebook.")
    known = [assignment] if assignment else assignments()
    catalogs = {a: catalog(a) for a in known}
    problem = ""
    for notebook in notebooks:  # the first notebook that is recognisably one of the assignments
        try:
            sub, chosen = assign([Submission("submission", notebook)], catalogs, assignment)[0]
            break
        except ValueError as exc:
            problem = str(exc)
    else:
        return _no_notebook(results, problem)
    zygote = sandbox_for([sub], Limits(timeout=timeout), hide=[results.parent.resolve()])
    try:
        result = grade_submission(sub, chosen, catalogs[chosen], zygote)
    finally:
        zygote.close()
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(gradescope_results(result), indent=2))
    return result
