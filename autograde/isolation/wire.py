"""What crosses the pipe between the trusted grader and a sandboxed worker: plain data, checked on arrival.

Messages are ``torch.save`` bytes of dicts of tensors and primitives, framed by an 8-byte length. The trusted
side reads them with ``torch.load(weights_only=True)`` (which builds no arbitrary object) and then checks every
reply before a grader test sees it: each tensor must be dense, on the CPU, of a numeric dtype, contiguous and
backed by exactly its own elements (no stride-0 view that pretends to hold 10^14 values), and no larger than
:data:`MAX_ELEMENTS`. So a hostile worker can at worst send wrong numbers, never slow the trusted side down.
"""

from __future__ import annotations

import io
from dataclasses import fields
from typing import Any

import torch

from autograde.isolation.worker.framing import frame
from autograde.results import WORKER_KINDS, Kind, StudentError
from autograde.student import FORBIDDEN_CALLS, Call, CallResult, ModuleInfo

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


def encode(message: dict) -> bytes:
    """Frame ``message`` (plain data) for the pipe."""
    return frame(torch, message)


def decode(payload: bytes) -> Any:
    """Load a worker's reply as data only (``weights_only=True``) and check that it is plain."""
    try:
        message = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as exc:  # anything that is not a weights-only pickle of plain data
        raise WorkerProtocolError(f"unreadable reply ({type(exc).__name__})") from None
    return plain(message)


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` if it is plain data (dense CPU tensors, numbers, strings, lists, tuples, str-keyed dicts)."""
    if depth > MAX_DEPTH:
        raise WorkerProtocolError("reply nested too deeply")
    if isinstance(value, torch.Tensor):
        return checked_tensor(value)
    if value is None or type(value) in (bool, int, float):
        return value
    if type(value) is str:
        return value[:MAX_TEXT]
    if type(value) in (list, tuple):
        return type(value)(plain(v, depth + 1) for v in value)
    if type(value) is dict and all(type(k) is str for k in value):
        return {k: plain(v, depth + 1) for k, v in value.items()}
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


def call_message(call: Call) -> dict:
    """A :class:`Call` as a request; the dtype travels as its name (``"float64"``)."""
    message = {f.name: getattr(call, f.name) for f in fields(call)}
    message["dtype"] = str(call.dtype).removeprefix("torch.") if call.dtype is not None else None
    message["state_dict"] = dict(call.state_dict) if call.state_dict is not None else None
    return {"op": "call", "call": message}


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind):
        raise WorkerProtocolError(f"{what} is a {type(value).__name__}")
    return value


def _tensor_or_none(value: Any, what: str) -> torch.Tensor | None:
    return None if value is None else _expect(value, torch.Tensor, what)


def call_result(value: Any) -> CallResult:
    """Check a ``call`` reply and build the :class:`CallResult` the grader tests read."""
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
        forbidden_used=sorted(
            n for n in _expect(data.get("forbidden_used", []), list, "forbidden_used") if n in FORBIDDEN_CALLS
        ),
    )


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
