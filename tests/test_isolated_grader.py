"""The isolated grader: reading notebooks, the sandbox, the replies, the pipeline and its outputs.

The sandbox tests share one zygote (one ``import torch``); the end-to-end test runs the command line once.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import shutil
import socket

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograde import course, settings
from autograde.catalog import catalog
from autograde.example_notebooks import Edit, Example, build, example_path, examples, expected_points
from autograde.graded_source import Chunk, GradedSource, graded_source
from autograde.harness import Context, run_part
from autograde.isolation import replies
from autograde.isolation.lanes import Lanes
from autograde.isolation.sandbox import Protections, SandboxError, Zygote
from autograde.isolation.worker_student import WorkerStudent
from autograde.outputs import folder_names
from autograde.pipeline import GradingRun, Options, grade, grader_paths
from autograde.submissions import DuplicateStudents, NotebookError, Submission, discover, read_notebook, recognise
from autograde.worker.in_process import InProcessStudent
from autograde.worker.protections import NAMES, PROTECTIONS
from autograde.worker.protocol import Call
from autograde.worker.results import Kind, StudentError

A = "01_self_attention_cnn"
REPO = course.REPO
REFERENCE = course.get(A).directory / "reference.py"
GRADER = course.get(A).grader_path
FAST = settings.Settings(timeout=2.0, memory_mb=512, submission_seconds=60.0)
# What the recorder of watched operations is tested with (the graders' own sets live in their notebooks' folders).
WATCH = {
    "F.scaled_dot_product_attention": frozenset({"scaled_dot_product_attention", "_scaled_dot_product_attention_math"}),
    "nn.MultiheadAttention": frozenset({"multi_head_attention_forward", "_native_multi_head_attention"}),
}


def answer(grade_id: str, source: str):
    meta = {"grade_id": grade_id, "solution": True, "grade": False, "locked": False, "schema_version": 3}
    return new_code_cell(source, metadata={"nbgrader": meta})


def hidden(grade_id: str):
    meta = {"grade_id": grade_id, "solution": False, "grade": True, "locked": True, "points": 1, "schema_version": 3}
    return new_code_cell(
        "### BEGIN HIDDEN TESTS\ngrade('x', 'y', globals())\n### END HIDDEN TESTS", metadata={"nbgrader": meta}
    )


def selected(source: GradedSource) -> list[str]:
    """The statements each chunk runs, as source text."""
    out = []
    for c in source.chunks:
        body = ast.parse(c.source).body
        out += [ast.get_source_segment(c.source, body[i]) for i in c.statements]
    return out


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
            new_code_cell("history = train(Block(), data)\nplt.plot(history)\ntorch.manual_seed(0)"),
            answer("q", "answer = 3"),
        ]
    )
    chosen = selected(graded_source(nb, ["answer"]))
    assert chosen == ["import math", "import torch", "SCALE = 2", chosen[3], chosen[4], "answer = 3"]
    assert chosen[3].startswith("class Block") and chosen[4].startswith("def helper")


VALID_STYLES = {
    "black-formatted continuation lines that begin with %": (
        "class M:\n    def __init__(self, E, H):\n        if (\n            E\n            % H\n            != 0\n"
        "        ):\n            raise ValueError('no')\n        self.E = E",
        ["class M"],
    ),
    "help syntax": (
        "import torch\ntorch.nn.Conv2d?\n\n\ndef f(x):\n    return torch.relu(x)",
        ["import torch", "def f"],
    ),
    "shell output captured": ("gpus = !nvidia-smi -L\n\n\ndef f(x):\n    return x", ["def f"]),
    "%%time cell": ("%%time\ndef f(x):\n    return x", ["def f"]),
    "%time line": ("%time f = lambda x: x", ["f = lambda x: x"]),
    "methods attached after the class": (
        "class M:\n    pass\n\n\ndef forward(self, x):\n    return x\n\n\nM.forward = forward\nM.__call__ = forward",
        ["class M", "def forward", "M.forward = forward", "M.__call__ = forward"],
    ),
    "settings read by the graded code": (
        "CONFIG = {'scale': 1}\nCONFIG.update(scale=2)\nCONFIG['extra'] = 3\nsetattr(CONFIG, 'x', 1) if False else 0\n"
        "import torch\ntorch.manual_seed(0)\n\n\ndef f(x):\n    return x * CONFIG['scale']",
        ["CONFIG = {'scale': 1}", "CONFIG.update(scale=2)", "CONFIG['extra'] = 3", "def f"],
    ),
}


@pytest.mark.parametrize("name", VALID_STYLES)
def test_valid_notebook_styles_are_read_as_the_kernel_reads_them(name):
    code, starts = VALID_STYLES[name]
    source = graded_source(new_notebook(cells=[answer("a", code)]), ["M", "f"])
    assert not source.problems, source.problems
    chosen = selected(source)
    assert len(chosen) == len(starts) and all(c.startswith(s) for c, s in zip(chosen, starts, strict=True)), chosen


def test_a_cell_magic_that_is_not_python_is_not_run_and_an_import_after_it_still_is():
    nb = new_notebook(cells=[new_code_cell("%%writefile helper.py\nx = 1"), new_code_cell("import math\n")])
    assert selected(graded_source(nb, ["math"])) == ["import math"]


def test_syntax_errors_are_reported():
    nb = new_notebook(
        cells=[new_code_cell("!pip install something\nimport torch"), answer("block", "def f(x):\n    return x +\n")]
    )
    source = graded_source(nb, ["f", "torch"])
    assert selected(source) == ["import torch"]
    assert source.problems == [
        "cell 2 (block) has a syntax error on line 2: invalid syntax. Nothing in it was run; "
        "fix it and run the cell to check."
    ]


def test_a_huge_chain_of_statements_is_skipped_by_cell_and_the_rest_is_read():
    chain = "x0 = 0\n" + "".join(f"x{i} = x{i - 1} + 1\n" for i in range(1, 30_000))
    nb = new_notebook(cells=[new_code_cell(chain), answer("a", "def f(x):\n    return x")])
    source = graded_source(nb, ["f"])
    assert selected(source) == ["def f(x):\n    return x"]
    assert any("more than 20,000 statements" in p for p in source.problems)


def test_definition_selection_follows_long_dependency_chains():
    """Each statement is visited once: a 15,000-long chain of names needed by the graded function."""
    chain = "x0 = 0\n" + "".join(f"x{i} = x{i - 1} + 1\n" for i in range(1, 15_000))
    nb = new_notebook(cells=[new_code_cell(chain), answer("a", "def f(x):\n    return x + x14999")])
    source = graded_source(nb, ["f"])
    assert sum(len(c.statements) for c in source.chunks) == 15_001


def test_definitions_are_found_when_the_grade_id_changed_or_the_cell_was_duplicated():
    nb = new_notebook(cells=[answer("renamed", "def f():\n    return 1"), new_code_cell("def f():\n    return 2")])
    source = graded_source(nb, ["f"])
    assert [c.label for c in source.chunks] == ["cell 1 (renamed)", "cell 2"]  # the later definition wins
    assert source.defined == {"f"}


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


def test_too_large_notebooks_and_too_much_code_get_a_message(tmp_path):
    path = tmp_path / "big.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1\n" * 30_000)]), path)
    with pytest.raises(NotebookError, match="KiB of code"):
        read_notebook(path, settings.Settings(code_kb=100))
    with pytest.raises(NotebookError, match="clear its outputs"):
        read_notebook(path, settings.Settings(notebook_mb=0))


def test_the_assignment_is_recognised_from_grade_ids_the_file_name_or_its_definitions():
    parts = {"01_a": ["attention", "models"], "02_b": ["mha"]}
    names = {"01_a": ["Attention", "early_cnn"], "02_b": ["MultiHeadAttention", "sdpa"]}
    assert recognise(new_notebook(cells=[hidden("mha_tests")]), parts) == "02_b"
    assert recognise(new_notebook(), parts, names, "alice_01_a.ipynb") == "01_a"
    stripped = new_notebook(
        cells=[new_code_cell("class MultiHeadAttention:\n    pass\n\n\ndef sdpa(q):\n    return q")]
    )
    assert recognise(stripped, parts, names, "Copy of notebook.ipynb") == "02_b"
    assert recognise(new_notebook(), parts, names, "alice.ipynb") is None


def test_submissions_are_found_in_folders_and_nbgrader_trees(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("bob smith.ipynb", "alice.ipynb", ".hidden.ipynb", "notes.txt"):
        (flat / name).write_text("{}")
    assert sorted((s.student, s.path.name) for s in discover([flat], [A])) == [
        ("alice", "alice.ipynb"),
        ("bob smith", "bob smith.ipynb"),
    ]
    tree = tmp_path / "course" / "submitted"
    for student in ("s1", "s2"):
        (tree / student / A).mkdir(parents=True)
        (tree / student / A / f"{A}.ipynb").write_text("{}")
        (tree / student / A / "Untitled.ipynb").write_text("{}")
    found = discover([tmp_path / "course"], [A])
    assert sorted((s.student, s.assignment, s.path.name) for s in found) == [
        ("s1", A, f"{A}.ipynb"),
        ("s2", A, f"{A}.ipynb"),
    ]


def test_student_ids_never_collide_silently(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "alice.ipynb").write_text("{}")
    with pytest.raises(DuplicateStudents, match="alice"):
        discover([tmp_path / "a", tmp_path / "b"], [A])
    (tmp_path / "a" / "alice!.ipynb").write_text("{}")
    found = {s.student for s in discover([tmp_path / "a"], [A])}
    assert found == {"alice", "alice!"}
    names = folder_names(["alice", "alice!", "alice_", "../../etc", "a/b"])
    assert names["alice"] == "alice" and names["alice!"] != names["alice_"]
    assert names["../../etc"] not in ("..", "etc") and "/" not in names["a/b"]


# ------------------------------------------------------------------------------------------ replies
def _payload(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class Sneaky:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_replies_hold_plain_data_only():
    data = replies.decode(_payload({"ok": True, "value": [torch.nn.Parameter(torch.ones(2)), (1, "a", None)]}))
    assert type(data["value"][0]) is torch.Tensor and data["value"][1] == (1, "a", None)
    for bad in (Sneaky(), {"x": Sneaky()}, {1: "non-string key"}):
        with pytest.raises(replies.WorkerProtocolError):
            replies.decode(_payload(bad))
    with pytest.raises(replies.WorkerProtocolError):
        replies.decode(b"garbage")


@pytest.mark.parametrize(
    "tensor",
    [
        torch.zeros(1).expand(10**7, 10**7),  # a stride-0 view: 10^14 values from one
        torch.zeros(10).as_strided((5,), (2,)),  # a strided view of someone else's storage
        torch.zeros(4)[1:],  # an offset into a larger storage
        torch.zeros(2**25 + 1, dtype=torch.uint8),  # too many values
        torch.zeros(2, dtype=torch.complex64),  # not a dtype the graders read
    ],
    ids=["stride-0 view", "strided view", "offset", "too large", "complex"],
)
def test_replies_refuse_tensors_that_pretend_or_overflow(tensor):
    with pytest.raises(replies.WorkerProtocolError):
        replies.decode(_payload({"ok": True, "value": tensor}))


def test_replies_are_checked_before_graders_see_them():
    good = {
        "outputs": [torch.zeros(2)],
        "input_grads": [None],
        "param_grads": {"w": torch.ones(1)},
        "attrs": {},
        "watched_used": ["F.scaled_dot_product_attention", "made up"],
    }
    call = Call("f", watch=WATCH)
    assert replies.call_result(good, call).watched_used == ["F.scaled_dot_product_attention"]
    for broken in ({**good, "outputs": []}, {**good, "input_grads": ["x"]}, "text"):
        with pytest.raises(replies.WorkerProtocolError):
            replies.call_result(broken, call)
    info = {
        "type_name": "M",
        "children": [("a", "Conv2d")],
        "parameters": {"a.weight": (2, 2)},
        "buffers": {},
        "num_parameters": 4,
        "attrs": {},
        "text": "M()",
    }
    assert replies.module_info(info).parameters == {"a.weight": (2, 2)}
    with pytest.raises(replies.WorkerProtocolError):
        replies.module_info({**info, "parameters": {"a.weight": ("2",)}})


def test_a_worker_cannot_claim_a_kind_it_cannot_know():
    assert replies.error({"error": "x", "kind": "grader error"}).kind is Kind.STUDENT_ERROR
    assert replies.error({"error": "x", "kind": "made up"}).kind is Kind.STUDENT_ERROR
    assert replies.error({"error": "x", "kind": "missing definition"}).kind is Kind.MISSING_DEFINITION
    assert replies.error({"error": "x", "exc_type": "ValueError"}).raised("ValueError")


# ------------------------------------------------------------------------------------------ sandbox
@pytest.fixture(scope="module")
def zygote():
    z = Zygote(FAST, grader_paths())
    yield z
    z.close()


@pytest.fixture(scope="module")
def zygote_without_namespaces():
    z = Zygote(FAST, grader_paths(), disable=("namespaces",))
    yield z
    z.close()


@pytest.fixture(scope="module")
def zygote_with_the_graders_own_user():
    """No namespaces and no user of its own: what a grader that is not root gets on a machine without user
    namespaces (seccomp and Landlock must then keep the worker from the grader's processes and files)."""
    z = Zygote(FAST, grader_paths(), disable=("namespaces", "separate_user"))
    yield z
    z.close()


MODES = {
    "namespaces": "zygote",
    "no namespaces": "zygote_without_namespaces",
    "the grader's own user": "zygote_with_the_graders_own_user",
}


def student_from(zygote: Zygote, code: str, *more: str) -> WorkerStudent:
    chunks = [
        Chunk(f"cell {i}", f"<cell {i}>", src, tuple(range(len(ast.parse(src).body))))
        for i, src in enumerate((code, *more), start=1)
    ]
    return WorkerStudent(zygote, GradedSource(chunks), FAST.budget())


PROBE = f"""
import os, resource, subprocess, sys


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


def others():
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()] or [os.getppid()]


def limit_others():
    for pid in others():
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, 3))


def renice_others():
    for pid in others():
        os.setpriority(os.PRIO_PROCESS, pid, 19)


def shared_memory():
    import ctypes
    if ctypes.CDLL(None, use_errno=True).shmget(0, 1 << 20, 0o1600) < 0:
        raise OSError(ctypes.get_errno(), "shmget")


def epoll_of_the_zygote():
    import select
    for fd in range(3, 64):
        try:
            select.epoll.fromfd(os.dup(fd)).register(os.eventfd(1), select.EPOLLIN)  # a copy: closing it is harmless
            return
        except OSError:
            pass
    raise OSError("no epoll descriptor")


def list_contents(folder):
    # where the interpreter lies below the repository, a mount point for it appears; its contents must not
    if "autograde" not in os.listdir(folder):
        raise PermissionError("only mount points are visible")


def from_file(path):
    import torch
    torch.from_file(path, shared=False, size=8, dtype=torch.uint8)


def escape_via_traceback():
    # what defeated the old audit hook: reach any function's closure through a traceback and rewrite it
    try:
        raise RuntimeError()
    except RuntimeError as exc:
        frame = exc.__traceback__.tb_frame
        while frame.f_back is not None:
            frame = frame.f_back
        for value in list(frame.f_globals.values()):
            for cell in getattr(value, "__closure__", None) or ():
                try:
                    cell.cell_contents = ()
                except ValueError:
                    pass
    write({str(REPO / "course_utils" / "__init__.py")!r})


PROBE = {{
    "import autograde": attempt(lambda: __import__("autograde")),
    "read the references": attempt(lambda: read({str(REFERENCE)!r})),
    "mmap the grader": attempt(lambda: from_file({str(GRADER)!r})),
    "list the repository": attempt(lambda: list_contents({str(REPO)!r})),
    "write outside": attempt(lambda: write({str(REPO / "forged.txt")!r})),
    "write into course_utils after a traceback escape": attempt(escape_via_traceback),
    "write into site-packages": attempt(lambda: write(os.path.join(sys.path[-1], "evil.pth"))),
    "write here": attempt(lambda: write("scratch.txt")),
    "fork": attempt(os.fork),
    "run a program": attempt(lambda: subprocess.run(["true"])),
    "open a socket": attempt(lambda: __import__("socket").socket()),
    "signal the grader": attempt(lambda: os.kill({os.getpid()}, 0)),
    "limit other processes": attempt(limit_others),
    "renice other processes": attempt(renice_others),
    "hold SysV shared memory": attempt(shared_memory),
    "use the zygote's epoll": attempt(epoll_of_the_zygote),
    "raise own limits": attempt(lambda: resource.setrlimit(resource.RLIMIT_AS, (-1, -1))),
    "cuda": attempt(lambda: __import__("torch").zeros(1).to("cuda")),
    "uid": os.getuid(),
    "environment": sorted(os.environ),
    "environment values": " ".join(os.environ.values()),
    "sys.path": " ".join(sys.path),
    "limits": [resource.getrlimit(r)[0] for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE)],
}}
"""
DENIED = (
    "import autograde",
    "read the references",
    "mmap the grader",
    "list the repository",
    "write outside",
    "write into course_utils after a traceback escape",
    "write into site-packages",
    "fork",
    "run a program",
    "open a socket",
    "signal the grader",
    "limit other processes",
    "renice other processes",
    "hold SysV shared memory",
    "use the zygote's epoll",
    "raise own limits",
    "cuda",
)


@pytest.mark.parametrize("mode", MODES)
def test_the_kernel_keeps_the_worker_from_the_grader(request, mode):
    z = request.getfixturevalue(MODES[mode])
    before = {p: p.stat().st_mtime_ns for p in (REFERENCE, REPO / "course_utils" / "__init__.py")}
    student = student_from(z, PROBE)
    probe = ast.literal_eval(student.value("PROBE"))  # the protocol returns a dict as its repr
    student.close()
    assert {a: probe[a] for a in DENIED if probe[a] == "allowed"} == {}
    assert probe["write here"] == "allowed"
    assert not (REPO / "forged.txt").exists()
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert str(course.PACKAGE_DIR) not in probe["environment values"] + probe["sys.path"]
    if os.geteuid() == 0 and mode != "the grader's own user":
        assert probe["uid"] != 0
    allowed_env = {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "LC_ALL",
        "MPLBACKEND",
        "MPLCONFIGDIR",
        "TORCHINDUCTOR_CACHE_DIR",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "CUDA_VISIBLE_DEVICES",
        "COURSE_FAST",
        "TQDM_DISABLE",
        "PYTHONHASHSEED",
    }
    assert set(probe["environment"]) <= allowed_env
    address_space, cpu, file_size = probe["limits"]
    assert 0 < address_space < 2**45 and 0 < cpu and file_size == FAST.file_mb * 2**20


def test_the_grader_reports_its_protections_and_applies_them(zygote):
    protections = zygote.protections
    assert "resource_limits" in protections.enabled and "Sandbox protections:" in protections.text()
    student = student_from(zygote, "X = 1")
    student.value("X")
    assert set(student._child.protections) == set(protections.enabled)
    student.close()


def test_with_no_protection_of_the_filesystem_the_grader_refuses_to_run():
    z = Zygote(FAST, grader_paths(), disable=("namespaces", "landlock"))
    try:
        with pytest.raises(SandboxError, match="--allow-unprotected"):
            z.wait_ready()
    finally:
        z.close()


def test_an_endless_call_times_out_and_only_its_target_is_given_up(zygote):
    student = student_from(
        zygote, "import torch\n\n\ndef loop(x):\n    while True:\n        pass\n\n\ndef double(x):\n    return 2 * x"
    )
    x = torch.ones(2)
    for _ in range(2):
        with pytest.raises(StudentError, match="did not finish within 2 s") as caught:
            student.call(Call("loop", build=False, inputs=(x,)))
        assert caught.value.kind is Kind.TIMEOUT
    assert torch.equal(student.call(Call("double", build=False, inputs=(x,))).output, 2 * x)
    assert [i.kind for i in student.incidents] == ["timeout"]
    student.close()


def test_the_time_budget_of_a_submission_is_enforced_and_reported(zygote):
    student = student_from(zygote, "import time\n\n\ndef nap(x):\n    time.sleep(1.5)\n    return x")
    student.budget = 4.0
    x = torch.ones(1)
    outcomes = []
    for _ in range(5):
        try:
            student.call(Call("nap", build=False, inputs=(x,)))
            outcomes.append("ok")
        except StudentError as exc:
            outcomes.append(exc.kind)
    student.close()
    assert outcomes[:2] == ["ok", "ok"] and outcomes[-1] is Kind.BUDGET
    assert [i.kind for i in student.incidents if i.kind == Kind.BUDGET.value] == [Kind.BUDGET.value]


def test_a_crash_costs_only_the_request_in_flight(zygote):
    student = student_from(
        zygote,
        "import os\nimport torch\n\n\ndef die(x):\n    os._exit(70)\n\n\ndef same(x):\n    return x",
        "class Broken:\n    os._exit(4)",
        "AFTER = 1",
    )
    x = torch.ones(2)
    with pytest.raises(StudentError, match="exited with code 70") as caught:  # the old "sandbox failed" code
        student.call(Call("die", build=False, inputs=(x,)))
    assert caught.value.kind is Kind.CRASH and not zygote.failure
    assert torch.equal(student.call(Call("same", build=False, inputs=(x,))).output, x)
    assert student.value("AFTER") == 1 and not student.has("Broken")
    assert any("cell 2" in p and "exited with code 4" in p for p in student.problems)
    student.close()


FORBIDDEN_FORMS = {
    "captured at import": "from torch.nn.functional import scaled_dot_product_attention as sdpa\n\n\n"
    "def attend(q, k, v):\n    return sdpa(q, k, v)",
    "name built at run time": "import torch.nn.functional as F\n\n\n"
    "def attend(q, k, v):\n    return getattr(F, 'scaled_dot_' + 'product_attention')(q, k, v)",
    "aten kernel": "import torch\n\n\ndef attend(q, k, v):\n"
    "    return torch.ops.aten._scaled_dot_product_attention_math(q, k, v)[0]",
    "nn.MultiheadAttention": "import torch\n\n\ndef attend(q, k, v):\n"
    "    m = torch.nn.MultiheadAttention(4, 1, batch_first=True)\n    return m(q, k, v)[0]",
}


@pytest.mark.parametrize("form", FORBIDDEN_FORMS)
def test_forbidden_builtins_are_seen_as_they_run_in_both_graders(zygote, form):
    code = FORBIDDEN_FORMS[form]
    q = torch.randn(1, 3, 4)
    call = Call("attend", build=False, inputs=(q, q, q), watch=WATCH)
    namespace: dict = {}
    exec(code, namespace)
    assert InProcessStudent(namespace).call(call).watched_used
    source = graded_source(new_notebook(cells=[answer("attend", code)]), ["attend"])
    student = WorkerStudent(zygote, source, FAST.budget())
    assert student.call(call).watched_used
    student.close()


def test_a_function_of_the_same_name_as_a_builtin_is_not_the_builtin():
    code = (
        "import torch\n\n\nclass MHA:\n    def scaled_dot_product_attention(self, q, k, v):\n"
        "        return torch.softmax(q @ k.mT, -1) @ v\n\n\n"
        "def attend(q, k, v):\n    return MHA().scaled_dot_product_attention(q, k, v)"
    )
    namespace: dict = {}
    exec(code, namespace)
    q = torch.randn(1, 3, 4)
    call = Call("attend", build=False, inputs=(q, q, q), watch=WATCH)
    assert InProcessStudent(namespace).call(call).watched_used == []


def test_the_sandbox_grades_exactly_like_the_kernel(zygote):
    """Same graders, same messages: the solution and a wrong attention, in-process and isolated."""
    source = REFERENCE.read_text() + "\nanswer_q1 = 2\n"
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
        student = WorkerStudent(zygote, GradedSource([chunk]), FAST.budget())
        student.timeout = 30.0
        isolated = run_part(A, None, Context(student))
        student.close()
        assert [(o.spec.name, o.earned, o.message, o.kind) for o in isolated.outcomes] == [
            (o.spec.name, o.earned, o.message, o.kind) for o in kernel.outcomes
        ]
        earned.append(isolated.earned)
    assert earned[1] < earned[0] == isolated.possible


# ----------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_the_command_line_grades_a_class(tmp_path):
    from autograde.__main__ import main

    folder = tmp_path / "class"
    folder.mkdir()
    nbformat.write(build(A, Example("solution", "")), folder / "alice.ipynb")
    nbformat.write(build(A, Example("blank", "", blank=True)), folder / "bob.ipynb")
    nbformat.write(
        build(A, Example("no scale", "", edits=(Edit("attention", " / math.sqrt(C)", ""),))), folder / "carol.ipynb"
    )
    (folder / "dave.ipynb").write_bytes(b'{"cells": [')  # corrupt, in a flat folder without --assignment
    shutil.copy(folder / "alice.ipynb", folder / "alice!.ipynb")  # a different student, not a second alice
    huge = build(A, Example("solution", ""))
    huge.cells[0].outputs = [nbformat.v4.new_output("stream", text="x" * (66 * 2**20))]
    huge.cells[0].cell_type = "code"
    nbformat.write(huge, folder / "erin.ipynb")  # 66 MiB of output
    out = tmp_path / "out"
    args = ["grade", str(folder), "--jobs", "2", "--timeout", "10", "--out", str(out), "--quiet"]
    assert main(args) == 0
    rows = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
    cat = catalog(A)
    full = cat.possible
    assert list(rows["alice"])[:2] == ["student_id", "assignment"] and list(rows["alice"])[-3:] == [
        "total",
        "max",
        "error",
    ]
    assert float(rows["alice"]["total"]) == full and float(rows["bob"]["total"]) == 0
    assert 0 < float(rows["carol"]["attention"]) < cat.parts["attention"]
    assert "not valid notebook JSON" in rows["dave"]["error"]
    assert "clear its outputs" in rows["erin"]["error"]
    folder = folder_names(rows)["alice!"]
    assert float(rows["alice!"]["total"]) == full and (out / A / folder / "results.json").is_file()

    carol = out / A / "carol"
    results = json.loads((carol / "results.json").read_text())
    assert results["score"] == sum(t["score"] for t in results["tests"]) == float(rows["carol"]["total"])
    assert {"name", "score", "max_score", "output", "visibility"} <= set(results["tests"][0])
    feedback = (carol / "feedback.md").read_text()
    assert "1/sqrt(C) scale is missing" in feedback
    secret = [line.strip() for line in GRADER.read_text().splitlines() if len(line.strip()) > 30]
    for text in (feedback, (carol / "feedback.html").read_text(), json.dumps(results)):
        assert not [line for line in secret if line in text]
        assert str(tmp_path) not in text and str(REPO) not in text  # no path of the grading machine
    summary = json.loads((out / "summary.json").read_text())
    assert summary["submissions"] == 6 and summary["full_marks"] == 2 and summary["unreadable"] == 2
    assert summary["failed_checks_by_kind"]["wrong result"] > 0

    first = (out / "grades.csv").read_text()
    assert main(args) == 0
    assert (out / "grades.csv").read_text() == first  # a re-grade gives the same scores


def test_the_trusted_side_caps_the_time_of_each_submission(tmp_path):
    nbformat.write(build(A, Example("solution", "")), tmp_path / "alice.ipynb")
    with GradingRun(FAST, Options(assignment=A)) as run:
        run.start()
        run._lanes.cap = lambda job: 0.5
        (result,) = run.grade([Submission("alice", tmp_path / "alice.ipynb", A)])
    assert result.earned == 0 and "on the grader's side, so it was stopped" in result.error
    assert [i.kind for i in result.incidents] == [Kind.GRADER_ERROR.value]


@pytest.mark.slow
def test_every_assignment_is_recognised_from_its_notebook_and_graded(tmp_path):
    """Each assignment's solution earns what its example says and its blank release nothing; a copy whose
    nbgrader metadata was stripped (as some Colab downloads are) is recognised from its definitions."""
    expected = {}
    for a in course.ids():
        for example in examples(a)[:2]:  # the solution and the blank release
            shutil.copy(example_path(a, example.name), tmp_path / f"{example.name}_{a}.ipynb")
            expected[f"{example.name}_{a}"] = (a, sum(expected_points(a, example).values()))
    stripped = nbformat.read(example_path(A, "solution"), as_version=4)
    for cell in stripped.cells:
        cell.metadata.pop("nbgrader", None)
    nbformat.write(stripped, tmp_path / "Copy of my notebook.ipynb")
    expected["Copy of my notebook"] = (A, expected["solution_" + A][1])
    results = grade(discover([tmp_path], course.ids()))
    assert not [r.error for r in results if r.error]
    assert {r.student: (r.assignment, r.earned) for r in results} == expected


EXAMPLES = [(a, e, example_path(a, e.name)) for a in course.ids() for e in examples(a)]


@pytest.fixture(scope="module")
def graded_examples():
    """Every example submission of every assignment, in one isolated batch."""
    results = grade([Submission(f"{a}-{e.name}", path, a) for a, e, path in EXAMPLES])
    return {r.student: r for r in results}


@pytest.mark.slow
@pytest.mark.parametrize(("assignment", "example", "path"), EXAMPLES, ids=[f"{a}-{e.name}" for a, e, _ in EXAMPLES])
def test_example_submissions_score_as_under_nbgrader(graded_examples, assignment, example, path):
    """The example states the tests it fails; the isolated grader must fail exactly those."""
    result = graded_examples[f"{assignment}-{example.name}"]
    failed = {o.spec.name.rsplit("::", 1)[-1] for o in result.outcomes if not o.passed}
    if not example.blank:
        assert failed == set(example.fails), "\n".join(
            f"{o.part}: {o.message}" for o in result.outcomes if not o.passed
        )
    got = {part: earned for part, (earned, _) in result.parts.items()}
    assert got == pytest.approx(expected_points(assignment, example)), "\n".join(
        f"{o.part}: {o.message}" for o in result.outcomes if not o.passed
    )


# ----------------------------------------------------------------------------- a sandbox that stops answering
class _StubZygote:
    """Stands in for a zygote in the lanes' own test: channels that nobody serves."""

    def open_channel(self):
        ours, theirs = socket.socketpair()
        self._keep = theirs
        return ours

    def use_channel(self, channel):
        self.channel = channel

    def close(self):
        pass


def _work(job, zygote):
    if job == "stops the sandbox":
        raise SandboxError("the sandbox's zygote process stopped answering")
    return job.upper()


def test_a_zygote_that_fails_is_replaced_and_only_the_submission_in_flight_twice_is_charged():
    started = []

    def start():
        started.append(_StubZygote())
        return started[-1]

    lanes = Lanes(
        start,
        _work,
        jobs=2,
        cap=lambda job: 30.0,
        failed=lambda job, reason, details: f"failed {job}",
        charge=lambda job, message: f"charged {job}",
    )
    try:
        results = lanes.run(["first", "stops the sandbox", "third", "fourth"])
    finally:
        lanes.close()
    assert results == ["FIRST", "charged stops the sandbox", "THIRD", "FOURTH"]
    assert lanes.restarts == 2 and len(started) == 3


def test_a_zygote_killed_while_grading_is_replaced_and_the_class_is_graded(tmp_path):
    for name in ("alice", "bob"):
        nbformat.write(build(A, Example("solution", "")), tmp_path / f"{name}.ipynb")
    subs = discover([tmp_path], [A])
    with GradingRun(FAST, Options(assignment=A)) as run:
        (first, _) = run.grade(subs)
        run._lanes.zygote.process.kill()  # the sandbox stops answering between two submissions
        results = run.grade(subs)
        restarts = run._lanes.restarts
    assert restarts == 1
    assert [r.earned for r in results] == [first.possible, first.possible] and first.earned == first.possible


def test_the_readme_lists_the_protections_the_run_prints():
    """One table of protections: what the run prints (Protections.text) is what the README lists."""
    readme = (REPO / "README.md").read_text()
    text = Protections(enabled=list(NAMES)).text()
    for protection in PROTECTIONS:
        assert f"| `{protection.name}` | {protection.stops} |" in readme, protection.name
        assert protection.stops in text
