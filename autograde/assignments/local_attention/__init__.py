"""Notebook local attention: grader.py, reference.py, examples.py (see autograde.course)."""
