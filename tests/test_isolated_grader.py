"""The isolated grader: reading notebooks, the sandbox, the wire, the batch and its outputs.

The sandbox tests share one zygote (one ``import torch``); the end-to-end test runs the command line once.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import autograde
from autograde.examples import SPECS, Edit, Example, build, example_path, examples
from autograde.harness import run_part
from autograde.isolation import wire
from autograde.isolation.batch import (
    Submission,
    assign,
    assignments,
    catalog,
    discover,
    grade_batch,
    sandbox_for,
)
from autograde.isolation.sandbox import Limits, Zygote
from autograde.isolation.worker_student import WorkerStudent
from autograde.nbgrader_course import RELEASE, SOLUTIONS
from autograde.notebook_source import (
    Chunk,
    GradedSource,
    NotebookError,
    detect_assignment,
    graded_source,
    read_notebook,
)
from autograde.student import Call, InProcessStudent, StudentError

A = "01_self_attention_cnn"
REPO = Path(autograde.__file__).resolve().parent.parent
REFERENCE = REPO / "autograde" / "references" / "attention_cnn.py"
HAVE_NOTEBOOK_1 = (RELEASE / A / f"{A}.ipynb").is_file() and (SOLUTIONS / A / f"{A}.ipynb").is_file()
needs_notebook_1 = pytest.mark.skipif(not HAVE_NOTEBOOK_1, reason="needs the notebook-1 release and solution")


def answer(grade_id: str, source: str):
    return new_code_cell(
        source,
        metadata={
            "nbgrader": {
                "grade_id": grade_id,
                "solution": True,
                "grade": False,
                "locked": False,
                "schema_version": 3,
            }
        },
    )


def hidden(grade_id: str):
    return new_code_cell(
        "### BEGIN HIDDEN TESTS\ngrade('x', 'y', globals())\n### END HIDDEN TESTS",
        metadata={
            "nbgrader": {
                "grade_id": grade_id,
                "solution": False,
                "grade": True,
                "locked": True,
                "points": 1,
                "schema_version": 3,
            }
        },
    )


def selected(source: GradedSource) -> list[str]:
    """The statements each chunk runs, as source text."""
    return [
        ast.get_source_segment(c.source, ast.parse(c.source).body[i])
        for c in source.chunks
        for i in c.statements
    ]


# ------------------------------------------------------------------------------------------ reading
def test_only_the_definitions_and_what_they_need_are_run():
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Title"),
            new_code_cell(
                "%matplotlib inline\nimport math\nimport torch\nimport matplotlib.pyplot as plt\nSCALE = 2\n"
                "data = load_everything()\nprint('hello')"
            ),
            answer(
                "block",
                "class Block(torch.nn.Module):\n    def forward(self, x):\n        return helper(x) * SCALE"
                "\n\n\ndef helper(x):\n    return x + math.pi\n\n\nmodel = Block()\ntrain(model, data)",
            ),
            hidden("block_tests"),
            new_code_cell("history = train(Block(), data)\nplt.plot(history)"),
            answer("q", "answer = 3"),
        ]
    )
    chosen = selected(graded_source(nb, ["answer"]))
    assert chosen == ["import math", "import torch", "SCALE = 2", chosen[3], chosen[4], "answer = 3"]
    assert chosen[3].startswith("class Block") and chosen[4].startswith("def helper")


def test_syntax_errors_and_magics_are_reported_or_skipped():
    nb = new_notebook(
        cells=[
            new_code_cell("!pip install something\nimport torch"),
            new_code_cell("%%bash\necho hi"),
            answer("block", "def f(x):\n    return x +\n"),
        ]
    )
    source = graded_source(nb, ["f", "torch"])
    assert selected(source) == ["import torch"]
    assert source.problems == [
        "cell 3 (block) has a syntax error on line 2: invalid syntax. Nothing in it was run; "
        "fix it and run the cell to check."
    ]


def test_definitions_are_found_when_the_grade_id_changed_or_the_cell_was_duplicated():
    nb = new_notebook(
        cells=[answer("renamed", "def f():\n    return 1"), new_code_cell("def f():\n    return 2")]
    )
    source = graded_source(nb, ["f"])
    assert [c.label for c in source.chunks] == ["cell 1 (renamed)", "cell 2"]  # the later definition wins
    assert source.defined == {"f"}


def test_forbidden_calls_are_found_in_the_source_of_the_target_only():
    nb = new_notebook(
        cells=[
            new_code_cell(
                "import torch.nn.functional as F\n"
                "from torch.nn.functional import scaled_dot_product_attention as sdpa"
            ),
            answer(
                "a",
                "def captured(q, k, v):\n    return sdpa(q, k, v)\n\n\n"
                "def honest(q, k, v):\n    return scaled_dot_product_attention(q, k, v)\n\n\n"
                "def scaled_dot_product_attention(q, k, v):\n    return (q @ k.mT).softmax(-1) @ v\n\n\n"
                "def by_name(q, k, v):\n    return getattr(F, 'scaled_dot_product_attention')(q, k, v)",
            ),
        ]
    )
    source = graded_source(nb, [])
    word = {"scaled_dot_product_attention"}
    assert source.mentions("captured", word) == word
    assert source.mentions("by_name", word) == word
    assert source.mentions("honest", word) == set()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"cells": [', "not valid notebook JSON"),
        (b"\x89PNG\r\n\x1a\n", "not valid notebook JSON"),
        (b'{"hello": 1}', "not a Jupyter notebook"),
    ],
)
def test_unreadable_files_get_a_message(tmp_path, content, message):
    path = tmp_path / "s.ipynb"
    path.write_bytes(content)
    with pytest.raises(NotebookError, match=message):
        read_notebook(path)


def test_the_assignment_is_recognised_from_grade_ids_or_the_file_name():
    parts = {"01_a": ["attention", "models"], "02_b": ["mha"]}
    nb = new_notebook(cells=[hidden("mha_tests")])
    assert detect_assignment(nb, parts) == "02_b"
    assert detect_assignment(new_notebook(), parts, "alice_01_a.ipynb") == "01_a"
    assert detect_assignment(new_notebook(), parts, "alice.ipynb") is None


def test_submissions_are_found_in_folders_and_nbgrader_trees(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("bob smith.ipynb", "alice.ipynb", ".hidden.ipynb", "notes.txt"):
        (flat / name).write_text("{}")
    assert [(s.student, s.path.name) for s in discover([flat], [A])] == [
        ("alice", "alice.ipynb"),
        ("bob_smith", "bob smith.ipynb"),
    ]
    tree = tmp_path / "course" / "submitted"
    for student in ("s1", "s2"):
        (tree / student / A).mkdir(parents=True)
        (tree / student / A / f"{A}.ipynb").write_text("{}")
    found = discover([tmp_path / "course"], [A])
    assert [(s.student, s.assignment) for s in found] == [("s1", A), ("s2", A)]
    assert [s.student for s in discover([flat / "alice.ipynb", flat / "alice.ipynb"], [A])] == [
        "alice",
        "alice-2",
    ]


# --------------------------------------------------------------------------------------------- wire
def _payload(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class Sneaky:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_the_wire_accepts_plain_data_only():
    data = wire.decode(_payload({"ok": True, "value": [torch.nn.Parameter(torch.ones(2)), (1, "a", None)]}))
    assert type(data["value"][0]) is torch.Tensor and data["value"][1] == (1, "a", None)
    for bad in (Sneaky(), {"x": Sneaky()}):
        with pytest.raises(wire.WorkerProtocolError):
            wire.decode(_payload(bad))
    with pytest.raises(wire.WorkerProtocolError):
        wire.decode(_payload({1: "non-string key"}))
    with pytest.raises(wire.WorkerProtocolError):
        wire.decode(b"garbage")


def test_replies_are_checked_before_graders_see_them():
    good = {
        "outputs": [torch.zeros(2)],
        "input_grads": [None],
        "param_grads": {"w": torch.ones(1)},
        "attrs": {},
        "forbidden_used": ["F.scaled_dot_product_attention", "made up"],
    }
    result = wire.call_result(good)
    assert result.forbidden_used == ["F.scaled_dot_product_attention"]
    for broken in ({**good, "outputs": []}, {**good, "input_grads": ["x"]}, "text"):
        with pytest.raises(wire.WorkerProtocolError):
            wire.call_result(broken)
    info = {
        "type_name": "M",
        "children": [("a", "Conv2d")],
        "parameters": {"a.weight": (2, 2)},
        "buffers": {},
        "num_parameters": 4,
        "attrs": {},
        "text": "M()",
    }
    assert wire.module_info(info).parameters == {"a.weight": (2, 2)}
    with pytest.raises(wire.WorkerProtocolError):
        wire.module_info({**info, "parameters": {"a.weight": ("2",)}})


# ------------------------------------------------------------------------------------------ sandbox
@pytest.fixture(scope="module")
def zygote():
    z = Zygote(Limits(timeout=2.0, memory_mb=512))
    yield z
    z.close()


def student_from(zygote: Zygote, code: str, *more: str) -> WorkerStudent:
    chunks = [
        Chunk(f"cell {i}", f"<cell {i}>", src, tuple(range(len(ast.parse(src).body))))
        for i, src in enumerate((code, *more), start=1)
    ]
    return WorkerStudent(zygote, GradedSource(chunks), zygote.limits.timeout)


PROBE = f"""
import os, resource, sys


def attempt(action):
    try:
        action()
        return "allowed"
    except BaseException as exc:
        return type(exc).__name__


def read(path):
    with open(path) as f:
        f.read(1)


def write(path):
    with open(path, "w") as f:
        f.write("x")


PROBE = {{
    "import autograde": attempt(lambda: __import__("autograde")),
    "read the references": attempt(lambda: read({str(REFERENCE)!r})),
    "list the repository": attempt(lambda: os.listdir({str(REPO)!r})),
    "write outside": attempt(lambda: write({str(REPO / "forged.txt")!r})),
    "write here": attempt(lambda: write("scratch.txt")),
    "fork": attempt(os.fork),
    "shell": attempt(lambda: os.system("true")),
    "signal the grader": attempt(lambda: os.kill({os.getpid()}, 0)),
    "raise own limits": attempt(lambda: resource.setrlimit(resource.RLIMIT_AS, (-1, -1))),
    "cuda": attempt(lambda: __import__("torch").zeros(1).to("cuda")),
    "environment": sorted(os.environ),
    "environment values": " ".join(os.environ.values()),
    "sys.path": " ".join(sys.path),
    "limits": [resource.getrlimit(r)[0] for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU,
                                                  resource.RLIMIT_FSIZE)],
}}
"""


def test_the_worker_cannot_reach_the_grader(zygote):
    student = student_from(zygote, PROBE)
    probe = ast.literal_eval(student.value("PROBE"))  # the protocol returns a dict as its repr
    student.close()
    assert probe["import autograde"] == "ModuleNotFoundError"
    for action in (
        "read the references",
        "list the repository",
        "write outside",
        "fork",
        "shell",
        "signal the grader",
        "raise own limits",
    ):
        assert probe[action] == "PermissionError", action
    assert probe["write here"] == "allowed"
    assert probe["cuda"] != "allowed"
    assert not (REPO / "forged.txt").exists()
    assert str(REPO / "autograde") not in probe["environment values"] + probe["sys.path"]
    assert set(probe["environment"]) <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "LC_ALL",
        "MPLBACKEND",
        "MPLCONFIGDIR",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "CUDA_VISIBLE_DEVICES",
        "COURSE_FAST",
        "TQDM_DISABLE",
        "PYTHONHASHSEED",
    }
    address_space, cpu, file_size = probe["limits"]
    assert 0 < address_space < 2**45 and 0 < cpu <= 600 and file_size == 16 * 2**20


def test_namespaces_hide_the_grader_even_from_unaudited_calls(zygote):
    if not zygote.namespaces:
        pytest.skip("this kernel does not allow user namespaces")
    student = student_from(
        zygote,
        f"import os\ntry:\n    os.stat({str(REFERENCE)!r})\n    SEEN = True\n"
        "except FileNotFoundError:\n    SEEN = False\nPID = os.getpid()",
    )
    assert student.value("SEEN") is False and student.value("PID") == 2
    student.close()


def test_an_endless_call_times_out_and_only_its_target_is_given_up(zygote):
    student = student_from(
        zygote,
        "import torch\n\n\ndef loop(x):\n    while True:\n        pass\n\n\ndef double(x):\n    return 2 * x",
    )
    x = torch.ones(2)
    for _ in range(2):
        with pytest.raises(StudentError, match="did not finish within 2 s"):
            student.call(Call("loop", build=False, inputs=(x,)))
    assert torch.equal(student.call(Call("double", build=False, inputs=(x,))).output, 2 * x)
    assert [i.kind for i in student.incidents] == ["timeout"]
    student.close()


def test_a_crash_costs_only_the_request_in_flight(zygote):
    student = student_from(
        zygote,
        "import os\nimport torch\n\n\ndef die(x):\n    os._exit(3)\n\n\ndef same(x):\n    return x",
        "class Broken:\n    os._exit(4)",
        "AFTER = 1",
    )
    x = torch.ones(2)
    with pytest.raises(StudentError, match="exited with code 3"):
        student.call(Call("die", build=False, inputs=(x,)))
    assert torch.equal(student.call(Call("same", build=False, inputs=(x,))).output, x)
    assert student.value("AFTER") == 1 and not student.has("Broken")
    assert any("cell 2" in p and "exited with code 4" in p for p in student.problems)
    student.close()


def test_a_captured_forbidden_builtin_is_caught_where_the_kernel_misses_it(zygote):
    code = (
        "import torch\nfrom torch.nn.functional import scaled_dot_product_attention as sdpa\n\n\n"
        "def attend(q, k, v):\n    return sdpa(q, k, v)"
    )
    q = torch.randn(1, 3, 4)
    call = Call("attend", build=False, inputs=(q, q, q), forbidden=("F.scaled_dot_product_attention",))
    namespace: dict = {}
    exec(code, namespace)
    assert InProcessStudent(namespace).call(call).forbidden_used == []
    source = graded_source(new_notebook(cells=[answer("attend", code)]), ["attend"])
    student = WorkerStudent(zygote, source, zygote.limits.timeout)
    assert student.call(call).forbidden_used == ["F.scaled_dot_product_attention"]
    student.close()


def test_the_sandbox_grades_exactly_like_the_kernel(zygote):
    """Same graders, same messages: the solution and a wrong attention, in-process and isolated."""
    source = REFERENCE.read_text().replace(
        "from course_utils.training import Flatten",
        "from course_utils.training import Flatten\nanswer_q1 = 2",
    )
    wrong = source.replace("/ math.sqrt(C)", "")
    earned = []
    for code in (source, wrong):
        namespace: dict = {}
        exec(code, namespace)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # many tiny ops: extra threads only slow them down
        try:
            kernel = run_part(A, None, InProcessStudent(namespace))
        finally:
            torch.set_num_threads(threads)
        chunk = Chunk("cell 1", "<cell 1>", code, tuple(range(len(ast.parse(code).body))))
        student = WorkerStudent(zygote, GradedSource([chunk]), 30.0)
        isolated = run_part(A, None, student)
        student.close()
        assert [(o.name, o.earned, o.message) for o in isolated.outcomes] == [
            (o.name, o.earned, o.message) for o in kernel.outcomes
        ]
        earned.append(isolated.earned)
    assert earned[1] < earned[0] == isolated.possible


# ----------------------------------------------------------------------------------- end to end
@pytest.mark.slow
@needs_notebook_1
def test_the_command_line_grades_a_class(tmp_path):
    from autograde.__main__ import main

    folder = tmp_path / "class"
    folder.mkdir()
    nbformat.write(build(A, Example("solution", "", {})), folder / "alice.ipynb")
    nbformat.write(build(A, Example("blank", "", {}, blank=True)), folder / "bob.ipynb")
    nbformat.write(
        build(A, Example("no scale", "", {}, edits=(Edit("attention", " / math.sqrt(C)", ""),))),
        folder / "carol.ipynb",
    )
    out = tmp_path / "out"
    args = [
        "grade",
        str(folder),
        "--assignment",
        A,
        "--jobs",
        "2",
        "--timeout",
        "10",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    rows = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
    cat = catalog(A)
    full = sum(cat.parts.values())
    assert list(rows["alice"])[:2] == ["student_id", "assignment"] and list(rows["alice"])[-2:] == [
        "total",
        "max",
    ]
    assert float(rows["alice"]["total"]) == full and float(rows["bob"]["total"]) == 0
    assert 0 < float(rows["carol"]["attention"]) < cat.parts["attention"]
    assert all(float(rows[s]["max"]) == full for s in rows)

    results = json.loads((out / A / "carol" / "results.json").read_text())
    assert results["score"] == sum(t["score"] for t in results["tests"]) == float(rows["carol"]["total"])
    assert {"name", "score", "max_score", "output", "visibility"} <= set(results["tests"][0])
    feedback = (out / A / "carol" / "feedback.md").read_text()
    assert "1/sqrt(C) scale is missing" in feedback
    grader_source = (REPO / "autograde" / "graders" / f"test_{A}.py").read_text()
    secret_lines = [line.strip() for line in grader_source.splitlines() if len(line.strip()) > 30]
    for text in (feedback, (out / A / "carol" / "feedback.html").read_text()):
        assert not [line for line in secret_lines if line in text]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["submissions"] == 3 and summary["full_marks"] == 1

    first = (out / "grades.csv").read_text()
    assert main(args) == 0
    assert (out / "grades.csv").read_text() == first  # a re-grade gives the same scores


@pytest.mark.slow
def test_every_assignment_is_recognised_from_its_notebook_and_graded(tmp_path):
    """Each assignment's solution earns what its example spec says and its blank release nothing.

    All in one batch, in which each notebook's assignment is recognised from the notebook itself.
    """
    expected = {}
    for a in assignments():
        for example in examples(a)[:2]:  # the solution and the blank release
            shutil.copy(example_path(a, example.name), tmp_path / f"{example.name}_{a}.ipynb")
            expected[f"{example.name}_{a}"] = (a, sum(example.expected.values()))
    assert {a for a, _ in expected.values()} == set(SPECS), "every assignment has a grader and examples"
    catalogs = {a: catalog(a) for a in assignments()}
    subs = discover([tmp_path], catalogs)
    pairs = assign(subs, catalogs, None)
    zygote = sandbox_for(subs, Limits())
    try:
        results = {r.student: r for r in grade_batch(pairs, catalogs, zygote, jobs=2)}
    finally:
        zygote.close()
    assert {student: (r.assignment, r.earned) for student, r in results.items()} == expected


EXAMPLES = [(a, e, example_path(a, e.name)) for a in SPECS for e in examples(a)]


@pytest.fixture(scope="module")
def graded_examples():
    """Every example submission of every assignment, in one isolated batch."""
    pairs = [
        (Submission(f"{assignment}-{example.name}", path, assignment), assignment)
        for assignment, example, path in EXAMPLES
    ]
    catalogs = {a: catalog(a) for a in {a for _, a in pairs}}
    zygote = sandbox_for([s for s, _ in pairs], Limits())
    try:
        results = grade_batch(pairs, catalogs, zygote, jobs=2)
    finally:
        zygote.close()
    return {r.student: r for r in results}


@pytest.mark.slow
@pytest.mark.parametrize(("assignment", "example", "path"), EXAMPLES, ids=[f"{a}-{e.name}" for a, e, _ in EXAMPLES])
def test_example_submissions_score_as_under_nbgrader(graded_examples, assignment, example, path):
    """The example spec states the points nbgrader gives each hidden cell; the isolated grader must agree."""
    result = graded_examples[f"{assignment}-{example.name}"]
    got = {f"{part}_tests": earned for part, (earned, _) in result.parts.items()}
    assert got == pytest.approx(example.expected), "\n".join(
        f"{t.part}: {t.message}" for t in result.tests if t.earned < t.points
    )
