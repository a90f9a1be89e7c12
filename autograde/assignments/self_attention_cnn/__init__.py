"""Notebook self attention cnn: grader.py, reference.py, examples.py (see autograde.course)."""
