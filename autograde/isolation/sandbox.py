"""The trusted side of the sandbox: start a zygote worker, fork a sandboxed child per submission, kill it.

A :class:`Zygote` is one ``python -I -S`` process running :mod:`autograde.isolation.worker` (its source is
passed with ``-c``, so neither this package nor the references are on its path). It imports torch once; every
:class:`Child` it forks costs milliseconds. A child is killed (with everything it started) when its submission
is done, when a call runs past the time limit or when it stops answering; the zygote itself never runs student
code, so it survives every submission.
"""

from __future__ import annotations

import contextlib
import multiprocessing
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import autograde
from autograde.isolation import worker as worker_module
from autograde.isolation.wire import HEADER, MAX_REPLY_BYTES, WorkerProtocolError, decode, encode

PACKAGE_DIR = Path(autograde.__file__).resolve().parent
PROTOCOL_SOURCE = PACKAGE_DIR / "student.py"
# Imported once per zygote, so that no submission pays for them.
PRELOAD = (
    "torch",
    "torch.nn",
    "torch.nn.functional",
    "numpy",
    "math",
    "course_utils",
    "course_utils.training",
    "course_utils.runtime",
    "matplotlib",
    "matplotlib.pyplot",
    "tqdm",
    "tqdm.auto",
    "subprocess",
)
STARTUP_TIMEOUT = 300.0
READ_ROOTS_SYSTEM = (
    "/usr",
    "/lib",
    "/lib64",
    "/etc",
    "/dev/null",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/sys/devices/system/cpu",
    "/opt",
)


@dataclass(frozen=True)
class Limits:
    """What one sandboxed submission may use.

    timeout: seconds per call (building and running one module, or running one cell's definitions); the worker
        raises at ``timeout`` and the trusted side kills it at ``timeout + grace``.
    memory_mb: address space on top of what the worker holds after importing torch.
    cpu_seconds: CPU time for one submission's whole worker process.
    """

    timeout: float = 30.0
    memory_mb: int = 2048
    cpu_seconds: int = 600
    file_bytes: int = 16 * 2**20
    open_files: int = 256

    @property
    def grace(self) -> float:
        return max(2.0, 0.25 * self.timeout)


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
        }.get(name, "a signal")
        return f"was killed by {name} ({cause})"
    code = os.WEXITSTATUS(status)
    if code == worker_module.SETUP_FAILED:
        return f"could not set up its sandbox (exit code {code}); tell your instructor"
    if code == worker_module.SERVE_FAILED:
        return f"could not send a result back (exit code {code}): did your code replace torch.save?"
    return f"exited with code {code} (sys.exit or os._exit in your code?)"


def _below(path: Path, ancestor: Path) -> bool:
    return path == ancestor or ancestor in path.parents


def cover(hide: list[Path], keep: list[Path]) -> list[Path]:
    """``hide``, with each path that holds something in ``keep`` replaced by its other entries (recursively).

    A path inside a kept folder is still hidden (an installed ``site-packages/autograde``); ``/`` never is.
    """
    result: list[Path] = []
    for path in (p.resolve() for p in hide):
        if not path.exists() or path == Path(path.anchor):
            continue
        if any(_below(k, path) for k in keep):
            if path.is_dir():
                result.extend(cover(sorted(path.iterdir()), keep))
            continue
        result.append(path)
    return sorted(set(result))


def site_packages() -> list[str]:
    """The interpreter's site-packages (a worker's own ``sys.path`` holds only the standard library)."""
    return [p for p in site.getsitepackages() if os.path.isdir(p)]


def standard_library() -> list[str]:
    return [sysconfig.get_path("stdlib"), *(p for p in sys.path if p.endswith(".zip"))]


class Child:
    """One sandboxed process holding one submission's definitions."""

    def __init__(self, zygote: Zygote, pid: int, sock: socket.socket, cwd: Path):
        self.zygote, self.pid, self.sock, self.cwd = zygote, pid, sock, cwd
        self.status: int | None = None

    def send(self, message: dict) -> None:
        try:
            self.sock.sendall(encode(message))
        except OSError as exc:
            raise WorkerCrashed(self._ended()) from exc

    def _read(self, n: int, deadline: float) -> bytes:
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise WorkerTimeout()
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
        (size,) = HEADER.unpack(self._read(HEADER.size, deadline))
        if size > MAX_REPLY_BYTES:
            raise WorkerProtocolError(
                f"a reply of {size / 2**20:.0f} MiB (the limit is {MAX_REPLY_BYTES / 2**20:.0f} MiB)"
            )
        return decode(self._read(size, deadline))

    def _ended(self) -> str:
        error = self.cwd / worker_module.SETUP_ERROR
        self.kill(wait=1.0, keep=error)
        if (
            self.status is not None
            and os.WIFEXITED(self.status)
            and os.WEXITSTATUS(self.status) == worker_module.SETUP_FAILED
        ):
            why = error.read_text() if error.is_file() else "(no details)"
            shutil.rmtree(self.cwd, ignore_errors=True)
            self.zygote.fail(f"a sandbox could not be set up:\n{why}")
        shutil.rmtree(self.cwd, ignore_errors=True)
        return describe_status(self.status if self.status is not None else -1)

    def kill(self, wait: float = 0.0, keep: Path | None = None) -> None:
        """Kill the child and all it started (given ``wait`` s to end itself), reap it, delete its files."""
        if self.status is not None:
            return
        self.sock.close()
        self.status = self.zygote.reap(self.pid, wait)
        if keep is None:
            shutil.rmtree(self.cwd, ignore_errors=True)


class Zygote:
    """A worker process that has imported torch and forks sandboxed children on request."""

    def __init__(self, limits: Limits, hide: list[Path] = (), namespaces: bool = True):
        self.limits = limits
        self.owner = os.getpid()
        self.base = Path(tempfile.mkdtemp(prefix="nb-"))
        self.lib = self.base / "lib"
        self.home = self.base / "home"
        self.home.mkdir()
        self._stage_course_utils()
        paths = [str(self.lib), *site_packages(), *standard_library()]
        keep = [Path(p).resolve() for p in [*paths, *READ_ROOTS_SYSTEM]] + [self.base.resolve()]
        self.hidden = [str(p) for p in cover([Path(h) for h in hide] + self._grader_paths(), keep)]
        read_roots = [*paths, str(self.home), *READ_ROOTS_SYSTEM]
        self.policy = {
            "read_roots": sorted({os.path.realpath(p) for p in read_roots} | set(read_roots)),
            "deny_roots": self.hidden,
        }
        self._lock = contextlib.nullcontext()
        self.failure: str | None = None
        self.lost = False
        self._want_namespaces = namespaces
        self.ready: dict | None = None
        self._start()

    def share(self) -> None:
        """Let processes forked from here (the lanes) use this zygote, one request at a time."""
        self.wait_ready()
        self._lock = multiprocessing.get_context("fork").Lock()

    @property
    def namespaces(self) -> bool:
        """Whether each child gets its own user, PID, mount and network namespaces."""
        return bool(self.wait_ready()["namespaces"]) and self._want_namespaces

    @staticmethod
    def _grader_paths() -> list[Path]:
        """This package (and any installed copy), and every other entry of the repository it lives in."""
        repo = PACKAGE_DIR.parent
        paths = [PACKAGE_DIR, *(Path(p) / "autograde" for p in site_packages())]
        if (repo / "pyproject.toml").is_file():
            paths += [p for p in repo.iterdir() if p.name != "course_utils"]
        return paths

    def _stage_course_utils(self) -> None:
        import course_utils

        source = Path(course_utils.__file__).resolve().parent
        shutil.copytree(source, self.lib / "course_utils", ignore=shutil.ignore_patterns("__pycache__"))

    def _env(self) -> dict[str, str]:
        home = str(self.home)
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "TMPDIR": home,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(self.home / "matplotlib"),
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
        # Named under /autograde/ so that tracebacks shown to students skip the worker's own frames.
        source = Path(worker_module.__file__).read_text()
        boot = f"exec(compile({source!r}, '<sandbox>/autograde/isolation/worker.py', 'exec'))"
        self.log = self.base / "zygote.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", boot, str(child.fileno())],
                pass_fds=[child.fileno()],
                env=self._env(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        child.close()
        self.control = parent
        self.control.settimeout(STARTUP_TIMEOUT)
        config = {
            "prepend": [str(self.lib)],
            "append": site_packages(),
            "preload": list(PRELOAD),
            "protocol_source": PROTOCOL_SOURCE.read_text(),
        }
        worker_module.send_control(self.control, config)

    def wait_ready(self) -> dict:
        """Block until the zygote has imported torch (it starts in the background)."""
        if self.ready is None:
            try:
                self.ready, _ = worker_module.recv_control(self.control)
            except OSError:
                self.ready = None
            if not self.ready:
                self.process.kill()
                self.process.wait()
                raise SandboxError(f"the sandbox worker did not start:\n{self.log.read_text()[-3000:]}")
            self.control.settimeout(60)
        return self.ready

    def spawn(self, time_limit: float) -> Child:
        """A fresh sandboxed child in a new empty working directory."""
        cwd = Path(tempfile.mkdtemp(prefix="work-", dir=self.base))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        limits = self.limits
        request = {
            "op": "fork",
            "cwd": str(cwd),
            "time_limit": time_limit,
            "namespaces": self.namespaces,
            "hide": self.hidden,
            "policy": self.policy,
            "limits": {
                "memory_mb": limits.memory_mb,
                "cpu_seconds": limits.cpu_seconds,
                "file_bytes": limits.file_bytes,
                "open_files": limits.open_files,
                "processes": 0,  # no fork at all (root ignores it: the audit hook and namespaces stop root)
            },
        }
        try:
            reply = self._ask(request, [theirs.fileno()])
        finally:
            theirs.close()
        return Child(self, reply["pid"], ours, cwd)

    def reap(self, pid: int, wait: float = 0.0) -> int:
        """The status of child ``pid``, killed (with its process group) unless it ends within ``wait`` s."""
        return self._ask({"op": "reap", "pid": pid, "wait": wait})["status"]

    def _ask(self, request: dict, fds: list[int] = ()) -> dict:
        if self.failure:
            raise SandboxError(self.failure)
        self.wait_ready()
        with self._lock:
            try:
                worker_module.send_control(self.control, request, fds)
                reply, _ = worker_module.recv_control(self.control)
            except OSError:
                reply = None
        if not isinstance(reply, dict):
            self.lost = True
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
