"""One folder per assignment: its grader, reference implementation and example submissions."""
