"""Google Colab: the course folder in the student's Google Drive keeps the data and what the notebooks save, so
a disconnected runtime loses neither, and a trained checkpoint is offered for download.

The set-up cell of every notebook mounts Drive at ``/content/drive``, installs ``course_utils`` (from the
address the instructor released with, else from the wheel in the student bundle uploaded to
``My Drive/attention-course``) without touching the runtime's torch, then calls :func:`use_course_folder`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from course_utils import torch_support

DRIVE_FOLDER_NAME = "attention-course"  # the unzipped student bundle, uploaded to My Drive under this name
DISTRIBUTION = "attention-course-utils"  # the name pip knows course_utils by; the bundle holds its wheel
WHEEL_GLOB = DISTRIBUTION.replace("-", "_") + "-*.whl"  # the wheel's file name in the bundle (PEP 427)


def on_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def use_course_folder(folder: str | os.PathLike, assignment: str) -> Path:
    """Keep the data and this notebook's files in the course folder: ``COURSE_DATA`` becomes ``folder/data``
    (unless already set), and the working directory ``folder/<assignment>`` (created), where the notebook's
    relative paths (checkpoints, training states) then land. Says what falls back on an older torch. Returns
    the working directory."""
    folder = Path(folder)
    workdir = folder / assignment
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("COURSE_DATA", str(folder / "data"))
    os.chdir(workdir)
    print(f"Files are kept in {workdir} (data in {os.environ['COURSE_DATA']}).")
    torch_support.report()
    return workdir


def offer_download(path: str | os.PathLike) -> None:
    """Say where ``path`` is and that it is handed in with the notebook; on Colab also start its download in the
    browser (``google.colab.files.download``)."""
    path = Path(path)
    print(f"{path.resolve()} is ready: hand it in together with this notebook.")
    if on_colab():
        from google.colab import files  # available on Colab only

        files.download(str(path))
