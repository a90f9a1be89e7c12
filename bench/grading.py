"""Wall time to grade a class of notebook-1 submissions: the isolated grader against ``nbgrader autograde``.

The class is a mix of the example submissions (cycled: solution, blank and the realistic mistakes). Both
graders run in the same run, from the command line as an instructor would: ``python -m autograde grade``
and, in a scratch nbgrader course holding the same notebooks, ``nbgrader autograde``. The scores of the two
are compared submission by submission. Run from the repository root:

    python -m bench.grading [--count 100] [--nbgrader-count N] [--jobs 2]

``--nbgrader-count`` grades only the first N submissions with nbgrader (it runs every notebook whole, in fast
mode, one at a time); the ratio is then taken per submission.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograde.examples import example_path, examples
from autograde.nbgrader_course import autograde, cell_scores, generate_release, make_course, submit

A = "01_self_attention_cnn"


def write_class(folder: Path, count: int) -> list[Path]:
    """``count`` notebooks ``student_000.ipynb``..., cycling through the example submissions."""
    folder.mkdir(parents=True, exist_ok=True)
    notebooks = {e.name: nbformat.read(example_path(A, e.name), as_version=4) for e in examples(A)}
    paths = []
    for i, nb in zip(range(count), itertools.cycle(notebooks.values())):
        path = folder / f"student_{i:03d}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    print(f"class: {count} notebooks cycling through {', '.join(notebooks)}")
    return paths


def isolated(folder: Path, out: Path, jobs: int) -> tuple[float, dict[str, float]]:
    """Seconds for ``python -m autograde grade`` (process start included) and each student's total."""
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "autograde",
            "grade",
            str(folder),
            "--assignment",
            A,
            "--jobs",
            str(jobs),
            "--out",
            str(out),
            "--quiet",
        ],
        check=True,
    )
    seconds = time.perf_counter() - start
    with (out / "grades.csv").open() as f:
        return seconds, {row["student_id"]: float(row["total"]) for row in csv.DictReader(f)}


def with_nbgrader(notebooks: list[Path], scratch: Path) -> tuple[float, dict[str, float]]:
    """Seconds for ``nbgrader autograde`` of ``notebooks`` (release not included) and each student's total."""
    course = make_course(scratch / "course")
    generate_release(course, [A])
    for path in notebooks:
        submit(course, A, path.stem, path)
    start = time.perf_counter()
    autograde(course, A)
    seconds = time.perf_counter() - start
    totals: dict[str, float] = {}
    for score in cell_scores(course, A):
        if score.cell.endswith("_tests"):
            totals[score.student] = totals.get(score.student, 0.0) + (score.auto_score or 0.0)
    return seconds, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--nbgrader-count", type=int, default=None, help="default: --count")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        scratch = Path(tmp)
        notebooks = write_class(scratch / "class", args.count)
        iso_seconds, iso = isolated(scratch / "class", scratch / "out", args.jobs)
        n = min(args.nbgrader_count or args.count, args.count)
        nb_seconds, nbg = with_nbgrader(notebooks[:n], scratch)
    iso_each, nb_each = iso_seconds / args.count, nb_seconds / n
    same = sum(iso[s] == nbg.get(s) for s in nbg)
    print(f"cpu cores: {os.cpu_count()}, load average at the start: {load:.2f}, at the end: {os.getloadavg()[0]:.2f}")
    print(
        f"isolated grader, --jobs {args.jobs}: {args.count} submissions in {iso_seconds:.1f} s "
        f"({iso_each:.2f} s per submission, command start included)"
    )
    print(f"nbgrader autograde: {n} submissions in {nb_seconds:.1f} s ({nb_each:.2f} s per submission)")
    print(f"speed-up per submission: {nb_each / iso_each:.1f}x")
    print(f"identical total scores: {same} of {len(nbg)} submissions graded by both")


if __name__ == "__main__":
    main()
