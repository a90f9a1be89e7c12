"""Broken and hostile submissions of notebook 1, graded in ONE isolated batch with two lanes.

Each kind has its fair result: what its code earns when only its own graded definitions are run (hand-stated
for the hostile kinds, computed in-process from an equivalent honest notebook for the merely wrong ones). The
batch also holds correct submissions between the hostile ones; they must keep full marks, no file outside a
worker's own directory may change, and no submission may gain a point it did not earn.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import torch

from autograde.examples import Edit, Example, build
from autograde.harness import run_part
from autograde.isolation.batch import Submission, catalog, grade_batch, sandbox_for
from autograde.isolation.sandbox import Limits
from autograde.nbgrader_course import RELEASE, SOLUTIONS
from autograde.student import InProcessStudent

A = "01_self_attention_cnn"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (RELEASE / A / f"{A}.ipynb").is_file() or not (SOLUTIONS / A / f"{A}.ipynb").is_file(),
        reason="needs the notebook-1 release and solution (python -m autograde.release)",
    ),
]
LIMITS = Limits(timeout=2.0, memory_mb=512)
FORGED = Path("/tmp/autograde-forged-results.json")
FORWARD_START = "        N, C, H, W = x.shape\n"
RETURN = "        return x + out"


def solution(*edits: Edit) -> nbformat.NotebookNode:
    return build(A, Example("case", "", {}, edits=tuple(edits)))


def in_forward(code: str) -> Edit:
    """Insert ``code`` (one statement per line) at the start of Attention.forward."""
    body = "".join(f"        {line}\n" for line in code.splitlines())
    return Edit("attention", FORWARD_START, FORWARD_START + body)


def in_init(code: str) -> Edit:
    body = "".join(f"        {line}\n" for line in code.splitlines())
    old = "        super().__init__()\n        # TODO: define self.conv_query"
    return Edit(
        "attention", old, "        super().__init__()\n" + body + "        # TODO: define self.conv_query"
    )


def returning(expression: str) -> Edit:
    return Edit("attention", RETURN, f"        return {expression}")


def before_class(cell: str, name: str, code: str) -> Edit:
    return Edit(cell, f"class {name}(nn.Module):", f"{code}\n\n\nclass {name}(nn.Module):")


def cell_index(nb: nbformat.NotebookNode, grade_id: str) -> int:
    return next(
        i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


# ------------------------------------------------------------------------------------ notebook builders
def deleted(grade_id: str) -> nbformat.NotebookNode:
    nb = solution()
    del nb.cells[cell_index(nb, grade_id)]
    return nb


def duplicated_attention() -> nbformat.NotebookNode:
    """An earlier, broken copy of the answer cell; the later (correct) one is what the notebook defines."""
    nb = solution()
    broken = solution(in_forward("raise RuntimeError('first draft')"))
    draft = broken.cells[cell_index(broken, "attention")]
    draft.id = "attention-draft"
    nb.cells.insert(cell_index(nb, "attention"), draft)
    return nb


def renamed_grade_id() -> nbformat.NotebookNode:
    nb = solution()
    nb.cells[cell_index(nb, "attention")].metadata["nbgrader"]["grade_id"] = "my_attention"
    return nb


STEAL_REFERENCE = """
def _stolen_reference():
    import importlib, os, sys
    for entry in list(sys.path) + [os.getcwd()]:
        path = entry
        for _ in range(8):
            candidate = os.path.join(path, "autograde", "references", "attention_cnn.py")
            try:
                namespace = {}
                exec(compile(open(candidate).read(), candidate, "exec"), namespace)
                return namespace["Attention"]
            except Exception:
                pass
            sys.path.insert(0, path)
            try:
                return importlib.import_module("autograde.references.attention_cnn").Attention
            except Exception:
                pass
            finally:
                sys.path.remove(path)
            path = os.path.dirname(path)
    return None


REFERENCE = _stolen_reference()"""
USE_REFERENCE = """if REFERENCE is None:
    raise NotImplementedError('no reference to copy')
stolen = REFERENCE(C).to(x.dtype)
stolen.load_state_dict(self.state_dict())
return stolen(x)"""

STEAL_ANSWER = """
def _stolen_answer():
    import os, re, sys
    for entry in list(sys.path) + [os.getcwd(), os.environ.get("HOME", "")]:
        path = entry
        for _ in range(8):
            for name in ("autograde/graders", "graders"):
                try:
                    text = open(os.path.join(path, name, "test_01_self_attention_cnn.py")).read()
                    return int(re.search(r"ANSWER_Q1 = (\\d)", text).group(1))
                except Exception:
                    pass
            path = os.path.dirname(path)
    return 4


answer_q1 = _stolen_answer()"""

DETECT_GRADING = """
def _graded_answer():
    import os
    words = ("NBGRADER", "PYTEST", "AUTOGRADE", "GRADER")
    hints = [k for k in os.environ if any(w in k.upper() for w in words)]
    hints += [v for v in os.environ.values() if "autograde" in v or "graders" in v or "solutions" in v]
    return 2 if hints else 4


answer_q1 = _graded_answer()"""

FORGE = f'''
def _forge():
    import json, os
    fake = json.dumps({{"score": 1000, "tests": []}})
    for target in ("results.json", "grades.csv", "../results.json", "../../grades.csv",
                   "/autograder/results/results.json", "{FORGED}"):
        try:
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
            with open(target, "w") as f:
                f.write(fake)
        except Exception:
            pass
    return True


FORGED = _forge()'''

PATCH_TORCH = """torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isfinite = lambda t: torch.ones_like(t, dtype=torch.bool)
torch.testing.assert_close = lambda *a, **k: None"""

PATCH_GRADER = """import builtins, sys
for module in list(sys.modules.values()):
    if getattr(module, '__name__', '').startswith(('autograde', 'pytest', '_pytest')):
        for name in ('assert_matches', 'close', 'fail'):
            if hasattr(module, name):
                setattr(module, name, lambda *a, **k: True)
builtins.all = lambda *a, **k: True"""


@dataclass(frozen=True)
class Case:
    """A submission (a notebook, or raw bytes) and how its fair score is found.

    expected: "zeros", "full", "broken-attention" (no usable Attention: its part and the models get 0),
    "broken-forward" (Attention builds but never runs: only the structure checks pass), "no-q1",
    "no-sagan"; or "same-as:<honest case>" for code judged by what an honest equivalent earns in-process.
    """

    name: str
    make: Callable[[], nbformat.NotebookNode | bytes]
    expected: str


CASES = [
    Case("control_first", solution, "full"),
    Case("invalid_json", lambda: b'{"cells": [', "zeros"),
    Case("not_a_notebook", lambda: b"%PDF-1.4\n\x00\x01binary", "zeros"),
    Case("json_not_a_notebook", lambda: b"[1, 2, 3]", "zeros"),
    Case("empty_notebook", lambda: nbformat.v4.new_notebook(), "zeros"),
    Case("untouched_release", lambda: build(A, Example("blank", "", {}, blank=True)), "zeros"),
    Case("answer_cell_deleted", lambda: deleted("attention"), "broken-attention"),
    Case("answer_cell_duplicated", duplicated_attention, "full"),
    Case("grade_id_changed", renamed_grade_id, "full"),
    Case("hidden_test_cell_deleted", lambda: deleted("attention_tests"), "full"),
    Case(
        "class_renamed",
        lambda: solution(Edit("attention", "class Attention(", "class SelfAttention(")),
        "broken-attention",
    ),
    Case(
        "wrong_constructor_signature",
        lambda: solution(Edit("attention", "in_channels: int):", "in_channels: int, heads: int):")),
        "broken-attention",
    ),
    Case(
        "syntax_error",
        lambda: solution(Edit("attention", RETURN, "        return x + out)")),
        "broken-attention",
    ),
    Case(
        "exception_at_import",
        lambda: solution(
            Edit("attention", "class Attention(", "from einops import rearrange\n\n\nclass Attention("),
            in_forward("x = rearrange(x, 'n c h w -> n c h w')"),
        ),
        "broken-attention",
    ),
    Case(
        "endless_loop_at_definition",
        lambda: solution(
            before_class("sagan", "SAGANAttention", "K = 8\nwhile K > 0:\n    K += 1"),
            Edit("sagan", "k: int = 8", "k: int = K"),
        ),
        "no-sagan",
    ),
    Case("endless_loop_in_forward", lambda: solution(in_forward("while True:\n    pass")), "broken-forward"),
    Case(
        "memory_bomb",
        lambda: solution(in_forward("hog = []\nwhile True:\n    hog.append(bytearray(2**27))")),
        "broken-forward",
    ),
    Case(
        "sys_exit_at_definition",
        lambda: solution(
            Edit(
                "sagan",
                '    """The self-attention block of SAGAN',
                '    sys.exit(3)\n    """The self-attention block of SAGAN',
            )
        ),
        "no-sagan",
    ),
    Case("os_exit_in_forward", lambda: solution(in_forward("import os\nos._exit(0)")), "broken-forward"),
    Case(
        "fork_bomb", lambda: solution(in_forward("import os\nwhile True:\n    os.fork()")), "broken-forward"
    ),
    Case(
        "spawns_processes",
        lambda: solution(
            in_forward("import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 600 & sleep 600'])")
        ),
        "broken-forward",
    ),
    Case(
        "kills_other_processes",
        lambda: solution(
            in_forward(
                "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)"
            )
        ),
        "broken-forward",
    ),
    Case(
        "huge_output",
        lambda: solution(in_init("print('x' * 50_000_000)"), in_forward("print('y' * 1_000_000)")),
        "full",
    ),
    Case("control_middle", solution, "full"),
    Case("nan_outputs", lambda: solution(returning("x + out * float('nan')")), "same-as:nan_outputs"),
    Case("inf_outputs", lambda: solution(returning("x + out + float('inf')")), "same-as:inf_outputs"),
    Case("wrong_dtype", lambda: solution(returning("(x + out).float()")), "same-as:wrong_dtype"),
    Case("cuda_hard_coded", lambda: solution(returning("x + out.to('cuda')")), "broken-forward"),
    Case("constant_output", lambda: solution(returning("x * 0.0")), "same-as:constant_output"),
    Case(
        "forbidden_builtin",
        lambda: solution(
            returning("x + F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(N, C, H, W)")
        ),
        "same-as:forbidden_builtin",
    ),
    Case(
        "monkeypatches_torch",
        lambda: solution(in_init(PATCH_TORCH), returning("x * 0.0")),
        "same-as:constant_output",
    ),
    Case(
        "monkeypatches_grader_pytest_builtins",
        lambda: solution(in_init(PATCH_GRADER), returning("x * 0.0")),
        "same-as:constant_output",
    ),
    Case(
        "imports_the_references",
        lambda: solution(
            Edit("attention", "class Attention(", STEAL_REFERENCE + "\n\n\nclass Attention("),
            in_forward(USE_REFERENCE),
        ),
        "broken-forward",
    ),
    Case("reads_the_grader_files", lambda: solution(Edit("q1", "answer_q1 = 2", STEAL_ANSWER)), "no-q1"),
    Case(
        "forges_results_files",
        lambda: solution(
            Edit("attention", "class Attention(", FORGE + "\n\n\nclass Attention("), in_init("assert FORGED")
        ),
        "full",
    ),
    Case(
        "detects_grading_from_environment",
        lambda: solution(Edit("q1", "answer_q1 = 2", DETECT_GRADING)),
        "no-q1",
    ),
    Case("slow_but_correct", lambda: solution(in_forward("import time\ntime.sleep(0.1)")), "full"),
    Case("control_last", solution, "full"),
]
HOSTILE = [c for c in CASES if not c.name.startswith("control")]


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@functools.cache
def honest_case_points(name: str) -> dict[str, float]:
    return honest_points(next(c for c in CASES if c.name == name).make())


def honest_points(nb: nbformat.NotebookNode) -> dict[str, float]:
    """What the notebook's answer cells earn when run in this process (as nbgrader would), per part."""
    namespace: dict = {}
    exec(
        "import math, sys\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
        "from course_utils import Flatten",
        namespace,
    )
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "vanilla_cnn"):
            exec(cell.source, namespace)
    with one_thread():
        report = run_part(A, None, InProcessStudent(namespace, time_limit=10))
    points: dict[str, float] = {}
    for o in report.outcomes:
        points[o.part] = points.get(o.part, 0.0) + o.earned
    return points


@pytest.fixture(scope="module")
def cat():
    return catalog(A)


def expected_points(case: Case, cat) -> dict[str, float]:
    full = cat.parts

    def passing(part: str, words: str) -> float:
        return sum(t.points for t in cat.tests if t.part == part and words in t.description)

    if case.expected.startswith("same-as:"):
        return honest_case_points(case.expected.split(":", 1)[1])
    return {
        "zeros": {p: 0.0 for p in full},
        "full": dict(full),
        "broken-attention": {**full, "attention": 0.0, "models": 0.0},
        "broken-forward": {
            **full,
            "attention": passing("attention", "conv_query, conv_key, conv_value"),
            "models": passing("models", "specified layers"),
        },
        "no-q1": {**full, "q1": 0.0},
        "no-sagan": {**full, "sagan": 0.0},
    }[case.expected]


def grade_cases(folder: Path, cases: list[Case], cat, namespaces: bool = True):
    """Grade ``cases`` in one batch with two lanes; (results by case name, wall seconds)."""
    for case in cases:
        made = case.make()
        path = folder / f"{case.name}.ipynb"
        path.write_bytes(made) if isinstance(made, bytes) else nbformat.write(made, path)
    FORGED.unlink(missing_ok=True)
    submissions = [Submission(c.name, folder / f"{c.name}.ipynb", A) for c in cases]
    start = time.monotonic()
    zygote = sandbox_for(submissions, LIMITS, namespaces=namespaces)
    try:
        results = grade_batch([(s, A) for s in submissions], {A: cat}, zygote, jobs=2)
    finally:
        zygote.close()
    return {r.student: r for r in results}, time.monotonic() - start


@pytest.fixture(scope="module")
def graded(tmp_path_factory, cat):
    """Every case in one batch, two lanes, with every layer of the sandbox the machine allows."""
    return grade_cases(tmp_path_factory.mktemp("class"), CASES, cat)


# Where Linux namespaces are not allowed (e.g. in Docker, so on Gradescope), resource limits and the audit
# hook alone must hold against the attempts to escape.
ESCAPES = (
    "control_first",
    "imports_the_references",
    "reads_the_grader_files",
    "forges_results_files",
    "fork_bomb",
    "spawns_processes",
    "kills_other_processes",
    "detects_grading_from_environment",
    "memory_bomb",
    "os_exit_in_forward",
    "monkeypatches_grader_pytest_builtins",
    "control_last",
)


def test_at_least_25_kinds_of_broken_or_hostile_submissions():
    assert len({c.name for c in HOSTILE}) == len(HOSTILE) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_submission_gets_its_fair_score(graded, cat, case):
    result = graded[0][case.name]
    got = {part: earned for part, (earned, _) in result.parts.items()}
    want = expected_points(case, cat)
    assert got == pytest.approx(want), "\n".join(
        f"{t.part}: {t.description}: {t.message}" for t in result.tests
    )


def test_no_submission_gains_a_point_it_did_not_earn(graded, cat):
    for case in CASES:
        result = graded[0][case.name]
        want = expected_points(case, cat)
        for part, (earned, possible) in result.parts.items():
            assert 0 <= earned <= want[part] <= possible, (case.name, part)


def test_the_batch_loses_nothing_and_stays_fast(graded, cat):
    results, seconds = graded
    assert len(results) == len(CASES)
    for name in ("control_first", "control_middle", "control_last"):
        assert results[name].earned == sum(cat.parts.values()), results[name].tests
    assert seconds < 180, f"the batch took {seconds:.0f} s"


def test_forged_files_do_not_appear(graded):
    assert not FORGED.exists()
    assert not Path("/autograder/results/results.json").exists()


def test_messages_name_the_problem(graded):
    results = graded[0]

    def messages(name: str) -> str:
        return "\n".join([t.message for t in results[name].tests] + results[name].problems)

    assert "did not finish within 2 s" in messages("endless_loop_in_forward")
    assert "did not finish" in messages("endless_loop_at_definition")
    assert "syntax error on line" in messages("syntax_error")
    assert "No module named 'einops'" in messages("exception_at_import")
    assert "only runs on CUDA" in messages("cuda_hard_coded")
    assert "ended the grader's worker process" in messages("os_exit_in_forward")
    assert "sandbox does not allow os.fork" in messages("fork_bomb")
    assert "not valid notebook JSON" in messages("invalid_json")
    assert "not a Jupyter notebook" in messages("json_not_a_notebook")
    assert any(k == "timeout" for k, _ in results["endless_loop_in_forward"].incidents)


def test_monkeypatching_torch_earns_points_in_the_kernel_but_not_in_the_sandbox(graded, cat):
    """The same submission, graded the nbgrader way (in its own process), fools the comparison."""
    saved = {name: getattr(torch, name) for name in ("allclose", "equal", "isfinite")}
    saved_assert_close = torch.testing.assert_close
    try:
        in_kernel = honest_points(next(c for c in CASES if c.name == "monkeypatches_torch").make())
    finally:
        for name, fn in saved.items():
            setattr(torch, name, fn)
        torch.testing.assert_close = saved_assert_close
    isolated = graded[0]["monkeypatches_torch"]
    assert sum(in_kernel.values()) > isolated.earned
    assert isolated.parts["attention"][0] < cat.parts["attention"]


def test_without_namespaces_the_escapes_still_fail(tmp_path, cat):
    cases = [c for c in CASES if c.name in ESCAPES]
    results, _ = grade_cases(tmp_path, cases, cat, namespaces=False)
    for case in cases:
        got = {part: earned for part, (earned, _) in results[case.name].parts.items()}
        assert got == pytest.approx(expected_points(case, cat)), case.name
    assert not FORGED.exists()
