"""Tensor comparisons whose failure messages tell the student what differs and, where possible, why."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float) -> bool:
    """Same shape and within ``atol + rtol * |expected|`` everywhere, with no NaN or Inf."""
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
        return False
    actual = actual.to(expected.dtype)
    return bool(torch.isfinite(actual).all()) and torch.allclose(actual, expected, atol=atol, rtol=rtol)


def describe_difference(actual: object, expected: torch.Tensor) -> str:
    """One line on how ``actual`` differs from ``expected`` (type, shape, non-finite values, largest error)."""
    if not isinstance(actual, torch.Tensor):
        return f"got a {type(actual).__name__}, expected a tensor of shape {tuple(expected.shape)}"
    if actual.shape != expected.shape:
        return f"got shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if not torch.isfinite(actual).all():
        return f"got {int((~torch.isfinite(actual)).sum())} NaN or Inf values"
    if not actual.is_floating_point():
        return f"got dtype {actual.dtype}, expected a floating-point tensor"
    err = (actual.to(expected.dtype) - expected).abs()
    largest = expected.abs().max().item()
    return f"largest absolute difference {err.max().item():.3g} (expected values up to {largest:.3g})"


def assert_matches(
    actual: object,
    expected: torch.Tensor,
    *,
    what: str,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    hints: Sequence[tuple[torch.Tensor | Callable[[], torch.Tensor], str]] = (),
) -> None:
    """Fail with a message naming ``what`` when ``actual`` is not close to ``expected``.

    hints: (alternative, message) pairs; an alternative is what a known mistake produces. When the student's
    value matches one, its message is shown, so the student learns which mistake was made.
    """
    if isinstance(actual, torch.Tensor) and close(actual, expected, atol=atol, rtol=rtol):
        return
    for alternative, message in hints:
        wrong = alternative() if callable(alternative) else alternative
        if isinstance(actual, torch.Tensor) and close(actual, wrong, atol=atol, rtol=rtol):
            raise AssertionError(f"{what}: {message}")
    raise AssertionError(
        f"{what} does not match the reference: {describe_difference(actual, expected)} "
        f"(tolerance atol={atol:g}, rtol={rtol:g})."
    )
