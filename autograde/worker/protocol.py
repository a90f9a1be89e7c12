"""What a grader test may ask of a submission, as plain data.

Grader tests never touch student objects directly: they describe what to build and run as a :class:`Call` and
get plain data back in a :class:`CallResult` (tensors, numbers, strings), or a :class:`ModuleInfo` describing a
module. This narrow interface lets the same tests run against a sandboxed worker that holds the student's code
(every grading door) and against a namespace of the grader's own process (the grader's tests, and nbgrader's
optional in-kernel mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


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
        submodules, e.g. ``"encoder.norm.weight"``).
    watch: operations whose use during the call is recorded: label (``"F.scaled_dot_product_attention"``) ->
        the names of the torch functions and aten operators that carry it out, however they are reached.
    substitutes: name -> source code defining an object of that name (the grader's stand-in for an earlier
        part, e.g. ``Attention``); during the call the student's global of that name is the stand-in.
    measure_created: record the number of elements of the largest tensor any torch operation creates during the
        forward passes (a memory contract: attention over chunks never builds the whole (S, T) score matrix).
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
    watch: Mapping[str, frozenset[str]] = field(default_factory=dict)
    substitutes: dict[str, str] = field(default_factory=dict)
    measure_created: bool = False


@dataclass
class CallResult:
    """What came back from a :class:`Call`: outputs as returned (a tensor or a tuple of tensors).

    watched_used: the labels of :attr:`Call.watch` whose operations ran during the call.
    largest_created: with :attr:`Call.measure_created`, the elements of the largest tensor created (else 0).
    """

    outputs: list[Any]
    input_grads: list[torch.Tensor | None] = field(default_factory=list)
    param_grads: dict[str, torch.Tensor | None] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    watched_used: list[str] = field(default_factory=list)
    largest_created: int = 0

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


@dataclass(frozen=True)
class Describe:
    """Build ``target(*args, **kwargs)`` (with ``substitutes`` as for a :class:`Call`) and describe the module,
    reading ``attrs`` from it."""

    target: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    attrs: tuple[str, ...] = ()
    substitutes: dict[str, str] = field(default_factory=dict)


class Student:
    """What a grader test may ask of a submission. Each way of holding one (a namespace of this process, a
    sandboxed worker) implements the four requests."""

    def has(self, name: str) -> bool:
        raise NotImplementedError

    def value(self, name: str) -> Any:
        raise NotImplementedError

    def describe(
        self,
        target: str,
        args: tuple = (),
        kwargs: dict | None = None,
        attrs: tuple[str, ...] = (),
        substitutes: dict[str, str] | None = None,
    ) -> ModuleInfo:
        return self.describe_module(
            Describe(target, tuple(args), dict(kwargs or {}), tuple(attrs), dict(substitutes or {}))
        )

    def describe_module(self, request: Describe) -> ModuleInfo:
        raise NotImplementedError

    def call(self, call: Call) -> CallResult:
        raise NotImplementedError


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


def fields_of(obj: Any) -> dict[str, Any]:
    """A dataclass instance as a dict of its fields (what crosses the socket)."""
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}
