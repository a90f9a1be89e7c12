"""Notebook local attention: grader, reference, examples, known mistakes, stand-ins (see autograde.course)."""
