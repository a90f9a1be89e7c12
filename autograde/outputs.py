"""What a grading run writes: grades.csv, Gradescope results.json and feedback per submission, a summary.

Feedback shows every check's description (the first line of the grader test's docstring) and its failure
message, never the test's source.
"""

from __future__ import annotations

import csv
import html
import json
from collections import Counter
from pathlib import Path

from autograde.isolation.batch import SubmissionResult

FAILURE_KINDS = (  # (kind, words in the message), first match wins
    ("unreadable submission", ("the submission could not be graded",)),
    ("timeout", ("did not finish within", "ran past the time limit")),
    ("crash", ("ended the grader's worker process",)),
    ("unusable result", ("cannot read",)),
    ("missing definition", ("is not defined",)),
    ("grader error", ("could not check this", "tell your instructor")),
    ("error in student code", ("raised",)),
)


def failure_kind(message: str) -> str:
    """The kind of a failed check, from its message (``wrong result`` when nothing more specific fits)."""
    for kind, words in FAILURE_KINDS:
        if any(w in message for w in words):
            return kind
    return "wrong result"


def _fmt(x: float) -> str:
    return f"{x:g}"


def submission_dir(out: Path, result: SubmissionResult) -> Path:
    return out / result.assignment / result.student


def write_grades_csv(results: list[SubmissionResult], path: Path) -> Path:
    """One row per submission: student id, assignment, points per part, total and maximum."""
    parts: list[str] = []
    for r in results:
        parts += [p for p in r.parts if p not in parts]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "assignment", *parts, "total", "max"])
        for r in results:
            scores = r.parts
            writer.writerow(
                [
                    r.student,
                    r.assignment,
                    *(_fmt(scores[p][0]) if p in scores else "" for p in parts),
                    _fmt(r.earned),
                    _fmt(r.possible),
                ]
            )
    return path


def gradescope_results(result: SubmissionResult) -> dict:
    """The submission in Gradescope's ``results.json`` format (one entry per grader test)."""
    tests = [
        {
            "name": f"{t.part}: {t.description}",
            "score": t.earned,
            "max_score": t.points,
            "status": "passed" if t.earned == t.points else "failed",
            "output": t.message,
            "tags": [t.part],
            "visibility": "visible",
        }
        for t in result.tests
    ]
    return {
        "score": result.earned,
        "execution_time": round(result.seconds, 2),
        "output": "\n".join(result.problems) or "Your notebook's definitions ran without errors.",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def feedback_markdown(result: SubmissionResult) -> str:
    lines = [
        f"# Feedback on {result.assignment}: {result.student}",
        "",
        f"**Score: {_fmt(result.earned)} / {_fmt(result.possible)}**",
        "",
    ]
    if result.problems:
        lines += ["## Your notebook", ""] + [f"- {p}" for p in result.problems] + [""]
    for part, (earned, possible) in result.parts.items():
        lines += [f"## {part}: {_fmt(earned)} / {_fmt(possible)}", ""]
        for t in (t for t in result.tests if t.part == part):
            mark = "PASS" if t.earned == t.points else "FAIL"
            lines.append(f"- **{mark}** {t.description} ({_fmt(t.earned)}/{_fmt(t.points)})")
            lines += [f"  > {line}" for line in t.message.splitlines()]
        lines.append("")
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}"
    ".pass{color:#1a7f37}.fail{color:#cf222e}pre{white-space:pre-wrap;background:#f6f8fa;padding:.5rem}"
)


def feedback_html(result: SubmissionResult) -> str:
    e = html.escape
    body = [
        f"<h1>Feedback on {e(result.assignment)}: {e(result.student)}</h1>",
        f"<p><strong>Score: {_fmt(result.earned)} / {_fmt(result.possible)}</strong></p>",
    ]
    if result.problems:
        body.append(
            "<h2>Your notebook</h2><ul>" + "".join(f"<li>{e(p)}</li>" for p in result.problems) + "</ul>"
        )
    for part, (earned, possible) in result.parts.items():
        body.append(f"<h2>{e(part)}: {_fmt(earned)} / {_fmt(possible)}</h2><ul>")
        for t in (t for t in result.tests if t.part == part):
            ok = t.earned == t.points
            body.append(
                f'<li><span class="{"pass" if ok else "fail"}">{"PASS" if ok else "FAIL"}</span> '
                f"{e(t.description)} ({_fmt(t.earned)}/{_fmt(t.points)})"
                + (f"<pre>{e(t.message)}</pre>" if t.message else "")
                + "</li>"
            )
        body.append("</ul>")
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Feedback: {e(result.student)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )


def summary(results: list[SubmissionResult], seconds: float) -> dict:
    """Counts, failed checks by kind, sandbox incidents by kind and timing of a run."""
    failures = Counter(failure_kind(t.message) for r in results for t in r.tests if t.earned < t.points)
    incidents = Counter(kind for r in results for kind, _ in r.incidents)
    return {
        "submissions": len(results),
        "full_marks": sum(r.earned == r.possible for r in results),
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
            "Failed checks by kind: "
            + ", ".join(f"{k} {v}" for k, v in data["failed_checks_by_kind"].items())
        )
    if data["sandbox_incidents_by_kind"]:
        lines.append(
            "Sandbox incidents: "
            + ", ".join(f"{k} {v}" for k, v in data["sandbox_incidents_by_kind"].items())
        )
    return "\n".join(lines)


def write_submission(out: Path, result: SubmissionResult) -> Path:
    folder = submission_dir(out, result)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(gradescope_results(result), indent=2))
    (folder / "feedback.md").write_text(feedback_markdown(result))
    (folder / "feedback.html").write_text(feedback_html(result))
    return folder


def write_run(out: Path, results: list[SubmissionResult], seconds: float) -> dict:
    """Write every output of a run under ``out``; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    for result in results:
        write_submission(out, result)
    write_grades_csv(results, out / "grades.csv")
    data = summary(results, seconds)
    (out / "summary.json").write_text(json.dumps(data, indent=2))
    (out / "summary.txt").write_text(summary_text(data) + "\n")
    return data
