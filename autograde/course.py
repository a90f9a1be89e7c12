"""The course registry: the one list of assignments that every other module reads.

An assignment is a source notebook ``solutions/<id>/<id>.ipynb`` (nbgrader's source), its release
``assignments/<id>/<id>.ipynb`` (generated) and one folder ``autograde/assignments/<folder>/`` holding

- ``grader.py``: the pytest tests, each marked ``@pytest.mark.part(...)`` and ``@pytest.mark.points(n)``; the
  points live there and nowhere else (the release step writes them into the hidden cells);
- ``reference.py``: the reference implementation the tests compare with, and ``SOLUTION``, the names the solution
  notebook defines (a registry-wide test checks that it earns every point);
- ``examples.py``: example submissions (``EXAMPLES``) and ``examples/*.ipynb``, generated from them;
- where the notebook needs them, ``mistakes.py`` (its known mistakes, the one place to add one) and
  ``stand_ins.py`` (the grader's stand-ins for earlier parts, shipped to the sandbox as source).

Adding a notebook means adding those files and one :class:`Assignment` below. What is derived from the
graders (each part's tests, points and the names it asks the submission for) is in
:mod:`autograde.catalog`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

COURSE_ID = "attention-cv"  # nbgrader's course id (nbgrader_config.py, the gradebook, the exchange)
PACKAGE_DIR = Path(__file__).resolve().parent
REPO = PACKAGE_DIR.parent
SOLUTIONS = REPO / "solutions"
RELEASE = REPO / "assignments"
ASSIGNMENTS_DIR = PACKAGE_DIR / "assignments"

# Where Colab students' set-up cells pip-install course_utils from (e.g. "git+https://github.com/<org>/<repo>"),
# written into the release by `make release`; None: from the student bundle in their Google Drive instead.
# `make release COURSE_UTILS_SPEC=...` overrides it for one release.
COURSE_UTILS_SPEC: str | None = None


@dataclass(frozen=True)
class ExtraFile:
    """A file handed in beside the notebook, read by the trusted side only (never by student code).

    part: the graded part whose tests read it; max_mb: larger files are refused unread; seconds: the extra
    time budget its checks get on top of the submission's.
    """

    name: str
    part: str
    max_mb: int
    seconds: float


@dataclass(frozen=True)
class Assignment:
    id: str
    title: str
    folder: str
    extra_files: tuple[ExtraFile, ...] = ()
    multiple_choice: tuple[str, ...] = ()  # parts whose result reveals a multiple-choice answer

    @property
    def package(self) -> str:
        return f"autograde.assignments.{self.folder}"

    @property
    def directory(self) -> Path:
        return ASSIGNMENTS_DIR / self.folder

    @property
    def grader_path(self) -> Path:
        return self.directory / "grader.py"

    @property
    def examples_dir(self) -> Path:
        return self.directory / "examples"

    @property
    def source_notebook(self) -> Path:
        return SOLUTIONS / self.id / f"{self.id}.ipynb"

    @property
    def release_notebook(self) -> Path:
        return RELEASE / self.id / f"{self.id}.ipynb"

    def reference(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.reference")

    def examples(self) -> list:
        return importlib.import_module(f"{self.package}.examples").EXAMPLES

    @property
    def extra_seconds(self) -> float:
        return sum(f.seconds for f in self.extra_files)


ASSIGNMENTS: tuple[Assignment, ...] = (
    Assignment("01_self_attention_cnn", "Self-attention in a CNN", "self_attention_cnn", multiple_choice=("q1",)),
    Assignment("02_multi_head_attention", "Multi-head attention", "multi_head_attention"),
    Assignment("03_positional_encoding", "Positional encodings", "positional_encoding"),
    Assignment(
        "04_vision_transformer",
        "A Vision Transformer",
        "vision_transformer",
        extra_files=(ExtraFile("vit_checkpoint.pt", part="checkpoint", max_mb=200, seconds=900.0),),
        multiple_choice=("q_cost",),
    ),
    Assignment("05_local_attention", "Local self-attention and attention that fits in memory", "local_attention"),
)


def ids() -> list[str]:
    return [a.id for a in ASSIGNMENTS]


def get(assignment_id: str) -> Assignment:
    for a in ASSIGNMENTS:
        if a.id == assignment_id:
            return a
    raise KeyError(f"no assignment {assignment_id!r}; the course has {', '.join(ids())}")


def of_package(package: str) -> Assignment:
    """The assignment whose folder holds the module of ``package`` (``autograde.assignments.<folder>...``), so that
    a notebook's own modules find their registry line without naming it."""
    for a in ASSIGNMENTS:
        if package == a.package or package.startswith(a.package + "."):
            return a
    raise KeyError(f"{package} is not in an assignment's folder")
