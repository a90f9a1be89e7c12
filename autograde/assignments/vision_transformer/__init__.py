"""Notebook vision transformer: grader.py, reference.py, examples.py (see autograde.course)."""
