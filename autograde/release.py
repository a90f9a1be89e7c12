"""``python -m autograde.release``: regenerate the student release ``assignments/`` from ``solutions/``.

nbgrader writes the release into a scratch course directory; only the release folders are copied back, so the
repository never holds a gradebook or other nbgrader state.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from autograde.nbgrader_course import RELEASE, assignment_ids, generate_release, make_course


def build_release(out: Path, assignments: list[str] | None = None) -> list[Path]:
    """Generate the release of ``assignments`` (all by default) into ``out/<assignment>/``."""
    assignments = assignments or assignment_ids()
    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        course = make_course(Path(scratch))
        generate_release(course, assignments)
        written = []
        for assignment in assignments:
            target = out / assignment
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(course / "assignments" / assignment, target)
            written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*", help="assignment ids (default: every folder of solutions/)")
    args = parser.parse_args()
    for path in build_release(RELEASE, args.assignments or None):
        print(f"released {path.relative_to(RELEASE.parent)}")


if __name__ == "__main__":
    main()
