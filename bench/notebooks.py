"""Each notebook's stated running time against a measured run, as the notebook tests run it.

The introduction of every solution notebook states how long the whole notebook takes on a 2-core CPU in fast
mode ("about N s on a 2-core CPU"). This runs each notebook top to bottom as ``tests/test_notebooks.py`` does
(fast mode, the synthetic data set, hidden cells included) and prints the stated and measured seconds and their
ratio; the goal is a ratio within a factor of two. Run from the repository root on an otherwise idle machine:

    python -m bench.notebooks [ASSIGNMENT ...]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import nbformat

from autograde import course
from tests.test_notebooks import execute_fast

STATED = re.compile(r"about (\d+) s on a 2-core CPU")


def stated_seconds(assignment: str) -> int | None:
    """The seconds the notebook's introduction states for a whole fast-mode run (None if it states none)."""
    intro = nbformat.read(course.get(assignment).source_notebook, as_version=4).cells[0].source
    match = STATED.search(intro.replace("\n", " "))
    return int(match.group(1)) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*", choices=[[], *course.ids()], help="default: every notebook")
    chosen = parser.parse_args().assignments or course.ids()
    print(f"{'notebook':<28} {'stated s':>9} {'measured s':>11} {'ratio':>6}")
    for assignment in chosen:
        with tempfile.TemporaryDirectory() as workdir:
            start = time.perf_counter()
            execute_fast(course.get(assignment).source_notebook, Path(workdir))
            measured = time.perf_counter() - start
        stated = stated_seconds(assignment)
        ratio = f"{measured / stated:.2f}" if stated else "n/a"
        print(f"{assignment:<28} {stated or 'none':>9} {measured:>11.1f} {ratio:>6}")


if __name__ == "__main__":
    main()
