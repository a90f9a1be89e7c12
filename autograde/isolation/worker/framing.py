"""What crosses the zygote's sockets (standard library only; the data framing takes torch as an argument).

Control messages (trusted side <-> zygote) are JSON documents, one per SOCK_SEQPACKET message, optionally
carrying file descriptors. Data messages (trusted side <-> one sandboxed worker) are an 8-byte big-endian
length followed by ``torch.save`` bytes of plain dicts. The worker reads requests with
``weights_only=False`` (they come from the trusted side and may hold the grader's own small objects, such as an
``nn.Dropout`` to apply); the trusted side reads replies with ``weights_only=True`` and checks them
(:mod:`autograde.isolation.wire`).
"""

import io
import json
import socket
import struct

CONTROL_MAX = 4 << 20
DATA_HEADER = struct.Struct("!Q")


def send_control(sock, message, fds=()):
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv_control(sock):
    """The next control message and the descriptors it carried; (None, []) when the peer hung up."""
    data, fds, _, _ = socket.recv_fds(sock, CONTROL_MAX, 4)
    if not data:
        return None, []
    return json.loads(data), fds


def _recv_exact(sock, n):
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError("the grader closed the connection")
        got += k
    return bytes(buf)


def recv_request(sock, torch):
    """A request from the trusted side (full pickle: it may hold the grader's own objects)."""
    (size,) = DATA_HEADER.unpack(_recv_exact(sock, DATA_HEADER.size))
    return torch.load(io.BytesIO(_recv_exact(sock, size)), weights_only=False, map_location="cpu")


def frame(torch, message):
    """``message`` as the bytes of one data message (length header included)."""
    buf = io.BytesIO()
    torch.save(message, buf)
    data = buf.getvalue()
    return DATA_HEADER.pack(len(data)) + data


def send_data(sock, torch, message):
    sock.sendall(frame(torch, message))
