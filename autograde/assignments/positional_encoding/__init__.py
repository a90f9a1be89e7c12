"""Notebook positional encoding: grader, reference, examples, known mistakes, stand-ins (see autograde.course)."""
