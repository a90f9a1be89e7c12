"""``python -m autograde``: grade a class in sandboxes, build a Gradescope autograder, export the bundle.

python -m autograde grade PATH... [--assignment ID] [--jobs N] [--timeout S] [--memory-mb M] [--out DIR] ...
python -m autograde gradescope-zip --out autograder.zip [--assignment ID] [--timeout S] [--memory-mb M] ...
python -m autograde student-bundle --out DIR|ZIP
python -m autograde report GRADING_DIR [--submissions PATH...]       (the class report; autograde/report/cli.py)
python -m autograde export GRADING_DIR... --format canvas|moodle|csv  (grades for the LMS)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from autograde import course, settings
from autograde.worker.protections import NAMES as PROTECTIONS


def _grade(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from autograde.outputs import FolderClash, folder_names, write_run
    from autograde.pipeline import GradingRun, Options, SandboxError
    from autograde.submissions import DuplicateStudents, discover

    chosen = settings.from_arguments(args)
    start = time.monotonic()
    try:
        submissions = discover(args.paths, [args.assignment] if args.assignment else course.ids())
        folder_names(s.student for s in submissions)  # output folders collision-free, or refuse before grading
    except (DuplicateStudents, FolderClash, FileNotFoundError) as exc:
        print(f"nothing was graded: {exc}", file=sys.stderr)
        return 2
    if not submissions:
        print(
            "no notebooks found: pass .ipynb files, folders of them or an nbgrader submitted/ folder", file=sys.stderr
        )
        return 2
    try:  # before any grading: an output folder that cannot be written would lose the whole run's work
        args.out.mkdir(parents=True, exist_ok=True)
        probe = args.out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        print(f"nothing was graded: the output folder {args.out} cannot be written ({exc.strerror})", file=sys.stderr)
        return 2
    options = Options(
        assignment=args.assignment,
        eval_data=args.eval_data,
        hide=(args.out.resolve(), *(p.resolve() for p in args.paths)),
        disable=tuple(args.disable),
        allow_unprotected=args.allow_unprotected,
    )
    try:
        with GradingRun(chosen, options) as run:
            run.start()
            bar = tqdm(total=len(submissions), unit="submission", desc="grading", file=sys.stderr, disable=args.quiet)
            results = run.grade(submissions, progress=lambda _: bar.update())
            bar.close()
    except SandboxError as exc:
        print(f"grading stopped: the sandbox failed, not a submission; no scores were written.\n{exc}", file=sys.stderr)
        return 3
    summary = write_run(
        args.out, results, time.monotonic() - start, hide_choices=args.hide_choices, report=not args.no_report
    )
    print(summary)
    print(f"Wrote {args.out / 'grades.csv'} and feedback under {args.out}/<assignment>/<student>/")
    return 0


def _gradescope_options(args: argparse.Namespace) -> dict:
    return {
        "chosen": settings.from_arguments(args),
        "hide_choices": args.hide_choices,
        "allow_unprotected": args.allow_unprotected,
    }


def _gradescope_zip(args: argparse.Namespace) -> int:
    from autograde.gradescope import build_autograder_zip

    path = build_autograder_zip(args.out, args.assignment, **_gradescope_options(args))
    print(f"Wrote {path}: upload it as the assignment's autograder (Ubuntu base image).")
    return 0


def _gradescope_run(args: argparse.Namespace) -> int:
    from autograde.gradescope import run_submission

    result = run_submission(args.submission, args.results, args.assignment, **_gradescope_options(args))
    print(f"{result.student}: {result.earned:g} / {result.possible:g}")
    return 0


def _student_bundle(args: argparse.Namespace) -> int:
    from autograde.bundle import build_bundle

    path = build_bundle(args.out)
    print(f"Wrote the student bundle to {path}")
    return 0


def _sandbox_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-unprotected",
        action="store_true",
        help="grade even where no protection of the filesystem is available (only for code you trust)",
    )
    p.add_argument(
        "--hide-choices",
        action="store_true",
        help="do not show students whether their multiple-choice answers are right (Gradescope: after the due date)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograde", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("grade", help="grade notebooks in isolated, time- and memory-limited workers")
    g.add_argument(
        "paths",
        nargs="+",
        type=Path,
        help="notebooks, folders of notebooks (one per student) or an nbgrader submitted/ folder",
    )
    g.add_argument("--assignment", choices=course.ids(), help="the assignment (default: recognised from each notebook)")
    settings.add_arguments(g)
    g.add_argument("--out", type=Path, default=Path("grading"), help="output folder (default ./grading)")
    g.add_argument(
        "--eval-data",
        type=Path,
        help="a private held-out set (.npz with uint8 'images' and 'labels') to evaluate checkpoints on, "
        "instead of the CIFAR-10 test split in $COURSE_DATA",
    )
    g.add_argument(
        "--disable",
        action="append",
        default=[],
        choices=PROTECTIONS,
        metavar="PROTECTION",
        help=f"switch a protection off (for testing; one of {', '.join(PROTECTIONS)})",
    )
    _sandbox_options(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--no-report", action="store_true", help="do not write the class report (report.html, report.md)")
    g.set_defaults(run=_grade)

    z = sub.add_parser("gradescope-zip", help="build a Gradescope autograder package")
    z.add_argument("--out", type=Path, default=Path("autograder.zip"))
    z.add_argument("--assignment", choices=course.ids(), help="grade only this assignment (default: recognised)")
    settings.add_arguments(z, only=("timeout", "memory_mb", "submission_seconds", "file_mb", "notebook_mb", "code_kb"))
    _sandbox_options(z)
    z.set_defaults(run=_gradescope_zip)

    r = sub.add_parser("gradescope-run", help="(used by run_autograder) grade one Gradescope submission")
    r.add_argument("--submission", type=Path, default=Path("/autograder/submission"))
    r.add_argument("--results", type=Path, default=Path("/autograder/results/results.json"))
    r.add_argument("--assignment", choices=course.ids())
    settings.add_arguments(r)
    _sandbox_options(r)
    r.set_defaults(run=_gradescope_run)

    b = sub.add_parser("student-bundle", help="export what students receive, to a folder or a .zip")
    b.add_argument("--out", type=Path, required=True)
    b.set_defaults(run=_student_bundle)

    from autograde.report.cli import add_commands  # report, export: after grading (autograde/report/)

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
