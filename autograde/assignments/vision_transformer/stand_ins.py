"""The grader's stand-ins for the parts notebook 4's encoder layer and ViT build on: simple modules with the
contract's names, attributes and shapes, not the solutions. The encoder layer is graded with the stand-in
``MultiHeadAttention`` when the student's own parts give a wrong result, the ViT with the stand-ins for
``PatchEmbedding``, the positional encodings and ``TransformerEncoderLayer`` (which uses the stand-in
``MultiHeadAttention``), so an earlier part's mistake costs its own part only.

Shipped as text to the worker that runs the student's code (see :class:`autograde.checks.StandIns`): it imports
only torch.
"""

import torch
from torch import nn


class MultiHeadAttention(nn.Module):
    """(N, S, E), (N, T, E), (N, T, E) -> (N, S, E): a gate from the query and the mean key, times the mean value."""

    def __init__(self, embed_dim, num_heads, dropout=0.1):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(dropout)
        self.attn_weights = None

    def forward(self, query, key, value, attn_mask=None):
        gate = torch.sigmoid(self.query(query) * self.key(key).mean(1, keepdim=True))
        return self.proj(self.attn_drop(gate) * self.value(value).mean(1, keepdim=True))


class PatchEmbedding(nn.Module):
    """(N, C, H, W) -> (N, M, E): the image's memory cut into consecutive chunks (not patches), projected."""

    def __init__(self, img_size, patch_size, in_channels=3, embed_dim=128):
        super().__init__()
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Linear(in_channels * patch_size * patch_size, embed_dim)

    def forward(self, x):
        N, C, H, W = x.shape
        return self.proj(x.reshape(N, -1, C * self.patch_size * self.patch_size))


class PositionalEncoding(nn.Module):
    """x (N, S, E) -> dropout(x + pe[:, :S]) with a table ``pe`` (1, max_len, E) of zeros."""

    def __init__(self, embed_dim, dropout=0.1, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", torch.zeros(1, max_len, embed_dim))

    def forward(self, x):
        return self.dropout(x + self.pe[:, : x.shape[1]])


def sinusoidal_2d(height, width, embed_dim):
    """(height * width, embed_dim): cos(0.29 i + 0.83 j + 0.07 i j), not the 2D sinusoid."""
    i = torch.arange(height * width, dtype=torch.float64)[:, None]
    j = torch.arange(embed_dim, dtype=torch.float64)
    return torch.cos(0.29 * i + 0.83 * j + 0.07 * i * j).to(torch.get_default_dtype())


class LearnedPositionalEmbedding(nn.Module):
    """x (N, S, E) -> x + 0.5 pos_embed[:, :S], ``pos_embed`` (1, P, E) starting at zero."""

    def __init__(self, num_positions, embed_dim):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, num_positions, embed_dim))

    def forward(self, x):
        return x + 0.5 * self.pos_embed[:, : x.shape[1]]


class TransformerEncoderLayer(nn.Module):
    """(N, S, E) -> (N, S, E): the contract's layers, composed as x + mlp(norm2(attention(norm1(x))))."""

    def __init__(self, embed_dim, num_heads, dim_feedforward, dropout=0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim)
        self.self_attn = MultiHeadAttention(embed_dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, dim_feedforward), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim_feedforward, embed_dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        h = self.norm1(x)
        return x + self.dropout(self.mlp(self.norm2(self.self_attn(h, h, h))))
