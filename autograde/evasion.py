"""Code that could switch off what runs in the student's own process, found by reading it.

The forbidden-call detector (:class:`autograde.worker.in_process.WatchedCallRecorder`) runs in the worker, beside
the student's code, so that code can switch it off (``torch._C.DisableTorchFunction()``, a ``ctypes`` call, a
dispatcher registration, a profiler hook, torch's own functions rebound). It explains an honest mistake; this
module is what the student cannot switch off: the trusted side reads the code that the worker will run (the
selected statements of :mod:`autograde.graded_source`) and marks each line that reaches for such a switch. A mark
is a reason for an instructor to look, shown with the line in the summary and the feedback; the score stays as
graded.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from autograde.worker.results import Review

TORCH = "torch"  # stands for the names a cell binds to torch modules (torch, F, nn, ...)
HOOK = "hooks the interpreter (a profiler, a tracer, sys.monitoring), which can intercept the grader's own code"
TORCH_FUNCTION = "turns off torch's function hooks, which detect forbidden calls"
WALK = "walks the objects or classes of the process, the grader's too"
# attribute -> (the roots it counts under, None for any; why it is marked)
ATTRIBUTES = {
    "_C": ({TORCH}, "torch's private C switches (torch._C), which can turn off the detection of forbidden calls"),
    "DisableTorchFunction": (None, TORCH_FUNCTION),
    "DisableTorchFunctionSubclass": (None, TORCH_FUNCTION),
    "_disabled_torch_function_impl": (None, TORCH_FUNCTION),
    "_pop_mode": (None, TORCH_FUNCTION),
    "_get_current_function_mode_stack": (None, TORCH_FUNCTION),
    "library": ({TORCH}, "registers operators with torch's dispatcher (torch.library)"),
    "setprofile": ({"sys", "threading"}, HOOK),
    "settrace": ({"sys", "threading"}, HOOK),
    "monitoring": ({"sys"}, HOOK),
    "get_objects": ({"gc"}, WALK),
    "get_referrers": ({"gc"}, WALK),
    "__subclasses__": (None, WALK),
}
MODULES = {
    "ctypes": "ctypes calls C functions directly, around every Python-level check",
    "_ctypes": "ctypes calls C functions directly, around every Python-level check",
    "cffi": "cffi calls C functions directly, around every Python-level check",
}
REBOUND = "rebinds a function of torch, which the grader's checks and its detector rely on"


def _torch_aliases(tree: ast.Module) -> set[str]:
    """The names a cell binds to torch modules (``torch``, ``F``, ``nn``...)."""
    names = {"torch"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.split(".")[0] == "torch"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            names |= {a.asname or a.name for a in node.names}
    return names


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _findings(tree: ast.Module, aliases: set[str]) -> Iterable[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ATTRIBUTES:
            roots, reason = ATTRIBUTES[node.attr]
            root = _root(node.value)
            if roots is None or root in roots or (TORCH in roots and root in aliases):
                yield node.lineno, reason
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                parts = module.split(".")
                if parts[0] in MODULES:
                    yield node.lineno, MODULES[parts[0]]
                elif parts[0] in ("torch", "sys", "threading", "gc"):
                    imported = parts[1:] + ([a.name for a in node.names] if isinstance(node, ast.ImportFrom) else [])
                    for name in imported:
                        if name in ATTRIBUTES and (
                            ATTRIBUTES[name][0] is None
                            or parts[0] in ATTRIBUTES[name][0]
                            or (parts[0] == "torch" and TORCH in ATTRIBUTES[name][0])
                        ):
                            yield node.lineno, ATTRIBUTES[name][1]
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if isinstance(target, (ast.Attribute, ast.Subscript)) and _root(target) in aliases:
                    yield node.lineno, REBOUND
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            if node.args and _root(node.args[0]) in aliases:
                yield node.lineno, REBOUND


def scan(cells: Iterable[tuple[str, str, ast.Module]]) -> list[Review]:
    """Marks for review of the code that will run: ``cells`` are (label, source, syntax tree) of each chunk."""
    reviews: list[Review] = []
    for label, source, tree in cells:
        lines = source.splitlines()
        seen: set[tuple[int, str]] = set()
        for lineno, reason in sorted(_findings(tree, _torch_aliases(tree))):
            if (lineno, reason) in seen:
                continue
            seen.add((lineno, reason))
            text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
            reviews.append(Review(f"{label}, line {lineno}: {text[:200]}", reason))
    return reviews
