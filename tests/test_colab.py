"""Colab, simulated: each run on a fresh runtime, the student bundle and CIFAR-10 in the student's Google Drive.

A simulated runtime is a Python whose site-packages hold only what a Colab runtime brings that the course uses
(torch, torchvision, numpy, matplotlib, tqdm, Pillow, ipykernel, ipywidgets, pip, and what they need): neither the
project (``course_utils``, ``autograde``) nor its development dependencies (nbgrader, nbclient, pytest, ...) can be
imported. ``google.colab`` is a stand-in imported at start-up, as on Colab: ``drive.mount`` checks the mount point,
``files.download`` records the request, and an audit hook records every CIFAR-10 file the runtime opens. As on
Colab, the kernel starts in ``/content`` and Drive is mounted at ``/content/drive`` (no ``COURSE_COLAB_DRIVE`` or
other variable of this process reaches the kernel): the tests make ``/content/drive`` a link to a Drive folder of
their own (they create ``/content`` for that, CI runs as root, and skip, saying so, where they cannot), and nothing
may be written in ``/content``. pip has no package index (its address leads nowhere) and no cache.

Each notebook, filled in as the solution (as a student hands it in), must install ``course_utils`` alone from the
wheel in the Drive folder (every package the runtime brought, torch among them, stays as it was), read the real
CIFAR-10 files of the Drive folder (a copy of the exact subset in ``$COURSE_TEST_DATA``; no fall-back to synthetic
images), write nothing into the folder but data, checkpoints and training states, print nothing on stderr, and run
to the end in fast mode. For notebooks 1, 4 and 5, a run in full mode (``COURSE_FAST=0``, on a small CIFAR-10 copy)
loses its runtime during a training (the kernel is killed, as by a disconnect); a fresh runtime runs the notebook
again, and its trainings repeat nothing finished and end with exactly (bit for bit) the weights and histories of an
uninterrupted run.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import torch
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from packaging.requirements import Requirement

from autograde import course
from autograde.bundle import build_bundle
from course_utils.cifar import TEST_FILE, TRAIN_FILES
from course_utils.colab import DRIVE_FOLDER_NAME
from tests.cifar_copies import write_copy

pytestmark = pytest.mark.slow

CONTENT = Path("/content")  # Colab's working directory; Drive is mounted at /content/drive
# What a Colab runtime brings that the course uses; everything they need comes with them.
RUNTIME_PACKAGES = ("torch", "torchvision", "numpy", "matplotlib", "tqdm", "pillow", "ipykernel", "ipywidgets", "pip")
DEVELOPMENT_ONLY = ("nbgrader", "nbclient", "nbformat", "pytest", "jupyterlab", "playwright", "ruff")
TEST_DATA = Path(os.environ.get("COURSE_TEST_DATA", course.REPO.parent / "shared" / "data"))

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
    "sitecustomize.py": textwrap.dedent(
        """
        import google.colab  # noqa: F401 (Colab imports it before any cell runs)
        import os
        import sys

        if os.environ.get("COLAB_OPENED"):  # a log of every CIFAR-10 file the runtime opens

            def _opened(event, args):
                if event == "open" and isinstance(args[0], str) and "cifar-10-batches-py" in args[0]:
                    with open(os.environ["COLAB_OPENED"], "a") as log:
                        log.write(os.path.abspath(args[0]) + "\\n")

            sys.addaudithook(_opened)

        if os.environ.get("COLAB_DISCONNECT"):  # "<part of a path>:<n>": the runtime dies at that file's n-th save
            import signal

            _where, _n = os.environ["COLAB_DISCONNECT"].rsplit(":", 1)
            _saves = [0]

            def _disconnect(event, args):
                if event == "os.rename" and _where in os.fspath(args[1]):
                    _saves[0] += 1
                    if _saves[0] == int(_n):  # before the rename: this save is lost with the runtime
                        os.kill(os.getpid(), signal.SIGKILL)

            sys.addaudithook(_disconnect)
        """
    ),
}


def _requirements(dist: importlib.metadata.Distribution) -> Iterator[str]:
    for line in dist.requires or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            yield requirement.name


def runtime_distributions() -> list[importlib.metadata.Distribution]:
    """``RUNTIME_PACKAGES`` and everything they require, as installed here."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(RUNTIME_PACKAGES)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in found:
            continue
        try:
            found[name] = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not needed on this platform
        todo += _requirements(found[name])
    return list(found.values())


def colab_python(venv: Path) -> Path:
    """A fresh runtime: a virtual environment holding links to the runtime's packages only (no project, no
    development dependencies), and the ``google.colab`` stand-in imported at start-up."""
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
    for dist in runtime_distributions():
        for top in {Path(f).parts[0] for f in dist.files or []}:
            if top not in ("..", "__pycache__") and not (site / top).exists():
                (site / top).symlink_to(Path(dist.locate_file(top)).resolve())
    for name, text in STAND_IN.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    return python


@pytest.fixture(scope="module")
def content() -> Iterator[Path]:
    """``/content``, as on Colab, for this module alone (a lock keeps concurrent runs apart); the tests point
    ``/content/drive`` at a Drive folder of their own."""
    lock = open(Path(tempfile.gettempdir()) / "attention-course-colab-test.lock", "w")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    created = not CONTENT.exists()
    try:
        CONTENT.mkdir(exist_ok=True)
    except OSError as err:
        pytest.skip(f"the Colab simulation needs /content, as on Colab, and cannot create it here ({err})")
    drive = CONTENT / "drive"
    if drive.is_symlink():
        drive.unlink()  # left by an interrupted run of this module
    if drive.exists():
        pytest.skip("/content/drive exists here (a real Colab?): the simulation would not be in charge of it")
    try:
        yield CONTENT
    finally:
        if drive.is_symlink():
            drive.unlink()
        if created and not any(CONTENT.iterdir()):
            CONTENT.rmdir()
        lock.close()


def cifar_copy(folder: Path, small: bool) -> None:
    """CIFAR-10 in the official layout under ``folder``: the exact subset from the test data, or a small copy."""
    if small:
        write_copy(folder / "cifar-10-batches-py", per_batch=8)  # 36 training, 4 validation, 8 test images
        return
    subset = TEST_DATA / "cifar10-subset" / "cifar-10-batches-py"
    if not subset.is_dir():
        pytest.skip(f"needs the CIFAR-10 subset in {subset} (set COURSE_TEST_DATA)")
    shutil.copytree(subset, folder / "cifar-10-batches-py")


def make_drive(root: Path, small_data: bool) -> Path:
    """A Google Drive holding the unzipped student bundle, the solutions handed in, and CIFAR-10 in its data
    folder, as after the first notebook downloaded it. Returns the course folder."""
    folder = root / "MyDrive" / DRIVE_FOLDER_NAME
    build_bundle(folder)
    for a in course.ids():  # as the student hands them in: the release with the solutions filled in
        shutil.copy(course.get(a).examples_dir / "solution.ipynb", folder / a / f"{a}.ipynb")
    cifar_copy(folder / "data", small_data)
    return folder


def in_content() -> list[str]:
    """What ``/content`` holds besides the Drive's mount point."""
    return sorted(p.name for p in CONTENT.iterdir() if p.name != "drive")


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def kernel_env(logs: Path, fast: bool, disconnect: str | None = None) -> dict[str, str]:
    """The runtime's whole environment: none of this process's variables (``COURSE_DATA``, ``VIRTUAL_ENV``,
    ``PYTHONPATH``, ...) leaks into it. ``logs`` receives the downloads started and the CIFAR-10 files opened."""
    env = {
        "HOME": os.environ.get("HOME", "/root"),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "COLAB_DOWNLOADS": str(logs / "downloads.jsonl"),
        "COLAB_OPENED": str(logs / "opened.txt"),
        "COURSE_FAST": "1" if fast else "0",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # no package index: nothing may be downloaded
        "PIP_NO_CACHE_DIR": "1",  # as a fresh runtime's pip would find it: no wheels cached by this machine
        "CUDA_VISIBLE_DEVICES": "",  # a CPU runtime
    }
    return {**env, "COLAB_DISCONNECT": disconnect} if disconnect else env


def mount_at_content(drive: Path) -> None:
    """Make ``/content/drive`` lead to ``drive``, as ``drive.mount("/content/drive")`` does on Colab."""
    link = CONTENT / "drive"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(drive)


def run_like_colab(
    root: Path, drive: Path, assignment: str, env: dict[str, str], checks: bool = True, until: str | None = None
) -> nbformat.NotebookNode:
    """Run the notebook from the Drive folder on a fresh runtime, its Drive at ``/content/drive``, from
    ``/content``, to its end or to the cell with the id ``until``; raises ``DeadKernelError`` when the runtime
    dies."""
    python = colab_python(root / f"runtime-{len(list(root.glob('runtime-*')))}")
    kernels = root / "kernels" / "colab"
    kernels.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python"}
    (kernels / "kernel.json").write_text(json.dumps({**spec, "display_name": "simulated Colab"}))
    mount_at_content(drive)
    nb = nbformat.read(drive / "MyDrive" / DRIVE_FOLDER_NAME / assignment / f"{assignment}.ipynb", as_version=4)
    if until is not None:
        nb.cells = nb.cells[: 1 + next(i for i, cell in enumerate(nb.cells) if cell.get("id") == until)]
    if checks:
        nb.cells.append(
            nbformat.v4.new_code_cell(
                textwrap.dedent(
                    """
                    import importlib.util, os, course_utils
                    print("CHECK course_utils from", course_utils.__file__)
                    print("CHECK importable:", [m for m in ("autograde", "solutions", "tests", "nbgrader", "nbclient",
                                                            "pytest") if importlib.util.find_spec(m) is not None])
                    print("CHECK working directory", os.getcwd())
                    print("CHECK data", os.environ["COURSE_DATA"])
                    """
                )
            )
        )
    # nbclient's own manager class, so that it notices a dead kernel; it leaves a manager it was given running
    specs = KernelSpecManager(kernel_dirs=[str(kernels.parent)])
    km = AsyncKernelManager(kernel_name="colab", kernel_spec_manager=specs)
    client = NotebookClient(nb, km=km, timeout=900, kernel_name="colab", resources={"metadata": {"path": str(CONTENT)}})
    try:
        client.execute(env=env)  # the kernel's whole environment (the kernel spec's env would add to ours)
    finally:
        if km.has_kernel:
            asyncio.run(km.shutdown_kernel(now=True))
    return nb


def outputs(nb: nbformat.NotebookNode, kind: str) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == kind]


def stream(nb: nbformat.NotebookNode, name: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in outputs(nb, "stream") if o.name == name)


def assert_clean_run(nb: nbformat.NotebookNode) -> None:
    """No error and nothing on stderr (Colab shows stderr in red)."""
    assert [f"{o.ename}: {o.evalue}" for o in outputs(nb, "error")] == []
    assert stream(nb, "stderr") == ""


def assert_writes_only_data_checkpoints_and_states(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """What changed in the Drive folder is data, a checkpoint or a training state, and nothing was removed."""
    assert set(before) <= set(after)
    changed = [name for name in after if before.get(name) != after[name]]
    others = [
        n
        for n in changed
        if not (n.startswith("data/") or n.endswith((".pt", ".pt.partial")) or "/training_states/" in n)
    ]
    assert others == [], f"written to the Drive folder: {others}"


# ------------------------------------------------------------------------ every notebook, fast mode
@pytest.fixture(scope="module")
def drive(tmp_path_factory, content) -> Path:
    return make_drive(tmp_path_factory.mktemp("drive"), small_data=False).parents[1]


READS_DATA = ("01_self_attention_cnn", "04_vision_transformer", "05_local_attention")  # notebooks 2 and 3 need none


def installed_by_pip(site: Path) -> set[str]:
    """What a runtime's site-packages holds beyond what ``colab_python`` put there, after checking that every
    package the runtime brought (torch among them) is still the one it brought."""
    linked = [p for p in site.iterdir() if p.is_symlink()]
    assert linked and all(p.resolve() == Path(os.readlink(p)) for p in linked)  # replaced or upgraded: not a link
    brought = {p.name for p in linked} | {Path(name).parts[0] for name in STAND_IN} | {"__pycache__"}
    return {p.name for p in site.iterdir()} - brought


def opened(logs: Path) -> set[str]:
    """The CIFAR-10 files the runtime opened, as it named them."""
    log = logs / "opened.txt"
    return set(log.read_text().splitlines()) if log.exists() else set()


@pytest.mark.parametrize("assignment", course.ids())
def test_every_notebook_runs_from_the_drive_folder_on_a_fresh_runtime(drive, assignment, tmp_path):
    folder = drive / "MyDrive" / DRIVE_FOLDER_NAME
    if assignment == "04_vision_transformer":  # a checkpoint trained in an earlier session
        from autograde.assignments.vision_transformer import reference as ref
        from autograde.assignments.vision_transformer import reference_recipe as part5
        from course_utils.model_checkpoint import save_checkpoint

        config = {**part5.FINAL_CONFIG, "pos_encoding": part5.RECIPE_POS_ENCODING}
        save_checkpoint(ref.VisionTransformer(**config), folder / assignment / "vit_checkpoint.pt", **config)
    before, content_before = files_under(folder), in_content()
    nb = run_like_colab(tmp_path, drive, assignment, kernel_env(tmp_path, fast=True))
    assert_clean_run(nb)
    out = stream(nb)
    installed = Path(next(line for line in out.splitlines() if line.startswith("CHECK course_utils from")).split()[-1])
    assert tmp_path in installed.parents  # pip installed the wheel into this runtime
    assert installed_by_pip(installed.parents[1]) == {"course_utils", "attention_course_utils-0.1.0.dist-info"}
    assert "CHECK importable: []" in out
    assert f"CHECK working directory {folder / assignment}" in out  # the Drive folder (its real path)
    data = CONTENT / "drive" / "MyDrive" / DRIVE_FOLDER_NAME / "data"
    assert f"CHECK data {data}" in out and "Mounted at /content/drive" in out
    if assignment in READS_DATA:  # the real CIFAR-10 files in the Drive folder, read through /content/drive
        batches = data / "cifar-10-batches-py"
        assert opened(tmp_path) == {str(batches / name) for name in (*TRAIN_FILES, TEST_FILE)}
        assert "synthetic" not in out  # no fall-back to the synthetic images
    else:
        assert opened(tmp_path) == set()
    assert in_content() == content_before  # nothing written in /content
    assert_writes_only_data_checkpoints_and_states(before, files_under(folder))
    assert not [n for n in files_under(folder) if "training_states" in n]  # fast mode keeps no state
    downloads = tmp_path / "downloads.jsonl"
    offered = [json.loads(line) for line in downloads.read_text().splitlines()] if downloads.exists() else []
    if assignment == "04_vision_transformer":
        assert offered == [{"file": str(folder / assignment / "vit_checkpoint.pt"), "exists": True}]
        assert "hand it in together with this notebook" in out
    else:
        assert offered == []


# ----------------------------------------------------------------- a lost runtime in the middle of a training
# The training to interrupt: (a part of its state files' path, the save during which the runtime dies, the cell that
# ends the run: None for the whole notebook). Runs of the seed comparisons last one step on the small copy, so each
# saves its state once, when it is done. Notebooks 1 and 5 run to the training's cell only (the cells after it train
# nothing, and the fast-mode test runs them); notebook 4 runs to its end, where it offers the checkpoint for download.
DISCONNECT = {
    "01_self_attention_cnn": ("training_states/part4/", 4, "code-29"),  # Part 4, when 3 of its 12 runs are done
    "04_vision_transformer": ("training_states/vit_final.pt", 2, None),  # the final run, in its second epoch
    "05_local_attention": ("training_states/part2/", 3, "comparison"),  # the comparison, when 2 of 6 runs are done
}


def states(folder: Path) -> dict[str, dict]:
    """Every training state and checkpoint of a notebook's folder, loaded (``seconds`` left out)."""
    found = {}
    for path in sorted(folder.rglob("*.pt")):
        state = torch.load(path, weights_only=True)
        if "history" in state:
            state["history"].pop("seconds")
            state = {"model": state["model"], "history": state["history"]}
        found[path.relative_to(folder).as_posix()] = state
    return found


def assert_same(a: object, b: object, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    else:
        assert a == b or (a != a and b != b), where  # NaN (no validation yet) equals NaN


@pytest.mark.parametrize("assignment", sorted(DISCONNECT))
def test_a_lost_runtime_costs_no_finished_training_and_the_rerun_ends_exactly_as_an_uninterrupted_one(
    content, assignment, tmp_path
):
    where, save, until = DISCONNECT[assignment]
    whole_drive, cut_drive = (make_drive(tmp_path / name, small_data=True).parents[1] for name in ("whole", "cut"))
    whole = whole_drive / "MyDrive" / DRIVE_FOLDER_NAME / assignment
    cut = cut_drive / "MyDrive" / DRIVE_FOLDER_NAME / assignment
    downloads, content_before = tmp_path / "downloads.jsonl", in_content()

    uninterrupted = run_like_colab(tmp_path, whole_drive, assignment, kernel_env(tmp_path, fast=False), until=until)
    assert_clean_run(uninterrupted)
    expected = states(whole)
    assert any(where in name for name in expected)

    before = files_under(cut.parent)
    with pytest.raises(DeadKernelError):
        env = kernel_env(tmp_path, fast=False, disconnect=f"{where}:{save}")
        run_like_colab(tmp_path, cut_drive, assignment, env, checks=False, until=until)
    left = {p.relative_to(cut).as_posix(): p.read_bytes() for p in cut.rglob("*.pt")}
    assert left and set(left) < set(expected), "the runtime must die before the training is done"

    resumed = run_like_colab(tmp_path, cut_drive, assignment, kernel_env(tmp_path, fast=False), until=until)
    assert_clean_run(resumed)
    out = stream(resumed)
    if where.endswith(".pt"):  # an interrupted training goes on from its last finished epoch
        assert f"Resumed from {where}: 1 epoch(s) were already done" in out
        in_progress = {where}
    else:  # a comparison goes on from its last finished run
        assert out.count("(continued from its saved state)") == save - 1
        in_progress = set()
    for name in set(left) - in_progress:  # finished: restored, never trained or written again
        assert (cut / name).read_bytes() == left[name], name
    assert_same(states(cut), expected, assignment)
    assert in_content() == content_before
    assert_writes_only_data_checkpoints_and_states(before, files_under(cut.parent))
    if assignment == "04_vision_transformer":  # one download prompt per full run, at the end
        offered = [json.loads(line)["file"] for line in downloads.read_text().splitlines()]
        assert offered == [str(whole / "vit_checkpoint.pt"), str(cut / "vit_checkpoint.pt")]


# ---------------------------------------------------------------------------------------- the set-up cell
def bootstrap_of(assignment: str) -> str:
    setup = next(
        c
        for c in nbformat.read(course.get(assignment).release_notebook, as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"
    )
    return setup.source.split("# ---- End of the course set-up. ----")[0]


def test_without_a_bundle_or_an_address_the_set_up_cell_says_what_to_do(content, tmp_path):
    """A student who opened a notebook on Colab without uploading the bundle gets one message with both ways."""
    python = colab_python(tmp_path / "venv")  # a fresh runtime
    empty_drive = tmp_path / "drive"
    (empty_drive / "MyDrive").mkdir(parents=True)
    mount_at_content(empty_drive)
    env = {**os.environ, "PYTHONPATH": "", "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}
    done = subprocess.run(
        [str(python), "-c", bootstrap_of(course.ids()[0])], capture_output=True, text=True, env=env, cwd=CONTENT
    )
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert "My Drive/attention-course" in message and "COURSE_UTILS_SPEC" in message
    assert "attention_course_utils-*.whl" in message


def test_no_release_carries_a_placeholder_address():
    for a in course.ids():
        text = course.get(a).release_notebook.read_text()
        assert "YOUR-ORG" not in text and "COURSE_UTILS_SPEC = None" in text


def test_the_simulated_runtime_has_the_runtime_packages_and_not_the_development_ones(tmp_path):
    python = colab_python(tmp_path / "venv")
    probe = "import importlib.util as u, sys; print(*[u.find_spec(m) is not None for m in sys.argv[1:]])"
    present = ["torch", "torchvision", "numpy", "matplotlib", "tqdm", "PIL", "ipykernel", "ipywidgets", "pip"]
    present.append("google.colab")
    absent = [*DEVELOPMENT_ONLY, "course_utils", "autograde"]
    done = subprocess.run([str(python), "-c", probe, *present, *absent], capture_output=True, text=True, cwd=tmp_path)
    found = dict(zip(present + absent, done.stdout.split(), strict=True))
    assert {name for name, here in found.items() if here == "True"} == set(present), done.stderr
