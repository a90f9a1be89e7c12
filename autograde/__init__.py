"""Hidden graders, reference implementations and the sandboxed grader (instructors only; never shipped to students).

Importing the package loads nothing: nbgrader reads ``autograde.nbgrader_grading`` with the course's configuration
for every command, so the grader itself (torch, pytest) loads only where grading happens.
"""
