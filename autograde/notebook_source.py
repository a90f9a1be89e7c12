"""Find the graded definitions in a submitted notebook, without running any of it.

The isolated grader does not run a submission top to bottom: it runs only the statements the graders need.
The roots are the names the graders ask for plus every function and class defined in an answer cell (an
nbgrader cell with ``solution: true``; the names are found anywhere when that cell was deleted, duplicated or
its ``grade_id`` changed). The statements that bind a needed name are kept, then the statements binding the
module-level names those use, and so on (imports, constants, helpers). Training calls, plots and prints bind
nothing the definitions use, so they are not run. The kept statements of each cell run in notebook order, as
one chunk per cell: a statement that raises stops the rest of its cell, like in a notebook.

Everything here only parses (``json``, ``ast``, ``symtable``): the trusted process never runs student code.
"""

from __future__ import annotations

import ast
import json
import re
import symtable
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

MAX_NOTEBOOK_BYTES = 64 * 2**20
HIDDEN_TESTS_MARKER = "### BEGIN HIDDEN TESTS"
# Cell magics whose body is ordinary Python that the grader can still read.
TRANSPARENT_CELL_MAGICS = ("%%time", "%%timeit", "%%capture")
_MAGIC_LINE = re.compile(r"^\s*[%!]")


class NotebookError(ValueError):
    """The file is not a notebook the grader can read; the message tells the student what to fix."""


@dataclass(frozen=True)
class Chunk:
    """The statements of one cell to run: ``ast.parse(source).body[i] for i in statements``."""

    label: str
    filename: str
    source: str
    statements: tuple[int, ...]

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "filename": self.filename,
            "source": self.source,
            "statements": list(self.statements),
        }


@dataclass(frozen=True)
class _Statement:
    cell: int
    index: int
    binds: frozenset[str]
    uses: frozenset[str]
    mentions: frozenset[str]  # attributes, names imported from torch and short strings (forbidden-call scan)
    star_import: bool


@dataclass
class GradedSource:
    """What the worker runs for one submission, and what reading the notebook found wrong."""

    chunks: list[Chunk]
    problems: list[str] = field(default_factory=list)
    _statements: list[_Statement] = field(default_factory=list, repr=False)

    @property
    def defined(self) -> set[str]:
        """The module-level names the chunks bind."""
        selected = {(c.filename, i) for c in self.chunks for i in c.statements}
        return {n for s in self._statements if (_filename(s.cell), s.index) in selected for n in s.binds}

    def mentions(self, target: str, words: Iterable[str]) -> set[str]:
        """The ``words`` used as an attribute, a name imported from torch or an exact string by ``target``.

        Covers the statements defining ``target`` and everything they use, e.g. a built-in captured at
        import time (``from torch.nn.functional import scaled_dot_product_attention as sdpa``).
        """
        words = set(words)
        closure = _closure(self._statements, {target})
        return {w for s in self._statements if (s.cell, s.index) in closure for w in words & s.mentions}


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path`` (nbformat 4), or :class:`NotebookError` saying why it cannot be read."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise NotebookError(f"the file could not be opened ({exc.strerror})") from None
    if size > MAX_NOTEBOOK_BYTES:
        raise NotebookError(
            f"the file is {size / 2**20:.0f} MiB; a notebook over "
            f"{MAX_NOTEBOOK_BYTES / 2**20:.0f} MiB cannot be graded: clear its outputs and resubmit"
        )
    try:
        text = path.read_bytes().decode("utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise NotebookError(
            f"the file is not valid notebook JSON ({type(exc).__name__}: {str(exc)[:200]}); "
            "download it again from Jupyter or Colab with File > Download > .ipynb"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("cells", data.get("worksheets")), list):
        raise NotebookError(
            "the file is JSON but not a Jupyter notebook (it has no list of cells); submit the "
            ".ipynb file of the assignment"
        )
    try:
        return nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several types for malformed notebooks
        raise NotebookError(
            f"the notebook could not be read ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def nbgrader_meta(cell: Mapping) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def grade_ids(nb: nbformat.NotebookNode) -> set[str]:
    """Every nbgrader ``grade_id`` in the notebook."""
    return {str(nbgrader_meta(c)["grade_id"]) for c in nb.cells if nbgrader_meta(c).get("grade_id")}


def _is_hidden_test(cell: Mapping) -> bool:
    meta = nbgrader_meta(cell)
    autograder_cell = bool(meta.get("grade")) and not meta.get("solution")
    return autograder_cell or HIDDEN_TESTS_MARKER in cell.get("source", "")


def _python_source(source: str) -> str | None:
    """The cell as plain Python: magics and shell lines blanked (line numbers kept); None to skip it."""
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        if lines[0].split()[0] not in TRANSPARENT_CELL_MAGICS:
            return None
        lines[0] = ""
    return "\n".join("" if _MAGIC_LINE.match(line) else line for line in lines)


def _filename(cell: int) -> str:
    return f"<cell {cell}>"


def _scope_globals(table: symtable.SymbolTable) -> set[str]:
    """Module-level names read anywhere below ``table`` (functions, classes, comprehensions)."""
    names = set()
    for child in table.get_children():
        for sym in child.get_symbols():
            if sym.is_referenced() and (sym.is_global() or sym.is_declared_global()):
                names.add(sym.get_name())
        names |= _scope_globals(child)
    return names


def _analyse(cell: int, index: int, node: ast.stmt) -> _Statement:
    code = ast.unparse(ast.Module(body=[node], type_ignores=[]))
    table = symtable.symtable(code, _filename(cell), "exec")
    binds, uses = set(), set()
    for sym in table.get_symbols():
        if sym.is_assigned() or sym.is_imported() or sym.is_namespace():
            binds.add(sym.get_name())
        if sym.is_referenced():
            uses.add(sym.get_name())
    uses |= _scope_globals(table)
    mentions = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute):
            mentions.add(sub.attr)
        elif isinstance(sub, ast.ImportFrom) and (sub.module or "").split(".")[0] == "torch":
            mentions.update(alias.name for alias in sub.names)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and len(sub.value) < 100:
            mentions.add(sub.value)
    star = isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
    return _Statement(cell, index, frozenset(binds), frozenset(uses), frozenset(mentions), star)


def _closure(statements: list[_Statement], roots: set[str]) -> set[tuple[int, int]]:
    """The (cell, index) of every statement the ``roots`` need, transitively; star imports always."""
    needed, chosen = set(roots), set()
    changed = True
    while changed:
        changed = False
        for s in statements:
            key = (s.cell, s.index)
            if key not in chosen and (s.star_import or s.binds & needed):
                chosen.add(key)
                needed |= s.uses
                changed = True
    return chosen


def graded_source(
    nb: nbformat.NotebookNode,
    expected: Iterable[str],
    locked_sources: Mapping[str, str] | None = None,
) -> GradedSource:
    """The chunks that define ``expected`` (and the answer cells' functions and classes) in ``nb``.

    locked_sources: grade_id -> source of the release's read-only cells; a submitted locked cell with that
    grade_id runs as released (as nbgrader's OverwriteCells does), whatever the student changed in it.
    """
    problems: list[str] = []
    statements: list[_Statement] = []
    sources: dict[int, tuple[str, str]] = {}
    roots = set(expected)
    for number, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code" or _is_hidden_test(cell):
            continue
        meta = nbgrader_meta(cell)
        grade_id = str(meta.get("grade_id", ""))
        source = cell.get("source", "")
        if meta.get("locked") and not meta.get("solution") and locked_sources and grade_id in locked_sources:
            source = locked_sources[grade_id]
        label = f"cell {number}" + (f" ({grade_id})" if grade_id else "")
        python = _python_source(source)
        if python is None:
            continue
        try:
            tree = ast.parse(python, _filename(number))
        except SyntaxError as exc:
            problems.append(
                f"{label} has a syntax error on line {exc.lineno}: {exc.msg}. Nothing in it was run; "
                "fix it and run the cell to check."
            )
            continue
        except (RecursionError, MemoryError, ValueError) as exc:
            problems.append(f"{label} could not be read ({type(exc).__name__}); nothing in it was run.")
            continue
        sources[number] = (label, python)
        for index, node in enumerate(tree.body):
            statement = _analyse(number, index, node)
            statements.append(statement)
            if meta.get("solution") and isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            ):
                roots.add(node.name)
    chosen = _closure(statements, roots)
    chunks = []
    for number, (label, python) in sources.items():
        picked = tuple(s.index for s in statements if s.cell == number and (s.cell, s.index) in chosen)
        if picked:
            chunks.append(Chunk(label, _filename(number), python, picked))
    return GradedSource(chunks, problems, statements)


def detect_assignment(
    nb: nbformat.NotebookNode, parts: Mapping[str, Iterable[str]], filename: str = ""
) -> str | None:
    """The assignment whose parts (answer cells ``<part>``, hidden cells ``<part>_tests``) the notebook has.

    Falls back on an assignment id in ``filename``; None when neither tells.
    """
    ids = grade_ids(nb)
    best, best_count = None, 0
    for assignment, names in parts.items():
        count = len(ids & ({*names} | {f"{p}_tests" for p in names}))
        if count > best_count:
            best, best_count = assignment, count
    if best is not None:
        return best
    matches = [a for a in parts if a in filename]
    return matches[0] if len(matches) == 1 else None
