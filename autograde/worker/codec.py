"""The bytes on the zygote's sockets, for both sides.

Control messages (trusted side <-> zygote) are JSON documents, one per SOCK_SEQPACKET message, optionally carrying
file descriptors. Data messages (trusted side <-> one sandboxed worker) are an 8-byte big-endian length followed by
``torch.save`` bytes of plain dicts. The worker reads requests with ``weights_only=False`` (they come from the
trusted side and may hold the grader's own small objects, such as an ``nn.Dropout`` to apply); the trusted side
reads replies with ``weights_only=True`` (no object is built but tensors and plain containers), and only after it
has checked their length; :mod:`autograde.isolation.replies` then checks what they hold.
"""

from __future__ import annotations

import io
import json
import socket
import struct
from typing import Any

import torch

CONTROL_MAX = 4 << 20
DATA_HEADER = struct.Struct("!Q")


class UnreadableMessage(Exception):
    """A data message that is not a weights-only ``torch.save`` of plain data."""


# ----------------------------------------------------------------------------------------------- control
def send_control(sock: socket.socket, message: Any, fds: tuple[int, ...] | list[int] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv_control(sock: socket.socket) -> tuple[Any, list[int]]:
    """The next control message and the descriptors it carried; (None, []) when the peer hung up."""
    data, fds, _, _ = socket.recv_fds(sock, CONTROL_MAX, 4)
    if not data:
        return None, []
    return json.loads(data), fds


# -------------------------------------------------------------------------------------------------- data
def frame(message: Any) -> bytes:
    """``message`` as the bytes of one data message (length header included)."""
    buf = io.BytesIO()
    torch.save(message, buf)
    data = buf.getvalue()
    return DATA_HEADER.pack(len(data)) + data


def send_data(sock: socket.socket, message: Any) -> None:
    sock.sendall(frame(message))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError("the grader closed the connection")
        got += k
    return bytes(buf)


def recv_request(sock: socket.socket) -> Any:
    """In a worker: the trusted side's next request (a full pickle: it may hold the grader's own objects)."""
    (size,) = DATA_HEADER.unpack(_recv_exact(sock, DATA_HEADER.size))
    return torch.load(io.BytesIO(_recv_exact(sock, size)), weights_only=False, map_location="cpu")


def decode_reply(payload: bytes) -> Any:
    """On the trusted side: a worker's reply, loaded as data only (``weights_only=True``)."""
    try:
        return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as exc:  # anything that is not a weights-only pickle of plain data
        raise UnreadableMessage(f"unreadable reply ({type(exc).__name__})") from None
