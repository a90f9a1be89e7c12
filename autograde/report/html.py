"""The report as one self-contained HTML file: figures embedded as PNG data, no script, no outside resource."""

from __future__ import annotations

import base64

from autograde.report.document import Document, Heading, Image, Inline, Paragraph, Quote, SideBySide, Student, Table
from autograde.report.similarity import Span
from autograde.report.text import h, h_block

CSS = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.6rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0}th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f6f8fa}
code{background:#f6f8fa;padding:0 .2rem;border-radius:3px}
pre{background:#f6f8fa;padding:.5rem;white-space:pre-wrap;overflow-x:auto;margin:.3rem 0}
img{max-width:100%;height:auto;display:block;margin:.6rem 0}
.note{background:#fff8c5;border-left:4px solid #d4a72c;padding:.5rem .8rem}
.private{background:#ffebe9;border-left:4px solid #cf222e;padding:.5rem .8rem}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.8rem;margin:.6rem 0 1.2rem}
.pair pre{font-size:.8rem;margin:0}.pair .line{display:block}.pair .shared{background:#ffd8b5;display:block}
.span{font-size:.85rem;color:#57606a;margin:.3rem 0 .1rem}
"""


def _inline(part: Inline) -> str:
    if isinstance(part, Student):
        return f"<code>{h(part.value)}</code>"
    if isinstance(part, float):
        return h(f"{part:.3g}")
    return h(part, limit=None)


def _cell(part: Inline, numeric: bool) -> str:
    return f"<td class='n'>{_inline(part)}</td>" if numeric else f"<td>{_inline(part)}</td>"


def _span(span: Span) -> str:
    lines = []
    for number, line in enumerate(span.lines, start=span.first):
        css = "shared" if number in span.matched else "line"
        lines.append(f"<span class='{css}'>{h_block(line) or ' '}</span>")
    where = f"cell {h(span.cell)}, lines {span.first}–{span.last}"
    return f"<div class='span'>{where}</div><pre>{''.join(lines)}</pre>"


def _block(block) -> str:
    if isinstance(block, Heading):
        anchor = f" id='{h(block.anchor)}'" if block.anchor else ""
        return f"<h{block.level}{anchor}>{h(block.text, limit=None)}</h{block.level}>"
    if isinstance(block, Paragraph):
        css = f" class='{block.style}'" if block.style else ""
        return f"<p{css}>{''.join(_inline(p) for p in block.parts)}</p>"
    if isinstance(block, Table):
        numeric = block.numeric or tuple(False for _ in block.headers)
        head = "".join(f"<th>{h(x, limit=None)}</th>" for x in block.headers)
        rows = "".join(
            "<tr>" + "".join(_cell(c, n) for c, n in zip(row, numeric, strict=True)) + "</tr>" for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Image):
        data = base64.b64encode(block.png).decode("ascii")
        return f"<img class='figure' alt='{h(block.alt, limit=None)}' src='data:image/png;base64,{data}'>"
    if isinstance(block, Quote):
        return f"<pre>{h_block(block.text)}</pre>"
    if isinstance(block, SideBySide):
        left = "".join(_inline(p) for p in block.left) + "".join(_span(s) for s in block.left_spans)
        right = "".join(_inline(p) for p in block.right) + "".join(_span(s) for s in block.right_spans)
        return f"<div class='pair'><div>{left}</div><div>{right}</div></div>"
    raise TypeError(f"no HTML for {type(block).__name__}")


def render(document: Document) -> str:
    body = "\n".join([f"<h1>{h(document.title, limit=None)}</h1>", *(_block(b) for b in document.blocks)])
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{h(document.title, limit=None)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )
