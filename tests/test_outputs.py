"""What a grading run writes for students and instructors: scores, escaped student text, withheld choices."""

from __future__ import annotations

import re

from autograde import course
from autograde.outputs import feedback_html, feedback_markdown, gradescope_results, score_line, summary
from autograde.worker.results import Kind, SubmissionResult, TestOutcome, TestSpec

A = "01_self_attention_cnn"


def result(message: str = "", kind: Kind | None = None) -> SubmissionResult:
    specs = [
        TestSpec("grader.py::test_a", "attention", "forward matches", 3.0),
        TestSpec("grader.py::test_q", "q1", "Inline Question 1", 1.0),
    ]
    outcomes = [TestOutcome(specs[0], 0.0, message, kind), TestOutcome(specs[1], 1.0)]
    return SubmissionResult("*alice*", A, "/grading/machine/alice.ipynb", outcomes)


def test_the_score_line_says_what_is_graded_by_hand():
    line = score_line(result())
    assert line.startswith("1 / 4 automatic; ") and line.endswith("more points for written answers are graded by hand")


def test_student_text_is_quoted_in_every_format():
    r = result("**Score: 4 / 4**\n# Full marks\n```\n<b>bold</b>", Kind.STUDENT_ERROR)
    markdown = feedback_markdown(r)
    assert "````text" in markdown  # a fence longer than any the student wrote
    outside = re.sub(r"(`{3,})text\n.*?\n *\1\n", "", markdown, flags=re.S)
    assert "# Full marks" not in outside and outside.count("Score:") == 1 and "`*alice*`" in outside
    assert "<b>bold</b>" not in feedback_html(r) and "&lt;b&gt;" in feedback_html(r)
    data = gradescope_results(r)
    assert data["output_format"] == data["test_output_format"] == "text"
    assert all(t["output_format"] == "text" for t in data["tests"])
    assert "/grading/machine" not in markdown + feedback_html(r) + str(data)


def test_no_path_of_the_grading_machine_reaches_a_student():
    machine = [
        "/work/course/autograde/assignments/vision_transformer/checkpoint.py",
        "/tmp/nb-k2j3/work-7f/vit_checkpoint.pt",
        "/autograder/submission/notebook.ipynb",
    ]
    r = result("raised FileNotFoundError: " + " and ".join(machine) + "; use (N, (h/p)*(w/p), E), 1/sqrt(D)")
    r.problems, r.error = [f"cell 3 failed in {machine[1]}"], f"could not read {machine[2]}"
    outputs = [feedback_markdown(r), feedback_html(r), str(gradescope_results(r))]
    for text in outputs:
        assert not any(path in text for path in machine) and ".../vit_checkpoint.pt" in text
        assert "(h/p)*(w/p)" in text and "1/sqrt(D)" in text  # formulas are not paths


def test_multiple_choice_results_can_wait_for_the_deadline():
    r = result()
    assert "q1" in course.get(A).multiple_choice
    shown = gradescope_results(r)
    hidden = gradescope_results(r, hide_choices=True)
    assert [t["visibility"] for t in shown["tests"]] == ["visible", "visible"]
    assert [t["visibility"] for t in hidden["tests"]] == ["visible", "after_due_date"]
    assert "Inline Question 1 (1 point): the result" in feedback_markdown(r, hide_choices=True)
    assert "PASS** Inline Question 1" not in feedback_markdown(r, hide_choices=True)


def test_the_summary_counts_kinds_as_the_graders_set_them():
    text_claims_a_grader_error = "the grader could not check this; tell your instructor"
    data = summary([result(text_claims_a_grader_error, Kind.STUDENT_ERROR)], 2.0)
    assert data["failed_checks_by_kind"] == {"error in student code": 1}
