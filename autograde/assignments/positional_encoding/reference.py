"""Reference solution of notebook 3: sinusoidal (1D and 2D) and learned positional encodings, and the
interpolation of learned position embeddings to a new grid.

P[i, j] = sin(i * 10000^(-j/d)) for even j and cos(i * 10000^(-(j-1)/d)) for odd j (position i, channel j, d
channels). The tables are computed in float64 and stored in the default dtype.
:data:`SOLUTION` holds what the solved notebook defines for the graders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_1d(num_positions: int, embed_dim: int) -> torch.Tensor:
    """The table P (num_positions, embed_dim) of the formula above, in the default dtype."""
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (L, 1)
    j = torch.arange(embed_dim, dtype=torch.float64)
    angle = position * 10000.0 ** (-(j - j % 2) / embed_dim)  # (L, E): exponent j/d, or (j-1)/d for odd j
    table = torch.where(j % 2 == 0, angle.sin(), angle.cos())  # (L, E)
    return table.to(torch.get_default_dtype())


def _check_length(positions: int, name: str, limit: int, module: str) -> None:
    """A ValueError naming ``name`` when a sequence of ``positions`` is longer than the table (``limit``)."""
    if positions > limit:
        raise ValueError(
            f"the sequence has {positions} positions but {name}={limit}: build {module} with {name} >= {positions}."
        )


class PositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal encoding to a sequence, then applies dropout.

    ``pe`` is a persistent buffer (1, max_len, E) (saved, moved by ``.to``, never trained).
    forward: x (N, S, E) with S <= max_len -> dropout(x + pe[:, :S]) (N, S, E).
    """

    def __init__(self, embed_dim: int, dropout: float = 0.1, max_len: int = 5000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoidal_1d(max_len, embed_dim)[None])  # (1, max_len, E)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S = x.shape[1]
        _check_length(S, "max_len", self.pe.shape[1], "PositionalEncoding")
        return self.dropout(x + self.pe[:, :S])


def sinusoidal_2d(height: int, width: int, embed_dim: int) -> torch.Tensor:
    """2D sinusoidal encoding of a height x width grid, positions in row-major order -> (height*width, E).

    The first E/2 channels are the 1D encoding (with d = E/2) of the row, the last E/2 that of the column.
    """
    if embed_dim % 4 != 0:
        raise ValueError(f"embed_dim={embed_dim} must be divisible by 4 (two halves of even size).")
    half = embed_dim // 2
    rows = sinusoidal_1d(height, half)[:, None, :].expand(height, width, half)  # (H, W, E/2)
    cols = sinusoidal_1d(width, half)[None, :, :].expand(height, width, half)  # (H, W, E/2)
    return torch.cat([rows, cols], dim=-1).reshape(height * width, embed_dim)  # (H*W, E)


class LearnedPositionalEmbedding(nn.Module):
    """A learned position embedding ``pos_embed`` (1, P, E), initialised from N(0, 0.02^2).

    forward: x (N, S, E) with S <= P -> x + pos_embed[:, :S].
    """

    def __init__(self, num_positions: int, embed_dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, num_positions, embed_dim))
        nn.init.normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S = x.shape[1]
        _check_length(S, "num_positions", self.pos_embed.shape[1], "the embedding")
        return x + self.pos_embed[:, :S]


def interpolate_pos_embed(
    pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], class_token: bool = False
) -> torch.Tensor:
    """Position embeddings of an H x W grid of patches resized to H' x W' (as DeiT and MAE do).

    pos_embed (1, H*W, E), the patches row-major, or (1, 1 + H*W, E) with a class token first (kept as it is)
    -> (1, H'*W', E) or (1, 1 + H'*W', E): the grid resized like an image, bicubic, align_corners=False.
    """
    (H, W), (H2, W2), P = old_grid, new_grid, int(class_token)
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1 or pos_embed.shape[1] != P + H * W:
        raise ValueError(
            f"pos_embed has shape {tuple(pos_embed.shape)}; expected (1, {P} + {H} * {W}, E) for a {H} x {W} grid"
            + (" and a class token." if class_token else ".")
        )
    E = pos_embed.shape[-1]
    prefix, grid = pos_embed[:, :P], pos_embed[:, P:]  # (1, 0 or 1, E), (1, H*W, E)
    grid = grid.reshape(1, H, W, E).permute(0, 3, 1, 2)  # (1, E, H, W): the channels are the image's channels
    grid = F.interpolate(grid, size=(H2, W2), mode="bicubic", align_corners=False)  # (1, E, H', W')
    grid = grid.permute(0, 2, 3, 1).reshape(1, H2 * W2, E)  # (1, H'*W', E), row-major
    return torch.cat([prefix, grid], dim=1)


# The names the solved notebook defines for the graders.
SOLUTION: dict[str, object] = {
    "PositionalEncoding": PositionalEncoding,
    "sinusoidal_2d": sinusoidal_2d,
    "LearnedPositionalEmbedding": LearnedPositionalEmbedding,
    "interpolate_pos_embed": interpolate_pos_embed,
}
