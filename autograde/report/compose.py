"""What the class report says, in order, as a :class:`~autograde.report.document.Document`.

The sections before "For the instructor only" count and never name a student, so they can be shared with
course staff or shown in a lecture; that last section holds every table with student ids (per student,
slowest submissions, incidents, submissions that could not be graded, marks for review, similar submissions).
"""

from __future__ import annotations

import datetime as dt

from autograde import course
from autograde.report import figures
from autograde.report.document import Document, Heading, Image, Paragraph, Quote, SideBySide, Student, Table
from autograde.report.run import UNKNOWN_KIND, Run
from autograde.report.similarity import Similarity
from autograde.report.stats import AssignmentStats

PRIVATE_TITLE = "For the instructor only: this section names students"
SLOWEST = 10
DETAILED_PAIRS = 20  # flagged pairs whose shared code is shown side by side
NOT_PROOF = (
    "A flag is a reason to look at two submissions, not proof that anyone copied: short exercises can be "
    "written in few ways, students may have worked together as the course allows, and both may have used the "
    "same outside source. Read the shared code side by side and talk to the students before drawing a conclusion."
)


def _title(assignment: str) -> str:
    try:
        return f"{assignment}: {course.get(assignment).title}"
    except KeyError:
        return assignment


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _scores(doc: Document, s: AssignmentStats, slug: str) -> None:
    doc.add(Heading(3, "Points per part, hardest first"))
    rows = tuple(
        (p.part, p.possible, round(p.mean, 2), round(p.median, 2), _pct(p.mean_share), p.full_marks, _pct(p.full_share))
        for p in [*s.hardest, s.total]
    )
    doc.add(
        Table(
            ("part", "points", "mean", "median", "mean share of points", "full marks", "share with full marks"),
            rows,
            (False, True, True, True, True, True, True),
        )
    )
    if s.parts:
        hardest = s.hardest[0]
        doc.add(
            Paragraph(
                (
                    f"Hardest part: {hardest.part}, where the class earned {_pct(hardest.mean_share)} of its "
                    f"points on average and {_pct(hardest.full_share)} of submissions earned them all.",
                )
            )
        )
    png = figures.scores_figure(s)
    if png:
        alt = "; ".join(
            f"{p.part}: " + ", ".join(f"{label} points: {n}" for label, n in p.histogram.as_dict().items())
            for p in [*s.parts, s.total]
        )
        doc.add(Image(f"{slug}_scores.png", png, f"Histograms of points per part (students per score). {alt}"))


def _mistakes(doc: Document, s: AssignmentStats, slug: str) -> None:
    doc.add(Heading(3, "Known mistakes, most frequent first"))
    if not s.mistakes:
        doc.add(Paragraph(("No failed check matched a known mistake of the graders.",)))
        return
    doc.add(
        Paragraph(
            (
                "Each row is a mistake the graders recognise and name (the message students saw names it too), the "
                "part whose checks found it and how many students made it: a list for the next lecture.",
            )
        )
    )
    doc.add(
        Table(
            ("rank", "mistake", "part", "students", "share of the class", "failed checks"),
            tuple(
                (i + 1, m.name, m.part, m.count, _pct(m.count / s.submissions), m.checks)
                for i, m in enumerate(s.mistakes)
            ),
            (True, False, False, True, True, True),
        )
    )
    png = figures.mistakes_figure(s)
    if png:
        alt = "; ".join(f"{m.name} ({m.part}): {m.count} students" for m in s.mistakes[:15])
        doc.add(Image(f"{slug}_mistakes.png", png, f"Known mistakes by number of students. {alt}"))


def _failures(doc: Document, s: AssignmentStats) -> None:
    doc.add(Heading(3, "Failed checks by kind"))
    if not s.kinds:
        doc.add(Paragraph(("No check failed.",)))
    else:
        doc.add(
            Table(
                ("kind", "failed checks", "students"),
                tuple((k.kind, k.checks, len(k.students)) for k in s.kinds),
                (False, True, True),
            )
        )
    if s.without_details:
        doc.add(
            Paragraph(
                (
                    f"{s.without_details} submission(s) have results without the grader's details (written by "
                    f"another autograder or an older version): their failures count as '{UNKNOWN_KIND}' and "
                    "their mistakes are not named.",
                ),
                "note",
            )
        )
    doc.add(Heading(3, "Incidents"))
    if s.incidents_by_kind:
        doc.add(
            Paragraph(
                ("What went wrong while grading (the sandbox's reports); the messages are in the instructor section.",)
            )
        )
        doc.add(Table(("incident", "count"), tuple(s.incidents_by_kind), (False, True)))
    else:
        doc.add(Paragraph(("No incident while grading.",)))
    if s.not_graded:
        doc.add(
            Paragraph((f"{len(s.not_graded)} submission(s) could not be graded at all (why: instructor section).",))
        )
    if s.review:
        students = len({student for student, _, _ in s.review})
        doc.add(
            Paragraph(
                (
                    f"{len(s.review)} line(s) in {students} submission(s) were marked for your review "
                    "(instructor section).",
                ),
                "note",
            )
        )


def _time(doc: Document, s: AssignmentStats, slug: str, run: Run) -> None:
    doc.add(Heading(3, "Time per submission"))
    seconds = [t for _, t in s.seconds]
    if not seconds:
        doc.add(Paragraph(("The results record no grading time.",)))
        return
    mean = sum(seconds) / len(seconds)
    median = sorted(seconds)[len(seconds) // 2]
    text = f"Grading took {mean:.3g} s per submission on average (median {median:.3g} s, slowest {seconds[0]:.3g} s)."
    wall = run.summary.get("wall_seconds")
    if isinstance(wall, (int, float)):
        text += f" The whole run took {wall:g} s of wall-clock time."
    doc.add(Paragraph((text,)))
    png = figures.time_figure(s)
    if png:
        doc.add(
            Image(f"{slug}_time.png", png, f"Histogram of grading seconds per submission; slowest {seconds[0]:.3g} s.")
        )


def _measurements(doc: Document, s: AssignmentStats, slug: str) -> None:
    for i, m in enumerate(s.measurements):
        unit = f" ({m.unit})" if m.unit else ""
        doc.add(Heading(3, f"{m.part}: {m.name}{unit} against its tiers"))
        values = sorted(v for _, v in m.values)
        text = f"{len(values)} submission(s) measured"
        if values:
            text += f": median {values[len(values) // 2]:.3g}{m.unit}, best {values[-1]:.3g}{m.unit}"
        if m.tiers:
            text += "; tiers at " + ", ".join(f"{t:g}{m.unit}" for t in m.tiers)
        if m.missing:
            text += f". {m.missing} submission(s) have no {m.name} (nothing measurable was handed in)"
        doc.add(Paragraph((text + ".",)))
        doc.add(Table(("band", "submissions"), tuple(m.bands), (False, True)))
        png = figures.measurement_figure(s.assignment, m)
        if png:
            alt = ", ".join(f"{band}: {n}" for band, n in m.bands)
            doc.add(Image(f"{slug}_measurement_{i + 1}.png", png, f"Histogram of {m.name}; {alt}."))


def _private(doc: Document, s: AssignmentStats, graded_by_student: dict[str, tuple[float, float, str]]) -> None:
    doc.add(Heading(3, f"{_title(s.assignment)}: per student"))
    mistakes_of: dict[str, list[str]] = {}
    for m in s.mistakes:
        for student in m.students:
            mistakes_of.setdefault(student, []).append(f"{m.name} ({m.part})")
    rows = []
    for student, (score, possible, error) in sorted(graded_by_student.items()):
        rows.append(
            (
                Student(student),
                score,
                possible,
                ", ".join(mistakes_of.get(student, [])) or "-",
                "could not be graded" if error else "",
            )
        )
    doc.add(
        Table(("student", "points", "of", "known mistakes", "note"), tuple(rows), (False, True, True, False, False))
    )
    if s.seconds:
        doc.add(Heading(4, f"Slowest {min(SLOWEST, len(s.seconds))} submissions"))
        doc.add(
            Table(
                ("student", "seconds"), tuple((Student(a), round(t, 2)) for a, t in s.seconds[:SLOWEST]), (False, True)
            )
        )
    if s.not_graded:
        doc.add(Heading(4, "Could not be graded"))
        for student, why in s.not_graded:
            doc.add(Paragraph((Student(student), ":")), Quote(why))
    if s.incidents:
        doc.add(Heading(4, "Incidents"))
        for student, kind, message in s.incidents:
            doc.add(Paragraph((Student(student), f": {kind}")), Quote(message))
    if s.review:
        doc.add(Heading(4, "Marked for your review"))
        doc.add(
            Paragraph(
                (
                    "Lines the grader could not judge by itself (for example a way around the check for "
                    "forbidden calls); read them in the student's notebook.",
                )
            )
        )
        for student, line, reason in s.review:
            doc.add(Paragraph((Student(student), f": {reason}" if reason else "")), Quote(line))


def _similarity(doc: Document, sim: Similarity | None, why_not: str) -> None:
    doc.add(Heading(4, "Similar submissions"))
    doc.add(Paragraph((NOT_PROOF,), "note"))
    if sim is None:
        doc.add(Paragraph((why_not,)))
        return
    st = sim.settings
    removed = (
        "with the release's own code removed"
        if sim.release_removed
        else ("without removing release code (the release notebook of this assignment was not found)")
    )
    doc.add(
        Paragraph(
            (
                f"Compared the answer cells of {len(sim.compared)} notebooks, {removed}, after normalising names, "
                f"comments, formatting and the order of independent statements, by winnowed fingerprints "
                f"({st.k}-token k-grams, windows of {st.window}); code found in more than {sim.common_limit} "
                f"submissions counts as common and is ignored. A pair is flagged when at least {st.min_shared} "
                f"fingerprints, and at least {_pct(st.threshold)} of the smaller submission's, are shared. "
                f"{len(sim.pairs)} pair(s) flagged in {sim.seconds:.2g} s.",
            )
        )
    )
    if sim.missing:
        doc.add(Paragraph((f"{len(sim.missing)} submission(s) were not compared (no readable notebook):",)))
        doc.add(Table(("student", "why"), tuple((Student(a), Student(w)) for a, w in sorted(sim.missing.items()))))
    if not sim.pairs:
        return
    doc.add(
        Table(
            ("student", "student", "similarity", "shared fingerprints", "share of the first", "share of the second"),
            tuple(
                (Student(p.a), Student(p.b), _pct(p.score), p.shared, _pct(p.a_share), _pct(p.b_share))
                for p in sim.pairs
            ),
            (False, False, True, True, True, True),
        )
    )
    if len(sim.pairs) > DETAILED_PAIRS:
        doc.add(Paragraph((f"The shared code of the {DETAILED_PAIRS} most similar pairs follows.",)))
    for p in sim.pairs[:DETAILED_PAIRS]:
        doc.add(
            Paragraph(
                (
                    "Shared code of ",
                    Student(p.a),
                    " and ",
                    Student(p.b),
                    f" ({_pct(p.score)}; highlighted: the lines in the shared stretches, release code excluded):",
                )
            )
        )
        for n, block in enumerate(p.blocks, start=1):
            doc.add(
                SideBySide((Student(p.a), f" (stretch {n}, {block.tokens} tokens)"), (Student(p.b),), block.a, block.b)
            )


def compose(
    run: Run,
    stats: list[AssignmentStats],
    similar: dict[str, Similarity],
    why_no_similarity: dict[str, str],
) -> Document:
    count = len(run.submissions)
    doc = Document(f"Class report: {run.root.name}")
    doc.add(
        Paragraph(
            (
                f"{count} graded submission(s) of {len(stats)} assignment(s), read from the {run.layout} in the "
                f"folder {run.root.name} on {dt.date.today().isoformat()}.",
            )
        ),
        Paragraph(
            (
                "Student ids appear only in the last section, '" + PRIVATE_TITLE + "': it holds identities. "
                "The sections before it count students and never name one.",
            ),
            "note",
        ),
    )
    if run.unreadable:
        doc.add(Paragraph((f"{len(run.unreadable)} result file(s) could not be read and are left out:",), "note"))
        for problem in run.unreadable:
            doc.add(Quote(problem))
    for s in stats:
        slug = s.assignment.replace("/", "_")
        doc.add(Heading(2, _title(s.assignment), slug))
        doc.add(
            Paragraph(
                (
                    f"{s.submissions} submission(s); mean {s.total.mean:.3g} of {s.total.possible:g} automatic points; "
                    f"{s.total.full_marks} with full marks; {len(s.not_graded)} could not be graded.",
                )
            )
        )
        _scores(doc, s, slug)
        _mistakes(doc, s, slug)
        _failures(doc, s)
        _time(doc, s, slug, run)
        _measurements(doc, s, slug)
    doc.add(Heading(2, PRIVATE_TITLE, "instructor"))
    doc.add(
        Paragraph(
            (
                "This section holds identities: student ids exactly as submitted, with their scores, mistakes, "
                "incidents and similar submissions. Keep it with the course staff.",
            ),
            "private",
        )
    )
    for s in stats:
        graded = {g.student: (g.score, g.possible, g.error) for g in run.of(s.assignment)}
        _private(doc, s, graded)
        _similarity(doc, similar.get(s.assignment), why_no_similarity.get(s.assignment, ""))
    return doc
