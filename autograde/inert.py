"""Text a student controls (ids, file names, messages, code), made inert for every output: terminal, Markdown,
HTML, CSV. Standard library only, so that every writer can use it without loading the grader.

- :func:`inert`: every control character (C0 and C1, DEL, and the Unicode characters that reorder or hide text, as
  in "Trojan Source") shown as an escape (``\\x1b``), so it cannot move a terminal's cursor, write its clipboard,
  fake a line or hide what follows;
- :func:`one_line`: the same, newlines shown as ``\\n`` (for ids in headings and titles);
- :func:`public_text`: absolute paths of the grading machine shortened to their last component;
- :func:`md_code` and :func:`md_fenced`: Markdown code that no backtick run in the text can close;
- :func:`csv_cell`: a cell a spreadsheet shows as text, never as a formula (OWASP's advice).
"""

from __future__ import annotations

import re

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
# An absolute path (two or more components) that is not part of a URL or of a word such as ``h/p``.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.)\]}/:~])/(?:[^\s/'\"`:,;()<>]+/)+([^\s/'\"`:,;()<>]*)")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(text: str) -> str:
    """``text`` with every control character but tab and newline shown as an escape."""
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def one_line(text: str) -> str:
    """``text`` made inert and on one line (newlines shown as ``\\n``)."""
    return inert(text).replace("\r", "\\r").replace("\n", "\\n")


def public_text(text: str) -> str:
    """``text`` with every absolute path shortened to its last component (``.../name``), so that no message shows
    where the grading machine keeps the grader, the submissions or its scratch folders."""
    return _ABSOLUTE_PATH.sub(lambda m: f".../{m.group(1)}" if m.group(1) else "...", text)


def _fence(text: str, shortest: int) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(shortest, longest + 1)


def md_code(text: str) -> str:
    """``text`` (made one line) as Markdown inline code, whatever backticks it holds."""
    value = one_line(text) or " "
    fence = _fence(value, 1)
    pad = " " if value.startswith("`") or value.endswith("`") or value.startswith(" ") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def md_fenced(text: str, info: str = "text") -> list[str]:
    """The lines of a fenced Markdown block holding ``text`` (made inert): no line of it can close the fence."""
    value = inert(text)
    fence = _fence(value, 3)
    return [fence + info, *value.splitlines(), fence]


def csv_cell(value: str) -> str:
    """``value`` made inert, and prefixed with ``'`` where a spreadsheet would read it as a formula."""
    value = inert(value)
    return "'" + value if value.startswith(FORMULA_STARTS) else value
