"""A whole term on a real JupyterHub: nbgrader's exchange end to end, three local users, two of them in Chromium.

The hub is the course's one-machine deployment (hub/jupyterhub_config.py, started by hub.launch.LocalHub):
throw-away local users with private homes (one instructor, two students), a temporary exchange, the course
environment every user runs, JupyterHub and configurable-http-proxy on free local ports. The instructor releases
notebook 2. One student fetches and submits from the command line (a realistic mistake), the other in the browser:
logs in, opens the *Assignments* list, fetches, pastes the solution into the answer cells, submits. The instructor
collects, autogrades with ``nbgrader autograde`` under the course's nbgrader_config.py, grades an inline question
in the formgrader (browser), generates and releases feedback; both students fetch it, one in the browser.

Asserted: the automatic scores equal the isolated grader's (``python -m autograde grade`` on the same submissions,
run by the instructor, as on the hub), part by part, for the correct and the buggy submission; a student cannot
list the exchange's inbound or the feedback, cannot read a classmate's home, the course folder (``course/``, the
gradebook, ``solutions/``) or the graders, and sees none of nbgrader's instructor extensions; the feedback holds
the TA's comment and no hidden test. Screenshots of each browser step and the steps' times go to outputs/hub/.
Teardown stops the hub and the proxy by their process ids and removes the users with their homes.
"""

from __future__ import annotations

import csv
import json
import os
import pwd
import re
import secrets
import shutil
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from autograde import course
from autograde import example_notebooks as ex
from autograde.course import REPO
from autograde.nbgrader_course import cell_scores
from hub.launch import LocalHub, missing_requirements
from tests.browser.conftest import VIEWPORT
from tests.browser.lab import NotebookPage, click_menu

pytestmark = [pytest.mark.hub, pytest.mark.browser, pytest.mark.slow]

ASSIGNMENT = "02_multi_head_attention"  # autogrades in seconds, and has inline questions graded by hand
OUTPUTS = REPO / "outputs" / "hub"
COMMENT = "Say what the mask does to the weights after the softmax. Hub test 3c9e."
SCORE = 1.0
HIDDEN_MARKERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "_trusted_grade")


class Term:
    """The term's record: each step's seconds and each screenshot, written to outputs/hub/."""

    def __init__(self):
        self.steps: dict[str, float] = {}
        self.screenshots: list[str] = []
        OUTPUTS.mkdir(parents=True, exist_ok=True)
        for old in [*OUTPUTS.glob("*.png"), *OUTPUTS.glob("failed_*")]:  # a previous run's
            old.unlink()

    def step(self, name: str):
        term = self

        class _Step:
            def __enter__(self):
                self.start = time.monotonic()

            def __exit__(self, *exc):
                term.steps[name] = round(time.monotonic() - self.start, 1)
                term.write()

        return _Step()

    def shot(self, page, name: str, **kwargs) -> Path:
        OUTPUTS.mkdir(parents=True, exist_ok=True)  # (a `make clean` meanwhile removes outputs/)
        path = OUTPUTS / f"{len(self.screenshots) + 1:02d}_{name}.png"
        page.screenshot(path=path, **kwargs)
        self.screenshots.append(path.name)
        self.write()
        return path

    def on_failure(self, page, name: str):
        """A context that keeps a screenshot of ``page`` when its block fails (then lets the failure through)."""
        term = self

        class _OnFailure:
            def __enter__(self):
                return self

            def __exit__(self, kind, *exc):
                if kind is not None:
                    OUTPUTS.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=OUTPUTS / f"failed_{name}.png")
                    for i, frame in enumerate(page.frames):
                        (OUTPUTS / f"failed_{name}_frame{i}.html").write_text(
                            f"<!-- {frame.url} -->\n" + frame.content()
                        )
                    term.write()

        return _OnFailure()

    def write(self) -> None:
        load = [round(x, 2) for x in os.getloadavg()]
        record = {"steps_s": self.steps, "screenshots": self.screenshots, "load_average_at_end": load}
        OUTPUTS.mkdir(parents=True, exist_ok=True)
        (OUTPUTS / "timings.json").write_text(json.dumps(record, indent=2) + "\n")


@dataclass
class UserLab:
    """A user's JupyterLab behind the hub, as tests.browser.lab.NotebookPage expects a server to look."""

    hub_url: str
    user: str
    root_dir: Path

    def url(self, path: str = "", workspace: str | None = None) -> str:
        page = "lab" if workspace is None else f"lab/workspaces/{urllib.parse.quote(workspace)}"
        if path:
            page += "/tree/" + urllib.parse.quote(path)
        return f"{self.hub_url}user/{self.user}/{page}"


@pytest.fixture(scope="module")
def hub():
    reason = missing_requirements()
    if reason:
        pytest.skip(f"no JupyterHub on this machine: {reason}")
    tag = secrets.token_hex(2)
    names = {"instructor": f"hubt{tag}-teacher", "cli": f"hubt{tag}-ana", "browser": f"hubt{tag}-ben"}
    local = LocalHub([names["instructor"]], [names["cli"], names["browser"]], groups_prefix=f"hubt{tag}")
    try:
        local.start()
        local.names = names
        yield local
    finally:
        log = Path(local.site.state) / "jupyterhub.log"
        if log.exists():  # the hub's and the servers' log, for a person to read after a failure
            OUTPUTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, OUTPUTS / "jupyterhub.log")
        local.stop()
    for name in names.values():  # the users, their homes and the hub's files are gone
        with pytest.raises(KeyError):
            pwd.getpwnam(name)
    assert not local.root.exists()


def log_in(browser, hub: LocalHub, user: str):
    """A browser context logged in to the hub as ``user``, with their server started; its page."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(hub.url + "hub/login")
    page.fill("input#username_input", user)
    page.fill("input#password_input", hub.password)
    page.click("#login_submit")
    page.locator("#jp-main-dock-panel").wait_for(timeout=180_000)  # the server spawns, then JupyterLab loads
    dismiss_news(page)
    return page


def dismiss_news(page) -> None:
    """JupyterLab asks whether to fetch news (no network here): answer no, so the toast covers nothing."""
    no = page.locator(".jp-Notification-Toast-Body button", has_text=re.compile("^No$"))
    try:
        no.first.click(timeout=3_000)
    except Exception:  # noqa: BLE001 (no toast: nothing to dismiss)
        pass


def nbgrader_menu(page) -> list[str]:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Nbgrader$")).click()
    items = [t.strip() for t in page.locator(".lm-Menu-itemLabel").all_inner_texts() if t.strip()]
    return items


def open_assignment_list(page) -> None:
    click_menu(page, "Nbgrader", "Assignment List")
    page.locator("#released_assignments_list").wait_for()


def enter(page, field, value: str, api: str, tries: int = 3) -> None:
    """Type ``value`` into a formgrader field and leave it, until the formgrader saves it (a PUT to ``api``): on
    a busy machine the grading view may take the first entry before its scripts listen."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    field.wait_for()
    for _ in range(tries):
        try:
            with page.expect_response(lambda r: api in r.url and r.request.method == "PUT", timeout=20_000) as put:
                field.fill("")
                field.fill(value)
                field.press("Tab")
        except PlaywrightTimeout:
            continue
        assert put.value.ok, f"the formgrader did not save {api}: {put.value.status}"
        return
    raise AssertionError(f"the formgrader never saved {api} after {tries} tries")


def answers(release: nbformat.NotebookNode) -> list[tuple[int, str, str]]:
    """(index, cell type, the solution's text) of every answer cell of ``release``, from the solution example."""
    solution = nbformat.read(course.get(ASSIGNMENT).examples_dir / "solution.ipynb", as_version=4)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in solution.cells}
    found = [
        (i, c.cell_type, by_id[c.metadata["nbgrader"]["grade_id"]])
        for i, c in enumerate(release.cells)
        if c.metadata.get("nbgrader", {}).get("solution")
    ]
    assert found, "the release has no answer cells"
    return found


def inline_question(number: int) -> str:
    """The grade id of the answer cell of "Inline Question ``number``" (graded by hand)."""
    cells = nbformat.read(course.get(ASSIGNMENT).source_notebook, as_version=4).cells
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown" and re.search(rf"Inline Question {number}\b", cell.source):
            answer = next(c for c in cells[i + 1 :] if c.metadata.get("nbgrader", {}).get("grade"))
            return answer.metadata["nbgrader"]["grade_id"]
    raise AssertionError(f"{ASSIGNMENT} has no Inline Question {number}")


def hidden_test_lines() -> list[str]:
    """Every line of 20 characters or more of the source notebook's hidden tests."""
    lines = []
    for cell in nbformat.read(course.get(ASSIGNMENT).source_notebook, as_version=4).cells:
        source = cell.source
        if "BEGIN HIDDEN TESTS" in source:
            region = source.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0]
            lines += [line.strip() for line in region.splitlines() if len(line.strip()) >= 20]
    assert lines, "the source notebook has no hidden tests"
    return lines


def denied(hub: LocalHub, user: str, *command: str) -> bool:
    """Whether ``command`` run as ``user`` fails with a permission error."""
    proc = hub.run_as(user, *command, check=False)
    return proc.returncode != 0 and ("Permission denied" in proc.stderr or "PermissionError" in proc.stderr)


def test_a_term_on_the_hub(browser, hub):  # the browser first: without Chromium, no users are made
    term = Term()
    names = hub.names
    ins, cli, web = names["instructor"], names["cli"], names["browser"]
    course_dir = hub.course_folder(ins)
    term.steps.update({f"set-up: {k}": round(v, 1) for k, v in hub.timings.items()})
    mistake = next(e.name for e in ex.examples(ASSIGNMENT) if e.name != "solution" and not e.blank)

    # ---- the instructor releases notebook 2 into the exchange (command line, as on the hub's terminal) ----
    with term.step("instructor: generate_assignment and release_assignment"):
        hub.nbgrader(ins, "generate_assignment", ASSIGNMENT, "--force", cwd=course_dir)
        hub.nbgrader(ins, "release_assignment", ASSIGNMENT, cwd=course_dir)

    # ---- student 1, command line: list, fetch, work (a realistic mistake), submit ----
    with term.step("student 1 (command line): list, fetch, submit"):
        listing = hub.nbgrader(cli, "list")
        listed = listing.stdout + listing.stderr
        assert ASSIGNMENT in listed, listed
        hub.nbgrader(cli, "fetch_assignment", ASSIGNMENT)
        fetched = next(hub.members[cli].home.rglob(f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"))
        handed_in = hub.root / f"{mistake}.ipynb"  # readable by all, copied by the student
        shutil.copy(course.get(ASSIGNMENT).examples_dir / f"{mistake}.ipynb", handed_in)
        handed_in.chmod(0o644)
        hub.run_as(cli, "cp", str(handed_in), str(fetched))
        hub.nbgrader(cli, "submit", ASSIGNMENT)

    # ---- student 2, in the browser: log in, Assignments, Fetch, work, Submit ----
    with term.step("student 2 (browser): log in, server starts"):
        page = log_in(browser, hub, web)
        term.shot(page, "student_lab_after_login")
    with term.step("student 2 (browser): Nbgrader menu"):
        menu = nbgrader_menu(page)
        term.shot(page, "student_nbgrader_menu")
        page.keyboard.press("Escape")
        assert menu == ["Assignment List"], f"a student's Nbgrader menu offers {menu}"
    with term.step("student 2 (browser): Assignments, Fetch"):
        open_assignment_list(page)
        released = page.locator("#released_assignments_list")
        released.get_by_text(ASSIGNMENT).first.wait_for()
        term.shot(page, "student_assignments_released")
        released.get_by_role("button", name="Fetch").click()
        page.locator("#fetched_assignments_list").get_by_text(ASSIGNMENT).first.wait_for()
        term.shot(page, "student_assignment_fetched")
    home = hub.members[web].home
    notebook = next(home.rglob(f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"))
    relative = notebook.relative_to(home).as_posix()
    with term.step("student 2 (browser): open the notebook, paste the answers, save"):
        lab = UserLab(hub.url, web, home)
        notebook_page = NotebookPage(page, lab, relative).open(workspace="term")
        saved = notebook_page.paste_answers(answers(nbformat.read(notebook, as_version=4)))
        expected = {text for _, _, text in answers(saved)}
        assert all(c.source in expected for c in saved.cells if c.metadata.get("nbgrader", {}).get("solution"))
        notebook_page.show_first(".jp-CodeCell")
        term.shot(page, "student_notebook_answered")
    with term.step("student 2 (browser): Submit"):
        open_assignment_list(page)
        fetched_list = page.locator("#fetched_assignments_list")
        fetched_list.get_by_role("button", name="Submit").first.click()
        page.locator("#submitted_assignments_list").get_by_text(ASSIGNMENT).first.wait_for()
        term.shot(page, "student_submitted")

    # ---- the instructor collects and autogrades (the course's nbgrader_config.py decides how) ----
    with term.step("instructor: collect"):
        hub.nbgrader(ins, "collect", ASSIGNMENT, cwd=course_dir)
        submitted = course_dir / "course" / "submitted"
        assert {p.name for p in submitted.iterdir()} == {cli, web}
    with term.step("instructor: nbgrader autograde (2 submissions)"):
        hub.nbgrader(ins, "autograde", ASSIGNMENT, "--force", cwd=course_dir)
    with term.step("instructor: python -m autograde grade (isolated grader, same submissions)"):
        out = course_dir / "grading"
        graded = hub.run_as(
            ins,
            "python",
            "-m",
            "autograde",
            "grade",
            str(submitted),
            "--assignment",
            ASSIGNMENT,
            "--out",
            str(out),
            cwd=course_dir,
        )
    with (out / "grades.csv").open() as f:
        isolated = {row["student_id"]: row for row in csv.DictReader(f)}
    nbgrader_scores: dict[str, dict[str, float]] = {}
    for score in cell_scores(course_dir, ASSIGNMENT):
        if score.cell.endswith("_tests"):
            nbgrader_scores.setdefault(score.student, {})[score.cell.removesuffix("_tests")] = score.auto_score
    assert set(isolated) == set(nbgrader_scores) == {cli, web}, (isolated, nbgrader_scores, graded.stdout)
    for student, parts in nbgrader_scores.items():
        assert parts, f"no hidden test cell scored for {student}"
        for part, points in parts.items():
            assert float(isolated[student][part]) == pytest.approx(points), (student, part, isolated, parts)
    assert float(isolated[web]["total"]) == float(isolated[web]["max"]), isolated[web]  # the pasted solution
    assert float(isolated[cli]["total"]) < float(isolated[cli]["max"]), isolated[cli]  # the mistake

    # ---- the instructor grades an inline question in the formgrader (browser) ----
    cell = inline_question(2)
    with term.step("instructor (browser): log in, formgrader, grade Inline Question 2"):
        grader_page = log_in(browser, hub, ins)
        with term.on_failure(grader_page, "formgrader"):
            assert "Formgrader" in nbgrader_menu(grader_page)
            grader_page.keyboard.press("Escape")
            click_menu(grader_page, "Nbgrader", "Formgrader")
            frame = grader_page.frame_locator("#formgrader iframe")
            frame.get_by_role("link", name="Manage Students", exact=True).click()
            frame.locator(f'a[href$="/manage_students/{cli}"]').click()
            frame.get_by_role("link", name=ASSIGNMENT, exact=True).click()
            frame.get_by_role("link", name=ASSIGNMENT, exact=True).click()
            enter(grader_page, frame.locator(f"input.score#{cell}"), str(SCORE), "/api/grade/")
            comment = frame.locator(f"textarea#{cell}-comment")
            enter(grader_page, comment, COMMENT, "/api/comment/")
            comment.scroll_into_view_if_needed()
            term.shot(grader_page, "instructor_formgrader_grading")
        grader_page.context.close()

    # ---- feedback: generated and released by the instructor, fetched by both students ----
    with term.step("instructor: generate_feedback and release_feedback"):
        hub.nbgrader(ins, "generate_feedback", ASSIGNMENT, "--force", cwd=course_dir)
        hub.nbgrader(ins, "release_feedback", ASSIGNMENT, cwd=course_dir)
    with term.step("student 1 (command line): fetch_feedback"):
        hub.nbgrader(cli, "fetch_feedback", ASSIGNMENT)
    with term.step("student 2 (browser): Fetch Feedback, open it"):
        page.reload()
        page.locator("#jp-main-dock-panel").wait_for()
        dismiss_news(page)
        open_assignment_list(page)
        page.locator("#submitted_assignments_list").get_by_role("button", name="Fetch Feedback").first.click()
        page.locator("#submitted_assignments_list").get_by_text("view feedback").first.wait_for()
        term.shot(page, "student_feedback_fetched")
        feedback = sorted(home.rglob(f"feedback/*/{ASSIGNMENT}.html"))
        assert feedback, "no feedback fetched into the student's home"
        page.goto(f"{hub.url}user/{web}/files/{feedback[-1].relative_to(home).as_posix()}")
        term.shot(page, "student_feedback", full_page=False)
    feedback_files = {
        student: sorted(hub.members[student].home.rglob(f"feedback/*/{ASSIGNMENT}.html")) for student in (cli, web)
    }
    assert all(feedback_files.values()), feedback_files
    assert COMMENT in feedback_files[cli][-1].read_text(), "the TA's comment did not reach student 1's feedback"
    secret_lines = hidden_test_lines()
    for student, files in feedback_files.items():
        text = files[-1].read_text()
        leaked = [m for m in HIDDEN_MARKERS if m in text] + [line for line in secret_lines if line in text]
        assert not leaked, f"{student}'s feedback shows hidden tests: {leaked[:3]}"

    # ---- what students must not see ----
    with term.step("checks: what students cannot read"):
        exchange = hub.exchange / hub.settings.course_id
        for student, other in ((cli, web), (web, cli)):
            assert denied(hub, student, "ls", str(exchange / "inbound")), "a student lists the exchange's inbound"
            assert denied(hub, student, "ls", str(exchange / "feedback")), "a student lists the released feedback"
            other_home = hub.members[other].home
            assert denied(hub, student, "ls", str(other_home)), "a student lists a classmate's home"
            other_notebook = next(other_home.rglob(f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"))
            assert denied(hub, student, "cat", str(other_notebook)), "a student reads a classmate's notebook"
            for secret in (course_dir, course_dir / "solutions", course_dir / "course" / "gradebook.db"):
                assert denied(hub, student, "ls", str(secret)), f"a student reads {secret}"
            assert denied(hub, student, "ls", hub.site.grader), "a student lists the graders"
            imported = hub.run_as(student, "python", "-c", "import autograde", check=False)
            assert imported.returncode != 0 and "No module named 'autograde'" in imported.stderr
        response = page.request.get(f"{hub.url}user/{web}/formgrader")
        assert response.status == 404, f"a student's server serves the formgrader ({response.status})"
        page.goto(UserLab(hub.url, web, home).url())
        page.locator("#jp-main-dock-panel").wait_for()
        config = json.loads(page.locator("#jupyter-config-data").text_content())
        for plugin in hub.settings.instructor_only_lab:
            assert plugin in config.get("disabledExtensions", []), (plugin, config.get("disabledExtensions"))
    page.context.close()
    print(json.dumps(term.steps, indent=2))
