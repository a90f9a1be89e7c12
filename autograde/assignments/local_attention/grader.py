"""Hidden graders of notebook 5: local self-attention with relative positions, and attention over chunks of keys.

Outputs and gradients are compared in float64 with the reference weights copied in, atol=1e-6, rtol=1e-5 (only
the order of floating-point operations differs). Maps are small (at most 7 x 7 pixels, 12 channels) and the
sequences short, so every part runs in about a second.

Points, by how much of the concept a test proves:

* ``local_attention`` (8): the formula itself is most of it: the forward pass with one head and borders (2),
  with several heads, kernel 5 and non-square maps (2), on maps smaller than the neighbourhood, where every pixel
  sees the whole image (1); the contract's layers (1), the argument checks (1), gradients (1).
* ``attention_net`` (3): composition only (the layers, in order, with the right sizes (1); the forward pass with
  the reference weights (2)); graded with the grader's stand-in for ``LocalSelfAttention2d`` when the student's
  own is wrong, so a mistake there costs points in ``local_attention`` only.
* ``chunked`` (7): exactness against the reference for chunk sizes that divide T (2), that do not or exceed it
  (1), with masks, including rows whose first chunks are all masked and a row with nothing to attend (2); no
  overflow for large scores, which is what the running maximum is for (1); gradients (1). Calling
  ``F.scaled_dot_product_attention`` fails every check of the part.
* ``swin`` (2, optional extension): windows without (1) and with a shift (1).

The reference is checked against independent oracles in ``tests/test_references_local.py`` (a per-pixel loop,
notebook 2's masked attention with a banded mask, ``F.scaled_dot_product_attention``, torchvision's
``shifted_window_attention``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from autograde.assignments.local_attention import reference as ref
from autograde.checks import (
    Mistake,
    assert_gradients_match,
    blame_earlier_part,
    hints,
    must_raise,
    own_or_stand_ins,
    reference_state,
    seeded,
    student_call,
)
from autograde.compare import assert_matches
from autograde.results import GradingFailure, Kind, StudentError
from autograde.student import Call, CallResult, stand_ins, substituted

ATOL, RTOL = 1e-6, 1e-5
LOCAL, NET, CHUNKED, SWIN = "LocalSelfAttention2d", "fully_attentional_net", "chunked_attention", "swin_attention"
FORBIDDEN = ("F.scaled_dot_product_attention",)

# LocalSelfAttention2d(C_in, C, m, G) and an input shape (N, C_in, H, W).
ONE_HEAD = [((4, 6, 3, 1), (2, 4, 5, 6)), ((3, 4, 5, 1), (1, 3, 6, 5))]
HEADS = [((3, 8, 5, 2), (2, 3, 4, 7)), ((6, 12, 3, 3), (1, 6, 6, 5))]
SMALL_MAPS = [((4, 6, 5, 1), (2, 4, 2, 3)), ((2, 8, 3, 2), (1, 2, 1, 5))]

# The messages that name the known mistakes (the notebook's visible checks use the same words).
LOCAL_MESSAGES = {
    "values": (
        "the relative embeddings are added to the values; the formula adds them to the keys: the score of a "
        "neighbour is q_ij . k_ab + q_ij . r_{a-i,b-j}, and the values v_ab are summed as they are."
    ),
    "per_channel": (
        "the softmax runs per channel over an elementwise product q * k; the formula takes the dot product "
        "q . k over the D channels of a head, one score (and one softmax weight) per neighbour and head."
    ),
    "padding": (
        "border pixels attend to the zero padding: positions outside the image must get no weight (fill their "
        "scores with -inf before the softmax), not act as neighbours whose key and value are zero."
    ),
    "halves_swapped": (
        "the row and column halves are swapped: in each head, the first D/2 channels of r carry the row offset "
        "(rel_rows) and the last D/2 the column offset (rel_cols)."
    ),
    "axes_swapped": (
        "rows and columns are swapped: rel_rows is indexed by the column offset b - j and rel_cols by the row "
        "offset; rel_rows embeds the row offset a - i, rel_cols the column offset b - j."
    ),
    "offsets_flipped": (
        "the offsets are taken as (i - a, j - b); the formula uses r_{a-i,b-j}: column t of rel_rows embeds "
        "the neighbour t - (m-1)/2 rows below the pixel (above for negative t - (m-1)/2)."
    ),
    "softmax_axis": (
        "the softmax runs over the wrong axis: normalise over the m*m neighbours of each pixel, so that every "
        "pixel's weights (per head) sum to 1."
    ),
    "scaled": "the scores are divided by sqrt(D); this formula has no scale: softmax(q . k + q . r).",
    "heads_layout": (
        "the relative embedding is split across the heads as one block of C/2 row channels, then C/2 column "
        "channels; each head g has its own halves: rows g*D/2 .. (g+1)*D/2 of rel_rows, then the same rows "
        "of rel_cols."
    ),
    "review": (
        "your layer computes what the widely copied AttentionConv of Inline Question 3 computes: it adds the "
        "relative embeddings to the values (the formula adds q . r to the scores), takes a softmax of the "
        "elementwise product q * k per channel (the formula: one softmax of the dot product q . k per head) and "
        "lets border pixels attend to zero padding (positions outside the image get no weight)."
    ),
}
CHUNK_MESSAGES = {
    "no_rescale": (
        "each chunk's weights use that chunk's own maximum, and what was summed before is not rescaled when "
        "the maximum grows: multiply the running normaliser and output by exp(old maximum - new maximum)."
    ),
    "dropped_tail": (
        "the last, shorter chunk is left out when chunk_size does not divide T: loop over "
        "range(0, T, chunk_size) and slice k[..., start:start + chunk_size, :]."
    ),
    "no_scale": "the 1/sqrt(D) scale is missing: the scores are q . k / sqrt(D), D = q.shape[-1].",
    "overflow": (
        "the output has NaN or Inf values for large scores: the exponentials overflow. Subtract the running "
        "maximum before exp, and rescale the running sums by exp(old maximum - new maximum) when it grows."
    ),
    "masked_chunk": (
        "a query whose keys in a chunk are all masked gets NaN: while its running maximum is still -inf, "
        "exp(-inf - (-inf)) is NaN. Subtract 0 instead of a maximum that is -inf (exp(-inf - 0) = 0)."
    ),
    "blocked_row": (
        "a query whose mask row is all False must get a zero output (its normaliser is 0): return zeros "
        "for those rows instead of 0 / 0."
    ),
}


# ----------------------------------------------------------------------------------------------------------
# Local attention with the usual mistakes switchable (a functional form of the reference, on a state dict)
# ----------------------------------------------------------------------------------------------------------


def _relative(w: dict, G: int, m: int, mistake: str) -> torch.Tensor:
    """r as (G, D, m, m) from rel_rows and rel_cols (C/2, m), as the reference builds it or as a mistake does."""
    rows, cols = w["rel_rows"], w["rel_cols"]  # (C/2, m)
    half = rows.shape[0] // G
    if mistake == "offsets_flipped":
        rows, cols = rows.flip(1), cols.flip(1)
    by_row = rows.view(-1, m, 1).expand(-1, m, m)  # (C/2, m, m): depends on the row offset
    by_col = cols.view(-1, 1, m).expand(-1, m, m)  # (C/2, m, m): on the column offset
    if mistake == "axes_swapped":
        by_row, by_col = rows.view(-1, 1, m).expand(-1, m, m), cols.view(-1, m, 1).expand(-1, m, m)
    if mistake == "heads_layout":
        return torch.cat([by_row, by_col]).view(G, 2 * half, m, m)
    first, second = (by_col, by_row) if mistake == "halves_swapped" else (by_row, by_col)
    return torch.cat([first.view(G, half, m, m), second.view(G, half, m, m)], dim=1)  # (G, D, m, m)


def local_attention(w: dict, x: torch.Tensor, G: int, m: int, mistake: str = "") -> torch.Tensor:
    """LocalSelfAttention2d with weights ``w`` on x (N, C_in, H, W) -> (N, C, H, W), or a known mistake."""
    if mistake == "review":
        return _review(w, x, G, m)
    N, _, H, W = x.shape
    C = w["conv_query.weight"].shape[0]
    D, L, pad = C // G, H * W, m // 2
    q = F.conv2d(x, w["conv_query.weight"]).view(N, G, D, L)
    k = F.unfold(F.conv2d(x, w["conv_key.weight"]), m, padding=pad).view(N, G, D, m * m, L)
    v = F.unfold(F.conv2d(x, w["conv_value.weight"]), m, padding=pad).view(N, G, D, m * m, L)
    r = _relative(w, G, m, "heads_layout" if mistake == "values_heads_layout" else mistake).reshape(G, D, m * m)
    inside = F.unfold(x.new_ones(1, 1, H, W), m, padding=pad) > 0  # (1, m*m, L)
    if mistake == "per_channel":
        scores = q[:, :, :, None] * (k + r[None, :, :, :, None])  # (N, G, D, m*m, L)
        weights = F.softmax(scores.masked_fill(~inside[:, None], float("-inf")), dim=3)
        return (weights * v).sum(3).reshape(N, C, H, W)
    if mistake.startswith("values"):
        scores = torch.einsum("ngdl,ngdkl->ngkl", q, k)
        v = v + r[None, :, :, :, None]
    else:
        scores = torch.einsum("ngdl,ngdkl->ngkl", q, k) + torch.einsum("ngdl,gdk->ngkl", q, r)
    if mistake == "scaled":
        scores = scores / math.sqrt(D)
    if mistake != "padding":
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


LOCAL_MISTAKES = (  # (the mistake computed, its message), in the order they are tried
    ("review", "review"),
    ("values", "values"),
    ("values_heads_layout", "values"),
    ("per_channel", "per_channel"),
    ("padding", "padding"),
    ("halves_swapped", "halves_swapped"),
    ("axes_swapped", "axes_swapped"),
    ("offsets_flipped", "offsets_flipped"),
    ("softmax_axis", "softmax_axis"),
    ("scaled", "scaled"),
    ("heads_layout", "heads_layout"),
)


def local_mistakes(w: dict, x: torch.Tensor, G: int, m: int) -> list[Mistake]:
    """The known mistakes of LocalSelfAttention2d for weights w and input x, as lazily computed hints."""
    return [
        Mistake(name, lambda name=name: local_attention(w, x, G, m, name), LOCAL_MESSAGES[message])
        for name, message in LOCAL_MISTAKES
    ]


# ----------------------------------------------------------------------------------------------------------
# LocalSelfAttention2d
# ----------------------------------------------------------------------------------------------------------


def _local_call(args, shape, seed, *, grad=False) -> tuple[Call, dict, torch.Tensor, torch.Tensor | None]:
    w = reference_state(ref.LocalSelfAttention2d(*args).double(), seed)
    x = seeded(shape, seed + 1)
    N, _, H, W = shape
    g = seeded((N, args[1], H, W), seed + 2) if grad else None
    call = Call(LOCAL, args=args, inputs=(x,), state_dict=w, dtype=torch.float64, grad_outputs=g)
    return call, w, x, g


def check_local(student, args, shape, seed) -> None:
    """The student's LocalSelfAttention2d(*args) on an input of ``shape`` against the reference."""
    call, w, x, _ = _local_call(args, shape, seed)
    result = student_call(student, call)
    _, _, m, G = args
    with torch.no_grad():
        want = local_attention(w, x, G, m)
        assert_matches(
            result.output,
            want,
            what=f"{LOCAL}{args} on an input {shape}",
            atol=ATOL,
            rtol=RTOL,
            hints=hints(local_mistakes(w, x, G, m)),
        )


@pytest.mark.part("local_attention")
@pytest.mark.points(1)
def test_local_attention_layers(student):
    """conv_query, conv_key, conv_value are 1x1 convolutions without bias; rel_rows and rel_cols are (C/2, m)"""
    for args in [(5, 8, 3, 2), (3, 12, 5, 3)]:
        C_in, C, m, _ = args
        info = student.describe(LOCAL, args)
        want = {f"conv_{n}.weight": (C, C_in, 1, 1) for n in ("query", "key", "value")}
        want.update({"rel_rows": (C // 2, m), "rel_cols": (C // 2, m)})
        assert info.parameters == want, (
            f"{LOCAL}{args} has parameters {info.parameters}; expected {want}: conv_query, conv_key and "
            f"conv_value = nn.Conv2d({C_in}, {C}, kernel_size=1, bias=False), rel_rows and rel_cols of shape "
            f"({C // 2}, {m})."
        )


@pytest.mark.part("local_attention")
@pytest.mark.points(1)
def test_local_attention_rejects_bad_arguments(student):
    """an even kernel, heads that do not divide the channels, or an odd head width raise a ValueError"""
    for args, why in [
        ((4, 8, 4, 2), "kernel_size=4 is even: the neighbourhood has no centre"),
        ((4, 6, 3, 4), "6 channels cannot be split over 4 heads"),
        ((4, 6, 3, 2), "each of the 2 heads would have 3 channels, which cannot be split into a row and a column half"),
    ]:
        must_raise(
            lambda args=args: student.describe(LOCAL, args),
            ("ValueError",),
            what=f"{LOCAL}{args}",
            otherwise=f"{why}; raise a ValueError that says what to change.",
        )


@pytest.mark.part("local_attention")
@pytest.mark.points(2)
def test_local_attention_one_head(student):
    """forward with one head matches the formula, border pixels included (kernels 3 and 5)"""
    for i, (args, shape) in enumerate(ONE_HEAD):
        check_local(student, args, shape, 10 + 3 * i)


@pytest.mark.part("local_attention")
@pytest.mark.points(2)
def test_local_attention_heads(student):
    """forward with several heads on non-square maps matches the formula, each head with its own r"""
    for i, (args, shape) in enumerate(HEADS):
        check_local(student, args, shape, 20 + 3 * i)


@pytest.mark.part("local_attention")
@pytest.mark.points(1)
def test_local_attention_small_maps(student):
    """on maps smaller than the neighbourhood (2 x 3 with m = 5, 1 x 5 with m = 3) only pixels of the map count"""
    for i, (args, shape) in enumerate(SMALL_MAPS):
        check_local(student, args, shape, 30 + 3 * i)


@pytest.mark.part("local_attention")
@pytest.mark.points(1)
def test_local_attention_gradients(student):
    """gradients with respect to the input and every weight match the reference"""
    args, shape = HEADS[0]
    call, w, x, g = _local_call(args, shape, 40, grad=True)
    result = student_call(student, call)
    model = ref.LocalSelfAttention2d(*args).double()
    model.load_state_dict(w)
    xr = x.clone().requires_grad_(True)
    model(xr).backward(g)
    assert_gradients_match(result, [("the input", xr)], model, on=str(shape), atol=ATOL, rtol=RTOL)


# ----------------------------------------------------------------------------------------------------------
# The fully attentional network. Graded with the grader's stand-in for LocalSelfAttention2d when the student's
# own is wrong (a gated 1x1 convolution with the contract's parameters, not attention), so a mistake in the
# layer costs points in its own part only.
# ----------------------------------------------------------------------------------------------------------

STAND_INS = {
    LOCAL: """
import torch
from torch import nn


class LocalSelfAttention2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, num_heads=1):
        super().__init__()
        self.conv_query = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.conv_key = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.conv_value = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.rel_rows = nn.Parameter(torch.zeros(out_channels // 2, kernel_size))
        self.rel_cols = nn.Parameter(torch.zeros(out_channels // 2, kernel_size))

    def forward(self, x):
        gate = torch.sigmoid(self.conv_query(x) * self.conv_key(x).mean((2, 3), keepdim=True))
        shift = torch.cat([self.rel_rows.mean(1), self.rel_cols.mean(1)])
        return gate * self.conv_value(x) + shift[None, :, None, None]
"""
}
NET_CONFIGS = [{}, {"kernel_size": 5, "num_heads": 2}]


def _with(enabled: bool):
    """The reference built with the stand-in (when ``enabled``) in place of LocalSelfAttention2d."""
    return substituted(vars(ref), stand_ins(STAND_INS)) if enabled else contextlib.nullcontext()


def _reference_net(kwargs: dict, with_stand_ins: bool) -> torch.nn.Module:
    with _with(with_stand_ins):
        return ref.fully_attentional_net(**kwargs).double()


def _net_text(kwargs: dict) -> str:
    return f"{NET}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def _check_net_structure(info, kwargs: dict, with_stand_ins: bool) -> None:
    expected = _reference_net(kwargs, with_stand_ins)
    want = [type(layer).__name__ for layer in expected]
    got = [kind for _, kind in info.children]
    assert info.type_name == "Sequential", f"{_net_text(kwargs)} should return an nn.Sequential, got {info.type_name}"
    assert got == want, f"{_net_text(kwargs)} has the layers {got}; expected {want}"
    want_params = {n: tuple(p.shape) for n, p in expected.named_parameters()}
    assert info.parameters == want_params, (
        f"{_net_text(kwargs)} has parameters {sorted(info.parameters.items())}; expected "
        f"{sorted(want_params.items())}: check the channels (3 -> 64 -> 32), the kernel size and the heads."
    )


def _net_call(kwargs: dict, seed: int) -> tuple[Call, dict, torch.Tensor]:
    w = reference_state(_reference_net(kwargs, False), seed, scale=0.05)
    x = seeded((2, 3, 32, 32), seed + 1)
    return Call(NET, kwargs=kwargs, inputs=(x,), state_dict=w, dtype=torch.float64), w, x


def _net_check(kwargs: dict, w: dict, x: torch.Tensor) -> Callable[[CallResult, bool], None]:
    def check(result: CallResult, with_stand_ins: bool) -> None:
        model = _reference_net(kwargs, with_stand_ins)
        model.load_state_dict(w)
        with torch.no_grad():
            want = model(x)
        assert_matches(result.output, want, what=f"{_net_text(kwargs)} scores for 2 images", atol=ATOL, rtol=RTOL)

    return check


@pytest.mark.part("attention_net")
@pytest.mark.points(1)
def test_net_layers(student):
    """attention 3 -> 64, ReLU, attention 64 -> 32, ReLU, Flatten, Linear(32*32*32, 10), kernel and heads passed on"""
    for kwargs in NET_CONFIGS:
        try:
            _check_net_structure(student.describe(NET, kwargs=kwargs), kwargs, False)
        except (AssertionError, StudentError) as own:
            if isinstance(own, StudentError) and own.kind is not Kind.STUDENT_ERROR:
                raise
            try:
                info = student.describe(NET, kwargs=kwargs, substitutes=STAND_INS)
            except StudentError:
                raise own from None
            _check_net_structure(info, kwargs, True)


@pytest.mark.part("attention_net")
@pytest.mark.points(2)
def test_net_forward(student):
    """with the reference weights the scores (N, 10) match the reference"""
    for i, kwargs in enumerate(NET_CONFIGS):
        call, w, x = _net_call(kwargs, 50 + 2 * i)
        own_or_stand_ins(student, call, STAND_INS, _net_check(kwargs, w, x))


@pytest.mark.part("attention_net")
@pytest.mark.points(0)
def test_net_with_your_own_attention(student):
    """diagnostic (no points): your network with your own LocalSelfAttention2d"""
    call, w, x = _net_call(NET_CONFIGS[0], 54)
    suspects = [(LOCAL, lambda: check_local(student, *HEADS[0], 55))]
    blame_earlier_part(student, call, _net_check(NET_CONFIGS[0], w, x), suspects, f"{NET}()")


# ----------------------------------------------------------------------------------------------------------
# Chunked attention
# ----------------------------------------------------------------------------------------------------------


def chunked_mistake(q, k, v, chunk_size, mask=None, mistake: str = "") -> torch.Tensor:
    """What a known mistake in the chunked loop returns (all rows have something to attend)."""
    T, D = k.shape[-2], q.shape[-1]
    if mistake == "masked_chunk":  # the NaN of a first chunk with nothing allowed, then set to 0 by the final where
        blind = ~mask[..., :chunk_size].any(dim=-1, keepdim=True)  # (..., S, 1)
        return ref.chunked_attention(q, k, v, chunk_size, mask).masked_fill(blind, 0.0)
    if mistake == "no_scale":  # scores q . k: the reference's scores of q * sqrt(D)
        return ref.chunked_attention(q * math.sqrt(D), k, v, chunk_size, mask)
    if mistake == "dropped_tail":  # only the keys of the whole chunks
        stop = T - T % chunk_size
        return ref.chunked_attention(q, k[..., :stop, :], v[..., :stop, :], chunk_size, _keys(mask, stop))
    scale = 1 / math.sqrt(D)
    out, normaliser = 0.0, 0.0
    for start in range(0, T, chunk_size):  # "no_rescale": every chunk against its own maximum, nothing rescaled
        scores = q @ k[..., start : start + chunk_size, :].transpose(-2, -1) * scale
        if mask is not None:
            scores = scores.masked_fill(~mask[..., start : start + chunk_size], float("-inf"))
        top = scores.amax(-1, keepdim=True)
        weights = torch.exp(scores - top.masked_fill(top == float("-inf"), 0.0))
        normaliser = normaliser + weights.sum(-1, keepdim=True)
        out = out + weights @ v[..., start : start + chunk_size, :]
    return out / normaliser


def _keys(mask: torch.Tensor | None, stop: int) -> torch.Tensor | None:
    return None if mask is None else mask[..., :stop]


def _chunk_call(q, k, v, chunk_size, mask=None, grad_outputs=None) -> Call:
    kwargs = {} if mask is None else {"mask": mask}
    return Call(
        CHUNKED,
        build=False,
        inputs=(q, k, v, chunk_size),
        input_kwargs=kwargs,
        forbidden=FORBIDDEN,
        grad_outputs=grad_outputs,
    )


def _checked(student, call: Call) -> CallResult:
    """Run ``call``; a call of the built-in attention fails the check."""
    result = student_call(student, call)
    if result.forbidden_used:
        raise GradingFailure(
            f"your code calls {', '.join(result.forbidden_used)}: the exercise is to compute attention "
            "yourself, one chunk of keys at a time (scores, running maximum, normaliser, weighted values). "
            "Built-ins may only appear in the checks and the measurements.",
            Kind.FORBIDDEN_CALL,
        )
    return result


def _qkv(batch: tuple[int, ...], S: int, T: int, D: int, Dv: int, seed: int, scale: float = 1.0):
    return (
        seeded((*batch, S, D), seed) * scale,
        seeded((*batch, T, D), seed + 1) * scale,
        seeded((*batch, T, Dv), seed + 2),
    )


def _nonfinite_message(out: object, mask: torch.Tensor | None, large: bool) -> str | None:
    """The message for NaN/Inf in the output: overflow (large scores), a fully masked chunk, a blocked row."""
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or torch.isfinite(out).all():
        return None
    if large:
        return CHUNK_MESSAGES["overflow"]
    if mask is None:
        return "the output has NaN or Inf values, although every score is small and every key may be attended."
    blocked = ~mask.bool().any(-1)  # (..., S): rows with nothing to attend
    bad_rows = ~torch.isfinite(out).all(-1)  # (..., S)
    bad_rows, blocked = torch.broadcast_tensors(bad_rows, blocked)
    if (bad_rows & ~blocked).any():
        return CHUNK_MESSAGES["masked_chunk"]
    return CHUNK_MESSAGES["blocked_row"]


def check_chunked(student, q, k, v, chunk_size, mask=None, *, what: str, large: bool = False) -> None:
    out = _checked(student, _chunk_call(q, k, v, chunk_size, mask)).output
    message = _nonfinite_message(out, mask, large)
    if message is not None:
        raise AssertionError(f"{what}: {message}")
    want = ref.chunked_attention(q, k, v, chunk_size, mask)
    mistakes = ["no_rescale", "dropped_tail", "no_scale"] + ([] if mask is None else ["masked_chunk"])
    assert_matches(
        out,
        want,
        what=what,
        atol=ATOL,
        rtol=RTOL,
        hints=[
            (lambda m=m: chunked_mistake(q, k, v, chunk_size, mask, m), CHUNK_MESSAGES[m])
            for m in mistakes
            if m != "dropped_tail" or k.shape[-2] % chunk_size
        ],
    )


@pytest.mark.part("chunked")
@pytest.mark.points(2)
def test_chunked_matches_attention(student):
    """equals softmax(q k^T / sqrt(D)) v for chunk sizes that divide T (1, 3, 4, T), batched, S != T, Dv != D"""
    q, k, v = _qkv((2, 3), 5, 12, 4, 6, 60)
    for chunk_size in (1, 3, 4, 12):
        check_chunked(student, q, k, v, chunk_size, what=f"{CHUNKED} with T = 12, chunk_size = {chunk_size}")


@pytest.mark.part("chunked")
@pytest.mark.points(1)
def test_chunked_uneven_chunks(student):
    """chunk sizes that do not divide T, and one larger than T"""
    q, k, v = _qkv((2,), 6, 11, 8, 8, 70)
    for chunk_size in (2, 5, 7, 20):
        check_chunked(student, q, k, v, chunk_size, what=f"{CHUNKED} with T = 11, chunk_size = {chunk_size}")


def _masks(S: int, T: int, seed: int) -> list[tuple[str, torch.Tensor]]:
    """A random mask; an anti-causal one (row i sees keys i.. T-1, so its first chunks are all masked); and one
    with a row that sees nothing."""
    random = torch.rand((S, T), generator=torch.Generator().manual_seed(seed)) > 0.4
    random[:, -1] = True
    late = torch.ones(S, T, dtype=torch.bool).triu(T - S)
    blocked = late.clone()
    blocked[1] = False
    return [
        ("a random mask", random),
        ("a mask whose first chunks hide every key of some rows", late),
        (
            "a mask with one row that sees nothing",
            blocked,
        ),
    ]


@pytest.mark.part("chunked")
@pytest.mark.points(2)
def test_chunked_masks(student):
    """with a mask (True = may attend): rows whose first chunks are all masked, and a row with nothing to attend"""
    q, k, v = _qkv((2,), 6, 10, 4, 4, 80)
    for name, mask in _masks(6, 10, 81):
        for chunk_size in (3, 4):
            check_chunked(student, q, k, v, chunk_size, mask, what=f"{CHUNKED} with {name}, chunk_size = {chunk_size}")
    batched = torch.stack([_masks(6, 10, 82)[0][1], _masks(6, 10, 83)[1][1]])[:, None]  # (2, 1, S, T)
    q, k, v = _qkv((2, 3), 6, 10, 4, 4, 84)
    check_chunked(student, q, k, v, 4, batched, what=f"{CHUNKED} with a mask of shape (2, 1, 6, 10)")


@pytest.mark.part("chunked")
@pytest.mark.points(1)
def test_chunked_large_scores(student):
    """scores in the thousands give the right output, without overflow (the running maximum)"""
    q, k, v = _qkv((2,), 4, 9, 8, 4, 90, scale=30.0)
    check_chunked(student, q, k, v, 4, what=f"{CHUNKED} with scores up to about 3000", large=True)


@pytest.mark.part("chunked")
@pytest.mark.points(1)
def test_chunked_gradients(student):
    """gradients with respect to q, k and v match the reference"""
    q, k, v = _qkv((2,), 5, 9, 4, 3, 100)
    g = seeded((2, 5, 3), 103)
    result = _checked(student, _chunk_call(q, k, v, 4, grad_outputs=g))
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    ref.chunked_attention(*leaves, 4).backward(g)
    assert_gradients_match(result, list(zip(("q", "k", "v"), leaves, strict=True)), atol=ATOL, rtol=RTOL)


# ----------------------------------------------------------------------------------------------------------
# Extension: shifted-window attention
# ----------------------------------------------------------------------------------------------------------

SWIN_MESSAGES = {
    "no_mask": (
        "with a shift, pixels that the roll brought together from opposite sides of the map attend to each "
        "other: inside a window, let a pixel attend only to pixels of the same region (block the others)."
    ),
    "no_roll_back": "the output is not rolled back: roll it by (+s, +s) after the attention.",
    "no_scale": "the 1/sqrt(D) scale of the scores is missing (D = C / num_heads).",
}


def _swin_inputs(N: int, side: tuple[int, int], C: int, G: int, m: int, seed: int) -> tuple:
    x = seeded((N, *side, C), seed)
    return (
        x,
        seeded((3 * C, C), seed + 1) * 0.5,
        seeded((3 * C,), seed + 2) * 0.5,
        seeded((C, C), seed + 3) * 0.5,
        seeded((C,), seed + 4) * 0.5,
        seeded((G, m * m, m * m), seed + 5),
    )


def _swin_mistake(tensors: tuple, m: int, s: int, G: int, mistake: str) -> torch.Tensor:
    x, qkv_w, qkv_b, proj_w, proj_b, bias = tensors
    if mistake == "no_scale":
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


def check_swin(student, N, side, C, G, m, s, seed) -> None:
    tensors = _swin_inputs(N, side, C, G, m, seed)
    result = student_call(student, Call(SWIN, build=False, inputs=(*tensors, m, s, G)))
    want = ref.swin_attention(*tensors, m, s, G)
    names = ["no_scale"] + (["no_mask", "no_roll_back"] if s else [])
    assert_matches(
        result.output,
        want,
        what=f"{SWIN} on x {(N, *side, C)}, window {m}, shift {s}, {G} heads",
        atol=ATOL,
        rtol=RTOL,
        hints=[(lambda n=n: _swin_mistake(tensors, m, s, G, n), SWIN_MESSAGES[n]) for n in names],
    )


@pytest.mark.part("swin")
@pytest.mark.points(1)
def test_swin_windows(student):
    """without a shift: attention inside each m x m window, with the position bias and the projections"""
    check_swin(student, 2, (4, 8), 8, 2, 4, 0, 110)
    check_swin(student, 1, (6, 4), 6, 3, 2, 0, 120)


@pytest.mark.part("swin")
@pytest.mark.points(1)
def test_swin_shifted_windows(student):
    """with a shift: the map rolled by (-s, -s), regions masked inside the windows, the output rolled back"""
    check_swin(student, 2, (8, 8), 8, 2, 4, 2, 130)
    check_swin(student, 1, (6, 4), 6, 3, 2, 1, 140)
