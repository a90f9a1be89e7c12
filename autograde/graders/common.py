"""Helpers shared by the grader modules: seeded inputs, reference weights, and student calls."""

from __future__ import annotations

import torch
from torch import nn

from autograde.student import Call, CallResult, Student, StudentError

CUDA_HINT = (
    "your code only runs on CUDA: it moves a tensor to 'cuda' itself. Create new tensors on the input's device "
    "(e.g. torch.sqrt(torch.tensor(C, device=x.device)) or simply math.sqrt(C)) so the module runs on any device."
)


def seeded(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A reproducible standard-normal tensor."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def reference_state(module: nn.Module, seed: int, scale: float = 0.5) -> dict[str, torch.Tensor]:
    """Re-initialise ``module`` from ``seed`` (N(0, scale^2), non-zero everywhere); return its float64 state dict."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)
    return {k: v.double() for k, v in module.state_dict().items()}


def student_call(student: Student, call: Call) -> CallResult:
    """``student.call`` with the CUDA mistake recognised in the message."""
    try:
        return student.call(call)
    except StudentError as exc:
        if "cuda" in str(exc).lower():
            raise StudentError(f"{exc}\n{CUDA_HINT}") from None
        raise
