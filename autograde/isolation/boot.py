"""How the zygote starts: ``python -I -S -c BOOT FD``, with the sources of :mod:`autograde.worker` sent over FD.

FD is a SOCK_SEQPACKET control socket. Its first message is the zygote's configuration, which carries the
source of every ``.py`` file of the ``autograde/worker`` folder (read now, by the trusted side, from files no
worker can write). BOOT serves them as the package ``_autograde_sandbox`` through a finder of its own, so that
neither the grader's folder nor its references are on the zygote's path, then runs the zygote's main loop.
"""

from __future__ import annotations

from pathlib import Path

WORKER_PACKAGE = Path(__file__).resolve().parent.parent / "worker"
ROOT = "_autograde_sandbox"

BOOT = f"""
import importlib.abc, importlib.util, json, socket, sys
control = socket.socket(fileno=int(sys.argv[1]))
data, _, _, _ = socket.recv_fds(control, 1 << 24, 0)
config = json.loads(data)
sys.path[:] = config["prepend"] + sys.path + config["append"]
SOURCES = {{"{ROOT}" + ("." + name if name else ""): (source, package) for name, source, package in config["modules"]}}


class Shipped(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in SOURCES:
            return None
        spec = importlib.util.spec_from_loader(
            fullname, self, origin="<sandbox>/" + fullname.replace(".", "/") + ".py", is_package=SOURCES[fullname][1]
        )
        spec.has_location = True  # __file__ = the origin: tracebacks tell the grader's frames from the student's
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(compile(SOURCES[module.__name__][0], module.__spec__.origin, "exec"), module.__dict__)


sys.meta_path.insert(0, Shipped())
import {ROOT}.zygote
{ROOT}.zygote.main(control, config)
"""


def shipped_sources(folder: Path = WORKER_PACKAGE) -> list[tuple[str, str, bool]]:
    """(module name relative to the package, source, whether it is a package) of every ``.py`` file of ``folder``."""
    modules = []
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        relative = path.relative_to(folder).with_suffix("")
        is_package = relative.name == "__init__"
        parts = relative.parts[:-1] if is_package else relative.parts
        modules.append((".".join(parts), path.read_text(), is_package))
    return modules
