"""The known mistakes of notebook 1's ``Attention`` and ``SAGANAttention``: what each returns for an input and
weights, and the message that names it (the names are counted in the instructor's class report). The notebook's
visible check of ``SAGANAttention`` uses the same words (``tests/test_graders_self_attention.py`` keeps them equal).

To add one: a message in :data:`MESSAGES` under a new name, and what the mistake computes in
:func:`attention_mistakes` or :func:`sagan_mistakes`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from autograde.compare import Mistake

MESSAGES = {
    "attention_over_channels": (
        "your output matches attention over channels (a C x C matrix), not over positions "
        "(an H*W x H*W matrix): reshape q and k to (N, H*W, C) before q @ k^T."
    ),
    "no_scale": "the 1/sqrt(C) scale is missing: divide the scores q @ k^T by math.sqrt(C).",
    "softmax_axis": (
        "the softmax runs over the wrong axis: normalise over the keys (dim=-1 of the "
        "(N, H*W, H*W) scores), so each query's weights sum to 1."
    ),
    "no_residual": "the residual is missing: return x + attention output.",
    "scrambled_reshape": (
        "the (N, H*W, C) result is reshaped straight to (N, C, H, W): transpose it to "
        "(N, C, H*W) first, or channels and positions get mixed."
    ),
    # SAGANAttention
    "sagan_scaled": (
        "the scores are divided by a square root (sqrt(C') or sqrt(C)); SAGAN uses no scale: the weights are "
        "softmax_j(q_i . k_j), the plain dot products of the C'-channel queries and keys."
    ),
}


def attention_mistakes(x: torch.Tensor, w: dict[str, torch.Tensor]) -> list[Mistake]:
    """What the usual wrong implementations of ``Attention`` return for input x (N, C, H, W) and weights w,
    computed only when tried."""
    N, C, H, W = x.shape

    def proj(name: str) -> torch.Tensor:
        return F.conv2d(x, w[f"conv_{name}.weight"], w[f"conv_{name}.bias"]).flatten(2)  # (N, C, HW)

    def attend(scale: float = math.sqrt(C), axis: int = -1) -> torch.Tensor:
        q, k, v = proj("query"), proj("key"), proj("value")
        return F.softmax(q.transpose(1, 2) @ k / scale, axis) @ v.transpose(1, 2)  # (N, HW, C)

    def over_channels() -> torch.Tensor:
        q, k, v = proj("query"), proj("key"), proj("value")
        return x + (F.softmax(q @ k.transpose(1, 2) / math.sqrt(C), -1) @ v).reshape(N, C, H, W)

    computed = {
        "attention_over_channels": over_channels,
        "no_scale": lambda: x + attend(scale=1.0).transpose(1, 2).reshape(N, C, H, W),
        "softmax_axis": lambda: x + attend(axis=1).transpose(1, 2).reshape(N, C, H, W),
        "no_residual": lambda: attend().transpose(1, 2).reshape(N, C, H, W),
        "scrambled_reshape": lambda: x + attend().reshape(N, C, H, W),
    }
    return [Mistake(name, computed[name], MESSAGES[name]) for name in computed]


def sagan(x: torch.Tensor, w: dict[str, torch.Tensor], scale: float = 1.0) -> torch.Tensor:
    """SAGANAttention with weights w on x (N, C, H, W) -> (N, C, H, W), the scores divided by ``scale``."""
    N, C, H, W = x.shape

    def proj(name: str) -> torch.Tensor:
        return F.conv2d(x, w[f"conv_{name}.weight"], w[f"conv_{name}.bias"])  # (N, C', H, W)

    q = proj("query").flatten(2)  # (N, C', HW)
    k, v = F.max_pool2d(proj("key"), 2).flatten(2), F.max_pool2d(proj("value"), 2).flatten(2)  # (N, C', HW/4)
    weights = F.softmax(q.transpose(1, 2) @ k / scale, dim=-1)  # (N, HW, HW/4)
    out = (v @ weights.transpose(1, 2)).reshape(N, -1, H, W)  # (N, C', H, W)
    return x + w["gamma"] * F.conv2d(out, w["conv_out.weight"], w["conv_out.bias"])


def sagan_mistakes(x: torch.Tensor, w: dict[str, torch.Tensor]) -> list[Mistake]:
    """The known mistakes of ``SAGANAttention`` for input x (N, C, H, W) and weights w, computed only when tried:
    the scores divided by sqrt(C') (notebook 1's Attention scale, in the block's C' channels) or by sqrt(C)."""
    inner, C = w["conv_query.weight"].shape[:2]
    return [
        Mistake("sagan_scaled", lambda d=d: sagan(x, w, math.sqrt(d)), MESSAGES["sagan_scaled"]) for d in (inner, C)
    ]
