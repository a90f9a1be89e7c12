"""Broken, hostile and unusual-but-valid submissions, graded in ONE isolated batch with two lanes.

Each case has its fair result: what its code earns when only its own graded definitions run (stated for the
hostile kinds, computed in-process from an honest equivalent for the merely wrong ones). The batch also
holds correct submissions between the hostile ones; they must keep full marks, nothing outside the workers'
scratch folders may change (the repository, the submissions, the course data and the Python installation are
fingerprinted before and after), and no submission may gain a point it did not earn.

Where a hostile notebook's answer depends on whether its attack worked (``answer_q1 = 2 if not ESCAPED else
3``), its score itself proves that the attack failed. The batch runs with Linux namespaces and without them;
the escapes also run through the Gradescope package's ``run_autograder``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import torch

from autograde import course, eval_data, settings
from autograde.catalog import catalog
from autograde.examples import Edit, examples
from autograde.harness import Context, run_part
from autograde.isolation.batch import Submission, grade_batch, sandbox_for
from autograde.notebook_source import graded_source
from autograde.outputs import feedback_markdown, summary
from autograde.results import Kind
from autograde.student import InProcessStudent
from tests.submissions import (
    A1,
    A2,
    A4,
    RETURN,
    answer_depends_on,
    attached_and_configured,
    before_class,
    black_style_mha,
    blank,
    deleted,
    duplicated_attention,
    in_forward,
    in_init,
    ipython_syntax,
    renamed_grade_id,
    returning,
    solution,
    statement_chain,
    with_cell_after,
)

pytestmark = pytest.mark.slow
LIMITS = settings.Settings(timeout=2.0, memory_mb=512, submission_seconds=25.0)
REPO = course.REPO
FORGED = Path("/tmp/autograde-forged-results.json")
CLASS_FOLDER = "class"  # the batch's submissions are written to tmp/class/<case>.ipynb


# ---------------------------------------------------------------------------------------- attacks
STEAL_REFERENCE = f"""
def _stolen_reference():
    import importlib.util
    for path in ({str(course.get(A1).directory / "reference.py")!r},):
        try:
            spec = importlib.util.spec_from_file_location("stolen", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.Attention
        except Exception:
            pass
    try:
        from autograde.assignments.self_attention_cnn.reference import Attention
        return Attention
    except Exception:
        return None


REFERENCE = _stolen_reference()"""
USE_REFERENCE = """if REFERENCE is None:
    raise NotImplementedError('no reference to copy')
stolen = REFERENCE(C).to(x.dtype)
stolen.load_state_dict(self.state_dict())
return stolen(x)"""

STEAL_ANSWER = f"""def _stolen_answer():
    import re
    for path in ({str(course.get(A1).grader_path)!r},):
        try:
            return int(re.search(r"ANSWER_Q1 = (\\\\d)", open(path).read()).group(1))
        except Exception:
            pass
    return 4


answer_q1 = _stolen_answer()"""

MMAP_THE_GRADER = f"""def _read_through_mmap():
    import re
    import torch
    for path in ({str(course.get(A1).grader_path)!r},):
        try:
            data = torch.UntypedStorage.from_file(path, shared=False, nbytes=4000)
            return int(re.search(rb"ANSWER_Q1 = (\\\\d)", bytes(data)).group(1))
        except Exception:
            pass
    return 4


answer_q1 = _read_through_mmap()"""

DETECT_GRADING = """def _graded_answer():
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
    module_name = getattr(module, '__name__', '')
    if 'autograde' in module_name or module_name.startswith(('pytest', '_pytest')):
        for name in ('assert_matches', 'close', 'fail', 'checked_tensor', 'error'):
            if hasattr(module, name):
                setattr(module, name, lambda *a, **k: True)
builtins.all = lambda *a, **k: True"""


def escape_then_write(targets: Callable[[Path], list[Path]]) -> Callable[[Path], str]:
    """The attack that defeated the old audit hook: rewrite every reachable closure through a traceback,
    then write to ``targets`` (given the batch's folder). ESCAPED is True when any write succeeded."""

    def attack(folder: Path) -> str:
        paths = [str(p) for p in targets(folder)]
        return f"""def _escape():
    import sys
    try:
        raise RuntimeError()
    except RuntimeError as exc:
        frame = exc.__traceback__.tb_frame
        for name, module in list(sys.modules.items()):  # the sandbox's own functions (the old hook lived there)
            if "confine" not in name and "hook" not in name:
                continue
            for value in list(getattr(module, "__dict__", {{}}).values()):
                closure = getattr(value, "__closure__", None)
                for cell in closure if isinstance(closure, tuple) else ():
                    try:
                        cell.cell_contents = ()
                    except Exception:
                        pass
    wrote = False
    for path in {paths!r}:
        try:
            with open(path, "a") as f:
                f.write("\\nraise SystemExit('planted by a submission')\\n")
            wrote = True
        except Exception:
            pass
    return wrote


ESCAPED = _escape()"""

    return attack


def classmates_and_course(folder: Path) -> list[Path]:
    return [
        folder / "control_first.ipynb",
        REPO / "course_utils" / "__init__.py",
        course.get(A1).grader_path,
        course.get(A1).source_notebook,
        REPO / "autograde" / "harness.py",
    ]


def shared_mmap_write(folder: Path) -> str:
    target = folder / "control_first.ipynb"
    return f"""def _mmap_write():
    import torch
    try:
        storage = torch.UntypedStorage.from_file({str(target)!r}, shared=True, nbytes=16)
        storage.fill_(120)
        return True
    except Exception:
        return False


ESCAPED = _mmap_write()"""


def persist_into_course_utils(folder: Path) -> str:
    return """def _persist():
    import course_utils, os
    wrote = False
    for path in (course_utils.__file__, os.path.join(os.path.dirname(course_utils.__file__), "runtime.py")):
        try:
            with open(path, "a") as f:
                f.write("\\nimport os; os.environ['PWNED'] = '1'\\n")
            wrote = True
        except Exception:
            pass
    return wrote


ESCAPED = _persist()"""


def replace_the_test_data(folder: Path) -> str:
    data = folder.parent / "data" / "cifar-10-batches-py" / "test_batch"
    return f"""import os, pickle


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/autograde-pwned",))


def _replace():
    try:
        with open({str(data)!r}, "wb") as f:
            pickle.dump({{"data": _Payload(), "labels": []}}, f)
        return True
    except Exception:
        return False


ESCAPED = _replace()"""


def fake_setup_failure(folder: Path) -> str:  # noqa: ARG001
    return "with open('.sandbox-setup-error', 'w') as f:\n    f.write('run pip install evil')\nimport os\nos._exit(70)"


STRIDE0_REPLY = """import sys
for name, module in list(sys.modules.items()):
    if name.endswith('isolation.worker.serve'):
        module._wire = lambda value, torch, depth=0: {'outputs': [torch.zeros(1).expand(10**7, 10**7)]}"""

MARKDOWN_INJECTION = (
    "raise ValueError('**Score: 19 / 19**\\n\\n# Full marks\\n\\n## attention: 10 / 10\\n"
    + "```\\n<script>alert(1)</script>')"
)
FAKE_GRADER_ERROR = "raise RuntimeError('the grader could not check this (KeyError: x); tell your instructor.')"

# notebook 2: forbidden built-ins, however they are reached, and a method that only shares their name
MHA_CALL = "out, weights = scaled_dot_product_attention(q, k, v, attn_mask, self.attn_drop)  # (N, H, S, D)"
BY_GETATTR = """out = getattr(F, "scaled_dot_" + "product_attention")(q, k, v, attn_mask=attn_mask)
        weights = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), dim=-1)"""
BY_ATEN = """out = torch.ops.aten._scaled_dot_product_attention_math(q, k, v, attn_mask=attn_mask)[0]
        weights = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), dim=-1)"""
OWN_METHOD = "out, weights = self.scaled_dot_product_attention(q, k, v, attn_mask)  # (N, H, S, D)"
OWN_METHOD_DEF = """
    def scaled_dot_product_attention(self, q, k, v, mask):
        return scaled_dot_product_attention(q, k, v, mask, self.attn_drop)

    def forward(self, query, key, value, attn_mask=None):"""


# ------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """A submission (a notebook, raw bytes, or a notebook made from the batch's folder) and its fair score.

    expected: "zeros", "full", "broken-attention" (no usable Attention: its part gets 0; the models, graded with
    the grader's stand-in for Attention, keep their points), "broken-forward" (Attention builds but never runs:
    only its structure checks pass), "no-q1", "no-sagan",
    "budget" (checked separately), or "same-as:<case>" / "example:<name>" for code judged by what an honest
    equivalent earns in-process, or by an example's stated failures.
    """

    name: str
    make: Callable[[Path], nbformat.NotebookNode | bytes]
    expected: str
    assignment: str = A1


def attack_case(name: str, attack: Callable[[Path], str]) -> Case:
    return Case(name, lambda folder: solution(answer_depends_on(attack(folder))), "full")


def case(name: str, make: Callable[[], nbformat.NotebookNode | bytes], expected: str, assignment: str = A1) -> Case:
    return Case(name, lambda folder: make(), expected, assignment)


CASES = [
    case("control_first", solution, "full"),
    case("invalid_json", lambda: b'{"cells": [', "zeros"),
    case("not_a_notebook", lambda: b"%PDF-1.4\n\x00\x01binary", "zeros"),
    case("json_not_a_notebook", lambda: b"[1, 2, 3]", "zeros"),
    case("empty_notebook", lambda: nbformat.v4.new_notebook(), "zeros"),
    case("untouched_release", lambda: blank(A1), "zeros"),
    case("answer_cell_deleted", lambda: deleted("attention"), "broken-attention"),
    case("answer_cell_duplicated", duplicated_attention, "full"),
    case("grade_id_changed", renamed_grade_id, "full"),
    case("hidden_test_cell_deleted", lambda: deleted("attention_tests"), "full"),
    case(
        "class_renamed",
        lambda: solution(Edit("attention", "class Attention(", "class SelfAttention(")),
        "broken-attention",
    ),
    case(
        "wrong_constructor_signature",
        lambda: solution(Edit("attention", "in_channels: int):", "in_channels: int, heads: int):")),
        "broken-attention",
    ),
    case("syntax_error", lambda: solution(Edit("attention", RETURN, "        return x + out)")), "broken-attention"),
    case(
        "exception_at_import",
        lambda: solution(
            Edit("attention", "class Attention(", "from einops import rearrange\n\n\nclass Attention("),
            in_forward("x = rearrange(x, 'n c h w -> n c h w')"),
        ),
        "broken-attention",
    ),
    case(
        "endless_loop_at_definition",
        lambda: solution(
            before_class("sagan", "SAGANAttention", "K = 8\nwhile K > 0:\n    K += 1"),
            Edit("sagan", "k: int = 8", "k: int = K"),
        ),
        "no-sagan",
    ),
    case("endless_loop_in_forward", lambda: solution(in_forward("while True:\n    pass")), "broken-forward"),
    case(
        "memory_bomb",
        lambda: solution(in_forward("hog = []\nwhile True:\n    hog.append(bytearray(2**27))")),
        "broken-forward",
    ),
    case(
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
    case("os_exit_in_forward", lambda: solution(in_forward("import os\nos._exit(0)")), "broken-forward"),
    Case(
        "fakes_a_sandbox_setup_failure",
        lambda folder: solution(in_forward(fake_setup_failure(folder))),
        "broken-forward",
    ),
    case("fork_bomb", lambda: solution(in_forward("import os\nwhile True:\n    os.fork()")), "broken-forward"),
    case(
        "spawns_processes",
        lambda: solution(in_forward("import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 600 & sleep 600'])")),
        "broken-forward",
    ),
    case(
        "kills_other_processes",
        lambda: solution(
            in_forward("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)")
        ),
        "broken-forward",
    ),
    case(
        "huge_output",
        lambda: solution(in_init("print('x' * 50_000_000)"), in_forward("print('y' * 1_000_000)")),
        "full",
    ),
    case("control_middle", solution, "full"),
    case("nan_outputs", lambda: solution(returning("x + out * float('nan')")), "same-as:nan_outputs"),
    case("inf_outputs", lambda: solution(returning("x + out + float('inf')")), "same-as:inf_outputs"),
    case("wrong_dtype", lambda: solution(returning("(x + out).float()")), "same-as:wrong_dtype"),
    case("cuda_hard_coded", lambda: solution(returning("x + out.to('cuda')")), "broken-forward"),
    case("constant_output", lambda: solution(returning("x * 0.0")), "same-as:constant_output"),
    case(
        "forbidden_builtin",
        lambda: solution(returning("x + F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(N, C, H, W)")),
        "same-as:forbidden_builtin",
    ),
    case(
        "monkeypatches_torch", lambda: solution(in_init(PATCH_TORCH), returning("x * 0.0")), "same-as:constant_output"
    ),
    case(
        "monkeypatches_grader_pytest_builtins",
        lambda: solution(in_init(PATCH_GRADER), returning("x * 0.0")),
        "same-as:constant_output",
    ),
    case(
        "imports_the_references",
        lambda: solution(
            Edit("attention", "class Attention(", STEAL_REFERENCE + "\n\n\nclass Attention("), in_forward(USE_REFERENCE)
        ),
        "broken-forward",
    ),
    case("reads_the_grader_files", lambda: solution(Edit("q1", "answer_q1 = 2", STEAL_ANSWER)), "no-q1"),
    case("reads_the_grader_through_mmap", lambda: solution(Edit("q1", "answer_q1 = 2", MMAP_THE_GRADER)), "no-q1"),
    attack_case("escapes_then_overwrites_classmates_and_grader", escape_then_write(classmates_and_course)),
    attack_case("writes_a_classmate_through_a_shared_mmap", shared_mmap_write),
    attack_case("persists_into_course_utils", persist_into_course_utils),
    case(
        "forges_results_files",
        lambda: solution(
            Edit("attention", "class Attention(", FORGE + "\n\n\nclass Attention("), in_init("assert FORGED")
        ),
        "full",
    ),
    case("detects_grading_from_environment", lambda: solution(Edit("q1", "answer_q1 = 2", DETECT_GRADING)), "no-q1"),
    case("sends_a_stride0_view", lambda: solution(in_forward(STRIDE0_REPLY)), "broken-forward"),
    case("statement_chain", statement_chain, "full"),
    case("markdown_in_an_error", lambda: solution(in_forward(MARKDOWN_INJECTION)), "broken-forward"),
    case("claims_a_grader_error", lambda: solution(in_forward(FAKE_GRADER_ERROR)), "broken-forward"),
    case("slow_but_correct", lambda: solution(in_forward("import time\ntime.sleep(0.1)")), "full"),
    case("sleeps_just_under_the_timeout", lambda: solution(in_forward("import time\ntime.sleep(1.8)")), "budget"),
    case("ipython_syntax", ipython_syntax, "full"),
    case("methods_attached_after_the_class", attached_and_configured, "full"),
    case("black_formatted_mha", black_style_mha, "full", A2),
    case(
        "builtin_by_getattr",
        lambda: solution(Edit("mha", MHA_CALL, BY_GETATTR), assignment=A2),
        "example:builtin_attention",
        A2,
    ),
    case(
        "builtin_by_aten_op",
        lambda: solution(Edit("mha", MHA_CALL, BY_ATEN), assignment=A2),
        "example:builtin_attention",
        A2,
    ),
    case(
        "own_method_named_like_the_builtin",
        lambda: solution(
            Edit("mha", MHA_CALL, OWN_METHOD),
            Edit("mha", "\n    def forward(self, query, key, value, attn_mask=None):", OWN_METHOD_DEF),
            assignment=A2,
        ),
        "full",
        A2,
    ),
    Case(
        "replaces_the_evaluation_data",
        lambda folder: with_cell_after(
            "vit", replace_the_test_data(folder) + "\nanswer_q_cost = 1 if ESCAPED else 1", blank(A4)
        ),
        "zeros",
        A4,
    ),
    case("control_last", solution, "full"),
]
HOSTILE = [c for c in CASES if not c.name.startswith("control")]
# The escapes, run once more through the Gradescope package (one run_autograder per submission).
GRADESCOPE_CASES = (
    "escapes_then_overwrites_classmates_and_grader",
    "reads_the_grader_through_mmap",
    "fakes_a_sandbox_setup_failure",
    "forges_results_files",
)


# ------------------------------------------------------------------------------------ fair scores
def in_process_points(assignment: str, nb: nbformat.NotebookNode) -> dict[str, float]:
    """What the notebook's graded definitions earn when run in this process (as nbgrader would), per part."""
    cat = catalog(assignment)
    source = graded_source(nb, cat.names, cat.locked_sources)
    namespace: dict = {"__name__": "__main__"}
    for chunk in source.chunks:
        body = ast.parse(chunk.source).body
        for i in chunk.statements:
            try:
                exec(compile(ast.Module(body=[body[i]], type_ignores=[]), chunk.filename, "exec"), namespace)
            except Exception:
                break
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = run_part(assignment, None, Context(InProcessStudent(namespace, time_limit=10)))
    finally:
        torch.set_num_threads(threads)
    points: dict[str, float] = {}
    for o in report.outcomes:
        points[o.part] = points.get(o.part, 0.0) + o.earned
    return points


@functools.cache
def honest_case_points(name: str) -> dict[str, float]:
    c = next(c for c in CASES if c.name == name)
    return in_process_points(c.assignment, c.make(Path("/nonexistent")))


def expected_points(c: Case) -> dict[str, float]:
    cat = catalog(c.assignment)
    full = cat.parts

    def passing(part: str, words: str) -> float:
        return sum(t.points for t in cat.tests if t.part == part and words in t.description)

    if c.expected.startswith("same-as:"):
        return honest_case_points(c.expected.split(":", 1)[1])
    if c.expected.startswith("example:"):
        name = c.expected.split(":", 1)[1]
        return example_points(c.assignment, next(e for e in examples(c.assignment) if e.name == name))
    return {
        "zeros": {p: 0.0 for p in full},
        "full": dict(full),
        # the models are graded with the grader's stand-in for Attention: a broken Attention costs its own part only
        "broken-attention": {**full, "attention": 0.0},
        "broken-forward": {**full, "attention": passing("attention", "conv_query, conv_key, conv_value")},
        "no-q1": {**full, "q1": 0.0},
        "no-sagan": {**full, "sagan": 0.0},
    }[c.expected]


def example_points(assignment, example):
    from autograde.examples import expected_points as points

    return points(assignment, example)


# ------------------------------------------------------------------------------------ fingerprints
def _content_fingerprint(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not any(part in skip for part in path.relative_to(root).parts):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _stat_fingerprint(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def fingerprint(tmp: Path) -> dict:
    """Everything a worker must not change: the repository, the batch's submissions and course data (by
    content), and the Python installation (by size and modification time)."""
    from autograde.isolation.sandbox import site_packages, standard_library

    return {
        "repository": _content_fingerprint(
            REPO, (".git", ".venv", "__pycache__", ".pytest_cache", "grading", "outputs")
        ),
        "batch": _content_fingerprint(tmp),
        "python": {p: _stat_fingerprint(Path(p)) for p in [*site_packages(), *standard_library()]},
    }


# ------------------------------------------------------------------------------------------ the batch
def write_cases(folder: Path, cases: list[Case]) -> list[Submission]:
    folder.mkdir(parents=True, exist_ok=True)
    subs = []
    for c in cases:
        made = c.make(folder)
        path = folder / f"{c.name}.ipynb"
        path.write_bytes(made) if isinstance(made, bytes) else nbformat.write(made, path)
        subs.append(Submission(c.name, path, c.assignment))
    return subs


def course_data_copy(tmp: Path) -> Path:
    """A writable copy of the CIFAR-10 subset for the batch ($COURSE_DATA), so that an attack on it can be
    seen; an empty stand-in when the test data is absent (the notebook-4 case then has no data to attack)."""
    data = tmp / "data"
    source = Path(os.environ.get("COURSE_TEST_DATA") or REPO.parent / "shared" / "data") / "cifar10-subset"
    if (source / "cifar-10-batches-py").is_dir():
        shutil.copytree(source / "cifar-10-batches-py", data / "cifar-10-batches-py")
    else:
        (data / "cifar-10-batches-py").mkdir(parents=True)
        (data / "cifar-10-batches-py" / "test_batch").write_bytes(b"stand-in")
    return data


def grade_cases(tmp: Path, cases: list[Case], **options):
    """Grade ``cases`` in one batch with two lanes; (results by case name, wall seconds, fingerprints)."""
    data = course_data_copy(tmp)
    subs = write_cases(tmp / CLASS_FOLDER, cases)
    FORGED.unlink(missing_ok=True)
    Path("/tmp/autograde-pwned").unlink(missing_ok=True)
    previous = os.environ.get("COURSE_DATA")
    os.environ["COURSE_DATA"] = str(data)
    try:
        before = fingerprint(tmp)
        start = time.monotonic()
        resources = {}
        try:
            resources[eval_data.RESOURCE] = eval_data.prepare()
        except eval_data.EvaluationDataUnavailable:
            pass
        zygote = sandbox_for(subs, LIMITS, **options)
        try:
            catalogs = {a: catalog(a) for a in {c.assignment for c in cases}}
            results = grade_batch([(s, s.assignment) for s in subs], catalogs, zygote, jobs=2, resources=resources)
        finally:
            zygote.close()
        seconds = time.monotonic() - start
        after = fingerprint(tmp)
    finally:
        if previous is None:
            os.environ.pop("COURSE_DATA", None)
        else:
            os.environ["COURSE_DATA"] = previous
    return {r.student: r for r in results}, seconds, (before, after)


@pytest.fixture(scope="module", params=["namespaces", "no namespaces"])
def graded(request, tmp_path_factory):
    """Every case in one batch, two lanes; with every protection the machine allows, then without namespaces."""
    options = {} if request.param == "namespaces" else {"disable": ("namespaces",)}
    return grade_cases(tmp_path_factory.mktemp("batch"), CASES, **options)


# ------------------------------------------------------------------------------------------ tests
def test_the_suite_covers_every_class_of_the_hardening_issue():
    names = {c.name for c in HOSTILE}
    assert len(names) == len(HOSTILE) >= 50


@pytest.mark.parametrize("c", [c for c in CASES if c.expected != "budget"], ids=lambda c: c.name)
def test_each_submission_gets_its_fair_score(graded, c):
    result = graded[0][c.name]
    got = {part: earned for part, (earned, _) in result.parts.items()}
    assert got == pytest.approx(expected_points(c)), (
        "\n".join(f"{o.part}: {o.description}: {o.message}" for o in result.outcomes if not o.passed)
        + "\n"
        + "\n".join(result.problems)
    )


def test_no_submission_gains_a_point_it_did_not_earn(graded):
    for c in CASES:
        if c.expected == "budget":
            continue
        result = graded[0][c.name]
        want = expected_points(c)
        for part, (earned, possible) in result.parts.items():
            assert 0 <= earned <= want[part] <= possible, (c.name, part)


def test_the_batch_loses_nothing_changes_nothing_and_stays_fast(graded):
    results, seconds, (before, after) = graded
    assert len(results) == len(CASES)  # one row per submitted file, whatever the file did
    for name in ("control_first", "control_middle", "control_last"):
        assert results[name].earned == results[name].possible, results[name].outcomes
    assert before["batch"] == after["batch"], "a submission or the course data changed"
    assert before["repository"] == after["repository"], "a file of the repository changed"
    assert before["python"] == after["python"], "a file of the Python installation changed"
    assert not FORGED.exists() and not Path("/autograder/results/results.json").exists()
    assert not Path("/tmp/autograde-pwned").exists()
    assert seconds < 240, f"the batch took {seconds:.0f} s"


def test_a_submission_that_sleeps_is_stopped_by_its_time_budget(graded):
    result = graded[0]["sleeps_just_under_the_timeout"]
    assert any(i.kind == Kind.BUDGET.value for i in result.incidents)
    assert 0 < result.earned < result.possible
    assert result.seconds < LIMITS.submission_seconds + 3 * (LIMITS.timeout + LIMITS.grace) + 30
    assert any(o.kind is Kind.BUDGET for o in result.outcomes)


def test_messages_name_the_problem(graded):
    results = graded[0]

    def messages(name: str) -> str:
        return "\n".join([o.message for o in results[name].outcomes] + results[name].problems)

    assert "did not finish within 2 s" in messages("endless_loop_in_forward")
    assert "did not finish" in messages("endless_loop_at_definition")
    assert "syntax error on line" in messages("syntax_error")
    assert "No module named 'einops'" in messages("exception_at_import")
    assert "only runs on CUDA" in messages("cuda_hard_coded")
    assert "ended the grader's worker process" in messages("os_exit_in_forward")
    assert "exited with code 70" in messages("fakes_a_sandbox_setup_failure")
    assert "Operation not permitted" in messages("fork_bomb")
    assert "cannot read" in messages("sends_a_stride0_view")
    assert "was not read" in messages("statement_chain")
    assert "not valid notebook JSON" in messages("invalid_json")
    assert "not a Jupyter notebook" in messages("json_not_a_notebook")
    assert "F.scaled_dot_product_attention" in messages("builtin_by_getattr")
    assert any(i.kind == "timeout" for i in results["endless_loop_in_forward"].incidents)


def test_student_text_never_decides_a_kind_nor_poses_as_feedback(graded):
    results = graded[0]
    claims = results["claims_a_grader_error"]
    # Every pointed check that ran the raising forward says "error in student code"; the no-points diagnostic that
    # blames the student's own Attention for a model's difference is the grader's own finding (a wrong result).
    assert {o.kind for o in claims.outcomes if not o.passed and o.points} <= {Kind.STUDENT_ERROR}
    assert "grader error" not in summary([claims], 1.0)["failed_checks_by_kind"]
    text = feedback_markdown(results["markdown_in_an_error"])
    outside_fences = re.sub(r"(`{3,})text\n.*?\n *\1", "", text, flags=re.S)
    assert outside_fences.count("Score:") == 1 and "# Full marks" not in outside_fences
    assert "<script>" not in outside_fences


def test_monkeypatching_torch_earns_points_in_the_kernel_but_not_in_the_sandbox(graded):
    """The same submission, graded the nbgrader way (in its own process), fools the comparison."""
    saved = {name: getattr(torch, name) for name in ("allclose", "equal", "isfinite")}
    saved_assert_close = torch.testing.assert_close
    try:
        c = next(c for c in CASES if c.name == "monkeypatches_torch")
        in_kernel = in_process_points(A1, c.make(Path("/nonexistent")))
    finally:
        for name, fn in saved.items():
            setattr(torch, name, fn)
        torch.testing.assert_close = saved_assert_close
    isolated = graded[0]["monkeypatches_torch"]
    assert sum(in_kernel.values()) > isolated.earned
    assert isolated.parts["attention"][0] < catalog(A1).parts["attention"]


@pytest.fixture(scope="module")
def gradescope_package(tmp_path_factory) -> Path:
    from autograde.gradescope import build_autograder_zip

    return build_autograder_zip(tmp_path_factory.mktemp("zip") / "autograder.zip", A1, LIMITS)


@pytest.mark.parametrize("name", GRADESCOPE_CASES)
def test_the_escapes_fail_through_gradescopes_run_autograder(gradescope_package, tmp_path, name):
    c = next(c for c in CASES if c.name == name)
    root = tmp_path / "autograder"
    with zipfile.ZipFile(gradescope_package) as z:
        z.extractall(root / "source")
    (root / "submission").mkdir()
    (root / "results").mkdir()
    classmates = tmp_path / CLASS_FOLDER  # what the attacks aim at: the "classmates" of this container
    write_cases(classmates, [next(c for c in CASES if c.name == "control_first")])
    made = c.make(classmates)
    nbformat.write(made, root / "submission" / "submission.ipynb")
    before = {"repository": fingerprint(tmp_path)["repository"], "classmates": _content_fingerprint(classmates)}
    FORGED.unlink(missing_ok=True)
    # Gradescope runs each submission in Docker, where namespaces are not allowed
    env = {
        **os.environ,
        "AUTOGRADER_ROOT": str(root),
        "AUTOGRADER_PYTHON": sys.executable,
        "AUTOGRADE_DISABLE": "namespaces",
    }
    proc = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=600
    )
    assert "on   private filesystem view" not in proc.stderr and "on   Landlock" in proc.stderr
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    by_part: dict[str, float] = {}
    for test in results["tests"]:
        part = test["name"].split(":")[0]
        by_part[part] = by_part.get(part, 0.0) + test["score"]
    assert by_part == pytest.approx(expected_points(c)), results["output"]
    assert before == {"repository": fingerprint(tmp_path)["repository"], "classmates": _content_fingerprint(classmates)}
    assert not FORGED.exists()
