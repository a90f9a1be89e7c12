"""Code as the similarity check sees it: a stream of tokens that cheap disguises of a copy do not change.

What a copier changes cheaply, and how each is undone:

- names: every name becomes ``V`` (builtins such as ``len`` and imported modules stay, an import alias becomes
  the module's full name: ``F.softmax`` and ``fn.softmax`` after ``import torch.nn.functional as fn`` are both
  ``torch.nn.functional.softmax``); attributes the code assigns (``self.scale = ...``) become ``V`` too, while
  library attributes (``.transpose``) stay;
- comments, docstrings, whitespace, line breaks, parentheses and quotes: gone, since the tokens come from the
  parsed code written back out (``ast.unparse``); string literals become ``'S'``, type annotations are dropped,
  keyword arguments are sorted, imports are dropped (their aliases are already resolved);
- the order of independent statements: within every block (a cell, a function, a class, a branch) the
  statements are put in one canonical order, a topological order of what each statement reads and writes in
  which ties are broken by the normalised text. Statements with effects that are not assignments (a bare call
  such as ``super().__init__()``, ``return``, ``raise``, ``yield``) keep their place.

A cell that does not parse (a syntax error, shell or magic lines that are not Python) is tokenised by Python's
``tokenize`` instead, with names and strings replaced the same way. Each token remembers the cell and the
source lines it came from (none for the braces around blocks), so that matches can be shown in the student's
own code.
"""

from __future__ import annotations

import ast
import builtins
import copy
import heapq
import io
import keyword
import re
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

NAME = "V"  # every name
STRING = "'S'"  # every string literal
OPEN, CLOSE = "{", "}"  # around a block
LINE = "line: "  # marks the text of a line of a cell that does not parse (see _Emitter.lines)
KEPT_NAMES = frozenset(dir(builtins))
MAX_CELL_CHARS = 200_000  # a larger cell is hostile or generated: it is left out
MAX_REORDERED = 200  # a block with more statements keeps its order (the ordering compares every pair)
COMPOUND_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")

# The tokens of code written back out by ast.unparse: names, numbers, strings (already 'S') and operators.
_TOKEN = re.compile(
    r"[A-Za-z_]\w*|\d[\d_]*\.?[\d_]*(?:[eE][-+]?\d+)?j?|\.\d+(?:[eE][-+]?\d+)?j?|'[^']*'|\"[^\"]*\""
    r"|\*\*=?|//=?|->|:=|<<=?|>>=?|[-+*/%@&|^<>=!]=|\S"
)


@dataclass(frozen=True)
class Cell:
    """An answer cell: ``label`` names it for a person (its nbgrader grade_id, or ``cell 7``)."""

    label: str
    source: str


@dataclass
class Tokens:
    """The normalised tokens of a submission's cells; per token, the index of its cell and the first and last
    source line (1-based, in that cell) of the statement it came from."""

    values: list[str] = field(default_factory=list)
    cells: list[int] = field(default_factory=list)
    first_lines: list[int] = field(default_factory=list)
    last_lines: list[int] = field(default_factory=list)

    def add(self, values: Iterable[str], cell: int, first: int, last: int) -> None:
        for value in values:
            self.values.append(value)
            self.cells.append(cell)
            self.first_lines.append(first)
            self.last_lines.append(last)

    def __len__(self) -> int:
        return len(self.values)


# ----------------------------------------------------------------------------------------------- parsing
def without_magics(source: str) -> str:
    """The cell's source with IPython's lines (``%magic``, ``!shell``) blanked, keeping the line numbers; a
    cell magic's first line (``%%writefile x.py``, ``%%time``) is blanked too, and its body kept."""
    lines = source.splitlines()
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)


def _aliases(nodes: Iterable[ast.AST]) -> dict[str, str]:
    """name -> the full name it imports (``F`` -> ``torch.nn.functional``; ``torch`` -> ``torch``)."""
    found: dict[str, str] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    found[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    found[top] = top
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                if alias.name != "*":
                    found[alias.asname or alias.name] = f"{module}.{alias.name}".lstrip(".") or alias.name
    return found


def _assigned_attributes(nodes: Iterable[ast.AST]) -> set[str]:
    return {n.attr for n in nodes if isinstance(n, ast.Attribute) and isinstance(n.ctx, (ast.Store, ast.Del))}


def import_aliases(sources: Iterable[str]) -> dict[str, str]:
    """The import aliases of code (a release's cells), to resolve names a submission uses without importing."""
    nodes: list[ast.AST] = []
    for source in sources:
        try:
            nodes.extend(ast.walk(ast.parse(without_magics(source))))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return _aliases(nodes)


# ---------------------------------------------------------------------------------- reads and writes
@dataclass(frozen=True)
class _Effects:
    """What a statement reads and writes (names and dotted attribute chains), and whether it must keep its
    place among its neighbours."""

    reads: frozenset[str]
    writes: frozenset[str]
    fixed: bool


def _dotted(node: ast.AST) -> str | None:
    """``self.q`` for an attribute chain on a name; for a subscript (``pe[:, 0]``), the chain it indexes."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Subscript):
        return _dotted(node.value)
    return None


_FIXED = (ast.Return, ast.Raise, ast.Break, ast.Continue, ast.Global, ast.Nonlocal, ast.Delete, ast.Assert)
_FIXED_INSIDE = (ast.Yield, ast.YieldFrom, ast.Await, *_FIXED)


def _collect(node: ast.AST, reads: set[str], writes: set[str]) -> bool:
    """Add what ``node`` reads and writes; return whether it holds something that must keep its place. A nested
    statement whose effects are known already (they are computed innermost first) is not walked again."""
    known = getattr(node, "_effects", None)
    if known is not None:
        reads.update(known.reads)
        writes.update(known.writes)
        return known.fixed
    fixed = isinstance(node, _FIXED_INSIDE)
    if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
        key = _dotted(node)
        if key:
            writes.add(key)
        children = [node.slice] if isinstance(node, ast.Subscript) else []
        if key is None:
            children.append(node.value)
        return any([_collect(child, reads, writes) for child in children]) or fixed
    if isinstance(node, ast.Name):
        (writes if isinstance(node.ctx, (ast.Store, ast.Del)) else reads).add(node.id)
        return fixed
    if isinstance(node, ast.Attribute):
        key = _dotted(node)
        if key:
            reads.add(key)
            return fixed
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        writes.update((a.asname or a.name).split(".")[0] for a in node.names)
    for child in ast.iter_child_nodes(node):
        fixed = _collect(child, reads, writes) or fixed
    return fixed


def _effects(stmt: ast.stmt) -> _Effects:
    reads: set[str] = set()
    writes: set[str] = set()
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        # Defining runs only the decorators, defaults and bases; the body runs later.
        writes.add(stmt.name)
        parts: list[ast.AST] = list(stmt.decorator_list)
        if isinstance(stmt, ast.ClassDef):
            parts += [*stmt.bases, *stmt.keywords]
        else:
            parts += [*stmt.args.defaults, *(d for d in stmt.args.kw_defaults if d is not None)]
        for part in parts:
            _collect(part, reads, writes)
        return _Effects(frozenset(reads), frozenset(writes), False)
    fixed = isinstance(stmt, _FIXED_INSIDE)
    for child in ast.iter_child_nodes(stmt):
        fixed = _collect(child, reads, writes) or fixed
    if isinstance(stmt, ast.AugAssign):
        reads |= writes
    if isinstance(stmt, ast.Expr) and not isinstance(stmt.value, ast.Constant):
        fixed = True  # a bare call: its effects are unknown
    return _Effects(frozenset(reads), frozenset(writes), fixed or isinstance(stmt, _FIXED))


def _overlap(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two sets of names or chains share one, or one holds a chain that starts with the other's."""
    if a & b:
        return True
    return any(x.startswith(y + ".") or y.startswith(x + ".") for x in a for y in b if "." in x or "." in y)


def _depends(earlier: _Effects, later: _Effects) -> bool:
    if earlier.fixed or later.fixed:
        return True
    return (
        _overlap(earlier.writes, later.reads)
        or _overlap(earlier.writes, later.writes)
        or _overlap(earlier.reads, later.writes)
    )


def canonical_order(effects: Sequence[_Effects], keys: Sequence[str]) -> list[int]:
    """The statements' indices in the canonical order: dependencies first, ties by key, then by position."""
    n = len(effects)
    if n < 2 or n > MAX_REORDERED:
        return list(range(n))
    waiting = [0] * n
    after: list[list[int]] = [[] for _ in range(n)]
    for j in range(n):
        for i in range(j):
            if _depends(effects[i], effects[j]):
                after[i].append(j)
                waiting[j] += 1
    ready = [(keys[i], i) for i in range(n) if waiting[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for j in after[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, (keys[j], j))
    return order


# ----------------------------------------------------------------------------------------- renaming
class _Canonical(ast.NodeTransformer):
    """Rename, drop comments' cousins (docstrings, annotations, imports) and sort keyword arguments."""

    def __init__(self, aliases: dict[str, str], attributes: set[str]):
        self.aliases = aliases
        self.attributes = attributes

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.aliases:
            node.id = self.aliases[node.id]
        elif node.id not in KEPT_NAMES:
            node.id = NAME
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg, node.annotation = NAME, None
        return node

    def _definition(self, node):
        node.name = NAME
        if not isinstance(node, ast.ClassDef):
            node.returns = None
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _definition

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if node.attr in self.attributes:
            node.attr = NAME
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, (str, bytes)):
            return ast.copy_location(ast.Constant("S"), node)
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return ast.copy_location(ast.Constant("S"), node)

    def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return None  # a docstring or a string used as a comment
        self.generic_visit(node)
        return node

    def visit_Import(self, node: ast.AST) -> None:
        return None

    visit_ImportFrom = visit_Import

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return None  # a bare annotation declares nothing that runs
        assign = ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)
        assign._effects = node._effects  # type: ignore[attr-defined]
        return self.visit(assign)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        node.keywords.sort(key=lambda k: (k.arg is None, k.arg or ""))
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        if node.name:
            node.name = NAME
        self.generic_visit(node)
        return node

    def _names(self, node):
        node.names = [NAME for _ in node.names]
        return node

    visit_Global = visit_Nonlocal = _names

    def visit_MatchAs(self, node: ast.MatchAs) -> ast.AST:
        if node.name:
            node.name = NAME
        self.generic_visit(node)
        return node

    def visit_MatchStar(self, node: ast.MatchStar) -> ast.AST:
        if node.name:
            node.name = NAME
        return node


# ------------------------------------------------------------------------------------------ emitting
Emitted = list[tuple[str, int, int]]  # (token, first line, last line)


def _words(text: str, first: int, last: int) -> Emitted:
    return [(t, first, last) for t in _TOKEN.findall(text)]


def _header(node: ast.AST) -> str:
    """The first line(s) of a compound statement, without its blocks (``def V(V, V):``)."""
    shallow = copy.copy(node)
    for name in COMPOUND_BODIES:
        if hasattr(shallow, name):
            setattr(shallow, name, [ast.Pass()] if name == "body" else [])
    text = ast.unparse(shallow).rstrip()
    return text[: -len("pass")] if text.endswith("pass") else text


def _first_line(node: ast.AST) -> int:
    lines = [node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]
    return min(lines)


def _header_last_line(node: ast.AST) -> int:
    """The last source line of a compound statement's header (its arguments, condition, bases, ...)."""
    last = node.lineno
    for name, value in ast.iter_fields(node):
        if name in COMPOUND_BODIES or name == "decorator_list":
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ast.AST):
                last = max(last, getattr(child, "end_lineno", None) or last)
    return last


class _Emitter:
    """Emits statements as tokens. ``handed_out``: the normalised text of the release's statements (and compound
    statements' headers): a statement equal to one of them is the release's code, and emits nothing. ``seen``:
    where to collect the text of every statement emitted (to build a release's ``handed_out``)."""

    def __init__(self, handed_out: frozenset[str] = frozenset(), seen: set[str] | None = None):
        self.handed_out = handed_out
        self.seen = seen

    def _own(self, text: str, first: int, last: int) -> Emitted:
        words = _words(text, first, last)
        key = " ".join(t for t, _, _ in words)
        if self.seen is not None:
            self.seen.add(key)
        return [] if key in self.handed_out else words

    def lines(self, emitted: Emitted) -> Emitted:
        """The tokens of a cell that does not parse, line by line, each line treated as a statement."""
        by_line: dict[int, Emitted] = {}
        for token in emitted:
            by_line.setdefault(token[1], []).append(token)
        out: Emitted = []
        for line in by_line.values():
            key = LINE + " ".join(t for t, _, _ in line)
            if self.seen is not None:
                self.seen.add(key)
            if key not in self.handed_out:
                out += line
        return out

    def block(self, statements: list[ast.stmt]) -> Emitted:
        """A block's tokens, its statements in the canonical order."""
        emitted = [self.statement(s) for s in statements]
        keys = [" ".join(t for t, _, _ in e) for e in emitted]
        effects = [getattr(s, "_effects", _Effects(frozenset(), frozenset(), True)) for s in statements]
        out: Emitted = []
        for i in canonical_order(effects, keys):
            out += emitted[i]
        return out

    def braced(self, statements: list[ast.stmt]) -> Emitted:
        """A block between braces (which belong to no source line)."""
        return [(OPEN, 0, -1), *self.block(statements), (CLOSE, 0, -1)]

    def statement(self, node: ast.AST) -> Emitted:
        bodies = [name for name in COMPOUND_BODIES if getattr(node, name, None)]
        first = _first_line(node)
        if not bodies:
            return self._own(ast.unparse(node), first, node.end_lineno or first)
        out = self._own(_header(node), first, _header_last_line(node))
        if getattr(node, "body", None):
            out += self.braced(node.body)
        for handler in getattr(node, "handlers", []) or []:
            out += self._own(_header(handler), handler.lineno, handler.lineno) + self.braced(handler.body)
        for case in getattr(node, "cases", []) or []:
            line = case.pattern.lineno
            out += self._own(_header(case), line, line) + self.braced(case.body)
        if getattr(node, "orelse", None):
            out += [("else", 0, -1), *self.braced(node.orelse)]
        if getattr(node, "finalbody", None):
            out += [("finally", 0, -1), *self.braced(node.finalbody)]
        return out


def _fallback(source: str) -> Emitted:
    """Tokens of a cell that does not parse, from Python's tokenizer (as far as it gets)."""
    out: Emitted = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NAME:
                value = tok.string if keyword.iskeyword(tok.string) or tok.string in KEPT_NAMES else NAME
            elif tok.type == tokenize.STRING:
                value = STRING
            elif tok.type in (tokenize.NUMBER, tokenize.OP):
                value = tok.string
            else:
                continue
            out.append((value, tok.start[0], tok.end[0]))
    except (tokenize.TokenError, IndentationError, SyntaxError, ValueError, RecursionError):
        pass
    return out


def normalise(
    cells: Sequence[Cell],
    known_aliases: dict[str, str] | None = None,
    handed_out: frozenset[str] = frozenset(),
    seen: set[str] | None = None,
) -> Tokens:
    """The tokens of ``cells`` (a submission's answer cells, or a release's code cells), in cell order.

    known_aliases: import aliases in force without an import in these cells (the release's set-up cell's
    ``import torch.nn.functional as F``), as :func:`import_aliases` finds them. handed_out: statements to leave
    out, as :func:`statement_texts` finds them in the release. seen: collects the text of every statement.
    """
    emitter = _Emitter(handed_out, seen)
    parsed: list[ast.Module | None] = []
    for cell in cells:
        tree = None
        if len(cell.source) <= MAX_CELL_CHARS:
            try:
                tree = ast.parse(without_magics(cell.source))
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                tree = None
        parsed.append(tree)
    trees = [t for t in parsed if t is not None]
    nodes = [node for tree in trees for node in ast.walk(tree)]
    aliases = {**(known_aliases or {}), **_aliases(nodes)}
    attributes = _assigned_attributes(nodes)
    try:
        for node in reversed(nodes):  # innermost first (walks go outside in): a statement reuses its children's
            if isinstance(node, ast.stmt):
                node._effects = _effects(node)  # type: ignore[attr-defined]
    except RecursionError:
        pass  # a statement without effects keeps its place
    tokens = Tokens()
    for index, (cell, tree) in enumerate(zip(cells, parsed, strict=True)):
        emitted: Emitted = []
        if tree is not None:
            try:
                tree = _Canonical(aliases, attributes).visit(tree)
                emitted = emitter.block(tree.body)
            except (RecursionError, MemoryError, ValueError):
                tree = None
        if tree is None and len(cell.source) <= MAX_CELL_CHARS:
            emitted = emitter.lines(_fallback(cell.source))
        for value, first, last in emitted:
            tokens.add((value,), index, first, last)
    return tokens


def statement_texts(cells: Sequence[Cell], known_aliases: dict[str, str] | None = None) -> frozenset[str]:
    """The normalised text of every statement (and compound statement's header) of ``cells``: given as
    ``handed_out`` for a release's cells, it removes the release's own statements from a submission, so that
    deleting or editing handed-out lines never leaves tokens two students share."""
    seen: set[str] = set()
    normalise(cells, known_aliases, seen=seen)
    emitter = _Emitter(seen=seen)
    for cell in cells:  # line by line too, for submissions whose cells do not parse
        if len(cell.source) <= MAX_CELL_CHARS:
            emitter.lines(_fallback(cell.source))
    seen.discard("")
    seen.discard(LINE)
    return frozenset(seen)
