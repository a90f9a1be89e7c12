"""The student's side of a grader test.

Grader tests never touch student objects directly: they describe what to build and run as a :class:`Call`
and get plain data back in a :class:`CallResult` (tensors, numbers, strings). This narrow interface lets the
same tests run inside the student's kernel (nbgrader autograde, :class:`InProcessStudent`) and against a
sandboxed worker process that holds the student's code (``python -m autograde grade``), which runs this very
module (with torch and the standard library only) to serve the calls.

Forbidden built-ins are recognised as they execute: a ``TorchFunctionMode`` sees every torch function the
student's code reaches, however it was named or imported (``getattr(F, "scaled_dot_" + ...)``,
``torch.ops.aten._scaled_dot_product_attention_math``, ``nn.MultiheadAttention``), and never by reading source.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .results import Kind, StudentError

# Calls the student must not make where the exercise is to write the computation: a label for the messages,
# and the names of the torch functions and aten operators that carry it out, whichever way they are reached.
FORBIDDEN_CALLS: dict[str, frozenset[str]] = {
    "F.scaled_dot_product_attention": frozenset(
        {
            "scaled_dot_product_attention",
            "_scaled_dot_product_attention_math",
            "_scaled_dot_product_attention_math_for_mps",
            "_scaled_dot_product_flash_attention",
            "_scaled_dot_product_flash_attention_for_cpu",
            "_scaled_dot_product_efficient_attention",
            "_scaled_dot_product_cudnn_attention",
            "_scaled_dot_product_fused_attention_overrideable",
        }
    ),
    "nn.MultiheadAttention": frozenset(
        {"multi_head_attention_forward", "_native_multi_head_attention", "_transformer_encoder_layer_fwd"}
    ),
}


@dataclass
class Call:
    """Build ``target(*args, **kwargs)``, optionally load weights, then run it.

    target: a name in the student's namespace (a class, a factory or a function).
    inputs: positional tensors for ``forward`` (or for the function itself when ``build`` is False).
    build: True when ``target`` builds a module that is then called on ``inputs``.
    dtype: the built module is converted to this dtype (before loading weights) when given.
    state_dict: weights loaded with ``strict=True`` before the forward pass.
    grad_outputs: when given, ``backward`` runs with this upstream gradient on the (first) output and the
        result carries the gradients of the floating-point inputs and of every parameter.
    train: module mode during the forward pass; seed: ``torch.manual_seed`` right before it.
    repeat: how many forward passes (dropout statistics); every output is returned.
    attrs: module attributes read after the forward pass (tensors or plain values; dotted paths reach into
        submodules, e.g. ``"positional_encoding.pe"``).
    forbidden: labels from :data:`FORBIDDEN_CALLS` whose use during the call is recorded.
    substitutes: name -> source code defining an object of that name (the grader's stand-in for an earlier
        part, e.g. ``Attention``); during the call the student's global of that name is the stand-in.
    """

    target: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    inputs: tuple = ()
    input_kwargs: dict = field(default_factory=dict)
    build: bool = True
    dtype: torch.dtype | None = None
    state_dict: Mapping[str, torch.Tensor] | None = None
    grad_outputs: torch.Tensor | None = None
    train: bool = False
    seed: int = 0
    repeat: int = 1
    attrs: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    substitutes: dict[str, str] = field(default_factory=dict)


@dataclass
class CallResult:
    """What came back from a :class:`Call`: outputs as returned (a tensor or a tuple of tensors)."""

    outputs: list[Any]
    input_grads: list[torch.Tensor | None] = field(default_factory=list)
    param_grads: dict[str, torch.Tensor | None] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    forbidden_used: list[str] = field(default_factory=list)

    @property
    def output(self) -> Any:
        return self.outputs[0]


@dataclass
class ModuleInfo:
    """The structure of a module the student builds: enough to check an architecture without running it."""

    type_name: str
    children: list[tuple[str, str]]
    parameters: dict[str, tuple[int, ...]]
    buffers: dict[str, tuple[int, ...]]
    num_parameters: int
    attrs: dict[str, Any]
    text: str


class Student(Protocol):
    """What a grader test may ask of a submission."""

    def has(self, name: str) -> bool: ...

    def value(self, name: str) -> Any: ...

    def describe(
        self,
        target: str,
        args: tuple = (),
        kwargs: dict | None = None,
        attrs: tuple[str, ...] = (),
        substitutes: dict[str, str] | None = None,
    ) -> ModuleInfo: ...

    def call(self, call: Call) -> CallResult: ...


def plain(value: Any) -> Any:
    """Detach tensors and turn modules into their type name, so results are plain data."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, nn.Module):
        return type(value).__name__
    if isinstance(value, (tuple, list)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    return repr(value)


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


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TimeLimitExceeded in the main thread after ``seconds`` (no-op elsewhere or when None)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(signum, frame):  # noqa: ARG001
        raise TimeLimitExceeded(f"did not finish within {seconds:g} s (an endless loop, or far too slow?)")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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


# ---------------------------------------------------------------------------------------- forbidden calls
def _torch_name(func: Any) -> str:
    """``scaled_dot_product_attention`` for F.scaled_dot_product_attention, torch.ops.aten....default, ..."""
    name = getattr(func, "__name__", "") or ""
    return name.split(".")[0]


class ForbiddenCallRecorder(TorchFunctionMode):
    """Records which of the ``watched`` labels (see :data:`FORBIDDEN_CALLS`) the code under it executes."""

    def __init__(self, watched: tuple[str, ...]):
        super().__init__()
        self.watched = {label: FORBIDDEN_CALLS[label] for label in watched if label in FORBIDDEN_CALLS}
        self.used: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = _torch_name(func)
        for label, names in self.watched.items():
            if name in names:
                self.used.add(label)
        return func(*args, **(kwargs or {}))


@contextmanager
def recording_forbidden(watched: tuple[str, ...]) -> Iterator[ForbiddenCallRecorder]:
    recorder = ForbiddenCallRecorder(watched)
    if not recorder.watched:
        yield recorder
        return
    with recorder:
        yield recorder


# ---------------------------------------------------------------------------------------------- student
class InProcessStudent:
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

    def describe(
        self,
        target: str,
        args: tuple = (),
        kwargs: dict | None = None,
        attrs: tuple[str, ...] = (),
        substitutes: dict[str, str] | None = None,
    ) -> ModuleInfo:
        if substitutes:
            with substituted(self.namespace, stand_ins(substitutes)):
                return self.describe(target, args, kwargs, attrs)
        module = self._build(target, args, kwargs or {})
        if not isinstance(module, nn.Module):
            raise StudentError(
                f"{target}(...) returned {type(module).__name__}, expected an nn.Module.", Kind.UNUSABLE_RESULT
            )
        return ModuleInfo(
            type_name=type(module).__name__,
            children=[(name, type(child).__name__) for name, child in module.named_children()],
            parameters={n: tuple(p.shape) for n, p in module.named_parameters()},
            buffers={n: tuple(b.shape) for n, b in module.named_buffers()},
            num_parameters=sum(p.numel() for p in module.parameters()),
            attrs={a: plain(attribute(module, a)) for a in attrs},
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
            with self._limits(), recording_forbidden(call.forbidden) as recorder:
                for _ in range(call.repeat):
                    torch.manual_seed(call.seed)
                    with torch.set_grad_enabled(wants_grad):
                        outputs.append(fn(*inputs, **call.input_kwargs))
                result = CallResult(outputs=[plain(o) for o in outputs])
                if wants_grad:
                    self._backward(fn, outputs[-1], inputs, call.grad_outputs, result)
        except StudentError:
            raise
        except Exception as exc:
            raise error_from(exc, f"calling your {call.target} raised") from None
        result.forbidden_used = sorted(recorder.used)
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
