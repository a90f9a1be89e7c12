"""nbgrader configuration of the course (read by every `nbgrader` command run from this folder).

solutions/ is nbgrader's source folder and assignments/ its release folder; what nbgrader writes while
collecting and grading (submitted/, autograded/, feedback/, the gradebook) lives under course/ (not committed).
"""

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = "attention-cv"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "course/submitted"
c.CourseDirectory.autograded_directory = "course/autograded"
c.CourseDirectory.feedback_directory = "course/feedback"
c.CourseDirectory.db_url = "sqlite:///course/gradebook.db"

# What students see in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Autograding runs whole notebooks (fast mode is on under NBGRADER_EXECUTION); a cell may take at most 10 minutes.
c.Execute.timeout = 600
# Library warnings on stderr must not zero a correct cell (nbgrader scores any stderr output as an error).
c.IgnorePattern.pattern = r"(Warning|warnings\.warn|it/s\]|s/it\])"
c.IgnorePattern.enabled = True

# The Validate button (and `nbgrader validate`) runs the notebook and reports every cell that raises or writes to
# stderr: the visible checks. By default nbgrader looks only at grade cells, and in the release those hold no
# tests (the hidden tests are stripped), so a notebook whose code fails every check would "pass all the tests".
# The button reads this file from the folder JupyterLab was started in (the repository root, as the README says).
c.Validator.validate_all = True

# Feedback shows each test's report but not the hidden test source (nbgrader includes it by default).
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
