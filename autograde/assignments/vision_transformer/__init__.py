"""Notebook vision transformer: grader, reference, examples, known mistakes, stand-ins (see autograde.course)."""
