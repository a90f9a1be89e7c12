"""The report as a list of plain blocks, rendered to HTML (:mod:`.html`) and to Markdown (:mod:`.markdown`).

Text that a student controls is wrapped in :class:`Student`, so each renderer shows it inert (escaped, as code);
everything else is the report's own words, escaped all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autograde.report.similarity import Span


@dataclass(frozen=True)
class Student:
    """Student-controlled text: an id, a message, a line of code."""

    value: str


Inline = str | Student | int | float


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Paragraph:
    parts: tuple[Inline, ...]
    style: str = ""  # "", "note" (read this first) or "private" (this part names students)


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[Inline, ...], ...]
    numeric: tuple[bool, ...] = ()  # per column: right-aligned


@dataclass(frozen=True)
class Image:
    name: str  # file name under the report's figure folder (Markdown), e.g. "01_scores.png"
    png: bytes
    alt: str


@dataclass(frozen=True)
class Quote:
    """A block of student-controlled text (an incident's message, a reason for review)."""

    text: str


@dataclass(frozen=True)
class SideBySide:
    """Shared code: the spans of two submissions, next to each other."""

    left: tuple[Inline, ...]
    right: tuple[Inline, ...]
    left_spans: tuple[Span, ...]
    right_spans: tuple[Span, ...]


Block = Heading | Paragraph | Table | Image | Quote | SideBySide


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    @property
    def images(self) -> list[Image]:
        return [b for b in self.blocks if isinstance(b, Image)]
