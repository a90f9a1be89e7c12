"""Numerical gradient checks: centred differences in float64, compared with autograd."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


def rel_error(x: torch.Tensor | float, y: torch.Tensor | float) -> float:
    """Largest elementwise ``|x - y| / max(1e-8, |x| + |y|)``."""
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    return ((x - y).abs() / (x.abs() + y.abs()).clamp_min(1e-8)).max().item()


def _numerical_grad_at(
    f: Callable[[torch.Tensor], torch.Tensor | float],
    x: torch.Tensor,
    indices: Iterable[tuple[int, ...]],
    h: float,
) -> list[float]:
    """``(f(x + h e_i) - f(x - h e_i)) / 2h`` per index ``i``; ``x`` is nudged in place, then restored."""
    if x.dtype != torch.float64:
        raise TypeError(f"Numerical gradients need float64 for accuracy, got {x.dtype}; pass x.double().")
    grads = []
    with torch.no_grad():
        for index in indices:
            old = x[index].item()
            x[index] = old + h
            plus = float(f(x))
            x[index] = old - h
            minus = float(f(x))
            x[index] = old
            grads.append((plus - minus) / (2 * h))
    return grads


def eval_numerical_gradient(
    f: Callable[[torch.Tensor], torch.Tensor | float],
    x: torch.Tensor,
    *,
    h: float = 1e-5,
    verbose: bool = False,
) -> torch.Tensor:
    """Gradient of the scalar ``f(x)`` with respect to the float64 tensor ``x`` (same shape as ``x``).

    ``x`` is nudged in place and restored, so ``f`` may ignore its argument and read ``x`` directly.
    """
    grad = torch.zeros_like(x)
    indices = list(itertools.product(*(range(n) for n in x.shape)))
    for index, value in zip(indices, _numerical_grad_at(f, x, indices, h), strict=True):
        grad[index] = value
        if verbose:
            print(index, value)
    return grad


def eval_numerical_gradient_array(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, df: torch.Tensor, *, h: float = 1e-5
) -> torch.Tensor:
    """Gradient of ``sum(f(x) * df)`` with respect to ``x``: backpropagates the upstream gradient ``df``."""
    return eval_numerical_gradient(lambda z: (f(z) * df).sum(), x, h=h)


@dataclass
class GradCheckRow:
    """One checked tensor: ``max_rel_error`` is ``max |autograd - numerical|`` over the checked entries,
    divided by the largest gradient magnitude among them (so tiny entries raise no false alarm)."""

    name: str
    shape: tuple[int, ...]
    checked: int
    max_rel_error: float
    passed: bool


@dataclass
class GradReport:
    """Per-tensor results of ``check_module_gradients``; ``passed`` when every row passed."""

    rows: list[GradCheckRow] = field(default_factory=list)
    tol: float = 1e-6

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def __str__(self) -> str:
        lines = [f"{'tensor':<28} {'shape':<18} {'checked':>7} {'max rel error':>14}  result"]
        for row in self.rows:
            result = "pass" if row.passed else f"FAIL (tol {self.tol:.0e})"
            shape = str(row.shape)
            lines.append(f"{row.name:<28} {shape:<18} {row.checked:>7} {row.max_rel_error:>14.2e}  {result}")
        return "\n".join(lines)


def _sample_indices(shape: Sequence[int], max_elems: int, generator: torch.Generator) -> list[tuple[int, ...]]:
    """All indices of ``shape`` when there are at most ``max_elems``, else a random ``max_elems`` of them."""
    numel = math.prod(shape)
    if numel <= max_elems:
        flat = range(numel)
    else:
        flat = torch.randperm(numel, generator=generator)[:max_elems].tolist()
    return [tuple(int(i) for i in np.unravel_index(k, shape)) for k in flat]


def _floating_outputs(out: object) -> list[torch.Tensor]:
    """The floating-point tensors among a module's output (a tensor, or a tuple or list of them)."""
    return [t for t in (out if isinstance(out, (tuple, list)) else (out,)) if t.is_floating_point()]


def check_module_gradients(
    module: nn.Module,
    *inputs: object,
    h: float = 1e-6,
    tol: float = 1e-6,
    atol: float = 1e-8,
    max_elems: int = 200,
    seed: int = 0,
) -> GradReport:
    """Compare autograd with centred differences for every floating-point input and trainable parameter.

    Works on a float64 CPU copy of ``module`` in eval mode (the caller's module is untouched). The outputs
    are reduced to a scalar by a fixed random projection, so errors that a plain sum hides (softmax rows
    sum to one) still show. At most ``max_elems`` random entries per tensor are checked. A tensor also
    passes when every difference is below ``atol`` (a gradient that is zero up to rounding, such as a bias
    whose effect a softmax cancels).
    """
    module = copy.deepcopy(module).to(device="cpu", dtype=torch.float64).eval()
    args = [
        x.detach().to("cpu", torch.float64).requires_grad_()
        if isinstance(x, torch.Tensor) and x.is_floating_point()
        else x
        for x in inputs
    ]
    inputs_to_check = [(f"input[{i}]", x) for i, x in enumerate(args) if isinstance(x, torch.Tensor)]
    params_to_check = list(module.named_parameters())
    checked = [(name, t) for name, t in inputs_to_check + params_to_check if t.requires_grad and t.numel() > 0]
    if not checked:
        raise ValueError("Nothing to check: the module has no trainable parameters and no float inputs.")

    generator = torch.Generator().manual_seed(seed)
    shapes = [t.shape for t in _floating_outputs(module(*args))]
    projections = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in shapes]

    def objective() -> torch.Tensor:
        return sum((t * w).sum() for t, w in zip(_floating_outputs(module(*args)), projections, strict=True))

    objective().backward()
    report = GradReport(tol=tol)
    for name, tensor in checked:
        analytic = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
        indices = _sample_indices(tensor.shape, max_elems, generator)
        autograd = torch.stack([analytic[i] for i in indices])
        numeric = _numerical_grad_at(lambda _: objective(), tensor, indices, h)
        numeric = torch.tensor(numeric, dtype=torch.float64)
        scale = max(autograd.abs().max().item(), numeric.abs().max().item(), 1e-12)
        difference = (autograd - numeric).abs().max().item()
        error = difference / scale
        passed = error <= tol or difference <= atol
        report.rows.append(GradCheckRow(name, tuple(tensor.shape), len(indices), error, passed))
    return report
