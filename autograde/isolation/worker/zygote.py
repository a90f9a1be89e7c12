"""The zygote: imports torch once, finds out which protections the machine allows, then forks one confined
worker per submission on request. It never runs student code.

Control messages: ``{"op": "fork", "scratch": DIR, "time_limit": S, "limits": {...}}`` with one descriptor
(the worker's data socket) answers ``{"pid": PID}``; ``{"op": "reap", "pid": PID, "wait": S}`` answers
``{"status": waitpid status}``. The first message the zygote sends is ``{"ready": True, ...}`` with the
protections it will apply (``enabled``) and those the machine refused (``refused``, with the reason).
"""

import os
import selectors
import signal
import socket
import time

from . import confine, framing, serve

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
    serve.warm_up(torch)
    policy = config["policy"]

    def plan(scratch, uid, enable, limits):
        return confine.Plan(policy["read_roots"], policy["hide"], scratch, uid, enable, limits)

    try:
        allowed, refused = confine.probe(plan(config["probe_dir"], UID_BASE, confine.PROTECTIONS, config["limits"]))
    except confine.ConfinementError as exc:
        allowed, refused = [], {"all": str(exc)}
    enabled = [p for p in allowed if p in config["enable"]]
    import gc

    gc.collect()
    gc.freeze()
    framing.send_control(
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
                message, fds = framing.recv_control(channel)
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
                framing.send_control(channel, {"connected": True})
            elif message["op"] == "fork":
                slot = min(set(range(len(children) + 1)) - {s for s, _ in children.values()})
                pid = os.fork()
                if pid == 0:
                    code = serve.SETUP_FAILED
                    try:
                        for key in list(channels.get_map().values()):
                            key.fileobj.close()
                        worker_plan = plan(message["scratch"], UID_BASE + 1 + slot, enabled, message["limits"])
                        code = serve.run_child(fds[0], message, torch, worker_plan)
                    finally:
                        os._exit(code)
                for fd in fds:
                    os.close(fd)
                children[pid] = (slot, channel)
                framing.send_control(channel, {"pid": pid})
            elif message["op"] == "reap":
                pid = message["pid"]
                status = _reap(pid, message.get("wait", 0.0)) if pid in children else -1
                children.pop(pid, None)
                framing.send_control(channel, {"status": status})


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
