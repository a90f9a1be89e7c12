"""The student's side of a grader test.

Grader tests never touch student objects directly: they describe what to build and run as a :class:`Call`
and get plain data back in a :class:`CallResult` (tensors, numbers, strings). This narrow interface lets the
same tests run inside the student's kernel (nbgrader autograde, :class:`InProcessStudent`) and against an
isolated worker process that holds the student's code (``python -m autograde grade``).
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

# Calls the student must not make where the exercise is to write the computation.
FORBIDDEN_CALLS: dict[str, tuple[Any, str]] = {
    "F.scaled_dot_product_attention": (torch.nn.functional, "scaled_dot_product_attention"),
    "nn.MultiheadAttention": (torch.nn, "MultiheadAttention"),
    "nn.functional.multi_head_attention_forward": (torch.nn.functional, "multi_head_attention_forward"),
}


class StudentError(Exception):
    """The student's code raised, timed out or returned something unusable; the message says which."""


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
    attrs: module attributes read after the forward pass (tensors or plain values).
    forbidden: names from :data:`FORBIDDEN_CALLS` whose use is recorded.
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

    def describe(self, target: str, args: tuple = (), kwargs: dict | None = None,
                 attrs: tuple[str, ...] = ()) -> ModuleInfo: ...

    def call(self, call: Call) -> CallResult: ...


def _plain(value: Any) -> Any:
    """Detach tensors and turn modules into their type name, so results are plain data."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, nn.Module):
        return type(value).__name__
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    return repr(value)


def _student_frames(exc: BaseException) -> str:
    """The exception and the last lines of the traceback that point into the student's cells."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "site-packages" not in f.filename and "/autograde/" not in f.filename]
    where = ""
    if own:
        last = own[-1]
        where = f" (in {last.name}, line: {(last.line or '').strip()!r})"
    return f"{type(exc).__name__}: {exc}{where}"


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (no-op elsewhere or when None)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(signum, frame):  # noqa: ARG001
        raise TimeoutError(f"did not finish within {seconds:g} s (an endless loop, or far too slow?)")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _tripwires(names: tuple[str, ...], used: list[str]) -> Iterator[None]:
    """Temporarily wrap the forbidden callables so that any use is recorded in ``used``."""
    saved = []
    for name in names:
        owner, attr = FORBIDDEN_CALLS[name]
        original = getattr(owner, attr)
        saved.append((owner, attr, original))

        if isinstance(original, type):
            recorder = type(attr, (original,), {"__init__": _recording_init(original, name, used)})
        else:
            def recorder(*a, _orig=original, _name=name, **k):
                used.append(_name)
                return _orig(*a, **k)

        setattr(owner, attr, recorder)
    try:
        yield
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


def _recording_init(cls: type, name: str, used: list[str]):
    def __init__(self, *args, **kwargs):
        used.append(name)
        cls.__init__(self, *args, **kwargs)

    return __init__


class InProcessStudent:
    """A submission whose definitions live in a namespace of this process (the nbgrader kernel's globals)."""

    def __init__(self, namespace: Mapping[str, Any], time_limit: float | None = 60.0):
        self.namespace = namespace
        self.time_limit = time_limit

    def has(self, name: str) -> bool:
        return name in self.namespace

    def _get(self, name: str) -> Any:
        if name not in self.namespace:
            raise StudentError(f"`{name}` is not defined: run the cell that defines it, and keep its name.")
        return self.namespace[name]

    def value(self, name: str) -> Any:
        return _plain(self._get(name))

    def _build(self, target: str, args: tuple, kwargs: dict) -> Any:
        factory = self._get(target)
        try:
            with _time_limit(self.time_limit):
                built = factory(*args, **kwargs)
        except Exception as exc:
            raise StudentError(f"{target}(...) raised {_student_frames(exc)}") from None
        if isinstance(built, nn.Module):
            built = built.to("cpu")
        return built

    def describe(self, target: str, args: tuple = (), kwargs: dict | None = None,
                 attrs: tuple[str, ...] = ()) -> ModuleInfo:
        module = self._build(target, args, kwargs or {})
        if not isinstance(module, nn.Module):
            raise StudentError(f"{target}(...) returned {type(module).__name__}, expected an nn.Module.")
        return ModuleInfo(
            type_name=type(module).__name__,
            children=[(name, type(child).__name__) for name, child in module.named_children()],
            parameters={n: tuple(p.shape) for n, p in module.named_parameters()},
            buffers={n: tuple(b.shape) for n, b in module.named_buffers()},
            num_parameters=sum(p.numel() for p in module.parameters()),
            attrs={a: _plain(getattr(module, a, None)) for a in attrs},
            text=repr(module),
        )

    def call(self, call: Call) -> CallResult:
        used: list[str] = []
        with _tripwires(call.forbidden, used):
            result = self._call(call)
        result.forbidden_used = sorted(set(used))
        return result

    def _call(self, call: Call) -> CallResult:
        fn = self._build(call.target, call.args, call.kwargs) if call.build else self._get(call.target)
        if call.dtype is not None and isinstance(fn, nn.Module):
            fn = fn.to(call.dtype)
        if call.state_dict is not None:
            if not isinstance(fn, nn.Module):
                raise StudentError(f"{call.target}(...) returned {type(fn).__name__}, expected an nn.Module.")
            try:
                fn.load_state_dict(call.state_dict, strict=True)
            except RuntimeError as exc:
                raise StudentError(
                    f"the grader could not load weights into your {call.target}: {exc}. Keep the attribute "
                    "names and layer sizes the docstring asks for."
                ) from None
        if isinstance(fn, nn.Module):
            fn.train(call.train)
        wants_grad = call.grad_outputs is not None
        inputs = [x.detach().clone().requires_grad_(wants_grad and x.is_floating_point())
                  if isinstance(x, torch.Tensor) else x for x in call.inputs]
        outputs = []
        try:
            with _time_limit(self.time_limit):
                for _ in range(call.repeat):
                    torch.manual_seed(call.seed)
                    with torch.set_grad_enabled(wants_grad):
                        outputs.append(fn(*inputs, **call.input_kwargs))
                result = CallResult(outputs=[_plain(o) for o in outputs])
                if wants_grad:
                    self._backward(fn, outputs[-1], inputs, call.grad_outputs, result)
        except StudentError:
            raise
        except Exception as exc:
            raise StudentError(f"calling your {call.target} raised {_student_frames(exc)}") from None
        if isinstance(fn, nn.Module):
            result.attrs = {a: _plain(getattr(fn, a, None)) for a in call.attrs}
        return result

    @staticmethod
    def _backward(fn: Any, output: Any, inputs: list, grad_outputs: torch.Tensor, result: CallResult) -> None:
        first = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(first, torch.Tensor) or not first.requires_grad:
            raise StudentError("the output does not depend on the inputs or weights through autograd "
                               "(was it detached, built with torch.tensor(...), or computed under no_grad?)")
        if first.shape != grad_outputs.shape:
            raise StudentError(f"the output has shape {tuple(first.shape)}, expected {tuple(grad_outputs.shape)}")
        first.backward(grad_outputs.to(first.dtype))
        result.input_grads = [_plain(x.grad) if isinstance(x, torch.Tensor) else None for x in inputs]
        if isinstance(fn, nn.Module):
            result.param_grads = {n: _plain(p.grad) for n, p in fn.named_parameters()}
