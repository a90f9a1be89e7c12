"""Example submissions of notebook 3: the solution, the blank release and realistic mistakes.

Each example lists the grader tests it fails. The solution's ``sinusoidal_2d`` reuses
``PositionalEncoding``; a wrong 1D table costs points in ``pe`` only (``sinusoidal_2d`` is graded with the
grader's stand-in for the class), and the 2D diagnostic names it.
"""

from __future__ import annotations

from autograde.example_notebooks import BLANK, Edit, Example, solution

SIN = "pe[:, 0::2] = torch.sin(angle)  # even j"
COS = "pe[:, 1::2] = torch.cos(angle[:, : embed_dim // 2])  # odd j: exponent (j - 1) / E"
BUFFER = 'self.register_buffer("pe", pe[None].to(torch.get_default_dtype()))  # (1, max_len, E)'
LENGTH_CHECK = """        if S > self.pe.shape[1]:
            raise ValueError(
                f"the sequence has {S} positions but max_len={self.pe.shape[1]}: build the module "
                f"with max_len >= {S}."
            )
"""
GRID = "return torch.cat([rows, cols], dim=-1).reshape(height * width, embed_dim)"

EXAMPLES = [
    solution(),
    BLANK,
    Example(
        "sin_cos_swapped",
        "cos in the even channels and sin in the odd ones",
        ("test_pe_values", "test_2d_with_your_own_encoding"),
        (
            Edit("pe", SIN, "pe[:, 0::2] = torch.cos(angle)"),
            Edit("pe", COS, "pe[:, 1::2] = torch.sin(angle[:, : embed_dim // 2])"),
        ),
    ),
    Example(
        "odd_exponent_j",
        "odd channels use 10000^(-j/d) instead of 10000^(-(j-1)/d)",
        ("test_pe_values", "test_2d_with_your_own_encoding"),
        (
            Edit(
                "pe",
                COS,
                "odd = torch.arange(1, embed_dim, 2, dtype=torch.float64)\n"
                "        pe[:, 1::2] = torch.cos(position * 10000.0 ** (-odd / embed_dim))",
            ),
        ),
    ),
    Example(
        "pe_parameter",
        "pe stored as an nn.Parameter instead of a buffer",
        ("test_pe_is_a_buffer",),
        (Edit("pe", BUFFER, "self.pe = nn.Parameter(pe[None].float())"),),
    ),
    Example(
        "no_length_check",
        "no check of S against max_len: a long sequence fails with a shape error",
        ("test_pe_too_long",),
        (Edit("pe", LENGTH_CHECK, ""),),
    ),
    Example(
        "dropout_on_pe",
        "dropout applied to pe before adding it, instead of to x + pe",
        ("test_pe_dropout",),
        (Edit("pe", "return self.dropout(x + self.pe[:, :S])", "return x + self.dropout(self.pe[:, :S])"),),
    ),
    Example(
        "grid_column_major",
        "2D positions in column-major order",
        ("test_2d_values",),
        (
            Edit(
                "pe2d",
                GRID,
                "return torch.cat([rows, cols], dim=-1).transpose(0, 1).reshape(height * width, embed_dim)",
            ),
        ),
    ),
    Example(
        "grid_halves_swapped",
        "the first half of the 2D channels encodes the column instead of the row",
        ("test_2d_values",),
        (Edit("pe2d", GRID, "return torch.cat([cols, rows], dim=-1).reshape(height * width, embed_dim)"),),
    ),
    Example(
        "learned_std_one",
        "pos_embed initialised with std 1 instead of 0.02",
        ("test_learned_init",),
        (Edit("learned", "nn.init.normal_(self.pos_embed, std=0.02)", "nn.init.normal_(self.pos_embed)"),),
    ),
    Example(
        "interpolation_straight_reshape",
        "the (1, H*W, E) embeddings reshaped straight to (1, E, H, W) for the resize, and straight back",
        ("test_interpolate_values",),
        (
            Edit(
                "interpolate",
                "grid = patches.reshape(1, H, W, E).permute(0, 3, 1, 2)",
                "grid = patches.reshape(1, E, H, W)",
            ),
            Edit(
                "interpolate",
                "patches = grid.permute(0, 2, 3, 1).reshape(1, H2 * W2, E)",
                "patches = grid.reshape(1, H2 * W2, E)",
            ),
        ),
    ),
]
