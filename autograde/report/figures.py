"""The report's figures, drawn with matplotlib (its object API: no pyplot state, no display) as PNG bytes.

Figures count students; none names one. Each function returns None when there is nothing to draw.
"""

from __future__ import annotations

import io
import math

from matplotlib.figure import Figure

from autograde.report.stats import AssignmentStats, MeasurementStats, ScoreStats

COLOUR, FULL, TIER = "#4c72b0", "#2e8b57", "#c44e52"
DPI = 100


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _bars(ax, stats: ScoreStats) -> None:
    hist = stats.histogram
    positions = range(len(hist.counts))
    full = [i == len(hist.counts) - 1 and stats.full_marks > 0 for i in positions]
    ax.bar(positions, hist.counts, color=[FULL if f else COLOUR for f in full], width=0.8)
    ax.set_xticks(list(positions))
    step = max(1, math.ceil(len(hist.labels) / 12))
    ax.set_xticklabels([label if i % step == 0 else "" for i, label in enumerate(hist.labels)], fontsize=7)
    ax.set_title(
        f"{stats.part} (of {stats.possible:g}): full marks {stats.full_share:.0%}, mean {stats.mean:.3g}", fontsize=9
    )
    ax.set_ylabel("students", fontsize=8)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.tick_params(axis="y", labelsize=7)


def scores_figure(stats: AssignmentStats) -> bytes | None:
    """One histogram of scores per part, and one of the total (full marks in green)."""
    panels = [*stats.parts, stats.total]
    if not stats.submissions:
        return None
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(4.2 * columns, 2.6 * rows))
    for i, part in enumerate(panels):
        _bars(fig.add_subplot(rows, columns, i + 1), part)
    fig.suptitle(f"{stats.assignment}: points per part ({stats.submissions} submissions)", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def mistakes_figure(stats: AssignmentStats, top: int = 15) -> bytes | None:
    """The most frequent named mistakes, as horizontal bars of students."""
    shown = stats.mistakes[:top]
    if not shown:
        return None
    fig = Figure(figsize=(8, 0.45 * len(shown) + 1.0))
    ax = fig.add_subplot()
    labels = [f"{m.name} ({m.part})" for m in reversed(shown)]
    ax.barh(range(len(shown)), [m.count for m in reversed(shown)], color=COLOUR)
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(f"students (of {stats.submissions})", fontsize=8)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{stats.assignment}: known mistakes, most frequent first", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def time_figure(stats: AssignmentStats) -> bytes | None:
    """Seconds of grading per submission."""
    seconds = [s for _, s in stats.seconds]
    if not seconds:
        return None
    fig = Figure(figsize=(6, 2.6))
    ax = fig.add_subplot()
    ax.hist(seconds, bins=min(20, max(1, len(seconds))), color=COLOUR)
    ax.set_xlabel("seconds of grading per submission", fontsize=8)
    ax.set_ylabel("submissions", fontsize=8)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{stats.assignment}: time per submission (slowest {max(seconds):.3g} s)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def measurement_figure(assignment: str, m: MeasurementStats) -> bytes | None:
    """The distribution of a measurement, with its tiers as vertical lines."""
    values = [v for _, v in m.values]
    if not values:
        return None
    fig = Figure(figsize=(6, 2.8))
    ax = fig.add_subplot()
    ax.hist(values, bins=min(20, max(1, len(values))), color=COLOUR)
    for tier in m.tiers:
        ax.axvline(tier, color=TIER, linestyle="--", linewidth=1.2)
        ax.text(tier, ax.get_ylim()[1] * 0.95, f" {tier:g}{m.unit}", color=TIER, fontsize=8, va="top")
    unit = f" ({m.unit})" if m.unit else ""
    ax.set_xlabel(f"{m.name}{unit}", fontsize=8)
    ax.set_ylabel("submissions", fontsize=8)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{assignment} / {m.part}: {m.name} against its tiers", fontsize=10)
    fig.tight_layout()
    return _png(fig)
