"""The known mistakes of notebook 5: functional forms of the reference with the usual mistakes switchable, and
the message that names each (the names are counted in the instructor's class report). The notebook's visible
checks use the same words (``tests/test_graders_local.py`` keeps them equal).

To add one: a message in :data:`MESSAGES` under a new name (and in the notebook's visible check), and what the
mistake computes in :func:`local_attention` (with its name in :data:`LOCAL`), :func:`chunked_mistake` or
:func:`swin_mistake`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from autograde.assignments.local_attention import reference as ref
from autograde.compare import Mistake

MESSAGES = {
    # LocalSelfAttention2d
    "rel_on_values": (
        "the relative embeddings are added to the values; the formula adds them to the keys: the score of a "
        "neighbour is q_ij . k_ab + q_ij . r_{a-i,b-j}, and the values v_ab are summed as they are."
    ),
    "per_channel_softmax": (
        "the softmax runs per channel over an elementwise product q * k; the formula takes the dot product "
        "q . k over the D channels of a head, one score (and one softmax weight) per neighbour and head."
    ),
    "attends_to_padding": (
        "border pixels attend to the zero padding: positions outside the image must get no weight (fill their "
        "scores with -inf before the softmax), not act as neighbours whose key and value are zero."
    ),
    "rel_halves_swapped": (
        "the row and column halves are swapped: in each head, the first D/2 channels of r carry the row offset "
        "(rel_rows) and the last D/2 the column offset (rel_cols)."
    ),
    "rel_axes_swapped": (
        "rows and columns are swapped: rel_rows is indexed by the column offset b - j and rel_cols by the row "
        "offset; rel_rows embeds the row offset a - i, rel_cols the column offset b - j."
    ),
    "rel_offsets_flipped": (
        "the offsets are taken as (i - a, j - b); the formula uses r_{a-i,b-j}: column t of rel_rows embeds "
        "the neighbour t - (m-1)/2 rows below the pixel (above for negative t - (m-1)/2)."
    ),
    "softmax_axis": (
        "the softmax runs over the wrong axis: normalise over the m*m neighbours of each pixel, so that every "
        "pixel's weights (per head) sum to 1."
    ),
    "scaled_scores": "the scores are divided by sqrt(D); this formula has no scale: softmax(q . k + q . r).",
    "rel_heads_layout": (
        "the relative embedding is split across the heads as one block of C/2 row channels, then C/2 column "
        "channels; each head g has its own halves: rows g*D/2 .. (g+1)*D/2 of rel_rows, then the same rows "
        "of rel_cols."
    ),
    "review_attention_conv": (
        "your layer computes what the AttentionConv of Inline Question 3 computes: it adds the "
        "relative embeddings to the values (the formula adds q . r to the scores), takes a softmax of the "
        "elementwise product q * k per channel (the formula: one softmax of the dot product q . k per head) and "
        "lets border pixels attend to zero padding (positions outside the image get no weight)."
    ),
    # chunked_attention
    "no_rescale": (
        "each chunk's weights use that chunk's own maximum, and what was summed before is not rescaled when "
        "the maximum grows: multiply the running normaliser and output by exp(old maximum - new maximum)."
    ),
    "normaliser_not_rescaled": (
        "the running output is rescaled when the maximum grows, but the running normaliser is not: multiply "
        "both by exp(old maximum - new maximum), so that they stay on the same scale."
    ),
    "dropped_tail": (
        "the last, shorter chunk is left out when chunk_size does not divide T: loop over "
        "range(0, T, chunk_size) and slice k[..., start:start + chunk_size, :]."
    ),
    "chunk_no_scale": "the 1/sqrt(D) scale is missing: the scores are q . k / sqrt(D), D = q.shape[-1].",
    "overflow": (
        "the output has NaN or Inf values for large scores: the exponentials overflow. Subtract the running "
        "maximum before exp, and rescale the running sums by exp(old maximum - new maximum) when it grows."
    ),
    "masked_chunk": (
        "a query whose keys in a chunk are all masked gets NaN: while its running maximum is still -inf, "
        "exp(-inf - (-inf)) is NaN. Subtract 0 instead of a maximum that is -inf (exp(-inf - 0) = 0)."
    ),
    "full_score_matrix": (
        "chunked_attention holds as much memory as the whole matrix of scores: compute the scores of one chunk of "
        "keys at a time, (..., S, chunk_size), never of all T keys (not even in a first pass that finds each "
        "row's maximum)."
    ),
    "blocked_row": (
        "a query whose mask row is all False must get a zero output (its normaliser is 0): return zeros "
        "for those rows instead of 0 / 0."
    ),
    # swin_attention
    "no_mask": (
        "with a shift, pixels that the roll brought together from opposite sides of the map attend to each "
        "other: inside a window, let a pixel attend only to pixels of the same region (block the others)."
    ),
    "no_roll_back": "the output is not rolled back: roll it by (+s, +s) after the attention.",
    "swin_no_scale": "the 1/sqrt(D) scale of the scores is missing (D = C / num_heads).",
}
# The mistakes of LocalSelfAttention2d in the order they are tried: (what is computed, the mistake's name).
LOCAL = (
    ("review_attention_conv", "review_attention_conv"),
    ("rel_on_values", "rel_on_values"),
    ("rel_on_values_heads_layout", "rel_on_values"),
    ("per_channel_softmax", "per_channel_softmax"),
    ("attends_to_padding", "attends_to_padding"),
    ("rel_halves_swapped", "rel_halves_swapped"),
    ("rel_axes_swapped", "rel_axes_swapped"),
    ("rel_offsets_flipped", "rel_offsets_flipped"),
    ("softmax_axis", "softmax_axis"),
    ("scaled_scores", "scaled_scores"),
    ("rel_heads_layout", "rel_heads_layout"),
)


# ------------------------------------------------------------------------------------------ local attention
def _relative(w: dict, G: int, m: int, mistake: str) -> torch.Tensor:
    """r as (G, D, m, m) from rel_rows and rel_cols (C/2, m), as the reference builds it or as a mistake does."""
    rows, cols = w["rel_rows"], w["rel_cols"]  # (C/2, m)
    half = rows.shape[0] // G
    if mistake == "rel_offsets_flipped":
        rows, cols = rows.flip(1), cols.flip(1)
    by_row = rows.view(-1, m, 1).expand(-1, m, m)  # (C/2, m, m): depends on the row offset
    by_col = cols.view(-1, 1, m).expand(-1, m, m)  # (C/2, m, m): on the column offset
    if mistake == "rel_axes_swapped":
        by_row, by_col = rows.view(-1, 1, m).expand(-1, m, m), cols.view(-1, m, 1).expand(-1, m, m)
    if mistake == "rel_heads_layout":
        return torch.cat([by_row, by_col]).view(G, 2 * half, m, m)
    first, second = (by_col, by_row) if mistake == "rel_halves_swapped" else (by_row, by_col)
    return torch.cat([first.view(G, half, m, m), second.view(G, half, m, m)], dim=1)  # (G, D, m, m)


def local_attention(w: dict, x: torch.Tensor, G: int, m: int, mistake: str = "") -> torch.Tensor:
    """LocalSelfAttention2d with weights ``w`` on x (N, C_in, H, W) -> (N, C, H, W), or a known mistake."""
    if mistake == "review_attention_conv":
        return _review(w, x, G, m)
    N, _, H, W = x.shape
    C = w["conv_query.weight"].shape[0]
    D, L, pad = C // G, H * W, m // 2
    q = F.conv2d(x, w["conv_query.weight"]).view(N, G, D, L)
    k = F.unfold(F.conv2d(x, w["conv_key.weight"]), m, padding=pad).view(N, G, D, m * m, L)
    v = F.unfold(F.conv2d(x, w["conv_value.weight"]), m, padding=pad).view(N, G, D, m * m, L)
    layout = "rel_heads_layout" if mistake == "rel_on_values_heads_layout" else mistake
    r = _relative(w, G, m, layout).reshape(G, D, m * m)
    inside = F.unfold(x.new_ones(1, 1, H, W), m, padding=pad) > 0  # (1, m*m, L)
    if mistake == "per_channel_softmax":
        scores = q[:, :, :, None] * (k + r[None, :, :, :, None])  # (N, G, D, m*m, L)
        weights = F.softmax(scores.masked_fill(~inside[:, None], float("-inf")), dim=3)
        return (weights * v).sum(3).reshape(N, C, H, W)
    if mistake.startswith("rel_on_values"):
        scores = torch.einsum("ngdl,ngdkl->ngkl", q, k)
        v = v + r[None, :, :, :, None]
    else:
        scores = torch.einsum("ngdl,ngdkl->ngkl", q, k) + torch.einsum("ngdl,gdk->ngkl", q, r)
    if mistake == "scaled_scores":
        scores = scores / math.sqrt(D)
    if mistake != "attends_to_padding":
        scores = scores.masked_fill(~inside, float("-inf"))
    weights = F.softmax(scores, dim=3 if mistake == "softmax_axis" else 2)  # (N, G, m*m, L)
    return torch.einsum("ngkl,ngdkl->ngdl", weights, v).reshape(N, C, H, W)


def _review(w: dict, x: torch.Tensor, G: int, m: int) -> torch.Tensor:
    """What the review's AttentionConv computes (stride 1, padding (m-1)/2, no bias): per-channel softmax of
    q * k over the zero-padded neighbourhood, the relative embeddings added to the values."""
    N, _, H, W = x.shape
    C, pad = w["conv_query.weight"].shape[0], m // 2
    padded = F.pad(x, [pad, pad, pad, pad])
    q = F.conv2d(x, w["conv_query.weight"]).view(N, C, H, W, 1)
    k = F.conv2d(padded, w["conv_key.weight"]).unfold(2, m, 1).unfold(3, m, 1)  # (N, C, H, W, m, m)
    v = F.conv2d(padded, w["conv_value.weight"]).unfold(2, m, 1).unfold(3, m, 1)
    v_rows, v_cols = v.split(C // 2, dim=1)
    v = torch.cat([v_rows + w["rel_rows"].view(C // 2, 1, 1, m, 1), v_cols + w["rel_cols"].view(C // 2, 1, 1, 1, m)], 1)
    weights = F.softmax(q * k.reshape(N, C, H, W, m * m), dim=-1)
    return (weights * v.reshape(N, C, H, W, m * m)).sum(-1)


def local_mistakes(w: dict, x: torch.Tensor, G: int, m: int) -> list[Mistake]:
    """The known mistakes of LocalSelfAttention2d for weights w and input x, computed only when tried."""
    return [
        Mistake(name, lambda c=computed: local_attention(w, x, G, m, c), MESSAGES[name]) for computed, name in LOCAL
    ]


# ---------------------------------------------------------------------------------------- chunked attention
def chunked_mistake(q, k, v, chunk_size, mask=None, mistake: str = "") -> torch.Tensor:
    """What a known mistake in the chunked loop returns (all rows have something to attend)."""
    T, D = k.shape[-2], q.shape[-1]
    if mistake == "masked_chunk":  # the NaN of a first chunk with nothing allowed, then set to 0 by the final where
        blind = ~mask[..., :chunk_size].any(dim=-1, keepdim=True)  # (..., S, 1)
        return ref.chunked_attention(q, k, v, chunk_size, mask).masked_fill(blind, 0.0)
    if mistake == "chunk_no_scale":  # scores q . k: the reference's scores of q * sqrt(D)
        return ref.chunked_attention(q * math.sqrt(D), k, v, chunk_size, mask)
    if mistake == "dropped_tail":  # only the keys of the whole chunks
        stop = T - T % chunk_size
        return ref.chunked_attention(q, k[..., :stop, :], v[..., :stop, :], chunk_size, _keys(mask, stop))
    scale = 1 / math.sqrt(D)
    out, normaliser, running = 0.0, 0.0, torch.full_like(q[..., :1], float("-inf"))
    for start in range(0, T, chunk_size):
        scores = q @ k[..., start : start + chunk_size, :].transpose(-2, -1) * scale
        if mask is not None:
            scores = scores.masked_fill(~mask[..., start : start + chunk_size], float("-inf"))
        if mistake == "normaliser_not_rescaled":  # the running maximum, the output rescaled, the normaliser not
            new = torch.maximum(running, scores.amax(-1, keepdim=True))
            top = new.masked_fill(new == float("-inf"), 0.0)
            weights, correction = torch.exp(scores - top), torch.exp(running - top)
            normaliser = normaliser + weights.sum(-1, keepdim=True)
            out = out * correction + weights @ v[..., start : start + chunk_size, :]
            running = new
            continue
        top = scores.amax(-1, keepdim=True)  # "no_rescale": every chunk against its own maximum, nothing rescaled
        weights = torch.exp(scores - top.masked_fill(top == float("-inf"), 0.0))
        normaliser = normaliser + weights.sum(-1, keepdim=True)
        out = out + weights @ v[..., start : start + chunk_size, :]
    return out / normaliser


def _keys(mask: torch.Tensor | None, stop: int) -> torch.Tensor | None:
    return None if mask is None else mask[..., :stop]


def chunked_mistakes(q, k, v, chunk_size: int, mask=None) -> list[Mistake]:
    """The known mistakes of chunked_attention for these inputs (all rows have something to attend), computed
    only when tried."""
    names = ["no_rescale", "normaliser_not_rescaled", "dropped_tail", "chunk_no_scale"]
    names += [] if mask is None else ["masked_chunk"]
    if k.shape[-2] % chunk_size == 0:
        names.remove("dropped_tail")  # whole chunks only: nothing is left out
    return [Mistake(n, lambda n=n: chunked_mistake(q, k, v, chunk_size, mask, n), MESSAGES[n]) for n in names]


# -------------------------------------------------------------------------------------------- Swin attention
def swin_mistake(tensors: tuple, m: int, s: int, G: int, mistake: str) -> torch.Tensor:
    x, qkv_w, qkv_b, proj_w, proj_b, bias = tensors
    if mistake == "swin_no_scale":
        C = x.shape[-1]
        scale = math.sqrt(C // G)
        qkv_w = torch.cat([qkv_w[:C] * scale, qkv_w[C:]])
        qkv_b = torch.cat([qkv_b[:C] * scale, qkv_b[C:]])
        return ref.swin_attention(x, qkv_w, qkv_b, proj_w, proj_b, bias, m, s, G)
    if mistake == "no_mask":
        rolled = torch.roll(x, (-s, -s), (1, 2))
        out = ref.swin_attention(rolled, qkv_w, qkv_b, proj_w, proj_b, bias, m, 0, G)
        return torch.roll(out, (s, s), (1, 2))
    out = ref.swin_attention(x, qkv_w, qkv_b, proj_w, proj_b, bias, m, s, G)
    return torch.roll(out, (-s, -s), (1, 2))  # "no_roll_back"


def swin_mistakes(tensors: tuple, m: int, s: int, G: int) -> list[Mistake]:
    """The known mistakes of swin_attention on ``tensors`` (x and the weights) with window m, shift s, G heads."""
    names = ["swin_no_scale"] + (["no_mask", "no_roll_back"] if s else [])
    return [Mistake(n, lambda n=n: swin_mistake(tensors, m, s, G, n), MESSAGES[n]) for n in names]
