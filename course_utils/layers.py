"""Layers the notebooks' models share that ``torch.nn`` spells differently: ``flatten`` and ``Flatten``."""

from __future__ import annotations

import torch
from torch import nn


def flatten(x: torch.Tensor) -> torch.Tensor:
    """Collapse all dimensions but the first: ``(N, C, H, W)`` -> ``(N, C*H*W)``, channels_last too."""
    return x.flatten(1)  # (N, C*H*W)


class Flatten(nn.Module):
    """``flatten`` as a module, to stack inside ``nn.Sequential``: ``(N, C, H, W)`` -> ``(N, C*H*W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return flatten(x)
