"""Hidden graders of notebook 4: the Vision Transformer.

Outputs and gradients are compared in float64 with the reference weights copied in, atol=1e-6, rtol=1e-5 (only
the order of floating-point operations differs). Models are small (images of 8 to 12 pixels, two layers) so
every part runs in about a second. The checkpoint part evaluates the trained model submitted with the notebook
(see :mod:`autograde.assignments.vision_transformer.checkpoint`).

Weighting (points follow how much of the concept a test proves): the forward passes weigh most (patch vectors 2,
encoder layer 2, ViT with mean and with class-token pooling 2 each), then the properties that show the idea (the
pre-norm identity 1, non-square images 1, gradients 1 each); contracts, shapes and size checks 1 each. The
pasted modules of notebooks 2 and 3 get 1 each here (their own notebooks grade them). The encoder layer and the
ViT are graded with the grader's stand-ins for the earlier parts when the student's own are wrong, so every
mistake costs its points once, in the part where it is made; 0-point diagnostics name the earlier part. The three
other positional encodings 1 each, the rollout 2, the multiple-choice question 1, the checkpoint 3 (2 for the
45% target, 1 for the 65% bonus tier).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from autograde.assignments.multi_head_attention import reference as mha_ref
from autograde.assignments.positional_encoding import reference as pe_ref
from autograde.assignments.vision_transformer import checkpoint as ckpt
from autograde.assignments.vision_transformer import reference as ref
from autograde.checks import (
    assert_gradients_match,
    blame_earlier_part,
    check_choice,
    own_or_stand_ins,
    reference_state,
    seeded,
    student_call,
)
from autograde.compare import assert_matches
from autograde.eval_data import EvaluationDataUnavailable
from autograde.results import GradingFailure, Kind, StudentError
from autograde.student import Call, CallResult, stand_ins, substituted

ATOL, RTOL = 1e-6, 1e-5
ANSWER_Q_COST = 3  # tokens x4 -> attention scores x16

# PatchEmbedding(img_size, patch_size, in_channels, embed_dim) and an input shape (N, C, H, W).
PATCH_CASES = [((8, 4, 3, 10), (2, 3, 8, 8)), ((6, 3, 2, 7), (1, 2, 6, 6)), ((4, 2, 3, 5), (3, 3, 4, 4))]
PATCH_NON_SQUARE = ((8, 4, 3, 10), (2, 3, 8, 12))
# TransformerEncoderLayer(embed_dim, num_heads, dim_feedforward) and an input shape (N, S, E).
LAYER_CASES = [((12, 3, 20), (2, 5, 12)), ((8, 2, 16), (1, 7, 8)), ((6, 1, 10), (3, 4, 6))]
# VisionTransformer keyword arguments (dropout is left at its default: the graders run in eval mode).
VIT_MEAN = dict(
    img_size=8,
    patch_size=4,
    in_channels=3,
    embed_dim=12,
    num_layers=2,
    num_heads=3,
    dim_feedforward=20,
    num_classes=5,
)
VIT_SMALL = dict(
    img_size=6,
    patch_size=2,
    in_channels=2,
    embed_dim=8,
    num_layers=1,
    num_heads=2,
    dim_feedforward=12,
    num_classes=4,
)
VIT_CLS = {**VIT_MEAN, "pool": "cls"}


# ----------------------------------------------------------------------------------------------------------
# Functional forms of the reference, with switches for the usual mistakes (eval mode: dropout is off).
# ----------------------------------------------------------------------------------------------------------


def _patches(x: torch.Tensor, p: int, mistake: str = "") -> torch.Tensor:
    """(N, C, H, W) -> (N, L, C*p*p) as the reference cuts it, or as a known mistake does."""
    N, C, H, W = x.shape
    if mistake == "view":
        return x.reshape(N, -1, C * p * p)
    grid = x.reshape(N, C, H // p, p, W // p, p)  # (N, C, h, p, w, p)
    order = {"": (0, 2, 4, 1, 3, 5), "channels_last": (0, 2, 4, 3, 5, 1), "column_major": (0, 4, 2, 1, 3, 5)}
    return grid.permute(*order[mistake]).reshape(N, (H // p) * (W // p), C * p * p)


def _layer(layer: ref.TransformerEncoderLayer, x: torch.Tensor, mistake: str = "") -> torch.Tensor:
    """The reference encoder layer, or a known mistake in it, on x (N, S, E)."""
    act = F.relu if mistake == "relu" else F.gelu

    def attn(h):
        return layer.self_attn(h, h, h)

    def mlp(h):
        return layer.mlp[3](act(layer.mlp[0](h)))

    if mistake == "post_norm":
        x = layer.norm1(x + attn(x))
        return layer.norm2(x + mlp(x))
    if mistake == "no_residual":
        return mlp(layer.norm2(attn(layer.norm1(x))))
    if mistake == "one_norm":
        x = x + attn(layer.norm1(x))
        return x + mlp(layer.norm1(x))
    x = x + attn(layer.norm1(x))
    return x + mlp(layer.norm2(x))


def _vit(model: ref.VisionTransformer, x: torch.Tensor, mistake: str = "") -> torch.Tensor:
    """The ViT ``model`` (its own parts, the reference's or the stand-ins), or a known mistake in how it composes
    them, on images x (N, C, H, W) -> (N, classes)."""
    tokens = model.patch_embed(x)  # (N, L, E)
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
    if model.pool == "mean" or mistake == "cls_mean":
        pooled = tokens.mean(dim=1)
    else:
        pooled = tokens[:, -1] if mistake == "cls_last" else tokens[:, 0]
    return model.head(pooled)


PATCH_HINTS = {
    "view": (
        "your patches are the rows of x.view(N, -1, C*p*p): that cuts the memory of each image into "
        "consecutive chunks (parts of one channel's rows), not p x p squares. Reshape to "
        "(N, C, H/p, p, W/p, p), permute to (N, H/p, W/p, C, p, p), then flatten."
    ),
    "channels_last": (
        "each patch is flattened in (p, p, C) order; the contract asks for (C, p, p), the order "
        "nn.Conv2d(C, E, p, stride=p) reads: permute to (N, H/p, W/p, C, p, p)."
    ),
    "column_major": (
        "the patches come in column-major order (down the first column first); number them "
        "row by row: (N, H/p, W/p, ...) before flattening, not (N, W/p, H/p, ...)."
    ),
}
LAYER_HINTS = {
    "post_norm": (
        "your layer is post-norm (x = norm(x + f(x))); this one is pre-norm: x = x + f(norm(x)), "
        "so the residual stream itself is never normalised."
    ),
    "relu": "the MLP uses ReLU; the ViT MLP uses GELU (nn.GELU()).",
    "no_residual": (
        "the residual connections are missing: add the input back, x = x + attention(...), then x = x + mlp(...)."
    ),
    "one_norm": "norm1 is used before the MLP too; the MLP branch has its own LayerNorm, norm2.",
}
VIT_HINTS = {
    "pe_twice": (
        "the positional encoding is added twice: self.positional_encoding(x) already returns x + pe "
        "(then dropout); do not add pe again."
    ),
    "no_pe": "the positional encoding is missing: pass the tokens through self.positional_encoding.",
    "no_final_norm": (
        "the final LayerNorm is missing: apply self.norm to the tokens after the last layer, before pooling."
    ),
}
CLS_HINTS = {
    "cls_mean": "with pool='cls' the head reads the class token, x[:, 0]; your model averages all tokens.",
    "cls_last": "the class token goes first: torch.cat([cls, patches], dim=1), and the head reads x[:, 0].",
    "cls_without_pe": (
        "prepend the class token before the positional encoding, so it gets position 0 and the patches positions 1..L."
    ),
}


# ----------------------------------------------------------------------------------------------------------
# Reused modules: the MultiHeadAttention and PositionalEncoding pasted from notebooks 2 and 3.
# ----------------------------------------------------------------------------------------------------------

REUSED_FIX = (
    "Fix it in its own notebook (whose checks name the mistake) and paste it here again. The encoder layer and "
    "the ViT are graded with the grader's stand-ins, so this mistake costs no points there."
)


@pytest.mark.part("reused")
@pytest.mark.points(1)
def test_reused_multi_head_attention(student):
    """the pasted MultiHeadAttention matches notebook 2's reference (self- and cross-attention)"""
    try:
        _reused_mha_check(student)
    except AssertionError as exc:
        raise AssertionError(f"{exc} {REUSED_FIX}") from None


def _reused_pe_check(student) -> None:
    """The pasted PositionalEncoding against notebook 3's reference (raises when it differs)."""
    info = student.describe("PositionalEncoding", (10,), {"dropout": 0.1, "max_len": 20})
    assert info.buffers.get("pe") == (1, 20, 10), (
        f"PositionalEncoding(10, max_len=20) has buffers {info.buffers}; expected pe of shape (1, 20, 10) "
        "(registered with register_buffer)."
    )
    assert not info.parameters, f"PositionalEncoding should have no parameters, found {list(info.parameters)}"
    x = seeded((2, 7, 10), 130)
    call = Call(
        "PositionalEncoding", args=(10,), kwargs={"dropout": 0.1, "max_len": 20}, inputs=(x,), dtype=torch.float64
    )
    out = student_call(student, call).output
    want = x + pe_ref.sinusoidal_1d(20, 10).double()[:7]
    assert_matches(out, want, what="PositionalEncoding on (2, 7, 10) in eval mode", atol=1e-6, rtol=1e-5)


@pytest.mark.part("reused")
@pytest.mark.points(1)
def test_reused_positional_encoding(student):
    """the pasted PositionalEncoding keeps the buffer pe (1, max_len, E) and adds it (notebook 3)"""
    try:
        _reused_pe_check(student)
    except AssertionError as exc:
        raise AssertionError(f"{exc} {REUSED_FIX}") from None


# ----------------------------------------------------------------------------------------------------------
# PatchEmbedding
# ----------------------------------------------------------------------------------------------------------


def _patch_run(student, args, shape, seed, *, grad=False):
    model = ref.PatchEmbedding(*args).double()
    w = reference_state(model, seed)
    x = seeded(shape, seed + 1)
    L = (shape[2] // args[1]) * (shape[3] // args[1])
    g = seeded((shape[0], L, args[3]), seed + 2) if grad else None
    result = student_call(
        student,
        Call("PatchEmbedding", args=args, inputs=(x,), state_dict=w, dtype=torch.float64, grad_outputs=g),
    )
    return model, w, x, g, result


def _check_patches(student, args, shape, seed):
    model, w, x, _, result = _patch_run(student, args, shape, seed)
    with torch.no_grad():
        want = model(x)
        hints = [(model.proj(_patches(x, args[1], m)), msg) for m, msg in PATCH_HINTS.items()]
    assert_matches(
        result.output, want, what=f"PatchEmbedding{args} on input {shape}", atol=ATOL, rtol=RTOL, hints=hints
    )


@pytest.mark.part("patch_embed")
@pytest.mark.points(1)
def test_patch_embedding_layers(student):
    """PatchEmbedding has proj = nn.Linear(C*p*p, E) and no other parameters"""
    for args, _ in PATCH_CASES[:2]:
        _, p, C, E = args
        info = student.describe("PatchEmbedding", args)
        want = {"proj.weight": (E, C * p * p), "proj.bias": (E,)}
        assert info.parameters == want, (
            f"PatchEmbedding{args} has parameters {info.parameters}; expected {want}: "
            f"proj = nn.Linear({C}*{p}*{p}, {E})"
        )


@pytest.mark.part("patch_embed")
@pytest.mark.points(2)
def test_patch_embedding_forward(student):
    """forward cuts p x p patches in row-major order, each flattened as (C, p, p), then projects them"""
    for i, (args, shape) in enumerate(PATCH_CASES):
        _check_patches(student, args, shape, seed=10 + 3 * i)


@pytest.mark.part("patch_embed")
@pytest.mark.points(1)
def test_patch_embedding_non_square(student):
    """forward handles a non-square input: (N, C, H, W) -> (N, (H/p)*(W/p), E)"""
    _check_patches(student, *PATCH_NON_SQUARE, seed=20)


@pytest.mark.part("patch_embed")
@pytest.mark.points(1)
def test_patch_embedding_rejects_indivisible_sizes(student):
    """a patch size that does not divide the image size raises a ValueError"""
    try:
        student.describe("PatchEmbedding", (30, 4))
    except StudentError as exc:
        if exc.kind is not Kind.STUDENT_ERROR:
            raise
        assert exc.raised("ValueError"), f"PatchEmbedding(30, 4) raised, but not a ValueError: {exc}"
        return
    try:
        student_call(student, Call("PatchEmbedding", args=(32, 4), inputs=(seeded((1, 3, 30, 30), 21).float(),)))
    except StudentError as exc:
        if exc.kind is not Kind.STUDENT_ERROR:
            raise
        assert exc.raised("ValueError"), f"a 30 x 30 input with patch_size 4 raised, but not a ValueError: {exc}"
        return
    raise AssertionError(
        "PatchEmbedding(30, 4) was built and a 30 x 30 image was cut into 4 x 4 patches without an error: "
        "raise a ValueError that says the patch size must divide the image size."
    )


@pytest.mark.part("patch_embed")
@pytest.mark.points(1)
def test_patch_embedding_gradients(student):
    """gradients with respect to the images and proj match the reference"""
    args, shape = PATCH_CASES[1]
    model, _, x, g, result = _patch_run(student, args, shape, 30, grad=True)
    xr = x.clone().requires_grad_(True)
    model(xr).backward(g)
    assert_gradients_match(result, [("the images", xr)], model, atol=ATOL, rtol=RTOL)


# ----------------------------------------------------------------------------------------------------------
# Stand-ins for the earlier parts. The encoder layer and the ViT are graded on their own: when the student's
# composition gives a wrong result with their own parts, it is checked again with these (simple modules with
# the contract's names and shapes, not the solutions), so an earlier part's mistake costs its own part only.
# ----------------------------------------------------------------------------------------------------------

STAND_IN_MHA = """
import torch
from torch import nn


class MultiHeadAttention(nn.Module):
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
"""
STAND_INS_LAYER = {"MultiHeadAttention": STAND_IN_MHA}
STAND_INS_VIT = {
    "PatchEmbedding": """
from torch import nn


class PatchEmbedding(nn.Module):
    def __init__(self, img_size, patch_size, in_channels=3, embed_dim=128):
        super().__init__()
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Linear(in_channels * patch_size * patch_size, embed_dim)

    def forward(self, x):
        N, C, H, W = x.shape
        return self.proj(x.reshape(N, -1, C * self.patch_size * self.patch_size))
""",
    "PositionalEncoding": """
import torch
from torch import nn


class PositionalEncoding(nn.Module):
    def __init__(self, embed_dim, dropout=0.1, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", torch.zeros(1, max_len, embed_dim))

    def forward(self, x):
        return self.dropout(x + self.pe[:, : x.shape[1]])
""",
    "sinusoidal_2d": """
import torch


def sinusoidal_2d(height, width, embed_dim):
    i = torch.arange(height * width, dtype=torch.float64)[:, None]
    j = torch.arange(embed_dim, dtype=torch.float64)
    return torch.cos(0.29 * i + 0.83 * j + 0.07 * i * j).to(torch.get_default_dtype())
""",
    "LearnedPositionalEmbedding": """
import torch
from torch import nn


class LearnedPositionalEmbedding(nn.Module):
    def __init__(self, num_positions, embed_dim):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, num_positions, embed_dim))

    def forward(self, x):
        return x + 0.5 * self.pos_embed[:, : x.shape[1]]
""",
    "TransformerEncoderLayer": STAND_IN_MHA
    + """

class TransformerEncoderLayer(nn.Module):
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
""",
}


def _with(stand_in_sources: dict[str, str], enabled: bool):
    """The reference modules built with the stand-ins (when ``enabled``) in place of the earlier parts."""
    return substituted(vars(ref), stand_ins(stand_in_sources)) if enabled else contextlib.nullcontext()


# ----------------------------------------------------------------------------------------------------------
# TransformerEncoderLayer
# ----------------------------------------------------------------------------------------------------------


def _layer_model(args, w, with_stand_ins: bool, **kwargs) -> torch.nn.Module:
    with _with(STAND_INS_LAYER, with_stand_ins):
        model = ref.TransformerEncoderLayer(*args, **kwargs).double().eval()
    model.load_state_dict(w)
    return model


def _layer_call(
    args, shape, seed, *, grad=False, weights=None, **kwargs
) -> tuple[Call, dict, torch.Tensor, torch.Tensor]:
    w = weights if weights is not None else reference_state(ref.TransformerEncoderLayer(*args).double(), seed)
    x = seeded(shape, seed + 1)
    g = seeded(shape, seed + 2) if grad else None
    call = Call(
        "TransformerEncoderLayer", args=args, inputs=(x,), state_dict=w, dtype=torch.float64, grad_outputs=g, **kwargs
    )
    return call, w, x, g


def _layer_forward_check(args, shape, w, x) -> Callable[[CallResult, bool], None]:
    def check(result: CallResult, with_stand_ins: bool) -> None:
        model = _layer_model(args, w, with_stand_ins)
        with torch.no_grad():
            want = model(x)
            hints = [(_layer(model, x, m), msg) for m, msg in LAYER_HINTS.items()]
        assert_matches(
            result.output, want, what=f"TransformerEncoderLayer{args} on {shape}", atol=ATOL, rtol=RTOL, hints=hints
        )

    return check


def _assert_children(info, owner: str, **want: str) -> None:
    """Check that ``owner``'s module has each attribute of ``want`` (attribute -> class name) as a direct child."""
    children = dict(info.children)
    for name, kind in want.items():
        assert children.get(name) == kind, (
            f"{owner} needs an attribute `{name}` = {kind}(...); found {children.get(name)}"
        )
    return children


def _check_layer_structure(info, E, H, F_) -> None:
    _assert_children(
        info,
        "TransformerEncoderLayer",
        norm1="LayerNorm",
        self_attn="MultiHeadAttention",
        norm2="LayerNorm",
        mlp="Sequential",
        dropout="Dropout",
    )
    assert "GELU" in info.text and "ReLU" not in info.text, (
        "the MLP should be Linear - GELU - Dropout - Linear (the ViT MLP uses GELU, not ReLU)"
    )
    want_params = {n: tuple(p.shape) for n, p in ref.TransformerEncoderLayer(E, H, F_).named_parameters()}
    assert info.parameters == want_params, (
        f"TransformerEncoderLayer({E}, {H}, {F_}) has parameters {sorted(info.parameters.items())}; expected "
        f"{sorted(want_params.items())}"
    )


def _own_or_stand_in_structure(student, target: str, args, kwargs, stand_in_sources, check) -> None:
    """``check(info)`` on the student's module, else on it built with the stand-ins for its earlier parts."""
    try:
        check(student.describe(target, args, kwargs))
    except (AssertionError, StudentError) as own:
        if isinstance(own, StudentError) and own.kind is not Kind.STUDENT_ERROR:
            raise
        try:
            info = student.describe(target, args, kwargs, substitutes=stand_in_sources)
        except StudentError:
            raise own from None
        check(info)


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_structure(student):
    """the layer has norm1, self_attn, norm2, mlp (Linear, GELU, Dropout, Linear) and dropout"""
    E, H, F_ = LAYER_CASES[0][0]
    _own_or_stand_in_structure(
        student,
        "TransformerEncoderLayer",
        (E, H, F_),
        {},
        STAND_INS_LAYER,
        lambda info: _check_layer_structure(info, E, H, F_),
    )


@pytest.mark.part("encoder_layer")
@pytest.mark.points(2)
def test_encoder_layer_forward(student):
    """forward matches the pre-norm reference (several shapes, one head, E/H not a power of two)"""
    for i, (args, shape) in enumerate(LAYER_CASES):
        call, w, x, _ = _layer_call(args, shape, 40 + 3 * i)
        own_or_stand_ins(student, call, STAND_INS_LAYER, _layer_forward_check(args, shape, w, x))


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_is_pre_norm(student):
    """with both branches' output layers zeroed the layer is the identity (pre-norm residual stream)"""
    args, shape = LAYER_CASES[0]
    w = reference_state(ref.TransformerEncoderLayer(*args).double(), 50)
    for name in ("self_attn.proj.weight", "self_attn.proj.bias", "mlp.3.weight", "mlp.3.bias"):
        w[name] = torch.zeros_like(w[name])
    call, _, x, _ = _layer_call(args, shape, 50, weights=w)

    def check(result: CallResult, with_stand_ins: bool) -> None:
        model = _layer_model(args, w, with_stand_ins)
        assert_matches(
            result.output,
            x,
            what="the layer with zero output projections",
            atol=ATOL,
            rtol=RTOL,
            hints=[(_layer(model, x, "post_norm").detach(), LAYER_HINTS["post_norm"])],
        )

    own_or_stand_ins(student, call, STAND_INS_LAYER, check)


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_gradients(student):
    """gradients with respect to the input and every weight match the reference"""
    args, shape = LAYER_CASES[1]
    call, w, x, g = _layer_call(args, shape, 60, grad=True)

    def check(result: CallResult, with_stand_ins: bool) -> None:
        model = _layer_model(args, w, with_stand_ins)
        xr = x.clone().requires_grad_(True)
        model(xr).backward(g)
        assert_gradients_match(result, [("the input", xr)], model, on=str(shape), atol=ATOL, rtol=RTOL)

    own_or_stand_ins(student, call, STAND_INS_LAYER, check)


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_dropout(student):
    """eval mode is deterministic; train mode applies dropout"""
    args, shape = LAYER_CASES[0]
    call, w, x, _ = _layer_call(args, shape, 70, kwargs={"dropout": 0.5})

    def check(result: CallResult, with_stand_ins: bool) -> None:
        def run(train, seed):
            again = replace(call, train=train, seed=seed, substitutes=STAND_INS_LAYER if with_stand_ins else {})
            return student_call(student, again).output

        assert torch.equal(result.output, run(False, 1)), "two calls in eval mode gave different outputs"
        assert not torch.allclose(run(True, 0), result.output), (
            "with dropout=0.5 the output in train mode equals the output in eval mode: pass dropout to the "
            "attention and use self.dropout on both branches"
        )

    own_or_stand_ins(student, call, STAND_INS_LAYER, check)


def _reused_mha_check(student) -> None:
    """The pasted MultiHeadAttention against notebook 2's reference (raises when it differs)."""
    for i, (E, H, S, T) in enumerate([(12, 3, 5, 5), (8, 2, 3, 6)]):
        model = mha_ref.MultiHeadAttention(E, H).double().eval()
        w = reference_state(model, 100 + i)
        q, kv = seeded((2, S, E), 110 + i), seeded((2, T, E), 120 + i)
        result = student_call(
            student, Call("MultiHeadAttention", args=(E, H), inputs=(q, kv, kv), state_dict=w, dtype=torch.float64)
        )
        with torch.no_grad():
            want = model(q, kv, kv)
        what = f"MultiHeadAttention({E}, {H}) on query {(2, S, E)} and key/value {(2, T, E)}"
        assert_matches(result.output, want, what=what, atol=ATOL, rtol=RTOL)


@pytest.mark.part("encoder_layer")
@pytest.mark.points(0)
def test_encoder_layer_with_your_own_attention(student):
    """diagnostic (no points): your TransformerEncoderLayer with your own MultiHeadAttention"""
    args, shape = LAYER_CASES[0]
    call, w, x, _ = _layer_call(args, shape, 75)
    suspects = [("MultiHeadAttention", lambda: _reused_mha_check(student))]
    blame_earlier_part(student, call, _layer_forward_check(args, shape, w, x), suspects, "TransformerEncoderLayer")


# ----------------------------------------------------------------------------------------------------------
# VisionTransformer
# ----------------------------------------------------------------------------------------------------------


def _pe_length(student, kwargs: dict) -> int | None:
    """The length of the student's positional table (any max_len >= tokens works), when it has one."""
    try:
        pe_shape = student.describe("VisionTransformer", kwargs=kwargs).buffers.get("positional_encoding.pe")
    except StudentError:
        try:
            info = student.describe("VisionTransformer", kwargs=kwargs, substitutes=STAND_INS_VIT)
        except StudentError:
            return None
        pe_shape = info.buffers.get("positional_encoding.pe")
    return pe_shape[1] if pe_shape is not None and len(pe_shape) == 3 else None


def _vit_model(kwargs: dict, w: dict, pe_length: int | None, with_stand_ins: bool) -> ref.VisionTransformer:
    with _with(STAND_INS_VIT, with_stand_ins):
        model = ref.VisionTransformer(**kwargs).double()
        if pe_length is not None and pe_length >= model.positional_encoding.pe.shape[1]:
            model.positional_encoding = ref.PositionalEncoding(kwargs["embed_dim"], max_len=pe_length).double()
    model.load_state_dict(w)
    return model.eval()


def _vit_call(student, kwargs, seed, *, grad=False, n=2):
    """The call, the weights (the reference's, ``pe`` as long as the student's), x, g and the pe length."""
    pe_length = _pe_length(student, kwargs)
    model = _vit_model(kwargs, reference_state(ref.VisionTransformer(**kwargs).double(), 0), None, False)
    if pe_length is not None and pe_length >= model.positional_encoding.pe.shape[1]:
        model.positional_encoding = pe_ref.PositionalEncoding(kwargs["embed_dim"], max_len=pe_length).double()
    w = reference_state(model, seed)
    size, C = kwargs["img_size"], kwargs["in_channels"]
    x = seeded((n, C, size, size), seed + 1)
    g = seeded((n, kwargs["num_classes"]), seed + 2) if grad else None
    call = Call("VisionTransformer", kwargs=kwargs, inputs=(x,), state_dict=w, dtype=torch.float64, grad_outputs=g)
    return call, w, x, g, pe_length


def _vit_check(kwargs, w, x, pe_length, hints: dict[str, str]) -> Callable[[CallResult, bool], None]:
    def check(result: CallResult, with_stand_ins: bool) -> None:
        model = _vit_model(kwargs, w, pe_length, with_stand_ins)
        with torch.no_grad():
            want = model(x)
            alternatives = [(_vit(model, x, m), msg) for m, msg in hints.items()]
        assert_matches(
            result.output,
            want,
            what=f"VisionTransformer({_kwargs(kwargs)}) scores",
            atol=ATOL,
            rtol=RTOL,
            hints=alternatives,
        )

    return check


def _check_vit(student, kwargs, seed, hints: dict[str, str]):
    call, w, x, _, pe_length = _vit_call(student, kwargs, seed)
    own_or_stand_ins(student, call, STAND_INS_VIT, _vit_check(kwargs, w, x, pe_length, hints))


def _kwargs(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _check_vit_structure(info, kwargs) -> None:
    _assert_children(
        info,
        "VisionTransformer",
        patch_embed="PatchEmbedding",
        positional_encoding="PositionalEncoding",
        layers="ModuleList",
        norm="LayerNorm",
        head="Linear",
    )
    want_params = {n: tuple(p.shape) for n, p in ref.VisionTransformer(**kwargs).named_parameters()}
    missing = sorted(want_params.keys() - info.parameters.keys())
    unexpected = sorted(info.parameters.keys() - want_params.keys())
    resized = sorted(k for k in want_params.keys() & info.parameters.keys() if want_params[k] != info.parameters[k])
    assert not (missing or unexpected or resized), (
        f"VisionTransformer({_kwargs(kwargs)}): missing parameters {missing}, unexpected {unexpected}, "
        f"wrong shapes {resized}"
        + (
            " (cls_token is a parameter of shape (1, 1, embed_dim), only with pool='cls')"
            if any("cls" in k for k in missing + unexpected)
            else ""
        )
    )


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_vit_structure(student):
    """the model has patch_embed, positional_encoding, layers, norm, head; cls_token only with pool='cls'"""
    for kwargs in (VIT_MEAN, VIT_CLS):
        _own_or_stand_in_structure(
            student,
            "VisionTransformer",
            (),
            kwargs,
            STAND_INS_VIT,
            lambda info, kwargs=kwargs: _check_vit_structure(info, kwargs),
        )


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_vit_output_shape(student):
    """forward maps (N, C, H, W) to scores (N, num_classes)"""
    for kwargs in (VIT_MEAN, VIT_SMALL, VIT_CLS):
        x = seeded((3, kwargs["in_channels"], kwargs["img_size"], kwargs["img_size"]), 80).float()

        def check(result: CallResult, _: bool, kwargs=kwargs) -> None:
            out = result.output
            want = (3, kwargs["num_classes"])
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            assert got == want, f"VisionTransformer({_kwargs(kwargs)}) gave {got} for 3 images; expected {want}"

        own_or_stand_ins(student, Call("VisionTransformer", kwargs=kwargs, inputs=(x,)), STAND_INS_VIT, check)


@pytest.mark.part("vit")
@pytest.mark.points(2)
def test_vit_forward_mean_pool(student):
    """with pool='mean' the scores match the reference (patches, + positions, layers, final norm, mean)"""
    for i, kwargs in enumerate((VIT_MEAN, VIT_SMALL)):
        _check_vit(student, kwargs, 90 + 3 * i, VIT_HINTS)


@pytest.mark.part("vit")
@pytest.mark.points(2)
def test_vit_forward_cls_pool(student):
    """with pool='cls' the class token is prepended, encoded at position 0 and read by the head"""
    _check_vit(student, VIT_CLS, 100, {**CLS_HINTS, **VIT_HINTS})


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_vit_gradients(student):
    """gradients with respect to the images and every weight match the reference (pool='cls')"""
    call, w, x, g, pe_length = _vit_call(student, VIT_CLS, 110, grad=True)

    def check(result: CallResult, with_stand_ins: bool) -> None:
        model = _vit_model(VIT_CLS, w, pe_length, with_stand_ins)
        xr = x.clone().requires_grad_(True)
        model(xr).backward(g)
        assert_gradients_match(result, [("the images", xr)], model, atol=ATOL, rtol=RTOL)

    own_or_stand_ins(student, call, STAND_INS_VIT, check)


POSITIONAL_MODULES = {"sin2d": "PositionalEncoding", "learned": "LearnedPositionalEmbedding", "none": "Identity"}


@pytest.mark.part("vit")
@pytest.mark.points(1)
@pytest.mark.parametrize("kind", list(POSITIONAL_MODULES))
def test_vit_positional_encoding_choices(student, kind):
    """pos_encoding='sin2d', 'learned' or 'none' builds that encoding (the forward pass is graded with 'sin1d')"""
    kwargs = {**VIT_CLS, "pos_encoding": kind}

    def structure(info) -> None:
        got = dict(info.children).get("positional_encoding")
        assert got == POSITIONAL_MODULES[kind], (
            f"with pos_encoding={kind!r}, positional_encoding should be a {POSITIONAL_MODULES[kind]}; found {got}"
        )

    _own_or_stand_in_structure(student, "VisionTransformer", (), kwargs, STAND_INS_VIT, structure)
    if kind == "none":
        return
    attr = {"sin2d": "positional_encoding.pe", "learned": "positional_encoding.pos_embed"}[kind]

    def table(result: CallResult, with_stand_ins: bool) -> None:
        with _with(STAND_INS_VIT, with_stand_ins):
            want = getattr(ref.VisionTransformer(**kwargs).positional_encoding, attr.split(".")[1]).double()
        got = result.attrs.get(attr)
        if kind == "learned":  # random at initialisation: only its shape is fixed
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            assert shape == tuple(want.shape), (
                f"pos_embed should have the shape (1, number of tokens with the class token, E) = "
                f"{tuple(want.shape)}; found {shape}"
            )
            return
        assert_matches(
            got.double() if isinstance(got, torch.Tensor) else got,
            want,
            what="the 2D positional table (zeros for the class token, then the patches row by row)",
            atol=1e-5,
            rtol=0,
        )

    x = seeded((1, 3, 8, 8), 130).float()
    call = Call("VisionTransformer", kwargs=kwargs, inputs=(x,), attrs=(attr,))
    own_or_stand_ins(student, call, STAND_INS_VIT, table)


@pytest.mark.part("vit")
@pytest.mark.points(0)
def test_vit_with_your_own_parts(student):
    """diagnostic (no points): your VisionTransformer with your own PatchEmbedding, encoding and layers"""
    call, w, x, _, pe_length = _vit_call(student, VIT_MEAN, 120)
    args, shape = LAYER_CASES[0]
    layer_call, lw, lx, _ = _layer_call(args, shape, 121)
    suspects = [
        ("PatchEmbedding", lambda: _check_patches(student, *PATCH_CASES[0], seed=122)),
        ("PositionalEncoding", lambda: _reused_pe_check(student)),
        (
            "TransformerEncoderLayer",
            lambda: _layer_forward_check(args, shape, lw, lx)(student_call(student, layer_call), False),
        ),
        ("MultiHeadAttention", lambda: _reused_mha_check(student)),
    ]
    blame_earlier_part(student, call, _vit_check(VIT_MEAN, w, x, pe_length, {}), suspects, "VisionTransformer")


# ----------------------------------------------------------------------------------------------------------
# Attention rollout
# ----------------------------------------------------------------------------------------------------------


def _attention(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.softmax(seeded(shape, seed), dim=-1)


def _rollout_mistakes(weights: list[torch.Tensor]) -> list[tuple[torch.Tensor, str]]:
    T = weights[0].shape[-1]
    eye = torch.eye(T, dtype=weights[0].dtype)

    def product(mats, reverse=False):
        out = eye.expand_as(mats[0])
        for a in mats:
            out = out @ a if reverse else a @ out
        return out

    mixed = [0.5 * (w.mean(1) + eye) for w in weights]
    return [
        (
            product(mixed, reverse=True),
            "the layers are multiplied in the wrong order: the last layer's matrix "
            "goes on the left, R = A_L ... A_2 A_1.",
        ),
        (
            product([w.mean(1) for w in weights]),
            "the residual connection is missing: use 0.5 * (A + I) for each layer, not A alone.",
        ),
        (
            product([w.mean(1) + eye for w in weights]),
            "A + I is not renormalised: its rows sum to 2; use 0.5 * (A + I).",
        ),
        (
            product([0.5 * (w.max(1).values + eye) for w in weights]),
            "the heads are combined with max; average them (mean over dim=1).",
        ),
    ]


def _check_rollout(student, shapes: list[tuple[int, ...]], seed: int):
    weights = [_attention(shape, seed + i) for i, shape in enumerate(shapes)]
    result = student_call(student, Call("attention_rollout", build=False, inputs=(weights,)))
    want = ref.attention_rollout(weights)
    assert_matches(
        result.output,
        want,
        what=f"attention_rollout of {len(weights)} layer(s) {shapes[0]}",
        atol=ATOL,
        rtol=RTOL,
        hints=_rollout_mistakes(weights),
    )


@pytest.mark.part("rollout")
@pytest.mark.points(1)
def test_rollout_one_layer(student):
    """for one layer the rollout is 0.5 * (mean over heads + I)"""
    _check_rollout(student, [(2, 3, 5, 5)], 140)


@pytest.mark.part("rollout")
@pytest.mark.points(1)
def test_rollout_layers(student):
    """over several layers the rollout multiplies them, last layer on the left"""
    _check_rollout(student, [(2, 4, 6, 6)] * 3, 150)


# ----------------------------------------------------------------------------------------------------------
# Inline question on cost (multiple choice)
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.part("q_cost")
@pytest.mark.points(1)
def test_inline_question_cost(student):
    """Inline Question: how the attention cost grows when the patch size halves"""
    check_choice(student, "answer_q_cost", ANSWER_Q_COST, "count the tokens, then the entries of T x T")


# ----------------------------------------------------------------------------------------------------------
# The trained checkpoint
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluation(student, submission_dir, resources) -> ckpt.CheckpointEvaluation:
    try:
        return ckpt.evaluate_submission(student, submission_dir, resources)
    except ckpt.CheckpointUnavailable as exc:
        raise GradingFailure(str(exc), Kind.MISSING_FILE) from None
    except EvaluationDataUnavailable as exc:
        raise GradingFailure(str(exc), Kind.GRADER_ERROR) from None


@pytest.mark.part("checkpoint")
@pytest.mark.points(2)
def test_checkpoint_reaches_the_target(evaluation):
    """your trained checkpoint reaches the target accuracy on the evaluation images (45%)"""
    ckpt.check_tier(evaluation, ckpt.TARGET_ACCURACY)


@pytest.mark.part("checkpoint")
@pytest.mark.points(1)
def test_checkpoint_reaches_the_bonus_tier(evaluation):
    """bonus: your trained checkpoint reaches 65% on the evaluation images"""
    ckpt.check_tier(evaluation, ckpt.BONUS_ACCURACY)
