"""The student bundle: the release, a wheel of course_utils and a README; no solution, reference, grader or test.

The wheel holds course_utils only, installs with pip from the file alone (no build, no index, nothing written
beside it) and declares the dependencies pyproject.toml declares.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograde import course
from autograde.bundle import DEPENDENCIES, REPO, build_bundle, bundle_files, course_utils_wheel, leaks

RELEASE = course.RELEASE

pytestmark = pytest.mark.skipif(not any(RELEASE.glob("*/*.ipynb")), reason="needs the release (autograde.release)")


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return bundle_files()


def test_the_bundle_has_the_release_a_wheel_of_course_utils_and_a_readme(files):
    releases = sorted(p.relative_to(RELEASE).as_posix() for p in RELEASE.glob("*/*.ipynb"))
    wheel_name, _ = course_utils_wheel()
    assert set(files) - set(releases) == {"README.md", wheel_name}
    assert wheel_name == "attention_course_utils-0.1.0-py3-none-any.whl"
    assert f"pip install {wheel_name}" in files["README.md"].decode()


def wheel_members(wheel: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_wheel_holds_course_utils_with_a_true_record_and_the_projects_dependencies():
    _, wheel = course_utils_wheel()
    members = wheel_members(wheel)
    info = "attention_course_utils-0.1.0.dist-info"
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "course_utils").glob("*.py")}
    assert set(members) == sources | {f"{info}/{n}" for n in ("METADATA", "WHEEL", "top_level.txt", "RECORD")}
    assert all(members[name] == (REPO / name).read_bytes() for name in sources)
    for line in members[f"{info}/RECORD"].decode().splitlines():
        name, digest, size = line.split(",")
        if name != f"{info}/RECORD":
            expected = base64.urlsafe_b64encode(hashlib.sha256(members[name]).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={expected}" and int(size) == len(members[name]), name
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert list(DEPENDENCIES) == project["dependencies"]
    metadata = members[f"{info}/METADATA"].decode()
    assert [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist")] == list(
        DEPENDENCIES
    )
    assert course_utils_wheel()[1] == wheel  # the same sources give the same bytes


def test_pip_installs_the_wheel_alone_from_the_file_without_writing_beside_it(tmp_path):
    name, wheel = course_utils_wheel()
    folder = tmp_path / "drive"
    folder.mkdir()
    (folder / name).write_bytes(wheel)
    target = tmp_path / "site"
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check"]
    subprocess.run([*command, "--target", str(target), str(folder / name)], check=True, cwd=folder)
    assert [p.name for p in folder.iterdir()] == [name]
    probe = "import course_utils, course_utils.training; print(course_utils.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
    )  # fmt: skip
    assert Path(where.stdout.strip()).parent == target / "course_utils"


def test_the_bundle_leaks_nothing(files):
    assert leaks(files) == []


def _notebook_with(files: dict[str, bytes], line: str) -> dict[str, bytes]:
    """``files`` with ``line`` appended to the first code cell of the first notebook."""
    name = next(n for n in files if n.endswith(".ipynb"))
    nb = json.loads(files[name])
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    cell["source"] = "".join(cell["source"]) + "\n" + line
    return {**files, name: json.dumps(nb).encode()}


def _solution_line() -> str:
    """A long line from inside a solution region of a source notebook."""
    for path in sorted((REPO / "solutions").glob("*/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if "### BEGIN SOLUTION" in source:
                region = source.split("### BEGIN SOLUTION", 1)[1].split("### END SOLUTION", 1)[0]
                return max(region.splitlines(), key=len).strip()
    pytest.skip("no source notebook with a solution region")


def _with_wheel(files: dict[str, bytes], extra: dict[str, bytes]) -> dict[str, bytes]:
    """``files`` with its wheel rebuilt to hold ``extra`` as well."""
    name = next(n for n in files if n.endswith(".whl"))
    members = {**wheel_members(files[name]), **extra}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return {**files, name: buf.getvalue()}


@pytest.mark.parametrize("leak", ["solution", "reference", "grader", "hidden", "copy", "wheel", "wheel line"])
def test_the_leak_check_catches_each_kind(files, leak):
    reference = course.get("01_self_attention_cnn").directory / "reference.py"
    grader = course.get("01_self_attention_cnn").grader_path
    if leak == "solution":
        leaky = _notebook_with(files, _solution_line())
    elif leak == "reference":
        line = next(line for line in reference.read_text().splitlines() if "F.softmax(" in line)
        leaky = _notebook_with(files, line)
    elif leak == "grader":
        leaky = _notebook_with(files, max(grader.read_text().splitlines(), key=len))
    elif leak == "hidden":
        leaky = _notebook_with(files, '### BEGIN HIDDEN TESTS\ngrade("01_self_attention_cnn", "q1", globals())')
    elif leak == "wheel":  # a package beside course_utils in the wheel, however harmless its text
        leaky = _with_wheel(files, {"autograde/__init__.py": b'"""Grading."""\n'})
    elif leak == "wheel line":
        leaky = _with_wheel(files, {"course_utils/extra.py": max(grader.read_text().splitlines(), key=len).encode()})
    else:
        leaky = {**files, "course_utils/extra.py": reference.read_bytes()}
    found = leaks(leaky)
    assert found, f"the {leak} leak was not found"


def test_a_leaky_release_is_refused(tmp_path):
    repo = tmp_path / "repo"
    secret = "    return torch.einsum('nqk,nkc->nqc', weights, values)"
    source = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "source": f"def f(w, v):\n    ### BEGIN SOLUTION\n{secret}\n    ### END SOLUTION\n",
            }
        ]
    }
    a = course.ids()[0]  # the bundle takes the registry's assignments
    (repo / "solutions" / a).mkdir(parents=True)
    (repo / "solutions" / a / f"{a}.ipynb").write_text(json.dumps(source))
    release = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "source": f"def f(weights, values):\n{secret}\n",
                "outputs": [],
                "execution_count": None,
            }
        ]
    }
    (repo / "assignments" / a).mkdir(parents=True)
    (repo / "assignments" / a / f"{a}.ipynb").write_text(json.dumps(release))
    (repo / "course_utils").mkdir()
    (repo / "course_utils" / "__init__.py").write_text('"""Helpers."""\n')
    (repo / "autograde" / "assignments").mkdir(parents=True)
    with pytest.raises(ValueError, match="would leak"):
        build_bundle(tmp_path / "bundle", repo)
    assert not (tmp_path / "bundle").exists()
    release["cells"][0]["source"] = "def f(weights, values):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    (repo / "assignments" / a / f"{a}.ipynb").write_text(json.dumps(release))
    assert (build_bundle(tmp_path / "bundle", repo) / a / f"{a}.ipynb").is_file()


def test_the_bundle_is_written_to_a_folder_or_a_zip(tmp_path, files):
    folder = build_bundle(tmp_path / "bundle")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == sorted(files)
    archive = build_bundle(tmp_path / "bundle.zip")
    with zipfile.ZipFile(archive) as z:  # one folder, the one students upload to Google Drive
        assert sorted(z.namelist()) == sorted(f"attention-course/{name}" for name in files)
        assert z.read("attention-course/README.md") == (folder / "README.md").read_bytes()
    assert Path(archive).suffix == ".zip"
