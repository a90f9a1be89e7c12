"""What a grading run writes: grades.csv, Gradescope results.json and feedback per submission, a summary.

Feedback shows every check's description (the first line of the grader test's docstring) and its failure
message, never the test's source and never a path of the grading machine. Everything a student controls (the
messages of their exceptions, their file's name) is quoted as text in every format: fenced in Markdown,
escaped in HTML, and marked ``text`` for Gradescope, so it cannot pose as a heading or a score. With
``hide_choices`` the result of a multiple-choice part is withheld (Gradescope shows it after the due date).
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import re
from collections import Counter
from pathlib import Path

from autograde import course
from autograde.catalog import manual_points
from autograde.isolation.batch import folder_name
from autograde.results import SubmissionResult, TestOutcome

HIDDEN_CHOICE = "the result of this multiple-choice question is shown after the deadline"


def _fmt(x: float) -> str:
    return f"{x:g}"


def _points(x: float) -> str:
    """``1 point``, ``2 points``, ``0.5 points``."""
    return f"{x:g} point{'' if x == 1 else 's'}"


# An absolute path (two or more components) that is not part of a URL or of a word such as ``h/p``.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.)\]}/:~])/(?:[^\s/'\"`:,;()<>]+/)+([^\s/'\"`:,;()<>]*)")


def public_text(text: str) -> str:
    """``text`` with every absolute path shortened to its last component (``.../name``), so that no message
    shows where the grading machine keeps the grader, the submissions or its scratch folders."""
    return _ABSOLUTE_PATH.sub(lambda m: f".../{m.group(1)}" if m.group(1) else "...", text)


def _public(result: SubmissionResult) -> SubmissionResult:
    """The result as students may see it: every message, problem and error passed through ``public_text``."""
    return dataclasses.replace(
        result,
        outcomes=[dataclasses.replace(o, message=public_text(o.message)) for o in result.outcomes],
        problems=[public_text(p) for p in result.problems],
        error=public_text(result.error),
    )


def _hidden(result: SubmissionResult, outcome: TestOutcome, hide_choices: bool) -> bool:
    try:
        return hide_choices and outcome.part in course.get(result.assignment).multiple_choice
    except KeyError:
        return False


def score_line(result: SubmissionResult) -> str:
    """``24 / 27 automatic; 4 more points for written answers are graded by hand``."""
    line = f"{_fmt(result.earned)} / {_fmt(result.possible)} automatic"
    manual = manual_points(result.assignment) if result.assignment in course.ids() else 0
    if manual:
        line += f"; {_fmt(manual)} more point{'s' if manual != 1 else ''} for written answers are graded by hand"
    return line


def submission_dir(out: Path, result: SubmissionResult) -> Path:
    return out / folder_name(result.assignment) / folder_name(result.student)


def write_grades_csv(results: list[SubmissionResult], path: Path) -> Path:
    """One row per submission: student id, assignment, points per part, total, maximum and any error."""
    parts: list[str] = []
    for r in results:
        parts += [p for p in r.parts if p not in parts]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "assignment", *parts, "total", "max", "error"])
        for r in results:
            scores = r.parts
            writer.writerow(
                [
                    r.student,
                    r.assignment,
                    *(_fmt(scores[p][0]) if p in scores else "" for p in parts),
                    _fmt(r.earned),
                    _fmt(r.possible),
                    public_text(r.error),
                ]
            )
    return path


def gradescope_results(result: SubmissionResult, hide_choices: bool = False) -> dict:
    """The submission in Gradescope's ``results.json`` format (one entry per grader test)."""
    result = _public(result)
    tests = []
    for o in result.outcomes:
        hidden = _hidden(result, o, hide_choices)
        tests.append(
            {
                "name": f"{o.part}: {o.description}",
                "score": o.earned,
                "max_score": o.points,
                "status": "passed" if o.passed else "failed",
                "output": o.message,
                "output_format": "text",
                "tags": [o.part],
                "visibility": "after_due_date" if hidden else "visible",
            }
        )
    overview = [f"Score: {score_line(result)}."]
    if result.error:
        overview.append(f"This submission could not be graded: {result.error}")
    overview += result.problems or ["Your notebook's definitions ran without errors."]
    return {
        "score": result.earned,
        "execution_time": round(result.seconds, 2),
        "output": "\n".join(overview),
        "output_format": "text",
        "test_output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def _quoted(text: str) -> list[str]:
    """``text`` as a Markdown code block whose fence no line of the text can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", *text.splitlines(), fence]


def _md_escape(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text)


def feedback_markdown(result: SubmissionResult, hide_choices: bool = False) -> str:
    result = _public(result)
    lines = [
        f"# Feedback on {result.assignment}: {_md_escape(result.student)}",
        "",
        f"**Score: {score_line(result)}**",
        "",
    ]
    if result.error:
        lines += ["## This submission could not be graded", "", *_quoted(result.error), ""]
    if result.problems:
        lines += ["## Your notebook", ""]
        for p in result.problems:
            lines += _quoted(p)
        lines.append("")
    for part, (earned, possible) in result.parts.items():
        outcomes = [o for o in result.outcomes if o.part == part]
        hidden = any(_hidden(result, o, hide_choices) for o in outcomes)
        lines += [f"## {part}: " + ("(after the deadline)" if hidden else f"{_fmt(earned)} / {_fmt(possible)}"), ""]
        for o in outcomes:
            if hidden:
                lines.append(f"- {o.description} ({_points(o.points)}): {HIDDEN_CHOICE}")
                continue
            mark = "PASS" if o.passed else "FAIL"
            lines.append(f"- **{mark}** {o.description} ({_fmt(o.earned)}/{_fmt(o.points)})")
            if o.message:
                lines += ["", *(f"  {line}" for line in _quoted(o.message)), ""]
        lines.append("")
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}"
    ".pass{color:#1a7f37}.fail{color:#cf222e}pre{white-space:pre-wrap;background:#f6f8fa;padding:.5rem}"
)


def feedback_html(result: SubmissionResult, hide_choices: bool = False) -> str:
    result = _public(result)
    e = html.escape
    body = [
        f"<h1>Feedback on {e(result.assignment)}: {e(result.student)}</h1>",
        f"<p><strong>Score: {e(score_line(result))}</strong></p>",
    ]
    if result.error:
        body.append(f"<h2>This submission could not be graded</h2><pre>{e(result.error)}</pre>")
    if result.problems:
        body.append(
            "<h2>Your notebook</h2><ul>" + "".join(f"<li><pre>{e(p)}</pre></li>" for p in result.problems) + "</ul>"
        )
    for part, (earned, possible) in result.parts.items():
        outcomes = [o for o in result.outcomes if o.part == part]
        hidden = any(_hidden(result, o, hide_choices) for o in outcomes)
        body.append(
            f"<h2>{e(part)}: {'(after the deadline)' if hidden else f'{_fmt(earned)} / {_fmt(possible)}'}</h2><ul>"
        )
        for o in outcomes:
            if hidden:
                body.append(f"<li>{e(o.description)} ({_points(o.points)}): {e(HIDDEN_CHOICE)}</li>")
                continue
            ok = o.passed
            body.append(
                f'<li><span class="{"pass" if ok else "fail"}">{"PASS" if ok else "FAIL"}</span> '
                f"{e(o.description)} ({_fmt(o.earned)}/{_fmt(o.points)})"
                + (f"<pre>{e(o.message)}</pre>" if o.message else "")
                + "</li>"
            )
        body.append("</ul>")
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Feedback: {e(result.student)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )


def summary(results: list[SubmissionResult], seconds: float) -> dict:
    """Counts, failed checks by kind, sandbox incidents by kind and timing of a run."""
    failures = Counter(o.kind.value for r in results for o in r.outcomes if not o.passed and o.kind is not None)
    incidents = Counter(i.kind for r in results for i in r.incidents)
    return {
        "submissions": len(results),
        "full_marks": sum(r.earned == r.possible > 0 for r in results),
        "unreadable": sum(bool(r.error) for r in results),
        "with_definition_problems": sum(bool(r.problems) for r in results),
        "failed_checks_by_kind": dict(sorted(failures.items())),
        "sandbox_incidents_by_kind": dict(sorted(incidents.items())),
        "mean_score": round(sum(r.earned for r in results) / len(results), 3) if results else 0.0,
        "wall_seconds": round(seconds, 2),
        "seconds_per_submission": round(seconds / len(results), 3) if results else 0.0,
        "slowest_submission_seconds": round(max((r.seconds for r in results), default=0.0), 2),
    }


def summary_text(data: dict) -> str:
    lines = [
        f"Graded {data['submissions']} submissions in {data['wall_seconds']:g} s "
        f"({data['seconds_per_submission']:g} s each): {data['full_marks']} with full marks, "
        f"{data['unreadable']} unreadable, mean score {data['mean_score']:g}."
    ]
    if data["failed_checks_by_kind"]:
        lines.append(
            "Failed checks by kind: " + ", ".join(f"{k} {v}" for k, v in data["failed_checks_by_kind"].items())
        )
    if data["sandbox_incidents_by_kind"]:
        lines.append(
            "Sandbox incidents: " + ", ".join(f"{k} {v}" for k, v in data["sandbox_incidents_by_kind"].items())
        )
    return "\n".join(lines)


def write_submission(out: Path, result: SubmissionResult, hide_choices: bool = False) -> Path:
    folder = submission_dir(out, result)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(gradescope_results(result, hide_choices), indent=2))
    (folder / "feedback.md").write_text(feedback_markdown(result, hide_choices))
    (folder / "feedback.html").write_text(feedback_html(result, hide_choices))
    return folder


def write_run(out: Path, results: list[SubmissionResult], seconds: float, hide_choices: bool = False) -> str:
    """Write every output of a run under ``out``; return the summary as text."""
    out.mkdir(parents=True, exist_ok=True)
    for result in results:
        write_submission(out, result, hide_choices)
    write_grades_csv(results, out / "grades.csv")
    data = summary(results, seconds)
    (out / "summary.json").write_text(json.dumps(data, indent=2))
    text = summary_text(data)
    (out / "summary.txt").write_text(text + "\n")
    return text
