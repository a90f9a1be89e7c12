"""The grader's stand-in for notebook 3's ``PositionalEncoding``, with which ``sinusoidal_2d`` is graded when the
student's own class gives a wrong table: the same module, with a table that is not the sinusoid.

Shipped as text to the worker that runs the student's code (see :class:`autograde.checks.StandIns`): it imports
only torch.
"""

import torch
from torch import nn


class PositionalEncoding(nn.Module):
    """x (N, S, E) -> dropout(x + pe[:, :S]), ``pe`` a (1, max_len, E) buffer of sin(0.37 i + 0.91 j + 0.05 i j)."""

    def __init__(self, embed_dim, dropout=0.1, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        i = torch.arange(max_len, dtype=torch.float64)[:, None]
        j = torch.arange(embed_dim, dtype=torch.float64)
        self.register_buffer("pe", torch.sin(0.37 * i + 0.91 * j + 0.05 * i * j)[None].to(torch.get_default_dtype()))

    def forward(self, x):
        return self.dropout(x + self.pe[:, : x.shape[1]])
