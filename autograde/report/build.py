"""Write the class report of a grading folder: ``report.html``, ``report.md`` and ``report_files/*.png``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from autograde import course
from autograde.report import html, markdown
from autograde.report.answers import release_code
from autograde.report.compose import compose
from autograde.report.index import Entry, discovered_notebooks, read_index, write_index
from autograde.report.run import Run, load_run
from autograde.report.similarity import Code, Settings, Similarity, find_similar
from autograde.report.stats import assignment_stats

HTML, MARKDOWN, FIGURES = "report.html", "report.md", "report_files"
DEFAULT_SETTINGS = Settings()


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    figures: Path


def notebooks(run: Run, submissions: Sequence[Path] = ()) -> dict[tuple[str, str], Path]:
    """(student, assignment) -> the graded notebook: from the run's index, the layout (a Gradescope export), or
    the notebooks under ``submissions`` found as ``grade`` finds them."""
    found = read_index(run.root)
    for g in run.submissions:
        if g.notebook is not None:
            found.setdefault((g.student, g.assignment), g.notebook)
    if submissions:
        graded: dict[str, list[str]] = {}
        for g in run.submissions:
            graded.setdefault(g.student, []).append(g.assignment)
        for student, assignment, path in discovered_notebooks(submissions, [*course.ids(), *run.assignments]):
            if assignment is None and len(graded.get(student, [])) == 1:
                assignment = graded[student][0]
            if assignment is not None:
                found.setdefault((student, assignment), path)
    return found


def similar_submissions(
    run: Run, found: dict[tuple[str, str], Path], settings: Settings, progress: bool
) -> tuple[dict[str, Similarity], dict[str, str]]:
    """Each assignment's similar pairs, and why an assignment was not compared."""
    results, why_not = {}, {}
    for assignment in run.assignments:
        graded = run.of(assignment)
        codes = [
            Code(g.student, path=found[(g.student, assignment)]) for g in graded if (g.student, assignment) in found
        ]
        if len(codes) < 2:
            why_not[assignment] = (
                f"Not compared: the notebooks of {len(codes)} of {len(graded)} submissions were found. A grading run "
                "records them in submissions_index.json; for results from elsewhere, pass the submitted notebooks "
                "with --submissions (as given to grade)."
            )
            continue
        with tqdm(
            total=len(codes), desc=f"similarity {assignment}", unit="notebook", file=sys.stderr, disable=not progress
        ) as bar:
            result = find_similar(assignment, codes, release_code(assignment), settings, progress=bar.update)
        for g in graded:
            if (g.student, assignment) not in found:
                result.missing[g.student] = "no notebook was found for this submission"
        results[assignment] = result
    return results, why_not


def write_report(
    root: Path,
    submissions: Sequence[Path] = (),
    settings: Settings | None = DEFAULT_SETTINGS,
    progress: bool = True,
) -> ReportFiles:
    """Read the results under ``root`` and write the report there; ``settings`` None skips the similarity
    check. Raises :class:`~autograde.report.run.NoResults` when ``root`` holds no results."""
    root = Path(root)
    run = load_run(root)
    stats = [assignment_stats(a, run.of(a)) for a in run.assignments]
    if settings is None:
        similar, why_not = (
            {},
            {a: "Not compared: the similarity check was switched off (--no-similarity)." for a in run.assignments},
        )
    else:
        similar, why_not = similar_submissions(run, notebooks(run, submissions), settings, progress)
    document = compose(run, stats, similar, why_not)
    files = ReportFiles(root / HTML, root / MARKDOWN, root / FIGURES)
    files.figures.mkdir(exist_ok=True)
    for old in files.figures.glob("*.png"):
        old.unlink()
    for image in document.images:
        (files.figures / image.name).write_bytes(image.png)
    files.html.write_text(html.render(document), encoding="utf-8")
    files.markdown.write_text(markdown.render(document, FIGURES), encoding="utf-8")
    return files


def after_run(
    out: Path, graded: Sequence[tuple[str, str, Path, str | Path]], report: bool = True
) -> ReportFiles | None:
    """What a grading run writes after its results: the index of the graded notebooks (always) and the class
    report (unless ``report`` is False). ``graded``: (student, assignment, results folder, notebook) per
    submission. A report that fails does not fail the run (the grades are written): it says how to retry."""
    write_index(out, [Entry(s, a, str(Path(f).relative_to(out)), str(Path(nb).resolve())) for s, a, f, nb in graded])
    if not report:
        return None
    try:
        files = write_report(out, progress=sys.stderr.isatty())
    except Exception as exc:  # the grades are written; the report must not lose them
        print(
            f"warning: the class report could not be written ({type(exc).__name__}: {exc}); "
            f"run: python -m autograde report {out}",
            file=sys.stderr,
        )
        return None
    print(f"Wrote the class report {files.html} (and {files.markdown.name})", file=sys.stderr)
    return files
