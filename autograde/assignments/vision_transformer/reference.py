"""Reference solution of notebook 4: a Vision Transformer for CIFAR-10, a training recipe, attention rollout.

The image is cut into p x p patches, each flattened in (C, p, p) order and projected to E channels; the
sinusoidal encoding of notebook 3 is added; pre-norm encoder layers built on notebook 2's multi-head
attention follow; a final LayerNorm, then the mean over the tokens (or a learned class token) feeds the head.
:data:`SOLUTION` holds what the solved notebook defines for the graders, the multiple-choice answer included.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autograde.assignments.multi_head_attention.reference import MultiHeadAttention
from autograde.assignments.positional_encoding.reference import (
    LearnedPositionalEmbedding,
    PositionalEncoding,
    sinusoidal_2d,
)

POOLS = ("mean", "cls")
POSITIONAL_ENCODINGS = ("sin1d", "sin2d", "learned", "none")


def _check_divisible(height: int, width: int, patch_size: int) -> None:
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"an image of {height} x {width} pixels cannot be cut into {patch_size} x {patch_size} patches: "
            f"choose a patch_size that divides both sides (for 32 x 32 images: 1, 2, 4, 8, 16 or 32)."
        )


class PatchEmbedding(nn.Module):
    """Cut images into non-overlapping p x p patches and project each to ``embed_dim`` channels.

    forward: (N, C, H, W) -> (N, (H/p)*(W/p), E). Patches come in row-major order; each is flattened in
    (C, p, p) order (as ``nn.Conv2d(C, E, p, stride=p)`` reads it) before ``proj = nn.Linear(C*p*p, E)``.
    """

    def __init__(self, img_size: int, patch_size: int, in_channels: int = 3, embed_dim: int = 128):
        super().__init__()
        _check_divisible(img_size, img_size, patch_size)
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Linear(in_channels * patch_size * patch_size, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        p = self.patch_size
        _check_divisible(H, W, p)
        x = x.reshape(N, C, H // p, p, W // p, p)  # (N, C, H/p, p, W/p, p)
        x = x.permute(0, 2, 4, 1, 3, 5)  # (N, H/p, W/p, C, p, p)
        x = x.reshape(N, (H // p) * (W // p), C * p * p)  # (N, M, C*p*p)
        return self.proj(x)  # (N, M, E)


class TransformerEncoderLayer(nn.Module):
    """A pre-norm encoder layer: x + dropout(attn(norm1(x))), then x + dropout(mlp(norm2(x))).

    forward: (N, S, E) -> (N, S, E). ``mlp`` is Linear(E, F) - GELU - Dropout - Linear(F, E).
    """

    def __init__(self, embed_dim: int, num_heads: int, dim_feedforward: int, dropout: float = 0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim)
        self.self_attn = MultiHeadAttention(embed_dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, dim_feedforward),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, embed_dim),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h))
        return x + self.dropout(self.mlp(self.norm2(x)))


def positional_encoding(kind: str, embed_dim: int, dropout: float, side: int, with_class_token: bool) -> nn.Module:
    """The positional encoding of a (side x side) grid of patch tokens, after an optional class token.

    "sin1d": notebook 3's PositionalEncoding, positions numbered row by row (the class token is position 0);
    "sin2d": the same module with its table ``pe`` replaced by the 2D sinusoid of the grid (zeros for the
    class token), E divisible by 4; "learned": notebook 3's LearnedPositionalEmbedding over all tokens;
    "none": no positional information at all (``nn.Identity``).
    """
    tokens = side * side + (1 if with_class_token else 0)
    if kind == "sin1d":
        return PositionalEncoding(embed_dim, dropout, max_len=tokens)
    if kind == "sin2d":
        module = PositionalEncoding(embed_dim, dropout, max_len=tokens)
        with torch.no_grad():
            module.pe.zero_()
            module.pe[0, tokens - side * side :] = sinusoidal_2d(side, side, embed_dim)
        return module
    if kind == "learned":
        return LearnedPositionalEmbedding(tokens, embed_dim)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"pos_encoding={kind!r} is not supported: use one of {', '.join(POSITIONAL_ENCODINGS)}.")


class VisionTransformer(nn.Module):
    """ViT for small images: patches -> + sinusoidal positions -> encoder layers -> LayerNorm -> pool -> head.

    pool="mean" averages all tokens; pool="cls" prepends a learned ``cls_token`` (1, 1, E) (zeros at first)
    and classifies from it. The positional encoding (``pos_encoding``, see :func:`positional_encoding`) covers
    every token, the class token included.
    forward: (N, C, H, W) with H = W = img_size -> scores (N, num_classes).
    """

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        embed_dim: int = 128,
        num_layers: int = 6,
        num_heads: int = 4,
        dim_feedforward: int = 256,
        num_classes: int = 10,
        dropout: float = 0.1,
        pool: str = "mean",
        pos_encoding: str = "sin1d",
    ):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool={pool!r} is not supported: use 'mean' or 'cls'.")
        self.pool = pool
        self.patch_embed = PatchEmbedding(img_size, patch_size, in_channels, embed_dim)
        num_tokens = self.patch_embed.num_patches
        if pool == "cls":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
            num_tokens += 1
        self.positional_encoding = positional_encoding(
            pos_encoding, embed_dim, dropout, img_size // patch_size, with_class_token=pool == "cls"
        )
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dim, num_heads, dim_feedforward, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (N, M, E)
        if self.pool == "cls":
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (N, 1+L, E)
        x = self.positional_encoding(x)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        x = x[:, 0] if self.pool == "cls" else x.mean(dim=1)  # (N, E)
        return self.head(x)  # (N, num_classes)


def attention_rollout(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) over layers, first to last.

    weights: one (N, h, T, T) tensor per layer. Each layer's heads are averaged, the residual connection is
    accounted for as 0.5 * (A + I) (rows still sum to 1), and the layers are multiplied:
    R = A_L ... A_2 A_1 -> (N, T, T), where R[n, i, j] is how much token j of the input flows into token i.
    """
    if not weights:
        raise ValueError("attention_rollout needs the weights of at least one layer.")
    N, _, T, _ = weights[0].shape
    eye = torch.eye(T, dtype=weights[0].dtype, device=weights[0].device)
    rollout = eye.expand(N, T, T)
    for w in weights:
        mixed = 0.5 * (w.mean(dim=1) + eye)  # (N, T, T)
        rollout = mixed @ rollout  # (N, T, T)
    return rollout


ANSWER_Q_COST = 3  # Inline Question: halving the patch size gives 4x the tokens, so 16x the attention scores

# The names the solved notebook defines for the graders (it pastes MultiHeadAttention and PositionalEncoding from
# notebooks 2 and 3).
SOLUTION: dict[str, object] = {
    "MultiHeadAttention": MultiHeadAttention,
    "PositionalEncoding": PositionalEncoding,
    "PatchEmbedding": PatchEmbedding,
    "TransformerEncoderLayer": TransformerEncoderLayer,
    "VisionTransformer": VisionTransformer,
    "attention_rollout": attention_rollout,
    "answer_q_cost": ANSWER_Q_COST,
}
