"""Reference solution of notebook 5: local self-attention with relative positions, a fully attentional network,
attention computed over chunks of keys (the online softmax), and shifted-window attention.

Local attention (Ramachandran et al., 2019, "Stand-Alone Self-Attention in Vision Models"): every pixel (i, j)
attends to the m x m pixels (a, b) around it that lie inside the image,

    y_ij = sum_ab softmax_ab(q_ij . k_ab + q_ij . r_{a-i, b-j}) v_ab,

per head, where r_{dy, dx} is the concatenation of a row embedding of dy (the first D/2 channels of the head)
and a column embedding of dx (the last D/2). Positions outside the image get no weight (they are masked, not
zero-padded). There is no 1/sqrt(D) scale in this formula.
:data:`SOLUTION` holds what the solved notebook defines for the graders.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CHANNEL_1, CHANNEL_2 = 64, 32  # notebook 1's widths
IMAGE_SIDE, NUM_CLASSES = 32, 10


def check_local_arguments(out_channels: int, kernel_size: int, num_heads: int) -> None:
    """ValueError (saying what to change) unless the kernel is odd and every head gets an even width."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size={kernel_size}: use an odd size (1, 3, 5, ...), so the pixel is the centre.")
    if num_heads < 1 or out_channels % num_heads:
        raise ValueError(f"out_channels={out_channels} is not divisible by num_heads={num_heads}.")
    if (out_channels // num_heads) % 2:
        raise ValueError(
            f"each head has {out_channels // num_heads} channels; it needs an even number, half for the row "
            "offset and half for the column offset."
        )


class LocalSelfAttention2d(nn.Module):
    """Multi-head self-attention of every pixel over its m x m neighbourhood, with relative positions.

    Args: in_channels C_in, out_channels C, kernel_size m (odd), num_heads h (C divisible by h, D = C/h even).

    Attributes:
        conv_query, conv_key, conv_value: nn.Conv2d(C_in, C, 1, bias=False).
        rel_rows, rel_cols: nn.Parameter (C/2, m); head g owns rows g*D/2 .. (g+1)*D/2 of each; column t of
            rel_rows embeds the row offset a - i = t - (m-1)/2 (rel_cols: the column offset b - j).

    forward: (N, C_in, H, W) -> (N, C, H, W) (stride 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_heads: int = 1):
        super().__init__()
        check_local_arguments(out_channels, kernel_size, num_heads)
        self.kernel_size = kernel_size
        self.num_heads = num_heads
        self.head_dim = out_channels // num_heads
        self.conv_query = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.conv_key = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.conv_value = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.rel_rows = nn.Parameter(torch.randn(out_channels // 2, kernel_size))
        self.rel_cols = nn.Parameter(torch.randn(out_channels // 2, kernel_size))

    def relative_embeddings(self) -> torch.Tensor:
        """r as a tensor (h, D, m, m): r[g, :, t, u] embeds the offset (t - (m-1)/2, u - (m-1)/2) for head g."""
        h, half, m = self.num_heads, self.head_dim // 2, self.kernel_size
        rows = self.rel_rows.view(h, half, m, 1).expand(h, half, m, m)  # (h, D/2, m, m): depends on the row
        cols = self.rel_cols.view(h, half, 1, m).expand(h, half, m, m)  # (h, D/2, m, m): on the column
        return torch.cat([rows, cols], dim=1)  # (h, D, m, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, _, H, W = x.shape
        h, D, m = self.num_heads, self.head_dim, self.kernel_size
        L, pad = H * W, m // 2
        q = self.conv_query(x).view(N, h, D, L)  # (N, h, D, L)
        k = F.unfold(self.conv_key(x), m, padding=pad).view(N, h, D, m * m, L)  # (N, h, D, m*m, L)
        v = F.unfold(self.conv_value(x), m, padding=pad).view(N, h, D, m * m, L)  # (N, h, D, m*m, L)
        r = self.relative_embeddings().view(h, D, m * m)  # (h, D, m*m)
        scores = torch.einsum("ngdl,ngdkl->ngkl", q, k) + torch.einsum("ngdl,gdk->ngkl", q, r)  # (N, h, m*m, L)
        inside = F.unfold(x.new_ones(1, 1, H, W), m, padding=pad) > 0  # (1, m*m, L): in the image
        scores = scores.masked_fill(~inside, float("-inf"))
        weights = F.softmax(scores, dim=2)  # (N, h, m*m, L): over the neighbourhood
        out = torch.einsum("ngkl,ngdkl->ngdl", weights, v)  # (N, h, D, L)
        return out.reshape(N, h * D, H, W)


def fully_attentional_net(kernel_size: int = 3, num_heads: int = 4) -> nn.Sequential:
    """Notebook 1's CNN with its 3x3 convolutions replaced by local attention: (N, 3, 32, 32) -> (N, 10)."""
    return nn.Sequential(
        LocalSelfAttention2d(3, CHANNEL_1, kernel_size, num_heads),
        nn.ReLU(),
        LocalSelfAttention2d(CHANNEL_1, CHANNEL_2, kernel_size, num_heads),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(CHANNEL_2 * IMAGE_SIDE * IMAGE_SIDE, NUM_CLASSES),
    )


def chunked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v, computed chunk_size keys at a time with a running maximum and normaliser.

    q (..., S, D), k (..., T, D), v (..., T, Dv); mask: bool broadcastable to (..., S, T) with last dimension T,
    True = may attend. A query with nothing to attend gets zeros. Returns (..., S, Dv). At most (..., S,
    chunk_size) scores exist at a time.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be at least 1.")
    T = k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    stats = torch.broadcast_shapes(q.shape[:-1], k.shape[:-2] + q.shape[-2:-1])  # (..., S)
    running_max = q.new_full((*stats, 1), float("-inf"))  # (..., S, 1)
    normaliser = q.new_zeros((*stats, 1))  # (..., S, 1)
    out = q.new_zeros((*stats, v.shape[-1]))  # (..., S, Dv)
    for start in range(0, T, chunk_size):
        keys, values = k[..., start : start + chunk_size, :], v[..., start : start + chunk_size, :]
        scores = q @ keys.transpose(-2, -1) * scale  # (..., S, B)
        if mask is not None:
            scores = scores.masked_fill(~mask[..., start : start + chunk_size].bool(), float("-inf"))
        new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))  # (..., S, 1)
        shift = new_max.masked_fill(new_max == float("-inf"), 0.0)  # nothing seen yet: exp(-inf - 0) = 0
        correction = torch.exp(running_max - shift)  # rescales what was summed under the old maximum
        weights = torch.exp(scores - shift)  # (..., S, B)
        normaliser = normaliser * correction + weights.sum(dim=-1, keepdim=True)
        out = out * correction + weights @ values  # (..., S, Dv)
        running_max = new_max
    return torch.where(normaliser > 0, out / normaliser.clamp_min(torch.finfo(out.dtype).tiny), 0.0)


def swin_attention(
    x: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor,
    position_bias: torch.Tensor,
    window_size: int,
    shift_size: int,
    num_heads: int,
) -> torch.Tensor:
    """Multi-head attention inside non-overlapping m x m windows, the windows shifted by s (Swin).

    x (N, H, W, C) with H and W multiples of m; qkv_weight (3C, C), qkv_bias (3C,) (queries, keys, values in
    that order); proj_weight (C, C), proj_bias (C,); position_bias (h, m*m, m*m), added to the scaled scores;
    0 <= s < m. With s > 0 the map is rolled by (-s, -s) first and back by (s, s) at the end, and inside a
    window pixels that came from different regions of the unrolled map do not attend to each other.
    Returns (N, H, W, C).
    """
    N, H, W, C = x.shape
    m, s, h = window_size, shift_size, num_heads
    if H % m or W % m or not 0 <= s < m:
        raise ValueError(f"need H and W multiples of window_size={m} and 0 <= shift_size < {m}; got {H} x {W}, {s}.")
    D, nh, nw = C // h, H // m, W // m
    if s:
        x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
    windows = x.reshape(N, nh, m, nw, m, C).permute(0, 1, 3, 2, 4, 5).reshape(N * nh * nw, m * m, C)  # (Nw, m*m, C)
    qkv = (
        F.linear(windows, qkv_weight, qkv_bias).reshape(-1, m * m, 3, h, D).permute(2, 0, 3, 1, 4)
    )  # (3, Nw, h, m*m, D)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(D) + position_bias  # (Nw, h, m*m, m*m)
    if s:
        scores = scores.masked_fill(~_same_region(H, W, m, s, x.device).repeat(N, 1, 1)[:, None], float("-inf"))
    out = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(-1, m * m, C)  # (Nw, m*m, C)
    out = F.linear(out, proj_weight, proj_bias)
    out = out.reshape(N, nh, nw, m, m, C).permute(0, 1, 3, 2, 4, 5).reshape(N, H, W, C)  # (N, H, W, C)
    return torch.roll(out, shifts=(s, s), dims=(1, 2)) if s else out


def _same_region(H: int, W: int, m: int, s: int, device: torch.device) -> torch.Tensor:
    """(windows, m*m, m*m) bool: whether two pixels of a window of the rolled map come from the same region.

    After rolling by (-s, -s), the last s rows and columns hold pixels that were at the other side of the map;
    each axis has two regions (before and after H - s), so a pixel's region is (row region, column region).
    """
    rows = (torch.arange(H, device=device) >= H - s).long()  # (H,): 1 for the rows that wrapped around
    cols = (torch.arange(W, device=device) >= W - s).long()  # (W,)
    region = (2 * rows[:, None] + cols[None, :]).reshape(H // m, m, W // m, m)  # (nh, m, nw, m)
    region = region.permute(0, 2, 1, 3).reshape(-1, m * m)  # (windows, m*m)
    return region[:, :, None] == region[:, None, :]  # (windows, m*m, m*m)


# The names the solved notebook defines for the graders.
SOLUTION: dict[str, object] = {
    "LocalSelfAttention2d": LocalSelfAttention2d,
    "fully_attentional_net": fully_attentional_net,
    "chunked_attention": chunked_attention,
    "swin_attention": swin_attention,
}
