"""Notebook positional encoding: grader.py, reference.py, examples.py (see autograde.course)."""
