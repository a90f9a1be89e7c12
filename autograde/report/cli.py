"""The ``report`` and ``export`` commands of ``python -m autograde`` (registered by :func:`add_commands`).

python -m autograde report GRADING_DIR [--submissions PATH...] [--threshold 0.5] [--min-shared 10]
                                       [--max-share 10] [--no-similarity] [--quiet]
python -m autograde export GRADING_DIR... --format canvas|moodle|csv [--out FILE] [--gradebook DB | --no-gradebook]
                                          [--column ASSIGNMENT=HEADER] [--student-id-column login|sis]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autograde.report.similarity import Settings


def _report(args: argparse.Namespace) -> int:
    from autograde.report.build import write_report
    from autograde.report.run import NoResults

    settings = None if args.no_similarity else Settings(args.threshold, args.min_shared, args.max_share)
    try:
        files = write_report(args.folder, args.submissions, settings, progress=not args.quiet)
    except (NoResults, FileNotFoundError) as exc:
        print(f"no report was written: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote {files.html} and {files.markdown} (figures in {files.figures}/).")
    return 0


def _export(args: argparse.Namespace) -> int:
    from autograde.report import lms
    from autograde.report.gradebook import DEFAULT_GRADEBOOK, read_gradebook
    from autograde.report.run import NoResults, load_run

    headers = {}
    for pair in args.column:
        assignment, sep, header = pair.partition("=")
        if not sep or not assignment or not header:
            print(
                f"--column {pair!r}: write ASSIGNMENT=HEADER, e.g. <assignment id>='Lab 1 (1234)'",
                file=sys.stderr,
            )
            return 2
        headers[assignment] = header
    try:
        runs = [load_run(folder) for folder in args.folders]
    except NoResults as exc:
        print(f"nothing was exported: {exc}", file=sys.stderr)
        return 2
    gradebook = None
    db = args.gradebook or (DEFAULT_GRADEBOOK if DEFAULT_GRADEBOOK.is_file() else None)
    if db is not None and not args.no_gradebook:
        try:
            gradebook = read_gradebook(db)
        except FileNotFoundError as exc:
            print(f"nothing was exported: {exc}", file=sys.stderr)
            return 2
        print(f"Merged the points graded by hand in {db}.")
    else:
        print("No nbgrader gradebook used: the columns hold the automatic points only.")
    try:
        grades = lms.collect(runs, gradebook, headers)
    except ValueError as exc:
        print(f"nothing was exported: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path(f"grades-{args.format}.csv")
    lms.write(grades, out, args.format, args.student_id_column)
    for note in grades.notes:
        print(f"note: {note}")
    maxima = ", ".join(f"{c.header} (of {c.possible:g})" for c in grades.columns)
    print(f"Wrote {out}: {len(grades.students)} students; columns {maxima}.")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``report`` and ``export`` on ``python -m autograde``'s subcommands."""
    defaults = Settings()
    r = sub.add_parser("report", help="the class report of a grading folder: scores, mistakes, similar submissions")
    r.add_argument("folder", type=Path, help="a grading run's --out folder, course/grading, or a Gradescope export")
    r.add_argument(
        "--submissions",
        nargs="+",
        type=Path,
        default=[],
        help="the submitted notebooks (as given to grade), when the folder has no submissions_index.json",
    )
    r.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        help=f"flag pairs sharing this share of the smaller one's fingerprints (default {defaults.threshold})",
    )
    r.add_argument(
        "--min-shared",
        type=int,
        default=defaults.min_shared,
        help=f"and at least this many fingerprints (default {defaults.min_shared})",
    )
    r.add_argument(
        "--max-share",
        type=int,
        default=defaults.max_share,
        help=f"code in more submissions than this is common and ignored (default {defaults.max_share})",
    )
    r.add_argument("--no-similarity", action="store_true", help="skip the comparison of submissions")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(run=_report)

    e = sub.add_parser("export", help="grades for Canvas, Moodle or a plain CSV, one column per assignment")
    e.add_argument("folders", nargs="+", type=Path, help="grading folders (one or more assignments)")
    e.add_argument("--format", required=True, choices=("canvas", "moodle", "csv"))
    e.add_argument("--out", type=Path, help="the CSV to write (default grades-FORMAT.csv)")
    e.add_argument(
        "--gradebook",
        type=Path,
        help="nbgrader's gradebook.db, to add the points graded by hand (default: course/gradebook.db if present)",
    )
    e.add_argument("--no-gradebook", action="store_true", help="automatic points only, even if a gradebook is present")
    e.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="ASSIGNMENT=HEADER",
        help="the LMS's column for an assignment, e.g. <assignment id>='Lab 1 (1234)' (default: the id)",
    )
    e.add_argument(
        "--student-id-column",
        choices=("login", "sis"),
        default="login",
        help="Canvas: put the course's student id in 'SIS Login ID' (default) or 'SIS User ID'",
    )
    e.set_defaults(run=_export)
