"""A sandboxed worker's replies, checked on the trusted side before a grader test sees them.

:mod:`autograde.worker.codec` loads a reply with ``torch.load(weights_only=True)`` (which builds no arbitrary
object), after its length was checked against :data:`MAX_REPLY_BYTES`; this module then checks it: each tensor
must be dense, on the CPU, of a numeric dtype, contiguous and backed by exactly its own elements (no stride-0 view
that pretends to hold 10^14 values), and no larger than :data:`MAX_ELEMENTS`. So a hostile worker can at worst
send wrong numbers, never slow the trusted side down.
"""

from __future__ import annotations

from typing import Any

import torch

from autograde.worker import codec
from autograde.worker.protocol import Call, CallResult, ModuleInfo
from autograde.worker.results import WORKER_KINDS, Kind, StudentError

MAX_REPLY_BYTES = 256 * 2**20
MAX_ELEMENTS = 2**25  # per tensor: 32 M values (the graders' largest are a few thousand)
MAX_TEXT = 100_000
MAX_DEPTH = 20
DTYPES = frozenset(
    {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
     torch.int32, torch.int64, torch.bool}
)  # fmt: skip


class WorkerProtocolError(Exception):
    """The worker sent something that is not a well-formed reply."""


def decode(payload: bytes) -> Any:
    """A worker's reply as checked plain data. What it holds may not add up to more than its bytes carry (a
    pickle may refer to one object many times: a string or a list shared a million times costs a million times
    its size to check and to read, so it counts that often), so its cost is linear in its length."""
    try:
        message = codec.decode_reply(payload)
    except codec.UnreadableMessage as exc:
        raise WorkerProtocolError(str(exc)) from None
    return plain(message, _Budget(2 * len(payload) + 2**16))


class _Budget:
    """Units (one per value, one per character or tensor byte) a reply's contents may add up to."""

    def __init__(self, units: int):
        self.left = units

    def spend(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise WorkerProtocolError("the reply holds more than its bytes carry (one object referred to many times)")


def plain(value: Any, budget: _Budget | None = None, depth: int = 0) -> Any:
    """``value`` if it is plain data (dense CPU tensors, numbers, strings, lists, tuples, str-keyed dicts), within
    ``budget``."""
    budget = budget if budget is not None else _Budget(MAX_REPLY_BYTES)
    if depth > MAX_DEPTH:
        raise WorkerProtocolError("reply nested too deeply")
    budget.spend(1)
    if isinstance(value, torch.Tensor):
        tensor = checked_tensor(value)
        budget.spend(tensor.untyped_storage().nbytes())
        return tensor
    if value is None or type(value) in (bool, int, float):
        return value
    if type(value) is str:
        budget.spend(min(len(value), MAX_TEXT))
        return value[:MAX_TEXT]
    if type(value) in (list, tuple):
        return type(value)(plain(v, budget, depth + 1) for v in value)
    if type(value) is dict and all(type(k) is str for k in value):
        budget.spend(sum(len(k) for k in value))
        return {k: plain(v, budget, depth + 1) for k, v in value.items()}
    raise WorkerProtocolError(f"reply holds a {type(value).__name__}, which is not plain data")


def checked_tensor(value: torch.Tensor) -> torch.Tensor:
    """``value`` if it is a dense, contiguous CPU tensor of a numeric dtype backed by exactly its elements."""
    if value.layout != torch.strided or value.is_quantized or value.is_meta or value.device.type != "cpu":
        raise WorkerProtocolError("reply holds a tensor that is not a dense CPU tensor")
    if value.dtype not in DTYPES:
        raise WorkerProtocolError(f"reply holds a tensor of dtype {value.dtype}")
    numel = 1
    for size in value.shape:
        numel *= int(size)
    if numel > MAX_ELEMENTS:
        raise WorkerProtocolError(f"reply holds a tensor of {numel:,} values (at most {MAX_ELEMENTS:,})")
    storage = value.untyped_storage().nbytes()
    if not value.is_contiguous() or value.storage_offset() != 0 or storage != numel * value.element_size():
        raise WorkerProtocolError("reply holds a tensor that is a view, not its own contiguous values")
    return value.detach().as_subclass(torch.Tensor)


def error(reply: dict) -> StudentError:
    """The StudentError of a failed reply. The worker may only report the kinds a worker can know of."""
    try:
        kind = Kind(reply.get("kind"))
    except ValueError:
        kind = Kind.STUDENT_ERROR
    if kind not in WORKER_KINDS:
        kind = Kind.STUDENT_ERROR
    exc_type = reply.get("exc_type")
    return StudentError(str(reply.get("error", "failed")), kind, exc_type if isinstance(exc_type, str) else None)


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind):
        raise WorkerProtocolError(f"{what} is a {type(value).__name__}")
    return value


def _tensor_or_none(value: Any, what: str) -> torch.Tensor | None:
    return None if value is None else _expect(value, torch.Tensor, what)


def call_result(value: Any, call: Call) -> CallResult:
    """Check the reply to ``call`` and build the :class:`CallResult` the grader tests read."""
    data = _expect(value, dict, "the call result")
    outputs = list(_expect(data.get("outputs"), list, "outputs"))
    if not outputs:
        raise WorkerProtocolError("the call result has no outputs")
    return CallResult(
        outputs=outputs,
        input_grads=[
            _tensor_or_none(g, "an input gradient") for g in _expect(data.get("input_grads", []), list, "input_grads")
        ],
        param_grads={
            k: _tensor_or_none(g, "a parameter gradient")
            for k, g in _expect(data.get("param_grads", {}), dict, "param_grads").items()
        },
        attrs=dict(_expect(data.get("attrs", {}), dict, "attrs")),
        watched_used=sorted(
            n for n in _expect(data.get("watched_used", []), list, "watched_used") if type(n) is str and n in call.watch
        ),
        largest_created=_count(data.get("largest_created", 0)) if call.measure_created else 0,
    )


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise WorkerProtocolError("largest_created is not a count")
    return value


def _shapes(value: Any, what: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, shape in _expect(value, dict, what).items():
        if not isinstance(shape, (list, tuple)) or not all(type(d) is int for d in shape):
            raise WorkerProtocolError(f"{what} of {name!r} is not a shape")
        shapes[name] = tuple(shape)
    return shapes


def module_info(value: Any) -> ModuleInfo:
    """Check a ``describe`` reply and build its :class:`ModuleInfo`."""
    data = _expect(value, dict, "the module description")
    children = []
    for pair in _expect(data.get("children"), list, "children"):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(type(p) is str for p in pair)):
            raise WorkerProtocolError("a child is not a (name, type) pair")
        children.append(tuple(pair))
    num = data.get("num_parameters")
    if type(num) is not int:
        raise WorkerProtocolError("num_parameters is not an int")
    return ModuleInfo(
        type_name=_expect(data.get("type_name"), str, "type_name"),
        children=children,
        parameters=_shapes(data.get("parameters"), "parameters"),
        buffers=_shapes(data.get("buffers"), "buffers"),
        num_parameters=num,
        attrs=dict(_expect(data.get("attrs", {}), dict, "attrs")),
        text=_expect(data.get("text", ""), str, "text"),
    )
