"""Colab, simulated: the student bundle in a Drive folder, every notebook run from there by a fresh kernel.

The kernel runs a Python in which ``course_utils`` is not installed and neither the repository nor its
instructor side (``autograde``, ``solutions/``) is importable; ``google.colab`` is a stand-in imported at
start-up, as Colab does: ``drive.mount`` checks the mount point, ``files.download`` records the request. Each
notebook (filled in as the solution, as a student hands it in) must install ``course_utils`` from the bundle
in its set-up cell, keep its files in the Drive folder and run to the end in fast mode without an error; notebook
4 must offer its checkpoint for download (one trained in an earlier session lies in its Drive folder, as after
a runtime that disconnected after training).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from autograde import course
from autograde.bundle import build_bundle
from course_utils.colab import DRIVE_FOLDER_NAME

pytestmark = pytest.mark.slow

STAND_IN = {
    "google/colab/__init__.py": "from . import drive, files  # noqa: F401\n",
    "google/colab/drive.py": textwrap.dedent(
        '''
        """Stand-in for google.colab.drive: Drive is already "mounted" at the test's folder."""
        import os


        def mount(mountpoint, force_remount=False):
            if not os.path.isdir(os.path.join(mountpoint, "MyDrive")):
                raise ValueError(f"nothing to mount at {mountpoint}")
            print(f"Mounted at {mountpoint}")
        '''
    ),
    "google/colab/files.py": textwrap.dedent(
        '''
        """Stand-in for google.colab.files: records every download the notebook starts."""
        import json
        import os


        def download(filename):
            with open(os.environ["COLAB_DOWNLOADS"], "a") as log:
                log.write(json.dumps({"file": os.path.abspath(filename), "exists": os.path.isfile(filename)}) + "\\n")
        '''
    ),
    "sitecustomize.py": "import google.colab  # noqa: F401 (Colab imports it before any cell runs)\n",
}


def colab_python(venv: Path) -> Path:
    """A fresh virtual environment whose Python sees the project's dependencies but not the project (no
    course_utils, no autograde), with the ``google.colab`` stand-in imported at start-up as on Colab."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The project's site-packages as a plain path: its .pth files (the editable install of this project) do
    # not run, so neither course_utils nor autograde is importable until the set-up cell installs the bundle.
    (site / "project-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for name, text in STAND_IN.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    return python


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A Python without course_utils (it sees the project's packages but not the project), a kernel for it,
    and a Drive folder holding the student bundle with the solutions filled in."""
    root = tmp_path_factory.mktemp("colab")
    python = colab_python(root / "venv")

    drive = root / "drive"
    folder = drive / "MyDrive" / DRIVE_FOLDER_NAME
    build_bundle(folder)
    for a in course.ids():  # as the student hands them in: the release with the solutions filled in
        shutil.copy(course.get(a).examples_dir / "solution.ipynb", folder / a / f"{a}.ipynb")
    downloads = root / "downloads.jsonl"
    env = {
        "COURSE_COLAB_DRIVE": str(drive),
        "COLAB_DOWNLOADS": str(downloads),
        "COURSE_FAST": "1",
        "MPLBACKEND": "Agg",
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": "",
        "PIP_NO_INDEX": "1",  # every dependency is already there; never reach the network
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads this as --no-build-isolation: build with the setuptools present
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    kernels = root / "kernels" / "colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "simulated Colab",
                "language": "python",
                "env": env,
            }
        )
    )
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print(u.find_spec('course_utils'), "
            "u.find_spec('autograde'), u.find_spec('google.colab') is not None)",
        ],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, **env},
    )
    assert probe.stdout.split() == ["None", "None", "True"], probe.stdout + probe.stderr
    return {"root": root, "folder": folder, "downloads": downloads, "kernels": root / "kernels", "python": python}


def run_like_colab(colab, assignment: str) -> nbformat.NotebookNode:
    path = colab["folder"] / assignment / f"{assignment}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            textwrap.dedent(
                """
        import importlib.util, os, course_utils
        print("CHECK course_utils from", course_utils.__file__)
        print("CHECK instructor side importable:", [m for m in ("autograde", "solutions", "tests")
                                                    if importlib.util.find_spec(m) is not None])
        print("CHECK working directory", os.getcwd())
        """
            )
        )
    )
    # NotebookClient takes no kernel_spec_manager of its own: the kernel manager it is given finds "colab"
    km = KernelManager(kernel_name="colab", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(colab["kernels"])]))
    client = NotebookClient(
        nb,
        km=km,
        timeout=600,
        kernel_name="colab",
        resources={"metadata": {"path": str(colab["root"])}},  # Colab starts in /content, not beside the notebook
    )
    client.execute()
    return nb


def stream(nb: nbformat.NotebookNode, name: str = "stdout") -> str:
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream" and o.name == name
    )


def errors(nb: nbformat.NotebookNode) -> list[str]:
    return [
        f"{o.ename}: {o.evalue}"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]


@pytest.mark.parametrize("assignment", course.ids())
def test_every_notebook_runs_from_the_drive_folder(colab, assignment):
    if assignment == "04_vision_transformer":  # a checkpoint trained in an earlier session
        from autograde.assignments.vision_transformer import recipe as part5
        from autograde.assignments.vision_transformer import reference as ref
        from course_utils.checkpoint import save_checkpoint

        config = {**part5.FINAL_CONFIG, "pos_encoding": part5.RECIPE_POS_ENCODING}
        save_checkpoint(ref.VisionTransformer(**config), colab["folder"] / assignment / "vit_checkpoint.pt", **config)
    nb = run_like_colab(colab, assignment)
    assert errors(nb) == []
    out = stream(nb)
    installed = Path(next(line for line in out.splitlines() if line.startswith("CHECK course_utils from")).split()[-1])
    assert colab["folder"] not in installed.parents and course.REPO not in installed.parents  # pip installed it
    assert "CHECK instructor side importable: []" in out
    assert f"CHECK working directory {colab['folder'] / assignment}" in out
    assert "Mounted at" in out
    if assignment == "04_vision_transformer":
        offered = [json.loads(line) for line in colab["downloads"].read_text().splitlines()]
        assert offered == [{"file": str(colab["folder"] / assignment / "vit_checkpoint.pt"), "exists": True}]
        assert "hand it in together with this notebook" in out


def test_without_a_bundle_or_an_address_the_set_up_cell_says_what_to_do(tmp_path):
    """A student who opened a notebook on Colab without uploading the bundle gets one message with both ways."""
    python = colab_python(tmp_path / "venv")  # a fresh runtime: nothing installed by the other tests
    empty_drive = tmp_path / "drive"
    (empty_drive / "MyDrive").mkdir(parents=True)
    a = course.ids()[0]
    setup = next(
        c
        for c in nbformat.read(course.get(a).release_notebook, as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"
    )
    bootstrap = setup.source.split("# ---- End of the course set-up. ----")[0]
    env = {**os.environ, "COURSE_COLAB_DRIVE": str(empty_drive), "PYTHONPATH": ""}
    done = subprocess.run([str(python), "-c", bootstrap], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert "My Drive/attention-course" in message and "COURSE_UTILS_SPEC" in message


def test_no_release_carries_a_placeholder_address():
    for a in course.ids():
        text = course.get(a).release_notebook.read_text()
        assert "YOUR-ORG" not in text and "COURSE_UTILS_SPEC = None" in text
