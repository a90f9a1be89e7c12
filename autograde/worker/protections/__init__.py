"""Confine a forked worker with what the kernel enforces, before any student code runs (standard library only).

One module per mechanism (:mod:`.filesystem`, :mod:`.identity`, :mod:`.landlock`, :mod:`.seccomp`,
:mod:`.rlimits`), behind one table, :data:`PROTECTIONS`: each protection's name, what it stops, and how it is
applied. :func:`confine` applies those a :class:`Plan` asks for, in the table's order; the run prints the table
with what is on and off (and why), and the README lists it. :func:`probe` tries every protection in a throw-away
child and reports which the machine allows, so that a real worker only attempts those.
"""

import os
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from .filesystem import build_root, enter_namespaces, visible_entries
from .identity import become, drop_bounding_set, drop_capabilities, no_new_privs
from .landlock import apply_landlock
from .libc import ConfinementError, write
from .rlimits import set_limits
from .seccomp import apply_seccomp

__all__ = ["PROTECTIONS", "NAMES", "FILESYSTEM", "ConfinementError", "Plan", "Protection", "confine", "probe"]


class Plan:
    """What to apply to one worker. ``read_roots``: paths it may read (files or folders); ``hide``: paths
    under a read root it must not see; ``scratch``: its own folder (read-write); ``uid``: its user when the
    grader is root; ``enable``: the protections to apply (names of :data:`NAMES`)."""

    def __init__(self, read_roots, hide, scratch, uid, enable, limits):
        self.read_roots = [p for p in read_roots if os.path.exists(p)]
        self.hide = [p for p in hide if os.path.exists(p)]
        self.scratch = scratch
        self.uid = uid
        self.enable = set(enable)
        self.limits = limits


@dataclass
class _Worker:
    """What applying the protections needs besides the plan."""

    as_root: bool
    keep_fds: tuple[int, ...]


def _namespaces(plan, worker):
    """New namespaces, then fork twice: this process stays outside the new PID namespace and mirrors the
    namespace's init, which mirrors the worker (init ignores signals sent from inside, and when it ends the kernel
    kills everything in the namespace). Only the worker returns; the others close ``keep_fds``."""
    new_root = plan.scratch.rstrip("/") + "-root"
    os.mkdir(new_root, 0o755)
    enter_namespaces(worker.as_root)
    for by_signal in (True, False):
        pid = os.fork()
        if pid:
            for fd in worker.keep_fds:
                os.close(fd)
            _mirror(pid, by_signal)
    os.setsid()  # a session of its own inside the namespace: kill(0) reaches nobody else
    build_root(plan, new_root)
    os.chdir(plan.scratch)
    return "mount, PID, network, IPC and UTS" + ("" if worker.as_root else ", user")


def _separate_user(plan, worker):
    if not worker.as_root:
        raise ConfinementError("a separate user needs the grader to run as root")
    os.chown(plan.scratch, plan.uid, plan.uid)
    os.chmod(plan.scratch, 0o700)
    drop_bounding_set()  # needs CAP_SETPCAP: before the switch
    become(plan.uid)
    return f"uid {plan.uid}"


def _no_new_privs(plan, worker):
    no_new_privs()
    return "on"


def _capabilities(plan, worker):
    drop_bounding_set()
    drop_capabilities()
    return "all dropped"


def _landlock(plan, worker):
    writable = [plan.scratch, "/dev/null"] + (["/tmp"] if "namespaces" in plan.enable else [])
    system = ["/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu"]
    system += ["/dev/zero", "/dev/urandom", "/dev/random"]
    return f"ABI {apply_landlock(visible_entries(plan) + system, writable)}"


def _resource_limits(plan, worker):
    set_limits(plan.limits)
    return "memory, CPU time, file size, open files"


def _seccomp(plan, worker):
    apply_seccomp()
    return "on"


@dataclass(frozen=True)
class Protection:
    """name: as on the command line (``--disable NAME``); stops: what it stops, in words; apply: applies it to this
    process and returns what was applied, in words."""

    name: str
    stops: str
    apply: Callable[[Plan, _Worker], str]


PROTECTIONS = (
    Protection(
        "namespaces",
        "private filesystem view (only the interpreter, the libraries and its scratch folder exist; the scratch "
        "folder is a tmpfs of the quota's size), PID, network, IPC and UTS namespaces",
        _namespaces,
    ),
    Protection("separate_user", "an unprivileged user of its own, different for every live worker", _separate_user),
    Protection("no_new_privs", "no_new_privs: no privilege gained through set-uid programs", _no_new_privs),
    Protection("capabilities", "every capability dropped, the bounding set included", _capabilities),
    Protection(
        "landlock",
        "Landlock rules: reads only the read roots, writes only its scratch folder; no TCP; no signals or abstract "
        "sockets outside the worker",
        _landlock,
    ),
    Protection("resource_limits", "limits on memory, CPU time, file size and open files", _resource_limits),
    Protection(
        "seccomp",
        "seccomp system-call filter: no new processes, exec, sockets, ptrace, mounts, namespaces or SysV IPC; no "
        "signals, limits or priorities of other processes",
        _seccomp,
    ),
)
NAMES = tuple(p.name for p in PROTECTIONS)
# Without one of these, student code could read files it must not see: the grader refuses to run.
FILESYSTEM = ("namespaces", "landlock")


def _mirror(pid, by_signal):
    """Wait for ``pid`` and end the same way: by its signal (``by_signal``) or by exit code 128 + signal."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    if by_signal and code > 128:
        signal.signal(code - 128, signal.SIG_DFL)
        os.kill(os.getpid(), code - 128)
    os._exit(code)


def confine(plan, keep_fds=()):
    """Apply ``plan`` to this process (a fresh child of the zygote), in the order of :data:`PROTECTIONS`.
    Returns what was applied: name -> words."""
    try:  # the kernel's out-of-memory killer takes a worker before anything else
        write("/proc/self/oom_score_adj", "1000")
    except OSError:
        pass
    os.chdir(plan.scratch)
    worker = _Worker(os.geteuid() == 0, tuple(keep_fds))
    return {p.name: p.apply(plan, worker) for p in PROTECTIONS if p.name in plan.enable}


def probe(plan):
    """Which protections this machine allows: each tried alone in a throw-away child, then all together.

    Returns (allowed names, {name: reason refused}).
    """
    refused = {}
    for name in NAMES:
        if name == "separate_user" and os.geteuid() != 0:
            refused[name] = "the grader does not run as root"
            continue
        ok, why = _try(plan, {name} | ({"no_new_privs"} if name in ("landlock", "seccomp") else set()))
        if not ok:
            refused[name] = why
    allowed = [n for n in NAMES if n not in refused]
    ok, why = _try(plan, set(allowed))
    if not ok:
        raise ConfinementError(f"the protections work one by one but not together: {why}")
    return allowed, refused


def _try(plan, names):
    scratch = tempfile.mkdtemp(prefix="probe-", dir=plan.scratch)
    try:
        return _trial(Plan(plan.read_roots, plan.hide, scratch, plan.uid, names, plan.limits))
    finally:
        for path in (scratch, scratch + "-root"):
            try:
                os.rmdir(path)
            except OSError:
                pass


def _trial(trial):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 1
        try:
            confine(trial, keep_fds=(write,))
            os.write(write, b"ok")
            code = 0
        except BaseException as exc:  # noqa: BLE001 - the reason goes back to the zygote
            try:
                os.write(write, f"{type(exc).__name__}: {exc}".encode()[:1000])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while True:
        data = os.read(read, 4096)
        if not data:
            break
        chunks.append(data)
    os.close(read)
    os.waitpid(pid, 0)
    message = b"".join(chunks).decode(errors="replace")
    return message == "ok", message or "the trial process died"
