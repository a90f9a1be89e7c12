"""Find the graded definitions in a submitted notebook, without running any of it.

The isolated grader does not run a submission top to bottom: it runs only the statements the graders need.
Cells are first turned into plain Python by IPython's own ``TransformerManager`` (the rules the kernel uses:
magics, ``!shell``, ``obj?`` and continuation lines that begin with ``%`` all read as the kernel reads them);
the bodies of ``%%time``, ``%%timeit``, ``%%capture`` and ``%time`` / ``%timeit`` lines are kept as code.

The roots are the names the graders ask for plus every function and class defined in an answer cell (an
nbgrader cell with ``solution: true``; the names are found anywhere when that cell was deleted, duplicated or
its ``grade_id`` changed). Kept are the statements that bind a needed name, and the top-level statements that
change one (``Attention.forward = f``, ``CONFIG["heads"] = 4``, ``CONFIG.update(...)``, ``setattr(...)``) where
the name is a variable of the notebook (not a module), and a ``%%writefile name.py`` cell when a kept statement
imports ``name``; then the names those statements use, and so on. The
search is linear in the size of the notebook. Training calls, plots and prints bind nothing the definitions
use, so they are not run. The kept statements of each cell run in notebook order, as one chunk per cell: a
statement that raises stops the rest of its cell, as in a notebook. A ``from __future__`` import applies to its cell
and every later one, as in IPython; statements inside ``if``, ``for``, ``with`` and ``try`` blocks that change a
needed variable are kept with their block. What the worker will run is read once more for code that could switch
off the detection of forbidden calls (:mod:`autograde.evasion`).

Everything here only parses (``json``, ``ast``, ``symtable``, IPython's transformer): the trusted process never
runs student code.
"""

from __future__ import annotations
import __future__

import ast
import re
import symtable
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import nbformat

from autograde import evasion, nbgrader_cells
from autograde.worker.results import Review

# Cell magics whose body is ordinary Python the kernel runs; line magics likewise.
TRANSPARENT_CELL_MAGICS = ("%%time", "%%timeit", "%%capture")
TRANSPARENT_LINE_MAGICS = ("time", "timeit")
MAX_STATEMENTS = 20_000
# IPython rewrites a cell once per magic, shell escape or help line, re-reading the whole cell each time: a cell
# with more of them than this is not read (no honest cell comes close; IPython itself gives up at 500).
MAX_IPYTHON_LINES = 100
_IPYTHON_LINE = re.compile(r"^\s*(%|!|\S.*[?]\s*$|\S.*=\s*[!%])", re.MULTILINE)


class CellNotRead(ValueError):
    """A cell the grader does not read (too many IPython commands, or IPython could not transform it)."""


@dataclass(frozen=True)
class Chunk:
    """The statements of one cell to run: ``ast.parse(source).body[i] for i in statements``, compiled with the
    ``flags`` of the ``__future__`` imports of this and earlier cells (as IPython keeps them from cell to cell)."""

    label: str
    filename: str
    source: str
    statements: tuple[int, ...]
    flags: int = 0

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "filename": self.filename,
            "source": self.source,
            "statements": list(self.statements),
            "flags": self.flags,
        }


@dataclass(frozen=True)
class _Statement:
    cell: int
    index: int
    binds: frozenset[str]
    uses: frozenset[str]
    changes: frozenset[str]  # names whose attributes or items it sets, or whose methods it calls
    imports: bool
    star_import: bool


@dataclass
class GradedSource:
    """What the worker runs for one submission, and what reading the notebook found wrong."""

    chunks: list[Chunk]
    problems: list[str] = field(default_factory=list)
    defined: set[str] = field(default_factory=set)  # the module-level names the chunks bind
    review: list[Review] = field(default_factory=list)  # lines of the chunks an instructor should look at


# ---------------------------------------------------------------------------------------- IPython syntax
_TRANSFORMER = None


def _transformer():
    global _TRANSFORMER
    if _TRANSFORMER is None:
        from IPython.core.inputtransformer2 import TransformerManager

        _TRANSFORMER = TransformerManager()
    return _TRANSFORMER


def python_source(source: str) -> str:
    """The cell as the kernel would run it, in plain Python (magics become ``get_ipython()`` calls).

    CellNotRead when it holds more than :data:`MAX_IPYTHON_LINES` IPython lines or IPython cannot transform it.
    """
    lines = source.splitlines()
    if lines and lines[0].split() and lines[0].split()[0] in TRANSPARENT_CELL_MAGICS:
        source = "\n".join(["", *lines[1:]])  # the body runs as code; keep the line numbers
    if not lines or not lines[0].startswith("%%"):  # a cell magic's body is one argument, whatever it holds
        count = sum(1 for _ in zip(range(MAX_IPYTHON_LINES + 1), _IPYTHON_LINE.finditer(source), strict=False))
        if count > MAX_IPYTHON_LINES:
            raise CellNotRead(f"it holds more than {MAX_IPYTHON_LINES} IPython commands (%, !, ?)")
    try:
        return _transformer().transform_cell(source)
    except SyntaxError:
        raise
    except Exception as exc:  # IPython gives up on some input (RuntimeError after 500 rewrites, ...)
        raise CellNotRead(f"IPython could not read it ({type(exc).__name__})") from None


def magic_arguments(node: ast.stmt, method: str) -> list[str] | None:
    """The string arguments of ``get_ipython().<method>(...)`` when ``node`` is that call, else None."""
    call = node.value if isinstance(node, ast.Expr) else None
    if (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == method
        and call.args
        and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in call.args)
    ):
        return [a.value for a in call.args]
    return None


class _UnwrapLineMagics(ast.NodeTransformer):
    """``get_ipython().run_line_magic('time', 'y = f(x)')`` -> ``y = f(x)`` (the kernel runs that code)."""

    def __init__(self):
        self.changed = False

    def visit_Expr(self, node: ast.Expr):
        args = magic_arguments(node, "run_line_magic")
        if args and args[0] in TRANSPARENT_LINE_MAGICS:
            try:
                body = ast.parse(args[1]).body
            except SyntaxError:
                return node
            self.changed = True
            return body
        return node


def parse_cell(source: str, filename: str) -> tuple[str, ast.Module]:
    """(the Python the kernel runs for this cell, its syntax tree); SyntaxError when it is not valid."""
    python = python_source(source)
    tree = ast.parse(python, filename)
    unwrap = _UnwrapLineMagics()
    tree = unwrap.visit(tree)
    if unwrap.changed:  # the code of a %time line becomes a statement of its own
        python = ast.unparse(ast.fix_missing_locations(tree))
        tree = ast.parse(python, filename)
    return python, tree


# --------------------------------------------------------------------------------------------- analysis
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


def _root(node: ast.AST) -> str | None:
    """``CONFIG`` for ``CONFIG["a"].b``, None when the chain does not start at a plain name."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


_COMPOUND = (
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    getattr(ast, "TryStar", ast.Try),
    ast.Match,
)


def _changed_names(node: ast.stmt) -> set[str]:
    """Names whose attributes or items this top-level statement sets or deletes, or whose methods it calls; for a
    compound statement (``if``, ``for``, ``with``, ``try``...), those of the statements in its blocks."""
    if isinstance(node, _COMPOUND):
        return {
            name
            for child in ast.iter_child_nodes(node)
            if isinstance(child, ast.stmt) or isinstance(child, (ast.excepthandler, ast.match_case))
            for name in _changed_in(child)
        }
    targets: list[ast.AST] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    elif isinstance(node, ast.Delete):
        targets = list(node.targets)
    names = set()
    for target in targets:
        for sub in ast.walk(target):
            if isinstance(sub, (ast.Attribute, ast.Subscript)) and isinstance(sub.ctx, (ast.Store, ast.Del)):
                root = _root(sub)
                if root:
                    names.add(root)
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        if isinstance(func, ast.Attribute):
            root = _root(func.value)
            if root:
                names.add(root)
        elif isinstance(func, ast.Name) and func.id in ("setattr", "delattr") and node.value.args:
            root = _root(node.value.args[0])
            if root:
                names.add(root)
    return names


def _changed_in(node: ast.AST) -> set[str]:
    """:func:`_changed_names` of a statement in a block, or of the statements of an ``except`` or ``case`` block."""
    if isinstance(node, (ast.excepthandler, ast.match_case)):
        return {name for child in node.body for name in _changed_names(child)}
    return _changed_names(node)


def _future_flags(node: ast.stmt) -> int:
    """The compiler flags of a ``from __future__ import ...`` statement (0 for any other)."""
    if not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
        return 0
    flags = 0
    for alias in node.names:
        feature = getattr(__future__, alias.name, None)
        flags |= getattr(feature, "compiler_flag", 0)
    return flags


def _written_module(node: ast.stmt) -> str | None:
    """``helper`` for a ``%%writefile helper.py`` cell (``get_ipython().run_cell_magic('writefile', ...)``)."""
    args = magic_arguments(node, "run_cell_magic")
    if args and len(args) == 3 and args[0] == "writefile":
        words = args[1].split()
        if words and words[-1].endswith(".py") and "/" not in words[-1]:
            return words[-1][: -len(".py")]
    return None


def _imported_modules(node: ast.stmt) -> set[str]:
    """The top-level modules an import statement loads, as ``module:<name>`` (what %%writefile binds)."""
    if isinstance(node, ast.Import):
        return {f"module:{a.name.split('.')[0]}" for a in node.names}
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return {f"module:{node.module.split('.')[0]}"}
    return set()


def _analyse(cell: int, index: int, node: ast.stmt) -> _Statement:
    code = ast.unparse(ast.Module(body=[node], type_ignores=[]))
    table = symtable.symtable(code, _filename(cell), "exec")
    binds, uses = set(), set()
    for sym in table.get_symbols():
        if sym.is_assigned() or sym.is_imported() or sym.is_namespace():
            binds.add(sym.get_name())
        if sym.is_referenced():
            uses.add(sym.get_name())
    uses |= _scope_globals(table) | _imported_modules(node)
    written = _written_module(node)
    if written:
        binds.add(f"module:{written}")
    imports = isinstance(node, (ast.Import, ast.ImportFrom))
    star = isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
    return _Statement(
        cell, index, frozenset(binds), frozenset(uses), frozenset(_changed_names(node) - binds), imports, star
    )


def _closure(statements: list[_Statement], roots: set[str]) -> set[tuple[int, int]]:
    """The (cell, index) of every statement the ``roots`` need, transitively; star imports always. Linear."""
    variables = {n for s in statements if not s.imports for n in s.binds}  # notebook variables, not modules
    by_name: dict[str, list[_Statement]] = {}
    for s in statements:
        for name in s.binds | (s.changes & variables):
            by_name.setdefault(name, []).append(s)
    chosen: set[tuple[int, int]] = set()
    needed: set[str] = set()
    pending = list(roots)
    pending_statements = [s for s in statements if s.star_import]
    while pending or pending_statements:
        while pending_statements:
            s = pending_statements.pop()
            if (s.cell, s.index) not in chosen:
                chosen.add((s.cell, s.index))
                pending.extend(s.uses)
        if pending:
            name = pending.pop()
            if name in needed:
                continue
            needed.add(name)
            pending_statements.extend(by_name.get(name, ()))
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
    sources: dict[int, tuple[str, str, int]] = {}
    flags = 0
    roots = set(expected)
    for number, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code" or nbgrader_cells.is_hidden_test(cell):
            continue
        grade_id = nbgrader_cells.grade_id(cell)
        source = nbgrader_cells.source(cell)
        if nbgrader_cells.is_locked(cell) and locked_sources and grade_id in locked_sources:
            source = locked_sources[grade_id]
        label = f"cell {number}" + (f" ({grade_id})" if grade_id else "")
        try:
            python, tree = parse_cell(source, _filename(number))
        except SyntaxError as exc:
            problems.append(
                f"{label} has a syntax error on line {exc.lineno}: {exc.msg}. Nothing in it was run; "
                "fix it and run the cell to check."
            )
            continue
        except CellNotRead as exc:
            problems.append(f"{label} was not read: {exc}; nothing in it was run.")
            continue
        except (RecursionError, MemoryError, ValueError) as exc:
            problems.append(f"{label} could not be read ({type(exc).__name__}); nothing in it was run.")
            continue
        if len(statements) + len(tree.body) > MAX_STATEMENTS:
            problems.append(
                f"{label} was not read: with it the notebook would have more than {MAX_STATEMENTS:,} statements."
            )
            continue
        for node in tree.body:
            flags |= _future_flags(node)
        sources[number] = (label, python, flags)
        for index, node in enumerate(tree.body):
            if _future_flags(node):  # not run as a statement: its flags compile this cell and the later ones
                continue
            statements.append(_analyse(number, index, node))
            if nbgrader_cells.is_answer(cell) and isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            ):
                roots.add(node.name)
    chosen = _closure(statements, roots)
    chunks = []
    for number, (label, python, cell_flags) in sources.items():
        picked = tuple(s.index for s in statements if s.cell == number and (s.cell, s.index) in chosen)
        if picked:
            chunks.append(Chunk(label, _filename(number), python, picked, cell_flags))
    defined = {n for s in statements if (s.cell, s.index) in chosen for n in s.binds}
    return GradedSource(chunks, problems, defined, evasion.scan(_selected(chunks)))


def _selected(chunks: list[Chunk]) -> Iterable[tuple[str, str, ast.Module]]:
    """(label, source, syntax tree of the selected statements) of each chunk: the code the worker will run."""
    for chunk in chunks:
        body = ast.parse(chunk.source, chunk.filename).body
        yield chunk.label, chunk.source, ast.Module(body=[body[i] for i in chunk.statements], type_ignores=[])


def defined_names(nb: nbformat.NotebookNode) -> set[str]:
    """Every name the notebook's code cells bind at top level (for recognising a notebook without metadata)."""
    names: set[str] = set()
    for number, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        try:
            _, tree = parse_cell(nbgrader_cells.source(cell), _filename(number))
        except (SyntaxError, RecursionError, MemoryError, ValueError):  # CellNotRead is a ValueError
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names
