"""The zygote: imports torch once, finds out which protections the machine allows, then forks one confined
worker per submission on request. It never runs student code.

Control messages: ``{"op": "fork", "scratch": DIR, "time_limit": S, "limits": {...}}`` with one descriptor
(the worker's data socket) answers ``{"pid": PID}``; ``{"op": "reap", "pid": PID, "wait": S}`` answers
``{"status": waitpid status}``. The first message the zygote sends is ``{"ready": True, ...}`` with the
protections it will apply (``enabled``) and those the machine refused (``refused``, with the reason).
"""

import gc
import os
import selectors
import signal
import socket
import time

from . import codec, protections, serve

UID_BASE = 1_990_000  # workers of a grader running as root get uids UID_BASE + slot, one per live worker


def main(control, config):
    errors = []
    for name in config["preload"]:
        try:
            __import__(name)
        except Exception as exc:  # a missing optional module only matters if a submission imports it
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    import torch

    torch.set_num_threads(1)
    serve.warm_up()
    policy = config["policy"]

    def plan(scratch, uid, enable, limits):
        return protections.Plan(policy["read_roots"], policy["hide"], scratch, uid, enable, limits)

    try:
        allowed, refused = protections.probe(plan(config["probe_dir"], UID_BASE, protections.NAMES, config["limits"]))
    except protections.ConfinementError as exc:
        allowed, refused = [], {"all": str(exc)}
    enabled = [p for p in allowed if p in config["enable"]]
    gc.collect()
    gc.freeze()
    codec.send_control(
        control,
        {"ready": True, "pid": os.getpid(), "preload_errors": errors, "enabled": enabled, "refused": refused},
    )
    children = {}  # pid -> (uid slot, the channel that asked for it)
    channels = selectors.DefaultSelector()
    channels.register(control, selectors.EVENT_READ)
    while True:
        for key, _ in channels.select():
            channel = key.fileobj
            try:
                message, fds = codec.recv_control(channel)
            except OSError:
                message, fds = None, []
            if message is None:
                if channel is control:  # the grader is done: end every worker, then the zygote
                    _kill_all(children)
                    return
                channels.unregister(channel)
                for pid in [p for p, (_, owner) in children.items() if owner is channel]:
                    _reap(pid, 0.0)
                    del children[pid]
                channel.close()
                continue
            if message["op"] == "connect":
                lane = socket.socket(fileno=fds[0])
                channels.register(lane, selectors.EVENT_READ)
                codec.send_control(channel, {"connected": True})
            elif message["op"] == "fork":
                slot = min(set(range(len(children) + 1)) - {s for s, _ in children.values()})
                pid = os.fork()
                if pid == 0:
                    code = serve.SETUP_FAILED
                    try:
                        worker_plan = plan(message["scratch"], UID_BASE + 1 + slot, enabled, message["limits"])
                        request, data_fd = {"time_limit": message["time_limit"]}, fds[0]
                        # Nothing of the zygote reaches the worker: its channels and selector are closed, every
                        # descriptor but the worker's own data socket too, and its objects are dropped.
                        for key in list(channels.get_map().values()):
                            key.fileobj.close()
                        channels.close()
                        del channels, children, control, config, message, key, channel
                        _close_all_but(data_fd)
                        gc.collect()
                        code = serve.run_child(data_fd, request, worker_plan)
                    finally:
                        os._exit(code)
                for fd in fds:
                    os.close(fd)
                children[pid] = (slot, channel)
                codec.send_control(channel, {"pid": pid})
            elif message["op"] == "reap":
                pid = message["pid"]
                status = _reap(pid, message.get("wait", 0.0)) if pid in children else -1
                children.pop(pid, None)
                codec.send_control(channel, {"status": status})


def _close_all_but(keep):
    """Close every descriptor above stderr except ``keep`` (the worker's data socket)."""
    top = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1 << 16
    os.closerange(3, keep)
    os.closerange(keep + 1, top)


def _kill_all(children):
    for pid in children:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _reap(pid, wait):
    """The child's waitpid status, after giving it ``wait`` seconds to end by itself, then killing it."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.005)
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return os.waitpid(pid, 0)[1]
