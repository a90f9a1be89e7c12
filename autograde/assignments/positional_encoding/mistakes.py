"""The known mistakes of notebook 3: the formula of the sinusoidal table with one thing changed, the 2D table
built from a 1D table the wrong way, position embeddings interpolated the wrong way, and the message that names
each (the names are counted in the instructor's class report).

To add one: a message in :data:`MESSAGES` under a new name, and what the mistake computes in
:func:`table_mistakes`, :func:`forward_mistakes`, :func:`grid_mistakes` or :func:`interpolation_mistakes`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from autograde.compare import Mistake

MESSAGES = {
    # PositionalEncoding's table
    "sin_cos_swapped": "sin and cos are swapped: even channels j use sin, odd channels use cos.",
    "odd_exponent_j": (
        "odd channels use the exponent j/d: for odd j the formula uses (j - 1)/d, so "
        "channels 2m and 2m + 1 share one frequency."
    ),
    "exponent_2j": (
        "the exponent is 2j/d: here j is already the channel index, so the exponent "
        "is j/d for even j and (j - 1)/d for odd j (the paper's 2i counts pairs)."
    ),
    "sines_then_cosines": (
        "the sines fill the first half of the channels and the cosines the second: interleave them "
        "(even channels sin, odd channels cos)."
    ),
    "positions_from_1": "positions start at 1: the first position is i = 0.",
    "exponent_sign": "the exponent has the wrong sign: the frequencies are 10000^(-j/d), which decrease with j.",
    # PositionalEncoding's forward
    "encoding_only": "forward returns the encoding only: return x + pe[:, :S].",
    "x_unchanged": "forward returns x unchanged: add the encoding, x + pe[:, :S].",
    # sinusoidal_2d
    "halves_swapped": "the halves are swapped: the first E/2 channels encode the row, the last E/2 the column.",
    "column_major": (
        "the positions are in column-major order: position r * width + c is row r, column c (row-major, like "
        ".flatten())."
    ),
    "full_d": (
        "each half uses the 1D formula with d = E: it has only E/2 channels, so use d = E/2 (e.g. build the 1D "
        "table with embed_dim // 2)."
    ),
    # interpolate_pos_embed
    "grid_from_a_straight_reshape": (
        "the (1, H*W, E) embeddings are reshaped straight to (1, E, H, W), which mixes positions and channels: the "
        "E numbers of patch (r, c) must become the E channels of the pixel (r, c) of the grid, so move the channels "
        "in front without reordering the positions (and back the same way after the resize)."
    ),
    "flattened_without_moving_channels_back": (
        "the resized grid (1, E, H', W') is reshaped straight to (1, H'*W', E), which mixes positions and channels: "
        "move the channels back behind the positions first, so that token r * W' + c holds the E channels of the "
        "pixel (r, c)."
    ),
    "new_sides_swapped": (
        "the grid is resized to W' rows and H' columns: new_grid is (H', W'), rows first, like old_grid and like "
        "the size argument of F.interpolate."
    ),
    "bilinear": "the grid is resized with bilinear interpolation; the contract is bicubic (mode='bicubic').",
    "corners_aligned": (
        "the grid is resized with align_corners=True; the contract is align_corners=False (the pixels are squares "
        "whose centres are resized, as DeiT and MAE do)."
    ),
}


def formula(num_positions: int, d: int, *, swap=False, odd_j=False, double_j=False, start=0, sign=-1.0):
    """P[i, j] = sin(i 10000^(-j/d)) (even j), cos(i 10000^(-(j-1)/d)) (odd j) (num_positions, d) in float64, with
    mistakes switchable."""
    i = torch.arange(start, start + num_positions, dtype=torch.float64)[:, None]  # (L, 1)
    j = torch.arange(d, dtype=torch.float64)
    even = j.remainder(2) == 0
    exponent = j if odd_j else torch.where(even, j, j - 1)
    angle = i * 10000.0 ** (sign * exponent * (2 if double_j else 1) / d)  # (L, d)
    sin, cos = angle.sin(), angle.cos()
    return torch.where(even, cos, sin) if swap else torch.where(even, sin, cos)


def halves(num_positions: int, d: int) -> torch.Tensor:
    """The concatenated layout (L, d): the sines of all frequencies in the first half of the channels, then cos."""
    i = torch.arange(num_positions, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    return torch.cat([(i * freq).sin(), (i * freq).cos()], dim=1)  # (L, d)


def table_mistakes(L: int, d: int) -> list[Mistake]:
    """The known mistakes of the (L, d) table."""
    computed = {
        "sin_cos_swapped": formula(L, d, swap=True),
        "odd_exponent_j": formula(L, d, odd_j=True),
        "exponent_2j": formula(L, d, double_j=True),
        "sines_then_cosines": halves(L, d),
        "positions_from_1": formula(L, d, start=1),
        "exponent_sign": formula(L, d, sign=1.0),
    }
    return [Mistake(name, value, MESSAGES[name]) for name, value in computed.items()]


def forward_mistakes(x: torch.Tensor, pe: torch.Tensor) -> list[Mistake]:
    """The known mistakes of forward on x (N, S, E) with the table pe (1, S, E)."""
    return [
        Mistake("encoding_only", pe.expand_as(x), MESSAGES["encoding_only"]),
        Mistake("x_unchanged", x, MESSAGES["x_unchanged"]),
    ]


def grid_from(one_d: torch.Tensor, height: int, width: int, *, swap=False, column_major=False) -> torch.Tensor:
    """The 2D table (H*W, E) from a 1D table ``one_d`` (L, E/2): row-major, row half then column half."""
    half = one_d.shape[1]
    rows = one_d[:height, None, :].expand(height, width, half)  # (H, W, E/2)
    cols = one_d[None, :width, :].expand(height, width, half)  # (H, W, E/2)
    grid = torch.cat([cols, rows] if swap else [rows, cols], dim=-1)  # (H, W, E)
    return (grid.transpose(0, 1) if column_major else grid).reshape(height * width, 2 * half)


def grid_mistakes(height: int, width: int, E: int, table: Callable[[int, int], torch.Tensor]) -> list[Mistake]:
    """The known mistakes of the 2D table (H*W, E) built from the 1D tables ``table(num_positions, d)``."""
    one_d = table(max(height, width), E // 2)[:, : E // 2]  # (L, E/2)
    computed = {
        "halves_swapped": grid_from(one_d, height, width, swap=True),
        "column_major": grid_from(one_d, height, width, column_major=True),
        "full_d": grid_from(table(max(height, width), E)[:, : E // 2], height, width),
    }
    return [Mistake(name, value, MESSAGES[name]) for name, value in computed.items()]


def resized(
    pos_embed: torch.Tensor,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    class_token: bool,
    *,
    straight_in: bool = False,
    straight_out: bool = False,
    swap_sides: bool = False,
    mode: str = "bicubic",
    align_corners: bool = False,
) -> torch.Tensor:
    """The embeddings (1, [1 +] H*W, E) resized to (1, [1 +] H'*W', E), with mistakes switchable."""
    (H, W), (H2, W2), P = old_grid, new_grid, int(class_token)
    E = pos_embed.shape[-1]
    grid = pos_embed[:, P:]
    grid = grid.reshape(1, E, H, W) if straight_in else grid.reshape(1, H, W, E).permute(0, 3, 1, 2)  # (1, E, H, W)
    size = (W2, H2) if swap_sides else (H2, W2)
    grid = F.interpolate(grid, size=size, mode=mode, align_corners=align_corners)  # (1, E, *size)
    grid = grid.reshape(1, H2 * W2, E) if straight_in or straight_out else grid.permute(0, 2, 3, 1)
    return torch.cat([pos_embed[:, :P], grid.reshape(1, H2 * W2, E)], dim=1)


def interpolation_mistakes(
    pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], class_token: bool
) -> list[Mistake]:
    """The known mistakes of interpolate_pos_embed on these arguments (computed only when needed)."""
    variants = {
        "grid_from_a_straight_reshape": {"straight_in": True},
        "flattened_without_moving_channels_back": {"straight_out": True},
        "new_sides_swapped": {"swap_sides": True},
        "bilinear": {"mode": "bilinear"},
        "corners_aligned": {"align_corners": True},
    }
    return [
        Mistake(name, lambda kw=kw: resized(pos_embed, old_grid, new_grid, class_token, **kw), MESSAGES[name])
        for name, kw in variants.items()
    ]
