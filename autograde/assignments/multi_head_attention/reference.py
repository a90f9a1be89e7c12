"""Reference solution of notebook 2: scaled dot-product attention and multi-head attention.

Mask contract: True (or 1) means "may attend". A query whose mask row is all False attends to nothing: its
weights are all zero and its output is zero (never NaN).
:data:`SOLUTION` holds what the solved notebook defines for the graders.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(D)) v for queries q (..., S, D), keys k (..., T, D) and values v (..., T, D).

    mask: bool or 0/1, broadcastable to (..., S, T); True/1 = may attend. A row with nothing to attend gets
    zero weights and a zero output. dropout: applied to the weights (e.g. an nn.Dropout), or None.
    Returns the output (..., S, D) and the weights actually used, after dropout (..., S, T).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., S, T)
    if mask is not None:
        allowed = mask.bool()
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = F.softmax(scores, dim=-1)  # (..., S, T)
    if mask is not None:
        weights = weights.masked_fill(~allowed, 0.0)  # rows with nothing to attend: NaN -> 0
    if dropout is not None:
        weights = dropout(weights)
    return weights @ v, weights  # (..., S, D), (..., S, T)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention with dropout on the weights and an output projection.

    query (N, S, E), key and value (N, T, E), attn_mask broadcastable to (N, h, S, T) such as (S, T)
    -> (N, S, E).
    ``attn_weights`` keeps the (N, h, S, T) weights of the last forward pass (after dropout, detached).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.1):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}: choose num_heads that "
                f"divides embed_dim, so that every head gets embed_dim // num_heads channels."
            )
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(dropout)
        self.attn_weights: torch.Tensor | None = None

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        N, L, _ = x.shape
        return x.view(N, L, self.num_heads, self.head_dim).transpose(1, 2)  # (N, h, L, D)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        N, S, E = query.shape
        q = self._split_heads(self.query(query))  # (N, h, S, D)
        k = self._split_heads(self.key(key))  # (N, h, T, D)
        v = self._split_heads(self.value(value))  # (N, h, T, D)
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask, self.attn_drop)  # (N, h, S, D)
        self.attn_weights = weights.detach()  # (N, h, S, T)
        out = out.transpose(1, 2).reshape(N, S, E)  # (N, S, h*D)
        return self.proj(out)


# The names the solved notebook defines for the graders.
SOLUTION: dict[str, object] = {
    "scaled_dot_product_attention": scaled_dot_product_attention,
    "MultiHeadAttention": MultiHeadAttention,
}
