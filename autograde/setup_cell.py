"""The Colab bootstrap at the top of every notebook's ``setup`` cell, written by the release step.

On Colab, the bootstrap mounts Google Drive and installs ``course_utils``: (a) from ``COURSE_UTILS_SPEC``, the
pip address the instructor released with (``make release COURSE_UTILS_SPEC=...`` or
``course.COURSE_UTILS_SPEC``); else (b) from the student bundle uploaded to ``My Drive/attention-course``;
else (c) it stops with one message that says how to do (a) or (b). Then the course folder in Drive keeps the
data and what the notebook saves. Elsewhere it does nothing. ``solutions/`` holds the bootstrap with no
address; only the release gets one.
"""

from __future__ import annotations

import json
import re

from course_utils.colab import DRIVE_FOLDER_NAME

BEGIN = "# ---- Course set-up: on Colab, installs course_utils and keeps your files in Google Drive. ----"
END = "# ---- End of the course set-up. ----"

TEMPLATE = """{begin}
COURSE_UTILS_SPEC = {spec}  # where pip finds course_utils, set by your instructor's release (or None)
ASSIGNMENT = {assignment}

import os
import sys

if "google.colab" in sys.modules:
    import importlib.util
    import subprocess
    from pathlib import Path

    from google.colab import drive

    DRIVE = os.environ.get("COURSE_COLAB_DRIVE", "/content/drive")  # where Colab mounts Google Drive
    drive.mount(DRIVE)
    COURSE_FOLDER = Path(DRIVE) / "MyDrive" / {folder}
    if importlib.util.find_spec("course_utils") is None:
        if COURSE_UTILS_SPEC:
            source = COURSE_UTILS_SPEC
        elif (COURSE_FOLDER / "pyproject.toml").is_file():
            source = str(COURSE_FOLDER)
        else:
            raise RuntimeError(
                "course_utils is not installed, and there is no course folder in your Google Drive. Either "
                "upload the unzipped student bundle to Google Drive as the folder My Drive/{folder_name} and run "
                "this cell again (see the README's Colab steps), or ask your instructor for a release made "
                "with COURSE_UTILS_SPEC set."
            )
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], check=True)
        importlib.invalidate_caches()
    from course_utils.colab import use_course_folder

    use_course_folder(COURSE_FOLDER, ASSIGNMENT)
{end}
"""
_REGION = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.DOTALL)


def bootstrap(assignment: str, spec: str | None = None) -> str:
    """The bootstrap for ``assignment``, installing from ``spec`` when given."""
    return TEMPLATE.format(
        begin=BEGIN,
        end=END,
        spec="None" if spec is None else json.dumps(spec),
        assignment=json.dumps(assignment),
        folder=json.dumps(DRIVE_FOLDER_NAME),
        folder_name=DRIVE_FOLDER_NAME,
    )


def with_bootstrap(source: str, assignment: str, spec: str | None = None) -> str:
    """``source`` (a setup cell) with its bootstrap region replaced by the current one; a cell without the
    region gets it at the top."""
    if _REGION.search(source):
        return _REGION.sub(lambda _: bootstrap(assignment, spec), source, count=1)
    return bootstrap(assignment, spec) + "\n" + source


def spec_in(source: str) -> str | None:
    """The ``COURSE_UTILS_SPEC`` a bootstrap holds (None when unset or absent)."""
    match = re.search(r"^COURSE_UTILS_SPEC = (.+?)  #", source, re.MULTILINE)
    if not match or match.group(1) == "None":
        return None
    return match.group(1).strip("'\"")
