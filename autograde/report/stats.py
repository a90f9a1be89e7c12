"""The class's figures for one assignment, computed from its graded submissions (:mod:`.run`).

Per part: the scores, their histogram and the share of full marks; the named mistakes ranked by how many
students made them; failed checks by kind; incidents; time per submission; every measurement (a checkpoint's
accuracy) against its tiers; what was marked for review. Student ids are kept beside each figure for the
instructor's tables only; the figures themselves count, they do not name.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass

from autograde.report.run import Graded

INTEGER_BINS_UP_TO = 30  # parts worth at most this many (whole) points get one bar per score
BINS = 10  # otherwise, equal-width bins


@dataclass(frozen=True)
class Histogram:
    """Bars over [0, possible]: ``labels[i]`` names bar i (``"3"`` or ``"2.7–5.4"``), ``counts[i]`` its height."""

    labels: tuple[str, ...]
    counts: tuple[int, ...]
    lows: tuple[float, ...]  # each bar's lowest score

    def as_dict(self) -> dict[str, int]:
        return dict(zip(self.labels, self.counts, strict=True))


def _g(x: float) -> str:
    return f"{round(x, 2):g}"


def histogram(scores: list[float], possible: float) -> Histogram:
    """One bar per whole score when the part is worth few whole points, else ``BINS`` equal bins."""
    whole = all(float(s).is_integer() for s in [*scores, possible])
    if whole and 0 < possible <= INTEGER_BINS_UP_TO:
        values = list(range(int(possible) + 1))
        counts = Counter(int(s) for s in scores)
        return Histogram(
            tuple(str(v) for v in values), tuple(counts.get(v, 0) for v in values), tuple(map(float, values))
        )
    top = possible if possible > 0 else max(scores, default=1.0) or 1.0
    width = top / BINS
    counts = [0] * BINS
    for s in scores:
        counts[min(BINS - 1, max(0, int(s / width)))] += 1
    lows = tuple(i * width for i in range(BINS))
    labels = tuple(f"{_g(lo)}–{_g(lo + width)}" for lo in lows)
    return Histogram(labels, tuple(counts), lows)


@dataclass(frozen=True)
class ScoreStats:
    """The scores of one part (or of the whole assignment: part ``"total"``)."""

    part: str
    possible: float
    scores: tuple[float, ...]
    histogram: Histogram

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores) if self.scores else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.scores) if self.scores else 0.0

    @property
    def full_marks(self) -> int:
        return sum(1 for s in self.scores if self.possible > 0 and s >= self.possible - 1e-9)

    @property
    def full_share(self) -> float:
        return self.full_marks / len(self.scores) if self.scores else 0.0

    @property
    def mean_share(self) -> float:
        return self.mean / self.possible if self.possible else 0.0


@dataclass(frozen=True)
class MistakeStats:
    """A known mistake, the part whose tests diagnosed it and the students who made it."""

    name: str
    part: str
    students: tuple[str, ...]
    checks: int  # failed tests that matched it

    @property
    def count(self) -> int:
        return len(self.students)


@dataclass(frozen=True)
class KindStats:
    kind: str
    checks: int
    students: tuple[str, ...]


@dataclass(frozen=True)
class MeasurementStats:
    """Every submission's value of one measurement, and how many fall in each band between the tiers."""

    part: str
    name: str
    unit: str
    tiers: tuple[float, ...]
    values: tuple[tuple[str, float], ...]  # (student, value)
    missing: int  # submissions of the assignment without this measurement

    @property
    def bands(self) -> list[tuple[str, int]]:
        """(``"below 45 %"``, ``"45 to 65 %"``, ``"65 % or more"``) with their counts."""
        unit = f" {self.unit}" if self.unit else ""
        edges = sorted(self.tiers)
        if not edges:
            return [(f"all{unit}", len(self.values))]
        names = [f"below {_g(edges[0])}{unit}"]
        names += [f"{_g(lo)} to {_g(hi)}{unit}" for lo, hi in zip(edges, edges[1:], strict=False)]
        names.append(f"{_g(edges[-1])}{unit} or more")
        counts = [0] * (len(edges) + 1)
        for _, value in self.values:
            counts[sum(value >= edge for edge in edges)] += 1
        return list(zip(names, counts, strict=True))


@dataclass
class AssignmentStats:
    assignment: str
    submissions: int
    parts: list[ScoreStats]
    total: ScoreStats
    mistakes: list[MistakeStats]
    kinds: list[KindStats]
    incidents: list[tuple[str, str, str]]  # (student, kind, message)
    seconds: list[tuple[str, float]]  # (student, seconds), slowest first
    measurements: list[MeasurementStats]
    review: list[tuple[str, str, str]]  # (student, line, reason)
    not_graded: list[tuple[str, str]]  # (student, why it could not be graded)
    without_details: int  # submissions whose results carry no failure kinds or mistakes

    @property
    def hardest(self) -> list[ScoreStats]:
        """The parts, the lowest mean share of their points first."""
        return sorted(self.parts, key=lambda p: (p.mean_share, p.part))

    @property
    def incidents_by_kind(self) -> list[tuple[str, int]]:
        return Counter(kind for _, kind, _ in self.incidents).most_common()


def assignment_stats(assignment: str, graded: list[Graded]) -> AssignmentStats:
    """The figures of one assignment's submissions (all of the same assignment)."""
    part_order: list[str] = []
    possible: dict[str, float] = {}
    for g in graded:
        for part, (_, most) in g.parts.items():
            if part not in part_order:
                part_order.append(part)
            possible[part] = max(possible.get(part, 0.0), most)
    parts = []
    for part in part_order:
        scores = [g.parts[part][0] for g in graded if part in g.parts]
        parts.append(ScoreStats(part, possible[part], tuple(scores), histogram(scores, possible[part])))
    total_possible = max((g.possible for g in graded), default=0.0)
    totals = [g.score for g in graded]
    total = ScoreStats("total", total_possible, tuple(totals), histogram(totals, total_possible))

    by_mistake: dict[tuple[str, str], list[str]] = defaultdict(list)
    mistake_checks: Counter = Counter()
    by_kind: dict[str, list[str]] = defaultdict(list)
    kind_checks: Counter = Counter()
    for g in graded:
        for c in g.checks:
            if c.passed:
                continue
            kind_checks[c.kind] += 1
            if g.student not in by_kind[c.kind]:
                by_kind[c.kind].append(g.student)
            if c.mistake:
                mistake_checks[(c.mistake, c.part)] += 1
                if g.student not in by_mistake[(c.mistake, c.part)]:
                    by_mistake[(c.mistake, c.part)].append(g.student)
    rank = {p: i for i, p in enumerate(part_order)}
    mistakes = sorted(
        (
            MistakeStats(name, part, tuple(students), mistake_checks[(name, part)])
            for (name, part), students in by_mistake.items()
        ),
        key=lambda m: (-m.count, rank.get(m.part, len(rank)), m.name),
    )
    kinds = sorted(
        (KindStats(kind, kind_checks[kind], tuple(students)) for kind, students in by_kind.items()),
        key=lambda k: (-k.checks, k.kind),
    )

    grouped: dict[tuple, list[tuple[str, float]]] = defaultdict(list)
    for g in graded:
        for m in g.measurements:
            grouped[(m.part, m.name, m.unit, m.tiers)].append((g.student, m.value))
    measurements = [
        MeasurementStats(part, name, unit, tiers, tuple(values), len(graded) - len({s for s, _ in values}))
        for (part, name, unit, tiers), values in grouped.items()
    ]
    timed = [(g.student, g.seconds) for g in graded if g.seconds is not None and math.isfinite(g.seconds)]
    return AssignmentStats(
        assignment=assignment,
        submissions=len(graded),
        parts=parts,
        total=total,
        mistakes=mistakes,
        kinds=kinds,
        incidents=[(g.student, i.kind, i.message) for g in graded for i in g.incidents],
        seconds=sorted(timed, key=lambda t: (-t[1], t[0])),
        measurements=measurements,
        review=[(g.student, r.line, r.reason) for g in graded for r in g.review],
        not_graded=[(g.student, g.error) for g in graded if g.error],
        without_details=sum(not g.detailed for g in graded),
    )
