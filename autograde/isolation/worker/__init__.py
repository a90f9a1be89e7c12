"""The sandboxed side of the isolated grader: standard library (and torch) only, never the grader itself.

The trusted side starts ``python -I -S -c BOOT FD`` with a scrubbed environment; FD is a SOCK_SEQPACKET
control socket. Its first message carries the sources of :data:`SHIPPED` (read by the trusted side from this
package, which no worker can write to), which BOOT runs as private modules under ``_autograde_sandbox``, so
that neither the grader's sources nor its references are on the zygote's path. Modules:

- :mod:`.framing`: the socket framing of control and data messages;
- :mod:`.confine`: the protections the kernel enforces (namespaces, user, capabilities, Landlock, seccomp,
  resource limits);
- :mod:`.zygote`: the process that imports torch once and forks one worker per submission;
- :mod:`.serve`: a worker's set-up handshake and its request loop.
"""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent.parent  # autograde/
ROOT = "_autograde_sandbox"
# module name (relative to autograde) -> file, in the order they are loaded
SHIPPED = (
    ("results", "results.py"),
    ("student", "student.py"),
    ("isolation", None),
    ("isolation.worker", None),
    ("isolation.worker.framing", "isolation/worker/framing.py"),
    ("isolation.worker.confine", "isolation/worker/confine.py"),
    ("isolation.worker.serve", "isolation/worker/serve.py"),
    ("isolation.worker.zygote", "isolation/worker/zygote.py"),
)

BOOT = f"""
import json, socket, sys, types
control = socket.socket(fileno=int(sys.argv[1]))
data, _, _, _ = socket.recv_fds(control, 1 << 24, 0)
config = json.loads(data)
sys.path[:] = config["prepend"] + sys.path + config["append"]

def module(name, source):
    full = "{ROOT}" + ("." + name if name else "")
    m = types.ModuleType(full)
    m.__file__ = "<sandbox>/" + (name or "").replace(".", "/") + ".py"
    if source is None:
        m.__path__ = []
        m.__package__ = full
    else:
        m.__package__ = full.rpartition(".")[0]
    sys.modules[full] = m
    if name:
        parent, _, last = full.rpartition(".")
        setattr(sys.modules[parent], last, m)
    if source is not None:
        exec(compile(source, m.__file__, "exec"), m.__dict__)

module("", None)
for name, source in config["modules"]:
    module(name, source)
sys.modules["{ROOT}.isolation.worker.zygote"].main(control, config)
"""


def shipped_sources() -> list[tuple[str, str | None]]:
    """(module name, source or None for a package) of every module the zygote runs, read now."""
    return [(name, None if path is None else (PACKAGE / path).read_text()) for name, path in SHIPPED]
