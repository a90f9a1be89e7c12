"""What a grading run writes: grades.csv, Gradescope results.json and feedback per submission, a summary.

Feedback shows every check's description (the first line of the grader test's docstring) and its failure
message, never the test's source and never a path of the grading machine. Everything a student controls (the
messages of their exceptions, their file's name, their id) is inert in every format (:mod:`autograde.inert`): control
characters are shown as escapes (no terminal escape sequence, no fake line), it is fenced in Markdown (ids as code),
escaped in HTML, marked ``text`` for Gradescope, and a CSV cell that a spreadsheet would read as a formula is
neutralised (:func:`csv_cell`); ``results.json`` keeps the exact id. With ``hide_choices`` the result of a
multiple-choice part is withheld (Gradescope shows it after the due date).

Each submission's folder name is made from its student id, collision-free over the whole run
(:func:`folder_names`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from autograde import course
from autograde.catalog import manual_points
from autograde.inert import csv_cell, inert, md_code, md_fenced, one_line, public_text
from autograde.worker.results import SubmissionResult, TestOutcome

HIDDEN_CHOICE = "the result of this multiple-choice question is shown after the deadline"
REVIEW_NOTE = (
    "These lines could switch off what the grader checks in your own process; an instructor will look at them. "
    "Your score is as graded."
)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _points(x: float) -> str:
    """``1 point``, ``2 points``, ``0.5 points``."""
    return f"{x:g} point{'' if x == 1 else 's'}"


def _public(result: SubmissionResult) -> SubmissionResult:
    """The result as students may see it: every message, problem and error passed through ``public_text`` and
    made inert."""
    return dataclasses.replace(
        result,
        outcomes=[dataclasses.replace(o, message=inert(public_text(o.message))) for o in result.outcomes],
        problems=[inert(public_text(p)) for p in result.problems],
        error=inert(public_text(result.error)),
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


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", text).strip(".") or "student"


class FolderClash(ValueError):
    """Two ids of one run would share an output folder; nothing is written."""


def folder_names(ids: Iterable[str]) -> dict[str, str]:
    """A file-system-safe folder name for every id, different for different ids over the whole run.

    An id that is already safe keeps its name; another becomes its safe form plus a short hash of the id
    (``alice!`` -> ``alice_-3f2a1c``). Where two ids would still share a name (an id that happens to equal another's
    hashed name), every id of the clash gets a longer hash; :class:`FolderClash` if a clash is left after that.
    """
    ids = list(dict.fromkeys(ids))

    def hashed(i: str, length: int) -> str:
        return f"{_safe_name(i)}-{hashlib.sha256(i.encode()).hexdigest()[:length]}"

    names = {i: i if _safe_name(i) == i else hashed(i, 6) for i in ids}
    owners = Counter(names.values())
    names = {i: hashed(i, 16) if owners[n] > 1 else n for i, n in names.items()}
    clashes = [n for n, count in Counter(names.values()).items() if count > 1]
    if clashes:
        raise FolderClash(f"student ids would share the output folders {clashes[:3]}; rename the submissions")
    return names


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
                    csv_cell(r.student),
                    csv_cell(r.assignment),
                    *(_fmt(scores[p][0]) if p in scores else "" for p in parts),
                    _fmt(r.earned),
                    _fmt(r.possible),
                    csv_cell(public_text(r.error)),
                ]
            )
    return path


def gradescope_results(result: SubmissionResult, hide_choices: bool = False) -> dict:
    """The submission in Gradescope's ``results.json`` format (one entry per grader test)."""
    exact_student = result.student
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
                "extra_data": {
                    "kind": None if hidden or o.kind is None else o.kind.value,
                    "mistake": None if hidden else o.mistake,
                },
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
        "extra_data": {
            "student": exact_student,
            "assignment": result.assignment,
            "seconds": round(result.seconds, 3),
            "error": result.error,
            "incidents": [{"kind": i.kind, "message": inert(public_text(i.message))} for i in result.incidents],
            "measurements": [dataclasses.asdict(m) for m in result.measurements],
            "review": [{"line": inert(r.line), "reason": r.reason} for r in result.review],
        },
    }


def feedback_markdown(result: SubmissionResult, hide_choices: bool = False) -> str:
    result = _public(result)
    lines = [
        f"# Feedback on {result.assignment}: {md_code(result.student)}",
        "",
        f"**Score: {score_line(result)}**",
        "",
    ]
    if result.error:
        lines += ["## This submission could not be graded", "", *md_fenced(result.error), ""]
    if result.problems:
        lines += ["## Your notebook", ""]
        for p in result.problems:
            lines += md_fenced(p)
        lines.append("")
    if result.review:
        lines += ["## Marked for review", "", REVIEW_NOTE, ""]
        for r in result.review:
            lines += [f"- {r.reason}:", "", *(f"  {line}" for line in md_fenced(inert(public_text(r.line)))), ""]
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
                lines += ["", *(f"  {line}" for line in md_fenced(o.message)), ""]
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
        f"<h1>Feedback on {e(result.assignment)}: <code>{e(one_line(result.student))}</code></h1>",
        f"<p><strong>Score: {e(score_line(result))}</strong></p>",
    ]
    if result.error:
        body.append(f"<h2>This submission could not be graded</h2><pre>{e(result.error)}</pre>")
    if result.problems:
        body.append(
            "<h2>Your notebook</h2><ul>" + "".join(f"<li><pre>{e(p)}</pre></li>" for p in result.problems) + "</ul>"
        )
    if result.review:
        items = "".join(f"<li>{e(r.reason)}:<pre>{e(inert(public_text(r.line)))}</pre></li>" for r in result.review)
        body.append(f"<h2>Marked for review</h2><p>{e(REVIEW_NOTE)}</p><ul>{items}</ul>")
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
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Feedback: {e(one_line(result.student))}</title>"
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
        "marked_for_review": sorted(r.student for r in results if r.review),
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
    if data["marked_for_review"]:
        lines.append(
            f"Marked for review ({len(data['marked_for_review'])}): code that could switch off the detection of "
            "forbidden calls; see each one's feedback"
        )
    return "\n".join(lines)


def write_submission(out: Path, result: SubmissionResult, folder: Path, hide_choices: bool = False) -> Path:
    """Write ``result``'s results.json and feedback into ``folder`` (made by :func:`submission_folders`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(gradescope_results(result, hide_choices), indent=2))
    (folder / "feedback.md").write_text(feedback_markdown(result, hide_choices))
    (folder / "feedback.html").write_text(feedback_html(result, hide_choices))
    return folder


def submission_folders(out: Path, results: list[SubmissionResult]) -> list[Path]:
    """``out/<assignment>/<student>/`` for each result, collision-free over the run (:func:`folder_names`)."""
    assignments = folder_names(r.assignment for r in results)
    students = folder_names(r.student for r in results)
    return [out / assignments[r.assignment] / students[r.student] for r in results]


def write_run(
    out: Path, results: list[SubmissionResult], seconds: float, hide_choices: bool = False, report: bool = True
) -> str:
    """Write every output of a run under ``out``; return the summary as text. FolderClash before anything is
    written when two ids would share a folder. ``report``: also the class report (autograde/report)."""
    folders = submission_folders(out, results)
    out.mkdir(parents=True, exist_ok=True)
    for result, folder in zip(results, folders, strict=True):
        write_submission(out, result, folder, hide_choices)
    write_grades_csv(results, out / "grades.csv")
    data = summary(results, seconds)
    (out / "summary.json").write_text(json.dumps(data, indent=2))
    text = summary_text(data)
    (out / "summary.txt").write_text(text + "\n")
    from autograde.report.build import after_run  # the index of graded notebooks, and the class report

    after_run(out, [(r.student, r.assignment, f, r.path) for r, f in zip(results, folders, strict=True)], report)
    return text
