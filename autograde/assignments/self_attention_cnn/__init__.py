"""Notebook self attention cnn: grader, reference, examples, known mistakes, stand-ins (see autograde.course)."""
