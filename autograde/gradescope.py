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
import os
import zipfile
from pathlib import Path

import torch
import torchvision

from autograde import course, settings
from autograde.catalog import catalog
from autograde.outputs import gradescope_results
from autograde.pipeline import UNRECOGNISED, GradingRun, Options, SandboxError, unreadable
from autograde.settings import Settings
from autograde.submissions import Submission, discover
from autograde.worker.results import SubmissionResult

REPO = course.REPO
PACKAGES = ("autograde", "course_utils")
EXCLUDED = ("__pycache__", ".ipynb_checkpoints")
REQUIREMENTS = ("numpy", "matplotlib", "tqdm", "nbformat", "pytest", "ipython")

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
# The CIFAR-10 test split, to evaluate trained checkpoints on (the build has a network; grading has none).
python3 -c "import torchvision; torchvision.datasets.CIFAR10('/autograder/source/data', train=False, download=True)"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this once per submission. AUTOGRADER_ROOT and AUTOGRADER_PYTHON let it run locally too.
set -euo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
# Only root may enter the autograder's folders: sandboxed workers run as users of their own.
chmod 700 "$ROOT"
cd "$ROOT/source"
export COURSE_DATA="${{COURSE_DATA:-$ROOT/source/data}}"
exec "${{AUTOGRADER_PYTHON:-python3}}" -m autograde gradescope-run --submission "$ROOT/submission" \\
    --results "$ROOT/results/results.json"{options}
"""


def _version(module) -> str:
    return module.__version__.split("+")[0]


def package_files(
    assignment: str | None = None,
    chosen: Settings = settings.DEFAULTS,
    hide_choices: bool = False,
    allow_unprotected: bool = False,
) -> dict[str, bytes]:
    """Archive name -> content of everything the autograder image needs."""
    files: dict[str, bytes] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            name = path.relative_to(REPO).as_posix()
            if path.is_file() and not any(part in name for part in EXCLUDED) and path.suffix in (".py", ".ini"):
                files[name] = path.read_bytes()
    for path in sorted(course.RELEASE.rglob("*.ipynb")):
        name = path.relative_to(REPO).as_posix()
        if ".ipynb_checkpoints" not in name and (assignment is None or path.parent.name == assignment):
            files[name] = path.read_bytes()
    torch_pins = f"torch=={_version(torch)} torchvision=={_version(torchvision)}"
    files["requirements.txt"] = "\n".join(REQUIREMENTS).encode() + b"\n"
    files["setup.sh"] = SETUP_SH.format(torch=torch_pins).encode()
    options = chosen.as_arguments() + (["--assignment", assignment] if assignment else [])
    options += ["--hide-choices"] * hide_choices + ["--allow-unprotected"] * allow_unprotected
    files["run_autograder"] = RUN_AUTOGRADER.format(options="".join(f" {o}" for o in options)).encode()
    return files


def build_autograder_zip(
    out: Path,
    assignment: str | None = None,
    chosen: Settings = settings.DEFAULTS,
    hide_choices: bool = False,
    allow_unprotected: bool = False,
) -> Path:
    """Write the Gradescope autograder zip (``setup.sh`` and ``run_autograder`` at its root); ``run_autograder``
    grades with ``chosen`` settings."""
    if assignment is not None:
        course.get(assignment)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in package_files(assignment, chosen, hide_choices, allow_unprotected).items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return out


def _write(results: Path, result: SubmissionResult, hide_choices: bool) -> SubmissionResult:
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(gradescope_results(result, hide_choices), indent=2))
    return result


def run_submission(
    submission: Path,
    results: Path,
    assignment: str | None = None,
    chosen: Settings = settings.DEFAULTS,
    hide_choices: bool = False,
    allow_unprotected: bool = False,
) -> SubmissionResult:
    """Grade the notebook in ``submission`` (a Gradescope submission folder) and write ``results``.

    Whatever happens (no notebook, an unrecognised one, a sandbox that cannot start), ``results`` is written,
    with a message that says what happened. Where the folder holds several notebooks, the first one recognised as
    an assignment of the course is graded.
    """
    candidates = _notebooks(submission)
    if not candidates:
        empty = Submission("submission", submission)
        reason = "no .ipynb file was submitted: upload the assignment's notebook"
        cat = catalog(assignment) if assignment else None
        return _write(results, unreadable(empty, assignment, cat, reason), hide_choices)
    options = Options(
        assignment=assignment,
        hide=(results.parent.resolve(), submission.resolve()),
        allow_unprotected=allow_unprotected,
    )
    run = GradingRun(chosen, options)
    try:
        graded = run.grade(candidates[:1] if assignment else candidates)
        result = next((r for r in graded if r.assignment != UNRECOGNISED), graded[0])
    except SandboxError as exc:
        cat = catalog(assignment) if assignment else None
        reason = (
            "the autograder's sandbox is not available, so nothing was run; your instructor must fix the "
            f"autograder ({str(exc).splitlines()[0]})"
        )
        result = unreadable(candidates[0], assignment, cat, reason)
    finally:
        run.close()
    return _write(results, result, hide_choices)


def _notebooks(folder: Path, most: int = 5) -> list[Submission]:
    """The notebooks in a Gradescope submission folder, at any depth (links are not followed), at most ``most``."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED)
        found += [Path(root) / f for f in sorted(files) if f.endswith(".ipynb")]
    subs = discover(found[:most], course.ids()) if found else []
    return [Submission("submission", s.path, s.assignment, s.folder, s.problem) for s in subs]
