"""nbgrader configuration of the course (read by every `nbgrader` command run from this folder).

solutions/ is nbgrader's source folder and assignments/ its release folder; what nbgrader writes while
collecting and grading (submitted/, autograded/, feedback/, the gradebook) lives under course/ (not committed).
"""

import os
import sys
from pathlib import Path

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades

from autograde.course import COURSE_ID
from autograde.nbgrader_grading import autograde_preprocessors, sanitize_preprocessors

c = get_config()  # noqa: F821 (provided by nbgrader)

# Every path is this file's folder's, whatever the working directory: on a hub the formgrader runs in the
# instructor's home and reads this file through JUPYTER_CONFIG_PATH (hub/jupyterhub_config.py).
COURSE_ROOT = Path(__file__).resolve().parent
c.CourseDirectory.root = str(COURSE_ROOT)
c.CourseDirectory.course_id = COURSE_ID
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "course/submitted"
c.CourseDirectory.autograded_directory = "course/autograded"
c.CourseDirectory.feedback_directory = "course/feedback"
c.CourseDirectory.db_url = f"sqlite:///{COURSE_ROOT / 'course' / 'gradebook.db'}"

# What students see in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# `nbgrader autograde` grades with the course's sandboxed grader, the same as `python -m autograde grade`: student
# code runs only in confined workers, never with your permissions, and training cells never run. Each hidden cell
# gets its part's report and score. Limits: c.SandboxedGrading.settings = {"timeout": 60} (or AUTOGRADE_TIMEOUT=60).
# AUTOGRADE_IN_KERNEL=1 instead runs each notebook whole in a kernel with your permissions (nbgrader's own way):
# slow, and a hostile notebook can then change its own score, read the graders and write your files (see README).
GRADE_IN_KERNEL = os.environ.get("AUTOGRADE_IN_KERNEL", "0") == "1"
c.Autograde.autograde_preprocessors = autograde_preprocessors(in_kernel=GRADE_IN_KERNEL)
# Each graded submission's results.json and feedback, for the class report (python -m autograde report course/grading)
c.SandboxedGrading.results_directory = str(COURSE_ROOT / "course" / "grading")
# A graded cell the student deleted comes back from the release (RestoreCells, in place of nbgrader's OverwriteCells,
# whose own restoring raises on a hidden cell after a read-only cell and drops the submission), so that every part
# gets its score; and nbgrader's metadata check fails only the notebook whose metadata was tampered with, instead of
# stopping the run for everyone.
c.OverwriteCells.add_missing_cells = True
c.Autograde.sanitize_preprocessors = sanitize_preprocessors()

# In the in-kernel mode only: whole notebooks run (fast mode is on under NBGRADER_EXECUTION), a cell for at most
# 10 minutes, and library warnings on stderr must not zero a correct cell (nbgrader scores stderr as an error).
c.Execute.timeout = 600
c.IgnorePattern.pattern = r"(Warning|warnings\.warn|it/s\]|s/it\])"
c.IgnorePattern.enabled = True

# The Validate button (and `nbgrader validate`) runs the notebook and reports every cell that raises or writes to
# stderr: the visible checks. By default nbgrader looks only at grade cells, and in the release those hold no
# tests (the hidden tests are stripped), so a notebook whose code fails every check would "pass all the tests".
# The button reads this file from the folder JupyterLab was started in (the repository root, as the README says).
c.Validator.validate_all = True

# Feedback shows each test's report but not the hidden test source (nbgrader includes it by default).
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]

# ---- A course never graded, users whose PATH lacks the environment, hand-ins from Colab or an LMS -------------
# A course never graded has no course/ yet, and sqlite cannot create the gradebook's folder ("unable to open
# database file", after `generate_assignment --force` had already removed the release).
try:
    (COURSE_ROOT / "course").mkdir(exist_ok=True)
except OSError:  # a checkout this user cannot write (a student's Validate button): nbgrader writes nothing here
    pass
# nbgrader runs `alembic` from PATH for a new gradebook: the one beside this Python, for users whose PATH lacks it.
_environment_bin = str(Path(sys.executable).parent)
if _environment_bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join([_environment_bin, os.environ.get("PATH", "")])

# `nbgrader zip_collect ASSIGNMENT` collects downloads that did not come through the exchange (Colab, an LMS):
# put the zip (or the .ipynb files) in course/downloaded/ASSIGNMENT/archive/. Each file is named
# `<student id>_<notebook>.ipynb`, e.g. `ana.lopez_02_multi_head_attention.ipynb`: rename Colab downloads so;
# Canvas's "Download submissions" names (`<name>_<user id>_<submission id>_<notebook>.ipynb`) work as they are.
# "Copy of " and a browser's " (1)" around the notebook's name are ignored. A student id starts with a letter or
# digit and holds letters, digits, '.', '@' and '-' only (no '_': it ends the id), and is read from the file's name
# alone, never from a folder above it; other files are skipped with a warning, as are other assignments' notebooks.
c.ZipCollectApp.downloaded_directory = "course/downloaded"
c.ZipCollectApp.strict = True
c.FileNameCollectorPlugin.named_regexp = (
    r"^(?:.*/)?(?P<student_id>[A-Za-z0-9][A-Za-z0-9.@-]*)_(?:[^/]*_)?(?:Copy of )?"
    r"(?P<file_id>\d\d_[a-z0-9_]+?)(?: ?\(\d+\))?\.ipynb$"
)
