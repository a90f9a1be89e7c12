"""Tensor comparisons whose failure messages tell the student what differs and, where possible, why."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from autograde.worker.results import KnownMistake


@dataclass(frozen=True)
class Mistake:
    """A known mistake: its name (``"no_scale"``, counted in class reports), what it returns for the inputs of
    the check (a tensor, or a function computing it only when needed) and the message that names it.

    Each notebook keeps its known mistakes in the ``mistakes`` module of its folder, one message per name there
    (the same name in two parts is the same mistake); keep names stable, since class reports count them.
    """

    name: str
    compute: torch.Tensor | Callable[[], torch.Tensor]
    message: str

    def value(self) -> torch.Tensor:
        return self.compute() if callable(self.compute) else self.compute


def close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float) -> bool:
    """Same shape and within ``atol + rtol * |expected|`` everywhere, with no NaN or Inf."""
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
        return False
    actual = actual.to(expected.dtype)
    return bool(torch.isfinite(actual).all()) and torch.allclose(actual, expected, atol=atol, rtol=rtol)


def describe_difference(actual: object, expected: torch.Tensor) -> str:
    """One clause on how ``actual`` differs from ``expected`` (type, shape, non-finite values, largest error)."""
    if not isinstance(actual, torch.Tensor):
        return f"yours is a {type(actual).__name__}, the reference's a tensor of shape {tuple(expected.shape)}"
    if actual.shape != expected.shape:
        return f"yours has shape {tuple(actual.shape)}, the reference's {tuple(expected.shape)}"
    if not torch.isfinite(actual).all():
        return f"yours holds {int((~torch.isfinite(actual)).sum())} NaN or Inf values"
    if not actual.is_floating_point():
        return f"yours has dtype {actual.dtype}, the reference's is floating-point"
    err = (actual.to(expected.dtype) - expected).abs()
    largest = expected.abs().max().item()
    return f"the largest absolute difference is {err.max().item():.3g} (the reference's values reach {largest:.3g})"


def assert_matches(
    actual: object,
    expected: torch.Tensor,
    *,
    what: str,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    hints: Sequence[Mistake] = (),
) -> None:
    """Fail with a message naming ``what`` when ``actual`` is not close to ``expected``.

    hints: the known mistakes, tried in order. When the student's value matches one, :class:`KnownMistake`
    carries its message (so the student learns which mistake was made) and its name.
    """
    if isinstance(actual, torch.Tensor) and close(actual, expected, atol=atol, rtol=rtol):
        return
    for mistake in hints:
        if isinstance(actual, torch.Tensor) and close(actual, mistake.value(), atol=atol, rtol=rtol):
            raise KnownMistake(f"{what}: {mistake.message}", mistake.name)
    raise AssertionError(
        f"{what}, compared with the reference: {describe_difference(actual, expected)} "
        f"(tolerance atol={atol:g}, rtol={rtol:g})."
    )
