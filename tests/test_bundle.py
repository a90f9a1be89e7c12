"""The student bundle: the release, course_utils and a README; no solution, reference, grader or test."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from autograde import course
from autograde.bundle import REPO, build_bundle, bundle_files, leaks

RELEASE = course.RELEASE

pytestmark = pytest.mark.skipif(not any(RELEASE.glob("*/*.ipynb")), reason="needs the release (autograde.release)")


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return bundle_files()


def test_the_bundle_has_the_release_course_utils_and_a_readme(files):
    releases = sorted(p.relative_to(RELEASE).as_posix() for p in RELEASE.glob("*/*.ipynb"))
    assert set(releases) <= set(files)
    assert {"README.md", "pyproject.toml", "course_utils/__init__.py"} <= set(files)
    assert not [name for name in files if name.split("/")[0] in ("autograde", "solutions", "tests")]


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


@pytest.mark.parametrize("leak", ["solution", "reference", "grader", "hidden", "copy"])
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
