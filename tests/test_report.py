"""The class report: a class graded for real from notebook 1's example submissions, with known mistakes in known
proportions, and what the report says about it; then the report's reading of other layouts and its handling of
student-controlled text, on results written by the grading run's own writer (``autograde.outputs.write_run``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from autograde import course
from autograde.example_notebooks import examples, expected_points
from autograde.report.build import HTML, MARKDOWN, write_report
from autograde.report.compose import PRIVATE_TITLE
from autograde.report.index import INDEX
from autograde.report.run import UNKNOWN_KIND, load_run
from autograde.report.stats import assignment_stats

A1 = "01_self_attention_cnn"
# student -> the example submission they hand in: 3 solutions, 2 with the missing scale, one of each other mistake.
CLASS = {
    "ana": "solution",
    "bo": "solution",
    "cy": "solution",
    "dee": "no_scale",
    "eli": "no_scale",
    "fox": "softmax_wrong_axis",
    "gus": "channels_attention",
    "hal": "no_residual",
    "ivy": "blank",
    "jo": "wrong_choice",
}
# The examples whose attention is wrong in a known way (autograde/assignments/self_attention_cnn/mistakes.py).
WRONG_ATTENTION = ("no_scale", "softmax_wrong_axis", "channels_attention", "no_residual")


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    """The class graded once by ``python -m autograde grade`` (which writes the report by default)."""
    root = tmp_path_factory.mktemp("class")
    submissions = root / "submissions"
    submissions.mkdir()
    folder = course.get(A1).examples_dir
    for student, example in CLASS.items():
        shutil.copy(folder / f"{example}.ipynb", submissions / f"{student}.ipynb")
    out = root / "grading"
    proc = subprocess.run(
        [sys.executable, "-m", "autograde", "grade", str(submissions), "--out", str(out), "--jobs", "2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _stats(out: Path):
    run = load_run(out)
    assert run.assignments == [A1]
    return assignment_stats(A1, run.of(A1))


def _expected_part_points(part: str) -> Counter:
    """How many students earn each score on ``part``, from the examples' declared failures and the graders'
    points (autograde.example_notebooks), not from the report."""
    by_name = {e.name: e for e in examples(A1)}
    return Counter(expected_points(A1, by_name[example])[part] for example in CLASS.values())


@pytest.mark.slow
def test_the_report_counts_the_class(graded):
    s = _stats(graded)
    assert s.submissions == len(CLASS)
    assert s.total.full_marks == 3 and s.total.full_share == pytest.approx(0.3)
    assert {student for student, _ in s.seconds} == set(CLASS)
    summary = json.loads((graded / "summary.json").read_text())
    assert {k.kind: k.checks for k in s.kinds} == summary["failed_checks_by_kind"]


@pytest.mark.slow
def test_mistakes_are_ranked_by_how_many_students_made_them(graded):
    """Two students made the missing scale, one each of three other mistakes: the missing scale comes first with
    its two students, then one row per other mistake, each with its one student; all in the attention part."""
    s = _stats(graded)
    makers = {e: {st for st, ex in CLASS.items() if ex == e} for e in WRONG_ATTENTION}
    assert [m.count for m in s.mistakes] == sorted((len(v) for v in makers.values()), reverse=True) == [2, 1, 1, 1]
    assert (s.mistakes[0].name, set(s.mistakes[0].students)) == ("no_scale", makers["no_scale"])
    others = sorted(tuple(sorted(v)) for e, v in makers.items() if e != "no_scale")
    assert sorted(tuple(sorted(m.students)) for m in s.mistakes[1:]) == others
    assert {m.part for m in s.mistakes} == {"attention"}
    assert [m.name for m in s.mistakes[1:]] == sorted(m.name for m in s.mistakes[1:])  # ties by name


@pytest.mark.slow
def test_histograms_hold_each_parts_scores(graded):
    s = _stats(graded)
    for part in s.parts:
        shown = {int(label): n for label, n in part.histogram.as_dict().items() if n}
        assert shown == dict(_expected_part_points(part.part)), part.part
        full = _expected_part_points(part.part)[part.possible]
        assert part.full_marks == full


@pytest.mark.slow
def test_the_report_is_written_and_names_students_only_in_the_instructor_section(graded):
    for name in (HTML, MARKDOWN):
        text = (graded / name).read_text()
        public, private = text.rsplit(PRIVATE_TITLE, 1)  # its heading is the last mention
        assert "no_scale" in public and "holds identities" in public
        for student in CLASS:
            assert not re.search(rf"\b{student}\b", public), f"{student} named outside the instructor section"
            assert re.search(rf"\b{student}\b", private)
    assert (graded / INDEX).is_file()
    assert len(list((graded / "report_files").glob("*.png"))) >= 3


@pytest.mark.slow
def test_identical_notebooks_are_flagged_and_the_blank_release_is_not(graded):
    html = (graded / HTML).read_text()
    private = html.rsplit(PRIVATE_TITLE, 1)[1]
    assert "reason to look" in private and "not proof" in private
    rows = re.findall(r"<tr><td><code>(\w+)</code></td><td><code>(\w+)</code></td><td class='n'>(\d+)%", private)
    flagged = {frozenset((a, b)) for a, b, _ in rows}
    assert {frozenset(p) for p in (("ana", "bo"), ("ana", "cy"), ("bo", "cy"))} <= flagged
    assert not any("ivy" in pair for pair in flagged)


# ---------------------------------------------------------------------------------------- written results
def _result(
    student: str, assignment: str, parts: dict[str, list[tuple[float, float, str | None, str | None]]], **extra
):
    from autograde.worker.results import Kind, SubmissionResult, TestOutcome, TestSpec

    outcomes = []
    for part, tests in parts.items():
        for i, (earned, points, kind, mistake) in enumerate(tests):
            spec = TestSpec(f"grader.py::test_{part}_{i}", part, f"check {i} of {part}", points)
            outcomes.append(
                TestOutcome(spec, earned, "" if kind is None else "wrong", Kind(kind) if kind else None, mistake)
            )
    return SubmissionResult(student, assignment, f"/submissions/{student}.ipynb", outcomes, **extra)


def _write(out: Path, results) -> Path:
    from autograde.outputs import write_run

    write_run(out, results, 12.0, report=False)
    return out


def test_measurements_are_shown_against_their_tiers(tmp_path):
    from autograde.worker.results import Measurement

    a4 = "04_vision_transformer"
    accuracies = {"a": 30.0, "b": 50.0, "c": 70.0, "d": 80.0}
    results = [
        _result(
            s,
            a4,
            {"checkpoint": [(0.0, 2.0, "wrong result", None)]},
            measurements=[Measurement("checkpoint", "accuracy", v, "%", (45.0, 65.0))],
        )
        for s, v in accuracies.items()
    ] + [_result("e", a4, {"checkpoint": [(0.0, 2.0, "missing or unusable file", None)]})]
    s = assignment_stats(a4, load_run(_write(tmp_path, results)).of(a4))
    (m,) = s.measurements
    assert (m.part, m.name, m.unit, m.tiers, m.missing) == ("checkpoint", "accuracy", "%", (45.0, 65.0), 1)
    assert m.bands == [("below 45 %", 1), ("45 to 65 %", 1), ("65 % or more", 2)]
    files = write_report(tmp_path, settings=None, progress=False)
    assert "checkpoint: accuracy (%) against its tiers" in files.markdown.read_text()


def test_student_text_is_inert_in_html_and_markdown(tmp_path):
    from autograde.worker.results import Incident, Review

    hostile = "<script>alert(1)</script>|`x`\x1b[31m\u202e# Heading\n[link](http://x)"
    results = [
        _result(
            hostile,
            A1,
            {"attention": [(0.0, 1.0, "error in student code", None)]},
            incidents=[Incident("crash", "<img src=x onerror=alert(1)>\n```\n# fake")],
            review=[Review("getattr(F, 'scaled_' + 'dot')", "the forbidden call was reached by name")],
        ),
        _result("plain", A1, {"attention": [(1.0, 1.0, None, None)]}),
    ]
    files = write_report(_write(tmp_path, results), settings=None, progress=False)
    html = files.html.read_text()
    assert "<script>" not in html and "<img src=x" not in html and "\x1b" not in html and "\u202e" not in html
    assert "&lt;script&gt;" in html
    markdown = files.markdown.read_text()
    assert "\x1b" not in markdown and "\u202e" not in markdown
    outside = _outside_code(markdown)
    for markup in ("<script>", "<img", "[link](http://x)", "\n# Heading", "\n# fake", "\n```\n"):
        assert markup not in outside, markup
    assert "getattr(F, 'scaled_' + 'dot')" in markdown and "marked for your review" in markdown


def _outside_code(markdown: str) -> str:
    """The Markdown without its fenced blocks and inline code spans (where text is shown as written)."""
    without_blocks = re.sub(r"^(`{3,})[^\n]*\n.*?^\1$", "", markdown, flags=re.S | re.M)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", without_blocks)


def test_results_without_the_graders_details_still_count(tmp_path):
    """Results from another autograder (no extra_data): failures count with an unknown kind, student from the
    folder."""
    folder = tmp_path / "hw1" / "sam"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(
        json.dumps(
            {
                "score": 1.0,
                "tests": [
                    {"name": "part1: adds", "score": 1.0, "max_score": 1.0, "status": "passed"},
                    {"name": "part1: multiplies", "score": 0.0, "max_score": 2.0, "status": "failed"},
                ],
            }
        )
    )
    run = load_run(tmp_path)
    (g,) = run.submissions
    assert (g.student, g.assignment, g.detailed) == ("sam", "hw1", False)
    s = assignment_stats("hw1", run.submissions)
    assert [(k.kind, k.checks) for k in s.kinds] == [(UNKNOWN_KIND, 1)] and s.without_details == 1


def test_a_gradescope_export_is_read_with_its_submitters(tmp_path):
    """Gradescope's Export Submissions: submission_metadata.yml holds each submission's submitters and results."""
    from autograde.outputs import gradescope_results

    results = [
        _result("submission", A1, {"attention": [(1.0, 1.0, None, None), (0.0, 2.0, "wrong result", "no_scale")]}),
        _result("submission", A1, {"attention": [(1.0, 1.0, None, None), (2.0, 2.0, None, None)]}),
    ]
    metadata = {}
    for i, (sid, r) in enumerate(zip(("s100", "s200"), results, strict=True)):
        folder = tmp_path / f"submission_{i}"
        folder.mkdir()
        shutil.copy(course.get(A1).examples_dir / "solution.ipynb", folder / "notebook.ipynb")
        metadata[f"submission_{i}"] = {
            ":submitters": [{":name": f"Student {sid}", ":sid": sid, ":email": f"{sid}@example.edu"}],
            ":score": r.earned,
            ":results": gradescope_results(r),
        }
    import yaml

    (tmp_path / "submission_metadata.yml").write_text(yaml.safe_dump(metadata))
    run = load_run(tmp_path)
    assert run.layout == "Gradescope export"
    assert [(g.student, g.score) for g in run.submissions] == [("s100", 1.0), ("s200", 3.0)]
    assert all(g.notebook is not None and g.notebook.name == "notebook.ipynb" for g in run.submissions)
    s = assignment_stats(A1, run.submissions)
    assert [(m.name, m.students) for m in s.mistakes] == [("no_scale", ("s100",))]
