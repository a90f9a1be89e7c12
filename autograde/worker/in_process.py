"""The student whose definitions live in a namespace of this process: a sandboxed worker's (every grading door),
or the nbgrader kernel's globals (nbgrader's optional in-kernel mode) and the grader's own tests.

Calls run under a time limit (and, in a kernel, a memory limit). Operations a call watches (a forbidden built-in
such as ``F.scaled_dot_product_attention``) are recognised as they execute: a ``TorchFunctionMode`` sees every
torch function the student's code reaches, however it was named or imported (``getattr(F, "scaled_dot_" + ...)``,
``torch.ops.aten._scaled_dot_product_attention_math``, ``nn.MultiheadAttention``). The student's own process can
switch such a recorder off, so it explains an honest mistake and is not a boundary (see the README).
"""

from __future__ import annotations

import os
import resource
import sys
import traceback
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from .alarm import alarm
from .protocol import Call, CallResult, Describe, ModuleInfo, Student, plain
from .results import Kind, StudentError

# -------------------------------------------------------------------------------------- student frames
_LIBRARIES = tuple(
    os.path.realpath(p) + os.sep
    for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.abspath(__file__))}
)


def is_student_file(filename: str) -> bool:
    """Whether a traceback frame's file is the student's: a notebook cell, not a library or the grader."""
    if filename.startswith("<cell "):
        return True
    if filename.startswith("<"):  # <frozen ...>, <string>, the sandbox's own modules
        return False
    return not os.path.realpath(filename).startswith(_LIBRARIES)


def student_frames(exc: BaseException) -> str:
    """The exception and the last line of the traceback that points into the student's cells."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if is_student_file(f.filename)]
    where = ""
    if frames:
        last = frames[-1]
        where = f" (in {last.name}, line: {(last.line or '').strip()!r})"
    return f"{type(exc).__name__}: {exc}{where}"


def error_from(exc: BaseException, prefix: str) -> StudentError:
    """A StudentError for an exception the student's code raised (a timeout keeps its own kind)."""
    kind = Kind.TIMEOUT if isinstance(exc, TimeLimitExceeded) else Kind.STUDENT_ERROR
    return StudentError(f"{prefix} {student_frames(exc)}", kind, type(exc).__name__)


# ------------------------------------------------------------------------------------------------ limits
class TimeLimitExceeded(TimeoutError):
    """Raised in the student's code when a call runs past its time limit."""


def time_limit(seconds: float | None):
    """Raise TimeLimitExceeded in the main thread after ``seconds`` (no-op elsewhere or when None)."""
    message = f"did not finish within {seconds:g} s (an endless loop, or far too slow?)" if seconds else ""
    return alarm(seconds, lambda: TimeLimitExceeded(message))


@contextmanager
def memory_limit(megabytes: int | None) -> Iterator[None]:
    """Lower this process's address-space limit to its current size + ``megabytes`` for the duration.

    Used by the nbgrader path (the student's kernel); a sandboxed worker has its limits set by the kernel.
    """
    if not megabytes:
        yield
        return
    try:
        status = open("/proc/self/status").read()
        vm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = vm_kb * 1024 + megabytes * 2**20
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def attribute(obj: Any, path: str) -> Any:
    """``obj.a.b`` for the path ``"a.b"``; None when any step is missing."""
    for name in path.split("."):
        obj = getattr(obj, name, None)
    return obj


# ------------------------------------------------------------------------------------------- stand-ins
def stand_ins(sources: Mapping[str, str]) -> dict[str, Any]:
    """The objects that the grader's stand-in ``sources`` define (each source defines the object of its key)."""
    objects = {}
    for name, source in sources.items():
        scope: dict[str, Any] = {"__name__": "grader_stand_in"}
        exec(compile(source, f"<stand-in {name}>", "exec"), scope)
        objects[name] = scope[name]
    return objects


@contextmanager
def substituted(namespace: MutableMapping[str, Any], objects: Mapping[str, Any]) -> Iterator[None]:
    """Within the block, ``namespace`` (a module's or a notebook's globals) holds ``objects`` under their names."""
    missing = object()
    saved = {name: namespace.get(name, missing) for name in objects}
    namespace.update(objects)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


# -------------------------------------------------------------------------------------------- watched calls
def _torch_name(func: Any) -> str:
    """``scaled_dot_product_attention`` for F.scaled_dot_product_attention, torch.ops.aten....default, ..."""
    name = getattr(func, "__name__", "") or ""
    return name.split(".")[0]


class WatchedCallRecorder(TorchFunctionMode):
    """Records which labels of ``watch`` (label -> torch function and aten operator names) the code under it runs."""

    def __init__(self, watch: Mapping[str, frozenset[str]]):
        super().__init__()
        self.watch = {label: frozenset(names) for label, names in watch.items()}
        self.used: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = _torch_name(func)
        for label, names in self.watch.items():
            if name in names:
                self.used.add(label)
        return func(*args, **(kwargs or {}))


@contextmanager
def recording(watch: Mapping[str, frozenset[str]]) -> Iterator[WatchedCallRecorder]:
    recorder = WatchedCallRecorder(watch)
    if not recorder.watch:
        yield recorder
        return
    with recorder:
        yield recorder


class CreatedTensorRecorder(TorchDispatchMode):
    """Records the number of elements of the largest tensor that a torch operation under it returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.numel())
        return out


@contextmanager
def measuring_created(enabled: bool) -> Iterator[CreatedTensorRecorder]:
    recorder = CreatedTensorRecorder()
    if not enabled:
        yield recorder
        return
    with recorder:
        yield recorder


# ---------------------------------------------------------------------------------------------- student
class InProcessStudent(Student):
    """A submission whose definitions live in a namespace of this process (the nbgrader kernel's globals,
    or the sandboxed worker's namespace)."""

    def __init__(self, namespace: Mapping[str, Any], time_limit: float | None = 60.0, memory_mb: int | None = None):
        self.namespace = namespace
        self.time_limit = time_limit
        self.memory_mb = memory_mb

    def has(self, name: str) -> bool:
        return name in self.namespace

    def _get(self, name: str) -> Any:
        if name not in self.namespace:
            raise StudentError(
                f"`{name}` is not defined: run the cell that defines it, and keep its name.", Kind.MISSING_DEFINITION
            )
        return self.namespace[name]

    def value(self, name: str) -> Any:
        return plain(self._get(name))

    @contextmanager
    def _limits(self) -> Iterator[None]:
        with time_limit(self.time_limit), memory_limit(self.memory_mb):
            yield

    def _build(self, target: str, args: tuple, kwargs: dict) -> Any:
        factory = self._get(target)
        try:
            with self._limits():
                built = factory(*args, **kwargs)
        except Exception as exc:
            raise error_from(exc, f"{target}(...) raised") from None
        if isinstance(built, nn.Module):
            built = built.to("cpu")
        return built

    def describe_module(self, request: Describe) -> ModuleInfo:
        if request.substitutes:
            with substituted(self.namespace, stand_ins(request.substitutes)):
                return self.describe_module(replace(request, substitutes={}))
        module = self._build(request.target, request.args, request.kwargs)
        if not isinstance(module, nn.Module):
            raise StudentError(
                f"{request.target}(...) returned {type(module).__name__}, expected an nn.Module.", Kind.UNUSABLE_RESULT
            )
        return ModuleInfo(
            type_name=type(module).__name__,
            children=[(name, type(child).__name__) for name, child in module.named_children()],
            parameters={n: tuple(p.shape) for n, p in module.named_parameters()},
            buffers={n: tuple(b.shape) for n, b in module.named_buffers()},
            num_parameters=sum(p.numel() for p in module.parameters()),
            attrs={a: plain(attribute(module, a)) for a in request.attrs},
            text=repr(module),
        )

    def call(self, call: Call) -> CallResult:
        if not call.substitutes:
            return self._call(call)
        with substituted(self.namespace, stand_ins(call.substitutes)):
            return self._call(call)

    def _call(self, call: Call) -> CallResult:
        fn = self._build(call.target, call.args, call.kwargs) if call.build else self._get(call.target)
        if call.dtype is not None and isinstance(fn, nn.Module):
            fn = fn.to(call.dtype)
        if call.state_dict is not None:
            if not isinstance(fn, nn.Module):
                raise StudentError(
                    f"{call.target}(...) returned {type(fn).__name__}, expected an nn.Module.", Kind.UNUSABLE_RESULT
                )
            try:
                fn.load_state_dict(call.state_dict, strict=True)
            except RuntimeError as exc:
                raise StudentError(
                    f"the grader could not load weights into your {call.target}: {exc}. Keep the attribute "
                    "names and layer sizes the docstring asks for.",
                    Kind.WRONG_RESULT,
                ) from None
        if isinstance(fn, nn.Module):
            fn.train(call.train)
        wants_grad = call.grad_outputs is not None
        inputs = [
            x.detach().clone().requires_grad_(wants_grad and x.is_floating_point())
            if isinstance(x, torch.Tensor)
            else x
            for x in call.inputs
        ]
        outputs = []
        try:
            with self._limits(), recording(call.watch) as recorder:
                for _ in range(call.repeat):
                    torch.manual_seed(call.seed)
                    with torch.set_grad_enabled(wants_grad), measuring_created(call.measure_created) as created:
                        outputs.append(fn(*inputs, **call.input_kwargs))
                result = CallResult(outputs=[plain(o) for o in outputs])
                if wants_grad:
                    self._backward(fn, outputs[-1], inputs, call.grad_outputs, result)
        except StudentError:
            raise
        except Exception as exc:
            raise error_from(exc, f"calling your {call.target} raised") from None
        result.watched_used = sorted(recorder.used)
        result.largest_created = created.largest
        if isinstance(fn, nn.Module):
            result.attrs = {a: plain(attribute(fn, a)) for a in call.attrs}
        return result

    @staticmethod
    def _backward(fn: Any, output: Any, inputs: list, grad_outputs: torch.Tensor, result: CallResult) -> None:
        first = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(first, torch.Tensor) or not first.requires_grad:
            raise StudentError(
                "the output does not depend on the inputs or weights through autograd "
                "(was it detached, built with torch.tensor(...), or computed under no_grad?)",
                Kind.WRONG_RESULT,
            )
        if first.shape != grad_outputs.shape:
            raise StudentError(
                f"the output has shape {tuple(first.shape)}, expected {tuple(grad_outputs.shape)}", Kind.WRONG_RESULT
            )
        first.backward(grad_outputs.to(first.dtype))
        result.input_grads = [plain(x.grad) if isinstance(x, torch.Tensor) else None for x in inputs]
        if isinstance(fn, nn.Module):
            result.param_grads = {n: plain(p.grad) for n, p in fn.named_parameters()}
