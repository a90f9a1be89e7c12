"""The trusted side of the sandbox: start the zygote, fork a confined worker per submission, kill it.

A :class:`Zygote` is one ``python -I -S`` process running :mod:`autograde.isolation.worker` (its sources are
sent over the control socket, so neither this package nor the references are on its path). It imports torch
once, finds out which protections the machine allows, and forks a :class:`Child` per submission in
milliseconds. A child confines itself (see :mod:`autograde.isolation.worker.confine`) and then says
"ready"; only a failure before that handshake counts as the sandbox's. After it, a child that exits, crashes,
runs past its time or stops answering is killed with everything it started, and only its own submission pays.

The worker sees, read-only, only what it needs: the standard library, site-packages without any copy of the
grader, a staged copy of ``course_utils`` and the system's libraries. The graders, references, solutions,
submissions, outputs and data are not visible at all (mount namespace or Landlock), and not writable (read-only
mounts, Landlock and, when the grader runs as root, a user of the worker's own).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograde.isolation import replies
from autograde.isolation.boot import BOOT, shipped_sources
from autograde.settings import Settings
from autograde.worker import codec
from autograde.worker.protections import FILESYSTEM, NAMES, PROTECTIONS

# Imported once per zygote, so that no submission pays for them.
PRELOAD = (
    "torch", "torch.nn", "torch.nn.functional", "numpy", "math", "course_utils", "course_utils.training",
    "course_utils.runtime", "matplotlib", "matplotlib.pyplot", "tqdm", "tqdm.auto",
)  # fmt: skip
STARTUP_TIMEOUT = 300.0
SCRATCH_CHECK = 0.1  # seconds between two measurements of a worker's scratch folder, where no tmpfs limits it
SCRATCH_ENTRIES = 10_000  # files and folders a worker may keep in its scratch folder
SYSTEM_READ_ROOTS = ("/usr", "/lib", "/lib64", "/lib32", "/etc", "/sys/devices/system/cpu")


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the student's code): the grader cannot be trusted to go on."""


class WorkerTimeout(Exception):
    """The worker did not answer in time (it was killed)."""


class WorkerCrashed(Exception):
    """The worker process ended; ``str(exc)`` says how (exit code or signal)."""


def describe_status(status: int) -> str:
    """A waitpid status in words, with the likely cause."""
    if status < 0:
        return "ended"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        cause = {
            "SIGKILL": "killed: out of memory, over the CPU-time limit or stopped by the grader",
            "SIGSEGV": "a segmentation fault",
            "SIGABRT": "aborted",
            "SIGXCPU": "over the CPU-time limit",
            "SIGBUS": "a bus error",
            "SIGFPE": "a floating-point exception",
            "SIGSYS": "a forbidden system call",
        }.get(name, "a signal")
        return f"was killed by {name} ({cause})"
    return f"exited with code {os.WEXITSTATUS(status)} (sys.exit or os._exit in your code?)"


def site_packages() -> list[str]:
    """The interpreter's site-packages (a worker's own ``sys.path`` holds only the standard library)."""
    return [p for p in site.getsitepackages() if os.path.isdir(p)]


def standard_library() -> list[str]:
    paths = {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")}
    return sorted(p for p in paths if p and os.path.isdir(p)) + [p for p in sys.path if p.endswith(".zip")]


def _below(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


@dataclass
class Protections:
    """What the zygote applies to every worker, and what the machine refused (with the reason)."""

    enabled: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)

    @property
    def isolates_files(self) -> bool:
        return any(p in self.enabled for p in FILESYSTEM)

    def text(self) -> str:
        """The table of protections (:data:`autograde.worker.protections.PROTECTIONS`), each on or off and why."""
        lines = ["Sandbox protections:"]
        for protection in PROTECTIONS:
            if protection.name in self.enabled:
                state = f"on   {protection.stops}"
            elif protection.name in self.disabled:
                state = f"off  {protection.stops} (switched off by the instructor)"
            else:
                state = f"off  {protection.stops} ({self.refused.get(protection.name, 'not available')})"
            lines.append(f"  {state}")
        return "\n".join(lines)


class Child:
    """One confined worker holding one submission's definitions."""

    def __init__(self, zygote: Zygote, pid: int, sock: socket.socket, scratch: Path):
        self.zygote, self.pid, self.sock, self.scratch = zygote, pid, sock, scratch
        self.status: int | None = None
        self.protections: dict = {}
        self.quota = zygote.settings.scratch_mb * 2**20

    @property
    def _watch_scratch(self) -> bool:
        """Without namespaces the scratch folder is a folder of the host, with no quota of its own: the trusted
        side measures it while it waits for the worker (with namespaces it is a tmpfs of the quota's size)."""
        return bool(self.protections) and "namespaces" not in self.protections

    def _over_quota(self) -> bool:
        size, entries = 0, 0
        for root, dirs, files in os.walk(self.scratch):
            entries += len(dirs) + len(files)
            for name in files:
                try:
                    size += os.lstat(os.path.join(root, name)).st_blocks * 512
                except OSError:
                    pass
            if size > self.quota or entries > SCRATCH_ENTRIES:
                return True
        return False

    def send(self, message: dict) -> None:
        try:
            self.sock.sendall(codec.frame(message))
        except OSError as exc:
            raise WorkerCrashed(self._ended()) from exc

    def _read(self, n: int, deadline: float) -> bytes:
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout()
            if not select.select([self.sock], [], [], min(left, SCRATCH_CHECK) if self._watch_scratch else left)[0]:
                if self._watch_scratch and self._over_quota():
                    self.kill()
                    raise WorkerCrashed(
                        f"was stopped: it wrote more than {self.quota / 2**20:g} MiB (or {SCRATCH_ENTRIES:,} files) "
                        "into its folder"
                    )
                continue
            try:
                data = self.sock.recv(min(n - got, 1 << 20))
            except OSError:  # e.g. reset: the worker died with a request unread
                data = b""
            if not data:
                raise WorkerCrashed(self._ended())
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)

    def recv(self, timeout: float) -> Any:
        """The next reply, as checked plain data; WorkerTimeout, WorkerCrashed or WorkerProtocolError."""
        deadline = time.monotonic() + timeout
        (size,) = codec.DATA_HEADER.unpack(self._read(codec.DATA_HEADER.size, deadline))
        if size > replies.MAX_REPLY_BYTES:
            raise replies.WorkerProtocolError(
                f"a reply of {size / 2**20:.0f} MiB (the limit is {replies.MAX_REPLY_BYTES / 2**20:.0f} MiB)"
            )
        return replies.decode(self._read(size, deadline))

    def handshake(self) -> None:
        """Wait for "ready": until then no student code has run, so any failure is the sandbox's."""
        try:
            reply = self.recv(STARTUP_TIMEOUT)
        except (WorkerTimeout, WorkerCrashed, replies.WorkerProtocolError) as exc:
            self.kill()
            self.zygote.fail(f"a sandboxed worker did not start ({type(exc).__name__}: {exc})")
        if not isinstance(reply, dict) or reply.get("op") != "ready":
            why = reply.get("error", "") if isinstance(reply, dict) else ""
            self.kill()
            self.zygote.fail(f"a sandbox could not be set up:\n{why or reply!r}")
        self.protections = reply.get("protections", {})

    def _ended(self) -> str:
        self.kill(wait=1.0)
        return describe_status(self.status if self.status is not None else -1)

    def kill(self, wait: float = 0.0) -> None:
        """Kill the worker and all it started (given ``wait`` s to end itself), reap it, delete its files."""
        if self.status is not None:
            return
        self.sock.close()
        self.status = self.zygote.reap(self.pid, wait)
        for path in (self.scratch, Path(f"{self.scratch}-root")):
            shutil.rmtree(path, ignore_errors=True)


class Zygote:
    """A worker process that has imported torch and forks confined children on request.

    hide: paths that workers must not see (every copy of the grader, the submissions, outputs, data);
    extra_seconds: the largest time allowance a submission may get on top of ``settings.submission_seconds``
    (the workers' CPU-time limit covers it); disable: protections the instructor switched off (names of
    :data:`~autograde.worker.protections.NAMES`); allow_unprotected: run even when no protection of the
    filesystem is available (otherwise :class:`SandboxError`).
    """

    def __init__(
        self,
        settings: Settings,
        hide: Iterable[Path] = (),
        extra_seconds: float = 0.0,
        *,
        disable: tuple[str, ...] = (),
        allow_unprotected: bool = False,
    ):
        self.settings = settings
        self.extra_seconds = extra_seconds
        # AUTOGRADE_DISABLE (comma-separated) switches protections off from outside, e.g. to rehearse Docker
        from_env = [p.strip() for p in os.environ.get("AUTOGRADE_DISABLE", "").split(",") if p.strip()]
        unknown = sorted(set(from_env) - set(NAMES))
        if unknown:
            raise ValueError(f"AUTOGRADE_DISABLE names unknown protections {unknown}; known: {', '.join(NAMES)}")
        self.disable = tuple(disable) + tuple(from_env)
        self.allow_unprotected = allow_unprotected
        self.owner = os.getpid()
        self.base = Path(tempfile.mkdtemp(prefix="nb-"))  # a name that does not say "grading" to a submission
        os.chmod(self.base, 0o711)  # workers of another user may enter their own folders, but not list them
        self.lib = self.base / "lib"
        self.probe_dir = self.base / "probe"
        self.probe_dir.mkdir(mode=0o700)
        self._stage_course_utils()
        self.paths = [str(self.lib), *site_packages(), *standard_library()]
        read_roots = sorted({*self.paths, *(r for r in SYSTEM_READ_ROOTS if os.path.exists(r))})
        sensitive = [str(p.resolve()) for p in map(Path, hide) if p.exists()]
        self.policy = {
            "read_roots": read_roots,
            "hide": sorted({p for p in sensitive if _below(p, read_roots) and not _below(p, [str(self.lib)])}),
        }
        self.failure: str | None = None
        self.ready: dict | None = None
        self._start()

    def open_channel(self) -> socket.socket:
        """A control channel of its own for a lane (forked from here): the zygote serves each channel
        separately, and kills the workers of a channel that closes (a lane that was stopped)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._ask({"op": "connect"}, [theirs.fileno()])
        finally:
            theirs.close()
        return ours

    def use_channel(self, channel: socket.socket) -> None:
        """In a lane: send every request over ``channel`` (see :meth:`open_channel`)."""
        self.control = channel
        self.control.settimeout(60)

    def _stage_course_utils(self) -> None:
        import course_utils

        source = Path(course_utils.__file__).resolve().parent
        shutil.copytree(source, self.lib / "course_utils", ignore=shutil.ignore_patterns("__pycache__"))
        for folder, _, files in os.walk(self.lib):
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)

    def _env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.probe_dir),
            "TMPDIR": str(self.probe_dir),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(self.probe_dir / "matplotlib"),
            # torch sets this on first use of its dispatch modes when it is unset: keep it in the worker's folder
            "TORCHINDUCTOR_CACHE_DIR": str(self.probe_dir / "torchinductor"),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "COURSE_FAST": "1",
            "TQDM_DISABLE": "1",
            "PYTHONHASHSEED": "0",
        }

    def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log = self.base / "zygote.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", BOOT, str(child.fileno())],
                pass_fds=[child.fileno()],
                env=self._env(),
                cwd=self.probe_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        child.close()
        self.control = parent
        self.control.settimeout(STARTUP_TIMEOUT)
        config = {
            "modules": shipped_sources(),
            "prepend": [str(self.lib)],
            "append": site_packages(),
            "preload": list(PRELOAD),
            "policy": self.policy,
            "probe_dir": str(self.probe_dir),
            "limits": self.settings.worker_limits(self.extra_seconds),
            "enable": [p for p in NAMES if p not in self.disable],
        }
        codec.send_control(self.control, config)

    def wait_ready(self) -> dict:
        """Block until the zygote has imported torch and probed the protections (it starts in the background).

        Raises SandboxError when it did not start, or when no protection of the filesystem is available and
        the instructor did not allow running unprotected.
        """
        if self.ready is None:
            try:
                self.ready, _ = codec.recv_control(self.control)
            except OSError:
                self.ready = None
            if not self.ready:
                self.process.kill()
                self.process.wait()
                raise SandboxError(f"the sandbox worker did not start:\n{self.log.read_text()[-3000:]}")
            self.control.settimeout(60)
            protections = self.protections
            if not protections.isolates_files and not self.allow_unprotected:
                self.failure = (
                    "no protection of the filesystem is available here, so student code could read and "
                    "change files it must not (other submissions, the graders):\n"
                    f"{protections.text()}\nRun the grader where Linux namespaces or Landlock are allowed, or "
                    "pass --allow-unprotected to grade anyway (only for code you trust)."
                )
                raise SandboxError(self.failure)
        return self.ready

    @property
    def protections(self) -> Protections:
        ready = self.wait_ready() if self.ready is None else self.ready
        return Protections(list(ready["enabled"]), dict(ready["refused"]), list(self.disable))

    def spawn(self, time_limit: float) -> Child:
        """A fresh confined child in a new empty scratch folder, after its "ready" handshake."""
        scratch = Path(tempfile.mkdtemp(prefix="work-", dir=self.base))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        request = {
            "op": "fork",
            "scratch": str(scratch),
            "time_limit": time_limit,
            "limits": self.settings.worker_limits(self.extra_seconds),
        }
        try:
            reply = self._ask(request, [theirs.fileno()])
        finally:
            theirs.close()
        child = Child(self, reply["pid"], ours, scratch)
        child.handshake()
        return child

    def reap(self, pid: int, wait: float = 0.0) -> int:
        """The status of child ``pid``, killed (with its process group) unless it ends within ``wait`` s."""
        return self._ask({"op": "reap", "pid": pid, "wait": wait})["status"]

    def _ask(self, request: dict, fds: list[int] = ()) -> dict:
        if self.failure:
            raise SandboxError(self.failure)
        self.wait_ready()
        try:
            codec.send_control(self.control, request, fds)
            reply, _ = codec.recv_control(self.control)
        except OSError:
            reply = None
        if not isinstance(reply, dict):
            self.fail("the sandbox's zygote process stopped answering")
        return reply

    def fail(self, message: str) -> None:
        """Record that the sandbox (not a submission) failed, and raise: grading with it cannot go on."""
        self.failure = self.failure or message
        raise SandboxError(message)

    def close(self) -> None:
        """Stop the zygote (it kills any child left) and remove its files; only its owner may."""
        if os.getpid() != self.owner:
            return
        self.control.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.base, ignore_errors=True)
