"""Similar submissions within one assignment: winnowed fingerprints of normalised answer code, an inverted index.

For each submission: its answer cells (:mod:`.answers`), normalised (:mod:`.normalise`), fingerprinted
(:mod:`.fingerprints`). Then, MOSS's way:

- every fingerprint that also occurs anywhere in the release's own code (any k-gram of any code cell of the
  handed-out notebook) is dropped, so code the release hands out never makes two submissions alike;
- a fingerprint found in more than ``max_share`` submissions (10, as MOSS) is common code (an idiom many students
  write the same way) and is dropped too. The price, as in MOSS: code shared by more students than that (a
  solution passed around a large group) is not flagged either;
- an inverted index (fingerprint -> submissions) counts the fingerprints each pair shares; only pairs that share
  one are ever looked at, so the cost grows with the class size times the common limit, not with every pair;
- a pair is flagged when it shares at least ``min_shared`` fingerprints and they are at least ``threshold`` of
  the smaller submission's. Its shared code is then located in both notebooks' cells, to be shown side by side.

A flag is a reason to look at two submissions, not proof that either copied: short exercises have few ways to be
written, and students may have worked together as allowed.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autograde.report.answers import UnreadableNotebook, submitted_answers
from autograde.report.fingerprints import WINDOW, K, kgram_hashes, token_codes, winnow
from autograde.report.normalise import Cell, Tokens, import_aliases, normalise, statement_texts

MAX_BLOCKS = 6  # shared stretches shown per pair
MAX_SPAN_LINES = 40  # source lines shown per block and side
MAX_REPEATS = 8  # occurrences of one k-gram in a submission considered when locating shared code


@dataclass(frozen=True)
class Settings:
    """When a pair is flagged (see the module docstring) and how fingerprints are taken."""

    threshold: float = 0.5
    min_shared: int = 10
    max_share: int = 10  # a fingerprint in more submissions is common code (MOSS's default, its option -m)
    k: int = K
    window: int = WINDOW
    jobs: int = 0  # processes that fingerprint; 0: up to 2 (the course's machines have 2 cores)

    def common_limit(self, submissions: int) -> int:
        """A fingerprint found in more submissions than this is common code (at least 2: a pair)."""
        return max(2, self.max_share)

    def processes(self) -> int:
        return self.jobs or min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class Code:
    """A submission's answer code: its cells, or the notebook to read them from."""

    student: str
    cells: tuple[Cell, ...] | None = None
    path: Path | None = None

    def load(self) -> tuple[Cell, ...]:
        if self.cells is not None:
            return self.cells
        if self.path is None:
            raise UnreadableNotebook("no notebook was recorded for this submission")
        return tuple(submitted_answers(self.path))


@dataclass(frozen=True)
class Span:
    """Lines ``first``..``last`` (1-based) of one answer cell; ``matched``: those that are part of the shared
    code."""

    cell: str
    first: int
    last: int
    lines: tuple[str, ...]
    matched: frozenset[int]


@dataclass(frozen=True)
class Block:
    """One stretch of shared code: where it is in each submission, and its length in normalised tokens."""

    a: tuple[Span, ...]
    b: tuple[Span, ...]
    tokens: int


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    shared: int  # fingerprints the two share (release code and common code left out)
    a_fingerprints: int
    b_fingerprints: int
    blocks: tuple[Block, ...] = ()

    @property
    def score(self) -> float:
        """The share of the smaller submission's fingerprints found in the other (0 to 1)."""
        return self.shared / max(1, min(self.a_fingerprints, self.b_fingerprints))

    @property
    def a_share(self) -> float:
        return self.shared / max(1, self.a_fingerprints)

    @property
    def b_share(self) -> float:
        return self.shared / max(1, self.b_fingerprints)


@dataclass
class Similarity:
    """The outcome for one assignment."""

    assignment: str
    settings: Settings
    compared: list[str] = field(default_factory=list)  # students whose code was compared
    missing: dict[str, str] = field(default_factory=dict)  # student -> why their code could not be compared
    pairs: list[Pair] = field(default_factory=list)  # flagged pairs, highest score first
    common_limit: int = 0
    release_removed: bool = False
    seconds: float = 0.0


# --------------------------------------------------------------------------------------- fingerprints
@dataclass(frozen=True)
class _Release:
    """What the release hands out: its import aliases, its statements and every k-gram hash of its code."""

    aliases: dict[str, str]
    statements: frozenset[str]
    hashes: np.ndarray


def _release(cells: Sequence[Cell] | None, k: int) -> _Release:
    if not cells:
        return _Release({}, frozenset(), np.empty(0, dtype=np.uint64))
    aliases = import_aliases(c.source for c in cells)
    hashes = np.unique(kgram_hashes(token_codes(normalise(cells, aliases).values), k))
    return _Release(aliases, statement_texts(cells, aliases), hashes)


def _fingerprint(job: tuple[Code, _Release, int, int]) -> tuple[str, np.ndarray | None, str]:
    """(student, the submission's distinct fingerprints or None, why none)."""
    code, release, k, window = job
    try:
        cells = code.load()
    except UnreadableNotebook as exc:
        return code.student, None, str(exc)
    tokens = normalise(cells, release.aliases, release.statements)
    hashes, _ = winnow(kgram_hashes(token_codes(tokens.values), k), window)
    return code.student, np.unique(hashes), ""


def _fingerprint_all(
    codes: Sequence[Code], release: _Release, settings: Settings, progress: Callable[[int], None] | None
) -> list[tuple[str, np.ndarray | None, str]]:
    jobs = [(c, release, settings.k, settings.window) for c in codes]
    processes = settings.processes()
    if processes > 1 and len(jobs) >= 64 and "fork" in multiprocessing.get_all_start_methods():
        out = []
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            for item in pool.imap(_fingerprint, jobs, chunksize=16):
                out.append(item)
                if progress:
                    progress(1)
        return out
    out = []
    for job in jobs:
        out.append(_fingerprint(job))
        if progress:
            progress(1)
    return out


# --------------------------------------------------------------------------------------------- pairs
def _shared_counts(prints: list[np.ndarray], limit: int) -> tuple[Counter, np.ndarray]:
    """(pair (i, j) with i < j -> fingerprints shared, the fingerprints found in more than ``limit``
    submissions), through an inverted index of the fingerprints found in 2..limit submissions."""
    if not prints:
        return Counter(), np.empty(0, dtype=np.uint64)
    owners = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(prints)])
    hashes = np.concatenate(prints)
    order = np.argsort(hashes, kind="stable")
    hashes, owners = hashes[order], owners[order]
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
    sizes = np.diff(np.r_[starts, len(hashes)])
    common = hashes[starts[sizes > limit]]
    counts: Counter = Counter()
    shared = (sizes >= 2) & (sizes <= limit)
    for start, size in zip(starts[shared], sizes[shared], strict=True):
        group = owners[start : start + size].tolist()
        for x in range(size):
            for y in range(x + 1, size):
                counts[(group[x], group[y])] += 1
    return counts, common


def _positions(hashes: np.ndarray, wanted: np.ndarray) -> dict[int, list[int]]:
    """hash -> its first few k-gram positions, for the hashes in ``wanted``."""
    where: dict[int, list[int]] = defaultdict(list)
    for position in np.flatnonzero(np.isin(hashes, wanted)).tolist():
        found = where[int(hashes[position])]
        if len(found) < MAX_REPEATS:
            found.append(position)
    return where


def _handed_out(hashes: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    """Per token, whether it lies in a k-gram of the release's code (shape (tokens,), bool)."""
    covered = np.zeros(len(hashes) + k - 1 if len(hashes) else 0, dtype=bool)
    for position in np.flatnonzero(np.isin(hashes, excluded)).tolist():
        covered[position : position + k] = True
    return covered


def _spans(cells: Sequence[Cell], tokens: Tokens, start: int, stop: int, handed_out: np.ndarray) -> tuple[Span, ...]:
    """The cells and lines of tokens ``start``..``stop - 1`` that the release did not hand out, one span per
    cell."""
    lines_by_cell: dict[int, set[int]] = defaultdict(set)
    for t in range(start, min(stop, len(tokens))):
        if t < len(handed_out) and handed_out[t]:
            continue
        lines_by_cell[tokens.cells[t]].update(range(tokens.first_lines[t], tokens.last_lines[t] + 1))
    spans = []
    for index in sorted(lines_by_cell):
        matched = lines_by_cell[index]
        if not matched:
            continue
        source = cells[index].source.splitlines()
        first, last = min(matched), min(max(matched), min(matched) + MAX_SPAN_LINES - 1)
        shown = tuple(source[first - 1 : last])
        spans.append(Span(cells[index].label, first, last, shown, frozenset(m for m in matched if m <= last)))
    return tuple(spans)


def _stretches(runs: list[tuple[int, int, int]], k: int) -> list[tuple[int, int, int]]:
    """(k-grams, position in a, position in b) of the longest runs that overlap no longer one on either side
    (repeated code matches in several places; each place is shown once), with runs that continue each other
    after a short gap on both sides (a k-gram of the release between them) merged; longest first."""
    chosen: list[tuple[int, int, int]] = []
    for length, pa, pb in sorted(runs, key=lambda r: (-r[0], r[1], r[2])):
        if all(pa + length <= qa or qa + n <= pa for n, qa, _ in chosen) and all(
            pb + length <= qb or qb + n <= pb for n, _, qb in chosen
        ):
            chosen.append((length, pa, pb))
    merged: list[tuple[int, int, int]] = []
    for length, pa, pb in sorted(chosen, key=lambda r: r[1]):
        if merged:
            n, qa, qb = merged[-1]
            gap = pa - (qa + n)
            if gap == pb - (qb + n) and 0 <= gap <= 2 * k:
                merged[-1] = (n + gap + length, qa, qb)
                continue
        merged.append((length, pa, pb))
    return sorted(merged, key=lambda r: (-r[0], r[1], r[2]))


def shared_blocks(a_cells: Sequence[Cell], b_cells: Sequence[Cell], release: _Release, k: int = K) -> tuple[Block, ...]:
    """The stretches of code two submissions share (longest first): runs of k-grams equal in both, in the
    same order, none of them the release's."""
    excluded = release.hashes
    ta = normalise(a_cells, release.aliases, release.statements)
    tb = normalise(b_cells, release.aliases, release.statements)
    ha, hb = kgram_hashes(token_codes(ta.values), k), kgram_hashes(token_codes(tb.values), k)
    both = np.setdiff1d(np.intersect1d(ha, hb), excluded)
    in_a, in_b = _positions(ha, both), _positions(hb, both)
    anchors = {(pa, pb) for h, pas in in_a.items() for pa in pas for pb in in_b.get(h, [])}
    runs = []
    for pa, pb in sorted(anchors):
        if (pa - 1, pb - 1) in anchors:
            continue  # inside a run that starts earlier
        length = 1
        while (pa + length, pb + length) in anchors:
            length += 1
        runs.append((length, pa, pb))
    out_a, out_b = _handed_out(ha, excluded, k), _handed_out(hb, excluded, k)
    blocks = []
    for length, pa, pb in _stretches(runs, k)[:MAX_BLOCKS]:
        tokens = length + k - 1
        a, b = _spans(a_cells, ta, pa, pa + tokens, out_a), _spans(b_cells, tb, pb, pb + tokens, out_b)
        if a and b:
            blocks.append(Block(a, b, tokens))
    return tuple(blocks)


def find_similar(
    assignment: str,
    codes: Sequence[Code],
    release: Sequence[Cell] | None,
    settings: Settings = Settings(),
    progress: Callable[[int], None] | None = None,
) -> Similarity:
    """Compare every submission of one assignment with every other; see the module docstring."""
    start = time.monotonic()
    handed_out = _release(release, settings.k)
    excluded = handed_out.hashes
    result = Similarity(assignment, settings, release_removed=release is not None)
    students, prints = [], []
    for student, hashes, why in _fingerprint_all(codes, handed_out, settings, progress):
        if hashes is None:
            result.missing[student] = why
            continue
        students.append(student)
        prints.append(np.setdiff1d(hashes, excluded, assume_unique=True))
    result.compared = students
    result.common_limit = settings.common_limit(len(students))
    counts, common = _shared_counts(prints, result.common_limit)
    kept = [len(np.setdiff1d(p, common, assume_unique=True)) for p in prints]
    by_student = {c.student: c for c in codes}
    for (i, j), shared in counts.items():
        pair = Pair(students[i], students[j], shared, kept[i], kept[j])
        if shared < settings.min_shared or pair.score < settings.threshold:
            continue
        a_cells, b_cells = by_student[pair.a].load(), by_student[pair.b].load()
        blocks = shared_blocks(a_cells, b_cells, handed_out, settings.k)
        result.pairs.append(Pair(pair.a, pair.b, shared, kept[i], kept[j], blocks))
    result.pairs.sort(key=lambda p: (-p.score, -p.shared, p.a, p.b))
    result.seconds = time.monotonic() - start
    return result
