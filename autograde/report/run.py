"""What a grading run wrote, read back: one :class:`Graded` per submission, from Gradescope-format results.

Three layouts are read, all through the same ``results.json`` format:

- a run of ``python -m autograde grade --out DIR`` or of the nbgrader door (``course/grading``):
  ``DIR/<assignment>/<student>/results.json`` and ``DIR/summary.json``;
- any folder holding ``results.json`` files (results copied from Gradescope's autograder), found at any depth;
- Gradescope's *Export Submissions* download: ``submission_metadata.yml`` beside one ``submission_<id>/`` folder
  per submission, the metadata holding each submission's submitters and its autograder results (``:results:``).

The grader's details live in each result's ``extra_data`` (the kind and the known mistake of every failed test;
the student id, the assignment, the time, incidents, measurements and marks for review of the submission).
Results without them (another autograder's) are still read: their failures count with an unknown kind and
their student is the folder's (or the Gradescope submitter's) name. Everything read here is data: sizes are
bounded and nothing is executed.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograde.worker.results import Measurement, Review

RESULTS = "results.json"
SUMMARY = "summary.json"
GRADESCOPE_METADATA = "submission_metadata.yml"
MAX_RESULTS_BYTES = 16 * 2**20
MAX_METADATA_BYTES = 256 * 2**20
UNKNOWN_KIND = "failed (kind not recorded)"
WITHHELD_KIND = "result withheld until the deadline"  # a multiple-choice answer graded with --hide-choices
ALL_TESTS = "all tests"


@dataclass(frozen=True)
class Check:
    """One grader test of one submission."""

    part: str
    name: str
    score: float
    max_score: float
    passed: bool
    kind: str | None = None  # why it failed (autograde.worker.results.Kind values); None when it passed
    mistake: str | None = None  # the known mistake the failure matched


@dataclass(frozen=True)
class Incident:
    kind: str
    message: str


@dataclass
class Graded:
    """One graded submission as its results say. ``folder``: the folder of its results (None for a Gradescope
    export, whose results live in the metadata); ``notebook``: the submitted notebook when the layout says where
    it is."""

    student: str
    assignment: str
    checks: list[Check] = field(default_factory=list)
    score: float = 0.0
    seconds: float | None = None
    error: str = ""
    incidents: list[Incident] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    review: list[Review] = field(default_factory=list)
    detailed: bool = False  # whether the grader's extra_data was there (failure kinds and mistakes recorded)
    folder: Path | None = None
    notebook: Path | None = None

    @property
    def possible(self) -> float:
        return sum(c.max_score for c in self.checks)

    @property
    def parts(self) -> dict[str, tuple[float, float]]:
        """part -> (earned, possible), in the order the parts first appear."""
        parts: dict[str, tuple[float, float]] = {}
        for c in self.checks:
            earned, possible = parts.get(c.part, (0.0, 0.0))
            parts[c.part] = (earned + c.score, possible + c.max_score)
        return parts


@dataclass
class Run:
    """Every submission of a grading folder, the run's summary (if any) and the files that could not be read."""

    root: Path
    submissions: list[Graded] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    layout: str = "grading run"

    @property
    def assignments(self) -> list[str]:
        return sorted({s.assignment for s in self.submissions})

    def of(self, assignment: str) -> list[Graded]:
        return [s for s in self.submissions if s.assignment == assignment]


class NoResults(FileNotFoundError):
    """The folder holds no results; the message says what was expected."""


# ------------------------------------------------------------------------------------------ values
def _number(value: Any, default: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _optional_text(value: Any) -> str | None:
    text = _text(value)
    return text or None


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _part(test: dict) -> str:
    tags = test.get("tags")
    if isinstance(tags, list) and tags and isinstance(tags[0], str) and tags[0]:
        return tags[0]
    name = _text(test.get("name"))
    return name.split(":", 1)[0].strip() if ":" in name else ALL_TESTS


def _check(test: dict) -> Check:
    extra = test.get("extra_data") if isinstance(test.get("extra_data"), dict) else {}
    score, max_score = _number(test.get("score")), _number(test.get("max_score"))
    status = test.get("status")
    passed = status == "passed" if status in ("passed", "failed") else score >= max_score
    kind = _optional_text(extra.get("kind"))
    if not passed and kind is None:
        kind = WITHHELD_KIND if test.get("visibility") == "after_due_date" else UNKNOWN_KIND
    return Check(
        part=_part(test),
        name=_text(test.get("name")),
        score=score,
        max_score=max_score,
        passed=passed,
        kind=None if passed else kind,
        mistake=None if passed else _optional_text(extra.get("mistake")),
    )


def parse_results(data: Any, student: str, assignment: str) -> Graded:
    """A submission from a results.json object; ``student`` and ``assignment`` are used where its extra_data
    does not name them."""
    data = data if isinstance(data, dict) else {}
    extra = data.get("extra_data") if isinstance(data.get("extra_data"), dict) else {}
    checks = [_check(t) for t in _dicts(data.get("tests"))]
    seconds = extra.get("seconds", data.get("execution_time"))
    graded = Graded(
        student=_text(extra.get("student")) or student,
        assignment=_text(extra.get("assignment")) or assignment,
        checks=checks,
        score=_number(data.get("score"), sum(c.score for c in checks)),
        seconds=_number(seconds) if seconds is not None else None,
        error=_text(extra.get("error")),
        incidents=[Incident(_text(i.get("kind")), _text(i.get("message"))) for i in _dicts(extra.get("incidents"))],
        measurements=[
            Measurement(
                _text(m.get("part")),
                _text(m.get("name")),
                _number(m.get("value"), math.nan),
                _text(m.get("unit")),
                tuple(_number(t) for t in m["tiers"]) if isinstance(m.get("tiers"), list) else (),
            )
            for m in _dicts(extra.get("measurements"))
        ],
        review=[Review(_text(r.get("line")), _text(r.get("reason"))) for r in _dicts(extra.get("review"))],
        detailed=bool(extra),
    )
    graded.measurements = [m for m in graded.measurements if math.isfinite(m.value)]
    return graded


def _read_json(path: Path, limit: int) -> Any:
    if path.stat().st_size > limit:
        raise ValueError(f"larger than {limit // 2**20} MiB")
    return json.loads(path.read_bytes())


# ---------------------------------------------------------------------------------------------- layouts
def _results_files(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if RESULTS in files:
            found.append(Path(folder) / RESULTS)
    return found


def _from_results_files(root: Path, run: Run) -> None:
    for path in _results_files(root):
        folder = path.parent
        owner = folder.parent if folder.name == "results" else folder  # Gradescope keeps results/results.json
        student = owner.name
        assignment = owner.parent.name if owner.parent != root.parent and owner != root else root.name
        try:
            data = _read_json(path, MAX_RESULTS_BYTES)
        except (OSError, ValueError, RecursionError) as exc:
            run.unreadable.append(f"{path.relative_to(root)}: {exc}")
            continue
        graded = parse_results(data, student, assignment)
        graded.folder = folder
        run.submissions.append(graded)


def _submitter_id(submitter: dict) -> str:
    for key in (":sid", ":email", ":name", "sid", "email", "name"):
        value = _text(submitter.get(key)).strip()
        if value:
            return value
    return ""


def _from_gradescope_export(root: Path, run: Run) -> None:
    import yaml  # PyYAML: Gradescope writes the export's metadata as YAML

    path = root / GRADESCOPE_METADATA
    if path.stat().st_size > MAX_METADATA_BYTES:
        run.unreadable.append(f"{GRADESCOPE_METADATA}: larger than {MAX_METADATA_BYTES // 2**20} MiB")
        return
    try:
        metadata = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
    except yaml.YAMLError as exc:
        run.unreadable.append(f"{GRADESCOPE_METADATA}: not YAML ({exc})")
        return
    run.layout = "Gradescope export"
    for key, entry in sorted((metadata or {}).items(), key=lambda kv: str(kv[0])):
        if not isinstance(entry, dict):
            continue
        submitters = [_submitter_id(s) for s in _dicts(entry.get(":submitters"))]
        student = " & ".join(s for s in submitters if s) or str(key)
        results = entry.get(":results")
        if not isinstance(results, dict):
            run.unreadable.append(f"{key}: no autograder results in the export's metadata")
            continue
        graded = parse_results(results, student, root.name)
        graded.student = student  # the submitters, as the LMS knows them
        folder = root / str(key)
        notebooks = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
        graded.notebook = notebooks[0] if notebooks else None
        run.submissions.append(graded)


def load_run(root: Path) -> Run:
    """Every graded submission under ``root`` (see the module docstring); raises NoResults when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise NoResults(f"{root} is not a folder: pass the --out folder of a grading run")
    run = Run(root)
    if (root / GRADESCOPE_METADATA).is_file():
        _from_gradescope_export(root, run)
    else:
        _from_results_files(root, run)
    if (root / SUMMARY).is_file():
        try:
            summary = _read_json(root / SUMMARY, MAX_RESULTS_BYTES)
            run.summary = summary if isinstance(summary, dict) else {}
        except (OSError, ValueError, RecursionError) as exc:
            run.unreadable.append(f"{SUMMARY}: {exc}")
    if not run.submissions:
        raise NoResults(
            f"no results found under {root}: expected <assignment>/<student>/{RESULTS} (a grading run's --out "
            f"folder or an nbgrader course's grading folder) or Gradescope's {GRADESCOPE_METADATA}"
        )
    run.submissions.sort(key=lambda s: (s.assignment, s.student))
    return run
