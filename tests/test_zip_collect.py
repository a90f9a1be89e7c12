"""Hand-ins that do not come through the exchange: ``nbgrader zip_collect`` of a zip of renamed downloads (Colab,
an LMS), with the file-name-to-student mapping of the course's nbgrader_config.py.

Each accepted name form lands in ``course/submitted/<student id>/<assignment>/<notebook>.ipynb`` byte for byte;
files without a student id, of another assignment, not notebooks, or whose "id" would climb out of
``submitted/`` are skipped.
"""

from __future__ import annotations

import zipfile

import pytest

from autograde import course
from autograde.nbgrader_course import make_course, nbgrader

pytestmark = pytest.mark.slow

ASSIGNMENT = "02_multi_head_attention"
ACCEPTED = {  # file name in the zip -> student id
    f"ana.lopez_{ASSIGNMENT}.ipynb": "ana.lopez",  # renamed Colab download
    f"smithjane_4821_99310_{ASSIGNMENT}.ipynb": "smithjane",  # Canvas's "Download submissions" name
    f"ben_{ASSIGNMENT} (1).ipynb": "ben",  # the browser's second download of the same name
    f"carl@uni.example_Copy of {ASSIGNMENT}.ipynb": "carl@uni.example",  # Colab's "Copy of"
}
SKIPPED = (
    f"{ASSIGNMENT}.ipynb",  # no student id
    "dan_03_positional_encoding.ipynb",  # another assignment's notebook
    f".._{ASSIGNMENT}.ipynb",  # an "id" that would leave submitted/
    f"eve_{ASSIGNMENT}.txt",  # not a notebook
)


def test_zip_collect_maps_download_names_to_students(tmp_path):
    root = make_course(tmp_path / "course-dir")
    nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    examples = course.get(ASSIGNMENT).examples_dir
    sources = sorted(examples.glob("*.ipynb"))
    archive = root / "course" / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    contents = {}
    with zipfile.ZipFile(archive / "downloads.zip", "w") as zf:
        for i, name in enumerate([*ACCEPTED, *SKIPPED]):
            contents[name] = sources[i % len(sources)].read_bytes()
            zf.writestr(name, contents[name])

    proc = nbgrader(root, "zip_collect", ASSIGNMENT)

    submitted = root / "course" / "submitted"
    assert {p.name for p in submitted.iterdir()} == set(ACCEPTED.values()), proc.stdout + proc.stderr
    for name, student in ACCEPTED.items():
        files = list((submitted / student).rglob("*"))
        assert [f.relative_to(submitted / student).as_posix() for f in files if f.is_file()] == [
            f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
        ]
        assert (submitted / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes() == contents[name]
    assert not (root / "course" / ASSIGNMENT).exists()  # nothing climbed out of submitted/
