"""The Colab bootstrap at the top of every notebook's ``setup`` cell, written by the release step.

On Colab, the bootstrap mounts Google Drive at Colab's ``/content/drive`` and installs ``course_utils``: (a) from
``COURSE_UTILS_SPEC``, the pip address the instructor released with (``make release COURSE_UTILS_SPEC=...`` or
``course.COURSE_UTILS_SPEC``); else (b) from the wheel in the student bundle uploaded to
``My Drive/attention-course`` (no build, no package index); else (c) it stops with one message that says how to
do (a) or (b). pip installs ``course_utils`` alone (``--no-deps``): the runtime's torch, torchvision, numpy,
matplotlib and tqdm stay as they are, and ``course_utils.torch_support`` says what falls back on an older torch.
Nothing is written to the Drive folder or the working directory. Then the course folder in Drive keeps the data
and what the notebook saves. Elsewhere it does nothing. ``solutions/`` holds the bootstrap with no address; only
the release gets one.
"""

from __future__ import annotations

import json
import re

from course_utils.colab import DRIVE_FOLDER_NAME, WHEEL_GLOB

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

    drive.mount("/content/drive")
    COURSE_FOLDER = Path("/content/drive/MyDrive") / {folder}
    if importlib.util.find_spec("course_utils") is None:
        wheels = sorted(COURSE_FOLDER.glob({wheel}))
        if COURSE_UTILS_SPEC:
            source = [COURSE_UTILS_SPEC]
        elif wheels:
            source = [str(wheels[-1]), "--no-index"]  # the wheel in the bundle: nothing to build or download
        else:
            raise RuntimeError(
                "course_utils is not installed, and your Google Drive has no course folder with its wheel. "
                "Either upload the unzipped student bundle to Google Drive as the folder My Drive/{folder_name} "
                "(it holds {wheel_name}) and run this cell again (see the README's Colab "
                "steps), or ask your instructor for a release made with COURSE_UTILS_SPEC set."
            )
        # --no-deps: the runtime's own torch, torchvision, numpy, matplotlib and tqdm are used as they are.
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check"]
        subprocess.run([*pip, "--root-user-action=ignore", *source], check=True)
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
        wheel=json.dumps(WHEEL_GLOB),
        wheel_name=WHEEL_GLOB,
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
