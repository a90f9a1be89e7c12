"""One sandboxed worker: confine itself, say "ready", then serve the trusted side's requests.

Runs in a child forked by the zygote, with torch already imported. Until the "ready" message is sent no student
code has run, so a failure before it is the sandbox's (reported as "setup-failed" with the reason); after it,
whatever the process does (exit, crash, hang) is the submission's own and costs only its own checks.

Requests: ``load`` (run the chosen statements of each cell, one reply per cell, then ``loaded``), and
``has`` / ``value`` / ``describe`` / ``call`` (served by the grader's own :class:`InProcessStudent`, so the
calls behave exactly as in the nbgrader kernel). Replies hold plain data only.
"""

import ast
import builtins
import importlib
import io
import linecache
import os
import sys
import traceback

import torch

from . import codec, protections
from .in_process import InProcessStudent, student_frames, time_limit
from .protocol import Call, Describe, fields_of
from .results import Kind, StudentError

SETUP_FAILED, SERVE_FAILED = 70, 71  # exit codes; only a death before "ready" counts as the sandbox's


class _Discard(io.TextIOBase):
    """The submission's stdout and stderr: what it prints goes nowhere, so no amount of it can matter."""

    def write(self, text):
        return len(text)

    def writable(self):
        return True


class _NoIPython:
    """What ``get_ipython()`` returns in the grader: ``%%writefile`` writes its file (in the worker's own
    folder, which is on ``sys.path``); other magics and shell commands do not run here."""

    def run_cell_magic(self, magic, line, cell):
        if magic != "writefile":
            raise RuntimeError(f"the cell magic %%{magic} does not run in the grader")
        words = line.split()
        with open(words[-1], "a" if "-a" in words[:-1] or "--append" in words[:-1] else "w") as f:
            f.write(cell)
        importlib.invalidate_caches()

    def __getattr__(self, name):
        def refuse(*args, **kwargs):
            raise RuntimeError("IPython magics and shell commands (%, !) do not run in the grader")

        return refuse


def warm_up():
    """Run each kind of request once, so that torch's lazy initialisation is paid in the zygote, not per child."""
    namespace = {
        "torch": torch,
        "Conv": lambda: torch.nn.Sequential(torch.nn.Conv2d(2, 2, 1), torch.nn.Flatten(), torch.nn.Linear(8, 2)),
    }
    student = InProcessStudent(namespace)
    x = torch.randn(1, 2, 2, 2, dtype=torch.float64)
    student.describe("Conv")
    call = Call(
        "Conv",
        inputs=(x,),
        dtype=torch.float64,
        grad_outputs=torch.ones(1, 2),
        watch={"softmax": frozenset({"softmax"})},
        measure_created=True,  # torch's dispatch-mode machinery costs about a second the first time
    )
    result = student.call(call)
    torch.softmax(torch.randn(2, 3) @ torch.randn(3, 2), -1)
    message = codec.frame({"r": fields_of(result)["outputs"], "n": 1})
    codec.decode_reply(message[codec.DATA_HEADER.size :])


def run_child(data_fd, request, plan):
    """Confine this process (before any student code), say ready, then serve until the grader hangs up.

    Returns the exit code: 0, SETUP_FAILED (the reason was sent) or SERVE_FAILED.
    """
    import socket

    sock = socket.socket(fileno=data_fd)
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        applied = protections.confine(plan, keep_fds=(data_fd,))
        os.environ["HOME"] = os.environ["TMPDIR"] = plan.scratch
        sys.path.insert(0, plan.scratch)  # modules the notebook wrote with %%writefile
        os.environ["MPLCONFIGDIR"] = os.path.join(plan.scratch, ".matplotlib")
        sys.stdout = sys.stderr = _Discard()
    except BaseException:
        try:
            codec.send_data(sock, {"op": "setup-failed", "error": traceback.format_exc()[-4000:]})
        except OSError:
            pass
        return SETUP_FAILED
    try:
        codec.send_data(sock, {"op": "ready", "protections": applied})
        serve(sock, request)
    except BaseException:  # e.g. a result that cannot be sent because the submission broke torch.save
        return SERVE_FAILED
    return 0


def _wire(value, depth=0):
    """Plain data only: tensors (dense, CPU, contiguous, exact type), numbers, strings, lists, tuples, dicts."""
    if depth > 20:
        return "<nested too deeply>"
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if type(tensor) is not torch.Tensor:
            tensor = tensor.as_subclass(torch.Tensor)
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        return tensor.cpu().resolve_conj().resolve_neg().contiguous().clone()
    if value is None or type(value) in (bool, int, float, str):
        return value
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, (list, tuple)):
        items = [_wire(v, depth + 1) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {str(k): _wire(v, depth + 1) for k, v in value.items()}
    return repr(value)[:2000]


def run_chunk(chunk, namespace, seconds):
    """Run the chosen statements of one cell; None, or the student-facing reason it stopped."""
    source, filename = chunk["source"], chunk["filename"]
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        tree = ast.parse(source, filename)
        body = [tree.body[i] for i in chunk["statements"]]
        code = compile(ast.Module(body=body, type_ignores=[]), filename, "exec", flags=chunk.get("flags", 0))
        with time_limit(seconds):
            exec(code, namespace)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the cell fails, the worker goes on
        return f"{chunk['label']} raised {student_frames(exc)}"
    return None


def _dispatch(message, student):
    op = message["op"]
    if op == "has":
        return student.has(message["name"])
    if op == "value":
        return student.value(message["name"])
    if op == "describe":
        request = Describe(
            message["target"],
            tuple(message["args"]),
            dict(message["kwargs"]),
            tuple(message["attrs"]),
            dict(message.get("substitutes") or {}),
        )
        return fields_of(student.describe_module(request))
    if op == "call":
        fields = dict(message["call"])
        fields["dtype"] = getattr(torch, fields["dtype"]) if fields["dtype"] else None
        for name in ("args", "inputs", "attrs"):
            fields[name] = tuple(fields[name])
        return fields_of(student.call(Call(**fields)))
    raise ValueError(f"unknown request {op!r}")


def serve(sock, request):
    namespace = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "get_ipython": _NoIPython,
        "display": lambda *args, **kwargs: None,
    }
    student = InProcessStudent(namespace, time_limit=request["time_limit"])
    while True:
        try:
            message = codec.recv_request(sock)
        except EOFError:
            return
        except Exception as exc:  # the request itself is at fault: a grader bug, not the student's
            error = f"the worker could not read the grader's request ({type(exc).__name__}: {exc})"
            codec.send_data(sock, {"ok": False, "error": error, "kind": Kind.GRADER_ERROR.value})
            continue
        if message["op"] == "load":
            for index, chunk in enumerate(message["chunks"]):
                error = run_chunk(chunk, namespace, request["time_limit"])
                codec.send_data(sock, {"op": "chunk", "index": index, "error": error})
            codec.send_data(sock, {"op": "loaded"})
            continue
        try:
            reply = {"ok": True, "value": _wire(_dispatch(message, student))}
        except StudentError as exc:
            reply = {"ok": False, "error": str(exc), "kind": exc.kind.value, "exc_type": exc.exc_type}
        except BaseException as exc:  # the student's code raised something the protocol lets through
            reply = {
                "ok": False,
                "error": f"your code raised {student_frames(exc)}",
                "kind": Kind.STUDENT_ERROR.value,
                "exc_type": type(exc).__name__,
            }
        try:
            codec.send_data(sock, reply)
        except Exception as exc:  # e.g. a result torch.save cannot write
            codec.send_data(
                sock,
                {
                    "ok": False,
                    "error": f"the result could not be sent back ({exc})",
                    "kind": Kind.UNUSABLE_RESULT.value,
                },
            )
