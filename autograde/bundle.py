"""The student bundle: exactly what students receive, to a folder or a zip, checked for leaks first.

It holds the release notebooks (``<assignment>/``), ``course_utils`` as a built wheel (so that installing it,
on Colab or a laptop, builds nothing and writes nothing beside it; :func:`course_utils_wheel`) and a README for
students. :func:`leaks` looks for anything instructors keep, in every file and inside the wheel: nbgrader's
solution and hidden-test markers, any line of a solution region or hidden test of the source notebooks, any
code line of the references or graders, any file of ``autograde/``, and any package in the wheel but
``course_utils``. :func:`build_bundle` refuses a leaky bundle.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
import zipfile
from pathlib import Path

from autograde import course, nbgrader_cells
from course_utils.colab import DISTRIBUTION, DRIVE_FOLDER_NAME

REPO = course.REPO
MARKERS = (
    nbgrader_cells.SOLUTION_BEGIN,
    nbgrader_cells.SOLUTION_END,
    nbgrader_cells.HIDDEN_BEGIN,
    nbgrader_cells.HIDDEN_END,
    "import autograde",
    "from autograde",
)
MIN_SECRET_LINE = 20  # shorter lines (``return x + out``, ``super().__init__()``) say too little to count

VERSION = "0.1.0"
# What course_utils needs, as pyproject.toml's [project] dependencies list it (tests/test_bundle.py keeps the two
# equal). pip on a laptop installs them with the wheel; Colab's set-up cell installs the wheel alone (--no-deps).
DEPENDENCIES = ("torch>=2.9", "torchvision>=0.24", "numpy>=1.24", "matplotlib>=3.7", "tqdm>=4.65")
ZIP_TIME = (2026, 1, 1, 0, 0, 0)  # every archive entry's date: the same sources give the same bytes

STUDENT_README = """# Attention for computer vision: the notebooks

Each folder holds one assignment notebook: {assignments}.

## Set up

On your machine (Python 3.10 or newer), from this folder:

    python -m venv .venv && source .venv/bin/activate
    pip install torch torchvision        # see pytorch.org for a CUDA build
    pip install {wheel} jupyterlab ipywidgets
    jupyter lab

On Google Colab (with or without a GPU):

1. upload this whole folder, named `{drive_folder}`, to the top of your Google Drive ("My Drive");
2. open a notebook from it (in Drive: right-click, *Open with → Google Colaboratory*);
3. for speed choose *Runtime → Change runtime type → GPU*, then run the first code cell. It asks to connect
   to your Google Drive, installs `course_utils` from the wheel in this folder (nothing else: the runtime's
   torch stays as it is), and keeps the data and everything the notebook saves (checkpoints, training states)
   in `{drive_folder}/<notebook>/`, so a disconnected runtime loses neither: run the notebook again and its
   trainings continue from their last finished epoch or run.

CIFAR-10 is downloaded on first use (into `./data`, or `$COURSE_DATA`; about 170 MB). Set `COURSE_FAST=1` to run
a notebook end to end in a minute or two on a CPU (trainings are cut short, so the accuracies mean little); leave
it unset for the real runs. Each training cell states how long it takes on a 2-core CPU and on a GPU.

## Submitting

Fill in every `# YOUR CODE HERE` and `YOUR ANSWER HERE`, run the checks under each exercise, then save and
submit the `.ipynb` file. The autograder runs only your functions and classes (not your training cells), so
keep the names and signatures the notebook gives, and do not delete or copy the answer cells.
"""


def _release_folders(repo: Path) -> list[Path]:
    """The release folder of every assignment of the course registry that has been released."""
    return [repo / "assignments" / a for a in course.ids() if (repo / "assignments" / a).is_dir()]


def bundle_files(repo: Path = REPO) -> dict[str, bytes]:
    """Archive name -> content of the student bundle."""
    files: dict[str, bytes] = {}
    folders = _release_folders(repo)
    if not folders:
        raise FileNotFoundError(f"no release in {repo / 'assignments'}: run `python -m autograde.release` first")
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and ".ipynb_checkpoints" not in path.parts:
                files[path.relative_to(folder.parent).as_posix()] = path.read_bytes()
    wheel_name, wheel = course_utils_wheel(repo)
    files[wheel_name] = wheel
    files["README.md"] = STUDENT_README.format(
        assignments=", ".join(f.name for f in folders), drive_folder=DRIVE_FOLDER_NAME, wheel=wheel_name
    ).encode()
    return files


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=ZIP_TIME), data)
    return buf.getvalue()


def course_utils_wheel(repo: Path = REPO) -> tuple[str, bytes]:
    """``(file name, bytes)`` of a wheel of ``course_utils`` (PEP 427: the package, then ``METADATA``, ``WHEEL``
    and ``RECORD`` with every file's SHA-256), written directly: installing it runs no build, and building it
    needs no build tool or network. The same sources give the same bytes."""
    dist = DISTRIBUTION.replace("-", "_")
    info = f"{dist}-{VERSION}.dist-info"
    entries = {
        path.relative_to(repo).as_posix(): path.read_bytes()
        for path in sorted((repo / "course_utils").rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    entries[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {VERSION}\n"
        "Summary: Helpers for the attention-for-vision course notebooks (data, training, plots, checks).\n"
        "Requires-Python: >=3.10\n" + "".join(f"Requires-Dist: {d}\n" for d in DEPENDENCIES)
    ).encode()
    entries[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: autograde.bundle\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    entries[f"{info}/top_level.txt"] = b"course_utils\n"
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for name, data in entries.items()
    ]
    entries[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    return f"{dist}-{VERSION}-py3-none-any.whl", _zip(entries)


# ----------------------------------------------------------------------------------------------- leaks
def _notebook_lines(repo: Path) -> tuple[set[str], set[str]]:
    """(secret, given) lines of the source notebooks: solutions and hidden tests, and everything provided."""
    secret, given = set(), set()
    for path in sorted((repo / "solutions").glob("*/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = nbgrader_cells.source(cell)
            if cell["cell_type"] == "markdown" and nbgrader_cells.is_answer(cell):
                secret.update(source.splitlines())
                continue
            inside, outside = nbgrader_cells.inside_regions(source)
            secret.update(inside)
            given.update(outside)
    return secret, given


def _code_lines(path: Path) -> set[str]:
    """The lines of a module's statements, without docstrings and comments."""
    source = path.read_text()
    lines = source.splitlines()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(getattr(body[0], "value", None), ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    return {line for i, line in enumerate(lines, start=1) if i not in docstrings and not line.strip().startswith("#")}


def secret_lines(repo: Path = REPO) -> dict[str, str]:
    """Normalised line -> where it comes from, for every line a student must not receive.

    Lines the release legitimately repeats are not secrets: the source notebooks' provided code (outside
    solution regions), ``course_utils`` (which ships) and import statements.
    """
    secret, given = _notebook_lines(repo)
    found = {line.strip(): "a solution or hidden test of solutions/" for line in secret}
    for path in sorted((repo / "autograde" / "assignments").glob("*/*.py")):
        if path.name != "__init__.py":
            where = path.relative_to(repo).as_posix()
            found.update({line.strip(): where for line in _code_lines(path)})
    public = {line.strip() for line in given}
    for path in (repo / "course_utils").rglob("*.py"):  # shipped by design: its lines are not secrets
        public.update(line.strip() for line in path.read_text().splitlines())
    return {
        line: where
        for line, where in found.items()
        if len(line) >= MIN_SECRET_LINE and line not in public and not _is_import(line)
    }


def _is_import(line: str) -> bool:
    return line.startswith("import ") or (line.startswith("from ") and " import " in line)


def _texts(name: str, data: bytes) -> list[str]:
    """The text a student sees in a file: for a notebook, its cells and outputs."""
    text = data.decode("utf-8", errors="replace")
    if not name.endswith(".ipynb"):
        return [text]
    try:
        cells = json.loads(text)["cells"]
    except (ValueError, KeyError, TypeError):
        return [text]
    parts = []
    for cell in cells:
        parts.append("".join(cell.get("source", "")))
        parts.append(json.dumps(cell.get("outputs", [])))
    return parts


def _with_wheel_members(files: dict[str, bytes]) -> tuple[dict[str, bytes], list[str]]:
    """``files`` plus every member of each wheel as ``<wheel>!<member>``, and what is wrong with a wheel: one
    that cannot be read, or holds anything but ``course_utils`` and its ``.dist-info``."""
    expanded, problems = dict(files), []
    for name, data in files.items():
        if not name.endswith(".whl"):
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as wheel:
                members = {member: wheel.read(member) for member in wheel.namelist()}
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            problems.append(f"{name}: not a readable wheel ({err})")
            continue
        for member, content in members.items():
            top = member.split("/")[0]
            if top != "course_utils" and not top.endswith(".dist-info"):
                problems.append(f"{name}: holds {member}, which is not part of course_utils")
            expanded[f"{name}!{member}"] = content
    return expanded, problems


def leaks(files: dict[str, bytes], repo: Path = REPO) -> list[str]:
    """Everything in ``files`` (and inside its wheels) a student must not see, one line each; empty when the
    bundle is clean."""
    files, problems = _with_wheel_members(files)
    secret = secret_lines(repo)
    released = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (repo / "assignments").rglob("*") if p.is_file()}
    instructor = {  # the blank example submissions are the release itself, so they are no secret
        hashlib.sha256(p.read_bytes()).hexdigest(): p.relative_to(repo).as_posix()
        for p in (repo / "autograde").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    instructor = {digest: path for digest, path in instructor.items() if digest not in released}
    for name, data in files.items():
        if name.split("/")[0] in ("autograde", "solutions", "tests"):
            problems.append(f"{name}: an instructor folder")
        digest = hashlib.sha256(data).hexdigest()
        if digest in instructor:
            problems.append(f"{name}: a copy of {instructor[digest]}")
        if name.endswith(".whl"):  # compressed: its members are checked one by one
            continue
        for text in _texts(name, data):
            problems += [f"{name}: contains {marker!r}" for marker in MARKERS if marker in text]
            for line in text.splitlines():
                where = secret.get(line.strip())
                if where:
                    problems.append(f"{name}: holds a line of {where}: {line.strip()[:80]!r}")
    return problems


def build_bundle(out: Path, repo: Path = REPO) -> Path:
    """Write the bundle to ``out`` (a folder, or a zip when it ends in .zip), after checking for leaks."""
    files = bundle_files(repo)
    problems = leaks(files, repo)
    if problems:
        raise ValueError(
            "the student bundle would leak instructor material; nothing was written:\n  " + "\n  ".join(problems[:20])
        )
    if out.suffix == ".zip":  # unzipped, it is the folder students upload to Google Drive
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(_zip({f"{DRIVE_FOLDER_NAME}/{name}": data for name, data in files.items()}))
        return out
    for name, data in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return out
