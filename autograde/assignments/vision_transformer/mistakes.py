"""The known mistakes of notebook 4: functional forms of the reference (eval mode: dropout is off) with the usual
mistakes switchable, and the message that names each (the names are counted in the instructor's class report).

To add one: a message in :data:`MESSAGES` under a new name, its switch in :func:`patches`, :func:`layer_forward`
or :func:`vit_forward` (or a computation in :func:`rollout_mistakes`), and its name in the tuple of the check
that tries it (:data:`PATCHES`, :data:`LAYER`, :data:`VIT`, :data:`CLS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from autograde.compare import Mistake

MESSAGES = {
    # PatchEmbedding
    "patches_by_view": (
        "your patches are the rows of x.view(N, -1, C*p*p): that cuts the memory of each image into "
        "consecutive chunks (parts of one channel's rows), not p x p squares. Reshape to "
        "(N, C, H/p, p, W/p, p), permute to (N, H/p, W/p, C, p, p), then flatten."
    ),
    "patches_channels_last": (
        "each patch is flattened in (p, p, C) order; the contract asks for (C, p, p), the order "
        "nn.Conv2d(C, E, p, stride=p) reads: permute to (N, H/p, W/p, C, p, p)."
    ),
    "patches_split_p_first": (
        "each side of the image is split as (p, H/p) instead of (H/p, p), so a patch is not a p x p square of "
        "neighbouring pixels: reshape to (N, C, H/p, p, W/p, p), the patch's row index before the row inside "
        "the patch (the same for the columns)."
    ),
    "patches_column_major": (
        "the patches come in column-major order (down the first column first); number them "
        "row by row: (N, H/p, W/p, ...) before flattening, not (N, W/p, H/p, ...)."
    ),
    # TransformerEncoderLayer
    "post_norm": (
        "your layer is post-norm (x = norm(x + f(x))); this one is pre-norm: x = x + f(norm(x)), "
        "so the residual stream itself is never normalised."
    ),
    "relu_mlp": "the MLP uses ReLU; the ViT MLP uses GELU (nn.GELU()).",
    "no_residual": (
        "the residual connections are missing: add the input back, x = x + attention(...), then x = x + mlp(...)."
    ),
    "norm1_twice": "norm1 is used before the MLP too; the MLP branch has its own LayerNorm, norm2.",
    # VisionTransformer
    "pe_twice": (
        "the positional encoding is added twice: self.positional_encoding(x) already returns x + pe "
        "(then dropout); do not add pe again."
    ),
    "no_pe": "the positional encoding is missing: pass the tokens through self.positional_encoding.",
    "no_final_norm": (
        "the final LayerNorm is missing: apply self.norm to the tokens after the last layer, before pooling."
    ),
    "cls_mean_pooled": "with pool='cls' the head reads the class token, x[:, 0]; your model averages all tokens.",
    "cls_last": "the class token goes first: torch.cat([cls, patches], dim=1), and the head reads x[:, 0].",
    "cls_without_pe": (
        "prepend the class token before the positional encoding, so it gets position 0 and the patches positions 1..L."
    ),
    # attention_rollout
    "rollout_reversed": (
        "the layers are multiplied in the wrong order: the last layer's matrix goes on the left, R = A_L ... A_2 A_1."
    ),
    "rollout_no_residual": "the residual connection is missing: use 0.5 * (A + I) for each layer, not A alone.",
    "rollout_not_halved": "A + I is not renormalised: its rows sum to 2; use 0.5 * (A + I).",
    "rollout_max_heads": "the heads are combined with max; average them (mean over dim=1).",
}
PATCHES = ("patches_by_view", "patches_channels_last", "patches_split_p_first", "patches_column_major")
LAYER = ("post_norm", "relu_mlp", "no_residual", "norm1_twice")
VIT = ("pe_twice", "no_pe", "no_final_norm")
CLS = ("cls_mean_pooled", "cls_last", "cls_without_pe")


def patches(x: torch.Tensor, p: int, mistake: str = "") -> torch.Tensor:
    """(N, C, H, W) -> (N, M, C*p*p) as the reference cuts it, or as a known mistake does."""
    N, C, H, W = x.shape
    if mistake == "patches_by_view":
        return x.reshape(N, -1, C * p * p)
    if mistake.startswith("patches_split_p_first"):  # (N, C, p, H/p, p, W/p): no p x p squares
        swapped = x.reshape(N, C, p, H // p, p, W // p)
        order = (0, 2, 4, 1, 3, 5) if mistake.endswith("permute_kept") else (0, 3, 5, 1, 2, 4)
        return swapped.permute(*order).reshape(N, (H // p) * (W // p), C * p * p)
    grid = x.reshape(N, C, H // p, p, W // p, p)  # (N, C, H/p, p, W/p, p)
    order = {
        "": (0, 2, 4, 1, 3, 5),
        "patches_channels_last": (0, 2, 4, 3, 5, 1),
        "patches_column_major": (0, 4, 2, 1, 3, 5),
    }
    return grid.permute(*order[mistake]).reshape(N, (H // p) * (W // p), C * p * p)


def layer_forward(layer: nn.Module, x: torch.Tensor, mistake: str = "") -> torch.Tensor:
    """The encoder layer ``layer`` (the reference's, its weights loaded), or a known mistake in it, on x (N, S, E)."""
    act = F.relu if mistake == "relu_mlp" else F.gelu

    def attn(h):
        return layer.self_attn(h, h, h)

    def mlp(h):
        return layer.mlp[3](act(layer.mlp[0](h)))

    if mistake == "post_norm":
        x = layer.norm1(x + attn(x))
        return layer.norm2(x + mlp(x))
    if mistake == "no_residual":
        return mlp(layer.norm2(attn(layer.norm1(x))))
    if mistake == "norm1_twice":
        x = x + attn(layer.norm1(x))
        return x + mlp(layer.norm1(x))
    x = x + attn(layer.norm1(x))
    return x + mlp(layer.norm2(x))


def vit_forward(model: nn.Module, x: torch.Tensor, mistake: str = "") -> torch.Tensor:
    """The ViT ``model`` (its own parts, the reference's or the stand-ins), or a known mistake in how it composes
    them, on images x (N, C, H, W) -> (N, classes)."""
    tokens = model.patch_embed(x)  # (N, M, E)
    pe = model.positional_encoding.pe
    cls = model.cls_token.expand(len(x), -1, -1) if model.pool == "cls" else None
    if cls is not None and mistake == "cls_without_pe":
        tokens = torch.cat([cls, tokens + pe[:, : tokens.shape[1]]], dim=1)
    else:
        if cls is not None:
            tokens = torch.cat([tokens, cls] if mistake == "cls_last" else [cls, tokens], dim=1)
        times = {"no_pe": 0, "pe_twice": 2}.get(mistake, 1)
        tokens = tokens + times * pe[:, : tokens.shape[1]]
    for layer in model.layers:
        tokens = layer(tokens)
    if mistake != "no_final_norm":
        tokens = model.norm(tokens)
    if model.pool == "mean" or mistake == "cls_mean_pooled":
        pooled = tokens.mean(dim=1)
    else:
        pooled = tokens[:, -1] if mistake == "cls_last" else tokens[:, 0]
    return model.head(pooled)


def patch_mistakes(model: nn.Module, x: torch.Tensor) -> list[Mistake]:
    """The known mistakes of the PatchEmbedding ``model`` (the reference's) on images x."""
    variants = [*PATCHES, "patches_split_p_first/permute_kept"]  # the split swapped, the solution's permute kept
    with torch.no_grad():
        return [
            Mistake(n.split("/")[0], model.proj(patches(x, model.patch_size, n)), MESSAGES[n.split("/")[0]])
            for n in variants
        ]


def layer_mistakes(layer: nn.Module, x: torch.Tensor, names: Sequence[str] = LAYER) -> list[Mistake]:
    """The known mistakes ``names`` of the encoder layer ``layer`` (the reference's) on x."""
    with torch.no_grad():
        return [Mistake(n, layer_forward(layer, x, n), MESSAGES[n]) for n in names]


def vit_mistakes(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> list[Mistake]:
    """The known mistakes ``names`` of the ViT ``model`` (the reference's) on images x."""
    with torch.no_grad():
        return [Mistake(n, vit_forward(model, x, n), MESSAGES[n]) for n in names]


def rollout_mistakes(weights: list[torch.Tensor]) -> list[Mistake]:
    """The known mistakes of attention_rollout over the layers' weights (N, h, T, T)."""
    eye = torch.eye(weights[0].shape[-1], dtype=weights[0].dtype)

    def product(mats, reverse=False):
        out = eye.expand_as(mats[0])
        for a in mats:
            out = out @ a if reverse else a @ out
        return out

    computed = {
        "rollout_reversed": product([0.5 * (w.mean(1) + eye) for w in weights], reverse=True),
        "rollout_no_residual": product([w.mean(1) for w in weights]),
        "rollout_not_halved": product([w.mean(1) + eye for w in weights]),
        "rollout_max_heads": product([0.5 * (w.max(1).values + eye) for w in weights]),
    }
    return [Mistake(name, value, MESSAGES[name]) for name, value in computed.items()]
