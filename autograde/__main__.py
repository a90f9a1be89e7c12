"""``python -m autograde``: grade a class in sandboxes, build a Gradescope autograder, export the bundle.

python -m autograde grade PATH... [--assignment ID] [--jobs N] [--timeout S] [--memory-mb M] [--out DIR]
python -m autograde gradescope-zip --out autograder.zip [--assignment ID]
python -m autograde student-bundle --out DIR|ZIP
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _grade(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from autograde.isolation.batch import assign, assignments, catalog, discover, grade_batch, sandbox_for
    from autograde.isolation.sandbox import Limits, SandboxError
    from autograde.outputs import summary_text, write_run

    torch.set_num_threads(1)
    start = time.monotonic()
    known = [args.assignment] if args.assignment else assignments()
    submissions = discover(args.paths, known)
    if not submissions:
        print(
            "no notebooks found: pass .ipynb files, folders of them or an nbgrader submitted/ folder",
            file=sys.stderr,
        )
        return 2
    limits = Limits(timeout=args.timeout, memory_mb=args.memory_mb)
    zygote = sandbox_for(submissions, limits, [args.out.resolve()], namespaces=not args.no_namespaces)
    try:
        catalogs = {a: catalog(a) for a in known}
        pairs = assign(submissions, catalogs, args.assignment)
        bar = tqdm(total=len(pairs), unit="submission", desc="grading", file=sys.stderr, disable=args.quiet)
        results = grade_batch(pairs, catalogs, zygote, jobs=args.jobs, progress=lambda _: bar.update())
    except SandboxError as exc:
        print(
            f"grading stopped: the sandbox failed, not a submission; no scores were written.\n{exc}",
            file=sys.stderr,
        )
        return 3
    finally:
        zygote.close()
    bar.close()
    data = write_run(args.out, results, time.monotonic() - start)
    print(summary_text(data))
    print(f"Wrote {args.out / 'grades.csv'} and feedback under {args.out}/<assignment>/<student>/")
    return 0


def _gradescope_zip(args: argparse.Namespace) -> int:
    from autograde.gradescope import build_autograder_zip

    path = build_autograder_zip(args.out, args.assignment)
    print(f"Wrote {path}: upload it as the assignment's autograder (Ubuntu base image).")
    return 0


def _gradescope_run(args: argparse.Namespace) -> int:
    from autograde.gradescope import run_submission

    result = run_submission(args.submission, args.results, args.assignment, args.timeout)
    print(f"{result.student}: {result.earned:g} / {result.possible:g}")
    return 0


def _student_bundle(args: argparse.Namespace) -> int:
    from autograde.bundle import build_bundle

    path = build_bundle(args.out)
    print(f"Wrote the student bundle to {path}")
    return 0


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
    g.add_argument("--assignment", help="the assignment id (default: recognised from each notebook)")
    g.add_argument("--jobs", type=int, default=2, help="submissions graded in parallel (default 2)")
    g.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per call into student code (default 30)"
    )
    g.add_argument(
        "--memory-mb", type=int, default=2048, help="memory per worker beyond torch (default 2048)"
    )
    g.add_argument("--out", type=Path, default=Path("grading"), help="output folder (default ./grading)")
    g.add_argument(
        "--no-namespaces",
        action="store_true",
        help="do not use Linux namespaces even where available (rlimits and audit hook only)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(run=_grade)

    z = sub.add_parser("gradescope-zip", help="build a Gradescope autograder package")
    z.add_argument("--out", type=Path, default=Path("autograder.zip"))
    z.add_argument("--assignment", help="grade only this assignment (default: recognised from the notebook)")
    z.set_defaults(run=_gradescope_zip)

    r = sub.add_parser("gradescope-run", help="(used by run_autograder) grade one Gradescope submission")
    r.add_argument("--submission", type=Path, default=Path("/autograder/submission"))
    r.add_argument("--results", type=Path, default=Path("/autograder/results/results.json"))
    r.add_argument("--assignment")
    r.add_argument("--timeout", type=float, default=30.0)
    r.set_defaults(run=_gradescope_run)

    b = sub.add_parser("student-bundle", help="export what students receive, to a folder or a .zip")
    b.add_argument("--out", type=Path, required=True)
    b.set_defaults(run=_student_bundle)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
