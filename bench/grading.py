"""Wall time to grade a class through the three doors of the one grader, in the same run, and whether they agree.

For each notebook (default: all of them), a class cycles through its example submissions (solution, blank release
and the realistic mistakes) and is graded, as an instructor would from the command line:

1. ``python -m autograde grade`` (the isolated grader, ``--jobs`` lanes);
2. ``nbgrader autograde`` with the course's default configuration (the same grader behind nbgrader's command);
3. ``nbgrader autograde`` with ``AUTOGRADE_IN_KERNEL=1`` (each notebook run whole in a kernel, nbgrader's own way),
   on the first ``--nbgrader-count`` submissions only: it is slow.

It prints seconds per submission (process start included), the ratios, and whether the total scores of every
submission graded by more than one door are identical. Run from the repository root:

    python -m bench.grading [--count 100] [--nbgrader-count 10] [--jobs 2] [--assignments 01_self_attention_cnn ...]
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
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograde import course
from autograde.example_notebooks import example_path, examples
from autograde.nbgrader_course import autograde, cell_scores, generate_release, make_course, submit


@dataclass
class Door:
    name: str
    seconds: float
    totals: dict[str, float]

    @property
    def each(self) -> float:
        return self.seconds / max(len(self.totals), 1)


def write_class(assignment: str, folder: Path, count: int) -> list[Path]:
    """``count`` notebooks ``student_000.ipynb``..., cycling through the example submissions."""
    folder.mkdir(parents=True, exist_ok=True)
    notebooks = [nbformat.read(example_path(assignment, e.name), as_version=4) for e in examples(assignment)]
    paths = []
    for i, nb in zip(range(count), itertools.cycle(notebooks), strict=False):
        path = folder / f"student_{i:03d}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def command_line(assignment: str, folder: Path, out: Path, jobs: int) -> Door:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "autograde", "grade", str(folder), "--assignment", assignment]
        + ["--jobs", str(jobs), "--out", str(out), "--quiet", "--no-report"],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    with (out / "grades.csv").open() as f:
        return Door(
            "python -m autograde grade", seconds, {r["student_id"]: float(r["total"]) for r in csv.DictReader(f)}
        )


def with_nbgrader(assignment: str, notebooks: list[Path], scratch: Path, in_kernel: bool) -> Door:
    """Seconds for ``nbgrader autograde`` of ``notebooks`` (the release not included) and each student's total."""
    root = make_course(scratch)
    generate_release(root, [assignment])
    for path in notebooks:
        submit(root, assignment, path.stem, path)
    previous = os.environ.get("AUTOGRADE_IN_KERNEL")
    os.environ["AUTOGRADE_IN_KERNEL"] = "1" if in_kernel else "0"
    try:
        start = time.perf_counter()
        autograde(root, assignment)
        seconds = time.perf_counter() - start
    finally:
        if previous is None:
            os.environ.pop("AUTOGRADE_IN_KERNEL")
        else:
            os.environ["AUTOGRADE_IN_KERNEL"] = previous
    totals: dict[str, float] = {}
    for score in cell_scores(root, assignment):
        if score.cell.endswith("_tests"):
            totals[score.student] = totals.get(score.student, 0.0) + (score.auto_score or 0.0)
    name = "nbgrader autograde, in the kernel" if in_kernel else "nbgrader autograde, sandboxed (default)"
    return Door(name, seconds, totals)


def bench(assignment: str, scratch: Path, count: int, in_kernel_count: int, jobs: int) -> list[Door]:
    notebooks = write_class(assignment, scratch / "class", count)
    doors = [
        command_line(assignment, scratch / "class", scratch / "out", jobs),
        with_nbgrader(assignment, notebooks, scratch / "sandboxed", in_kernel=False),
        with_nbgrader(assignment, notebooks[:in_kernel_count], scratch / "in-kernel", in_kernel=True),
    ]
    cli, sandboxed, in_kernel = doors
    print(f"\n{assignment}: {count} submissions cycling through {len(examples(assignment))} examples")
    for door in doors:
        print(f"  {door.name:<42} {len(door.totals):>4} in {door.seconds:7.1f} s = {door.each:6.2f} s per submission")
    print(f"  speed-up over the in-kernel nbgrader: sandboxed nbgrader {in_kernel.each / sandboxed.each:.1f}x, "
          f"command line {in_kernel.each / cli.each:.1f}x")  # fmt: skip
    for a, b in ((cli, sandboxed), (cli, in_kernel)):
        shared = sorted(set(a.totals) & set(b.totals))
        same = sum(a.totals[s] == b.totals[s] for s in shared)
        print(f"  identical totals, {a.name} / {b.name}: {same} of {len(shared)}")
    return doors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="submissions per notebook (default: %(default)s)")
    parser.add_argument(
        "--nbgrader-count", type=int, default=10, help="of them, graded in the kernel too (default: %(default)s)"
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--assignments", nargs="*", choices=course.ids(), default=course.ids())
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        for assignment in args.assignments:
            bench(assignment, Path(tmp) / assignment, args.count, min(args.nbgrader_count, args.count), args.jobs)
    print(f"\ncpu cores: {os.cpu_count()}, load average at the start: {load:.2f}, at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
