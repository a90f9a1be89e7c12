"""The report as Markdown (GitHub's dialect), its figures as PNG files in a folder beside it."""

from __future__ import annotations

from autograde.report.document import Document, Heading, Image, Inline, Paragraph, Quote, SideBySide, Student, Table
from autograde.report.similarity import Span
from autograde.report.text import md, md_code, md_fenced, plain


def _inline(part: Inline, in_table: bool = False) -> str:
    if isinstance(part, Student):
        code = md_code(part.value)
        return code.replace("|", "\\|") if in_table else code  # GFM: a pipe in a table cell is escaped
    if isinstance(part, float):
        return md(f"{part:.3g}")
    return md(part)


def _span(span: Span) -> list[str]:
    """A span as a ``diff`` block: shared lines start with ``+``."""
    lines = [f"{'+' if n in span.matched else ' '} {line}" for n, line in enumerate(span.lines, start=span.first)]
    return [f"cell {md_code(span.cell)}, lines {span.first}–{span.last}:", "", *md_fenced("\n".join(lines), "diff"), ""]


def _block(block, folder: str) -> list[str]:
    if isinstance(block, Heading):
        return ["#" * block.level + " " + md(plain(block.text, limit=None)), ""]
    if isinstance(block, Paragraph):
        text = "".join(_inline(p) for p in block.parts)
        return [("> " + text) if block.style else text, ""]
    if isinstance(block, Table):
        numeric = block.numeric or tuple(False for _ in block.headers)
        lines = [
            "| " + " | ".join(md(x) for x in block.headers) + " |",
            "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
        ]
        lines += ["| " + " | ".join(_inline(c, in_table=True) for c in row) + " |" for row in block.rows]
        return [*lines, ""]
    if isinstance(block, Image):
        return [f"![{md(block.alt)}]({folder}/{block.name})", ""]
    if isinstance(block, Quote):
        return [*md_fenced(block.text), ""]
    if isinstance(block, SideBySide):
        out = ["".join(_inline(p) for p in block.left), ""]
        for span in block.left_spans:
            out += _span(span)
        out += ["".join(_inline(p) for p in block.right), ""]
        for span in block.right_spans:
            out += _span(span)
        return out
    raise TypeError(f"no Markdown for {type(block).__name__}")


def render(document: Document, folder: str) -> str:
    """The Markdown text; ``folder``: where the figures are, relative to the Markdown file."""
    lines = ["# " + md(document.title), ""]
    for block in document.blocks:
        lines += _block(block, folder)
    return "\n".join(lines).rstrip() + "\n"
