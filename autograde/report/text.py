"""Student-controlled text (ids, messages, code) made inert for the report's HTML and Markdown, with the rules of
:mod:`autograde.inert`: control characters (and the Unicode format characters that reorder or hide text, as in
"Trojan Source") are shown as escapes; HTML is escaped; in Markdown an id is a code span and a block of text or
code is fenced with more backticks than it holds, so nothing a student wrote can become a heading, a link, a table
or markup.
"""

from __future__ import annotations

import html
import re

from autograde import inert

MAX_INLINE = 200


def plain(text: object, *, lines: bool = False, limit: int | None = None) -> str:
    """``text`` with control characters escaped; on one line unless ``lines``; cut to ``limit`` characters."""
    value = inert.inert(str(text))
    if not lines:
        value = " ".join(value.split())
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def h(text: object, limit: int | None = MAX_INLINE) -> str:
    """Inline HTML text (escaped, one line)."""
    return html.escape(plain(text, limit=limit), quote=True)


def h_block(text: object) -> str:
    """Preformatted HTML text (escaped, lines kept)."""
    return html.escape(plain(text, lines=True), quote=True)


def md(text: object, limit: int | None = None) -> str:
    """Markdown text that renders as written: the characters that start markup anywhere in a line (backslash,
    backtick, emphasis, links, HTML, table pipes) escaped, and ``_`` where it could start or end emphasis."""
    escaped = re.sub(r"([\\`*\[\]<>|~])", r"\\\1", plain(text, limit=limit))
    return re.sub(r"(?<!\w)_|_(?!\w)", r"\_", escaped)


def md_code(text: object) -> str:
    """An inline code span holding ``text`` (a student id), whatever backticks it contains."""
    return inert.md_code(plain(text, limit=MAX_INLINE))


def md_fenced(text: object, info: str = "text") -> list[str]:
    """A fenced Markdown block holding ``text``; no line of it can close the fence."""
    return inert.md_fenced(plain(text, lines=True), info)
