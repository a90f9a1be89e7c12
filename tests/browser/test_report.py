"""The class report in the browser tests' Chromium: its figures are decoded and drawn, the shared code of a flagged
pair shows side by side, nothing runs; a screenshot goes to outputs/browser/report.png."""

from __future__ import annotations

import shutil

import pytest

from autograde import course
from tests.browser.lab import OUTPUTS

pytestmark = pytest.mark.browser

A1, A4 = "01_self_attention_cnn", "04_vision_transformer"


def _class(root):
    """A small graded class written by the grading run's own writer: notebook-1 examples (two identical
    solutions among them) with named mistakes, and notebook-4 checkpoints measured against their tiers."""
    from autograde.outputs import write_run
    from autograde.worker.results import Kind, Measurement, SubmissionResult, TestOutcome, TestSpec

    def outcome(part, i, points, kind=None, mistake=None):
        spec = TestSpec(f"grader.py::test_{part}_{i}", part, f"{part} check {i}", points)
        return TestOutcome(spec, 0.0 if kind else points, "wrong" if kind else "", kind, mistake)

    notebooks = root / "submitted"
    notebooks.mkdir()
    results = []
    plan = {"ann": "solution", "ben": "solution", "cat": "no_scale", "dan": "softmax_wrong_axis", "eve": "blank"}
    mistakes = {"no_scale": "no_scale", "softmax_wrong_axis": "softmax_axis"}
    for student, example in plan.items():
        path = notebooks / f"{student}.ipynb"
        shutil.copy(course.get(A1).examples_dir / f"{example}.ipynb", path)
        wrong = Kind.WRONG_RESULT if example in mistakes else (Kind.STUDENT_ERROR if example == "blank" else None)
        outcomes = [outcome("attention", 0, 1.0), outcome("attention", 1, 3.0, wrong, mistakes.get(example))]
        outcomes += [outcome("models", 0, 2.0, Kind.STUDENT_ERROR if example == "blank" else None)]
        results.append(SubmissionResult(student, A1, str(path), outcomes, seconds=2.0 + len(results)))
    for i, accuracy in enumerate((38.0, 52.0, 71.0, 74.0)):
        kind = None if accuracy >= 45 else Kind.WRONG_RESULT
        measured = [Measurement("checkpoint", "accuracy", accuracy, "%", (45.0, 65.0))]
        results.append(
            SubmissionResult(
                f"s{i}",
                A4,
                str(notebooks / "none.ipynb"),
                [outcome("checkpoint", 0, 4.0, kind)],
                seconds=30.0,
                measurements=measured,
            )
        )
    out = root / "grading"
    write_run(out, results, 60.0)  # writes the report, as `grade` does
    return out


def test_the_report_renders_its_figures(tmp_path, page):
    out = _class(tmp_path)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto((out / "report.html").as_uri())
    images = page.locator("img.figure")
    expected = 5  # A1: scores, mistakes, time; A4: scores, time, accuracy against tiers -> at least 5
    assert images.count() >= expected
    for i in range(images.count()):
        drawn = images.nth(i).evaluate("img => img.complete && img.naturalWidth > 100 && img.naturalHeight > 100")
        assert drawn, f"figure {i} ({images.nth(i).get_attribute('alt')[:60]}) was not drawn"
    assert page.locator("h2", has_text="For the instructor only").count() == 1
    pair = page.locator(".pair").first
    assert pair.is_visible() and pair.locator(".shared").count() > 0  # ann and ben's identical code, highlighted
    assert page.evaluate("() => document.scripts.length") == 0 and not errors
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUTS / "report.png"), full_page=True)
