"""Hidden graders and reference implementations (instructors only; never shipped to students)."""

from autograde.harness import grade, run_part

__all__ = ["grade", "run_part"]
