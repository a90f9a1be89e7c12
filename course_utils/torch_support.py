"""What the course needs from torch, and what it does instead on an older torch.

The course is written for torch 2.9 or newer (``torch.optim.Muon``). A runtime with an older torch, as Colab's
may be, keeps it: upgrading would download gigabytes and leave torchvision out of step. What falls back:

* ``Recipe(optimizer="muon")`` (notebook 4) trains with AdamW alone.
"""

from __future__ import annotations

import functools

import torch

MINIMUM = (2, 9)


def version() -> tuple[int, int]:
    """torch's ``(major, minor)`` version, e.g. ``(2, 9)`` for ``2.9.1+cu126``."""
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def has_muon() -> bool:
    """True when ``torch.optim.Muon`` exists (torch 2.9 and newer)."""
    return hasattr(torch.optim, "Muon")


def fallbacks() -> list[str]:
    """One line per feature this torch lacks, with what the course does instead (empty on a recent torch)."""
    lines = []
    if not has_muon():
        lines.append(
            "Recipe(optimizer='muon') trains with AdamW alone (torch.optim.Muon arrived in torch 2.9), so in "
            "notebook 4 the 'Muon' run repeats the baseline."
        )
    return lines


def report() -> None:
    """Print what falls back on this runtime's torch, if anything (nothing on torch 2.9 or newer)."""
    lines = fallbacks()
    if lines or version() < MINIMUM:
        print(
            f"This runtime has torch {torch.__version__}; the course is written for {MINIMUM[0]}.{MINIMUM[1]} or "
            "newer. It is used as it is (not upgraded). What changes: " + (" ".join(lines) or "nothing.")
        )


@functools.cache
def say_muon_falls_back() -> None:
    """Say once that Muon falls back to AdamW here."""
    print(f"Notice: torch {torch.__version__} has no torch.optim.Muon (torch 2.9 and newer): " + fallbacks()[0])
