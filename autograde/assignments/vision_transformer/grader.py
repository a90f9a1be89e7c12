"""Hidden graders of notebook 4: the Vision Transformer.

Outputs and gradients are compared in float64 with the reference weights copied in, atol=1e-6, rtol=1e-5 (only
the order of floating-point operations differs). Models are small (images of 8 to 12 pixels, two layers) so
every part runs in about a second. The checkpoint part evaluates the trained model submitted with the notebook
(see :mod:`autograde.checkpoint_grading`).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autograde.assignments.multi_head_attention import reference as mha_ref
from autograde.assignments.positional_encoding import reference as pe_ref
from autograde.assignments.vision_transformer import checkpoint as ckpt
from autograde.assignments.vision_transformer import reference as ref
from autograde.checks import assert_gradients_match, check_choice, reference_state, seeded, student_call
from autograde.compare import assert_matches
from autograde.eval_data import EvaluationDataUnavailable
from autograde.results import GradingFailure, Kind, StudentError
from autograde.student import Call

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
    """The reference ViT, or a known mistake in it, on images x (N, C, H, W) -> (N, classes)."""
    p = model.patch_embed.patch_size
    tokens = model.patch_embed.proj(_patches(x, p, "view" if mistake == "view" else ""))  # (N, L, E)
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
        tokens = _layer(layer, tokens, mistake)
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
        "the residual connections are missing: add the input back, x = x + attention(...), then "
        "x = x + mlp(...)."
    ),
    "one_norm": "norm1 is used before the MLP too; the MLP branch has its own LayerNorm, norm2.",
}
VIT_HINTS = {
    "view": "the patches are cut with x.view(N, -1, C*p*p): fix PatchEmbedding first (its test says how).",
    "pe_twice": (
        "the positional encoding is added twice: self.positional_encoding(x) already returns x + pe "
        "(then dropout); do not add pe again."
    ),
    "no_pe": "the positional encoding is missing: pass the tokens through self.positional_encoding.",
    "no_final_norm": (
        "the final LayerNorm is missing: apply self.norm to the tokens after the last layer, before pooling."
    ),
    "relu": "the encoder layers' MLP uses ReLU instead of GELU (see TransformerEncoderLayer).",
    "post_norm": "the encoder layers are post-norm; fix TransformerEncoderLayer first (pre-norm).",
}
CLS_HINTS = {
    "cls_mean": "with pool='cls' the head reads the class token, x[:, 0]; your model averages all tokens.",
    "cls_last": "the class token goes first: torch.cat([cls, patches], dim=1), and the head reads x[:, 0].",
    "cls_without_pe": (
        "prepend the class token before the positional encoding, so it gets position 0 and the "
        "patches positions 1..L."
    ),
}


# ----------------------------------------------------------------------------------------------------------
# Reused modules: the MultiHeadAttention and PositionalEncoding pasted from notebooks 2 and 3.
# ----------------------------------------------------------------------------------------------------------

REUSED_FIX = (
    "The encoder layer and the ViT below are built on it: fix it in its own notebook (whose checks "
    "name the mistake) and paste it here again."
)


@pytest.mark.part("reused")
@pytest.mark.points(1)
def test_reused_multi_head_attention(student):
    """the pasted MultiHeadAttention matches notebook 2's reference (self- and cross-attention)"""
    for i, (E, H, S, T) in enumerate([(12, 3, 5, 5), (8, 2, 3, 6)]):
        model = mha_ref.MultiHeadAttention(E, H).double().eval()
        w = reference_state(model, 100 + i)
        q, kv = seeded((2, S, E), 110 + i), seeded((2, T, E), 120 + i)
        result = student_call(
            student,
            Call("MultiHeadAttention", args=(E, H), inputs=(q, kv, kv), state_dict=w, dtype=torch.float64),
        )
        with torch.no_grad():
            want = model(q, kv, kv)
        try:
            assert_matches(
                result.output,
                want,
                what=f"MultiHeadAttention({E}, {H}) on query {(2, S, E)} and key/value {(2, T, E)}",
                atol=ATOL,
                rtol=RTOL,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc} {REUSED_FIX}") from None


@pytest.mark.part("reused")
@pytest.mark.points(1)
def test_reused_positional_encoding(student):
    """the pasted PositionalEncoding keeps the buffer pe (1, max_len, E) and adds it (notebook 3)"""
    info = student.describe("PositionalEncoding", (10,), {"dropout": 0.1, "max_len": 20})
    assert info.buffers.get("pe") == (1, 20, 10), (
        f"PositionalEncoding(10, max_len=20) has buffers {info.buffers}; expected pe of shape (1, 20, 10) "
        f"(registered with register_buffer). {REUSED_FIX}"
    )
    assert not info.parameters, f"PositionalEncoding should have no parameters, found {list(info.parameters)}"
    x = seeded((2, 7, 10), 130)
    out = student_call(
        student,
        Call(
            "PositionalEncoding",
            args=(10,),
            kwargs={"dropout": 0.1, "max_len": 20},
            inputs=(x,),
            dtype=torch.float64,
        ),
    ).output
    want = x + pe_ref.sinusoidal_1d(20, 10).double()[:7]
    try:
        assert_matches(out, want, what="PositionalEncoding on (2, 7, 10) in eval mode", atol=1e-6, rtol=1e-5)
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
        student_call(
            student, Call("PatchEmbedding", args=(32, 4), inputs=(seeded((1, 3, 30, 30), 21).float(),))
        )
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
# TransformerEncoderLayer
# ----------------------------------------------------------------------------------------------------------


def _layer_run(student, args, shape, seed, *, grad=False, weights=None):
    model = ref.TransformerEncoderLayer(*args).double().eval()
    w = weights if weights is not None else reference_state(model, seed)
    model.load_state_dict(w)
    x = seeded(shape, seed + 1)
    g = seeded(shape, seed + 2) if grad else None
    result = student_call(
        student,
        Call(
            "TransformerEncoderLayer",
            args=args,
            inputs=(x,),
            state_dict=w,
            dtype=torch.float64,
            grad_outputs=g,
        ),
    )
    return model, x, g, result


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_structure(student):
    """the layer has norm1, self_attn, norm2, mlp (Linear, GELU, Dropout, Linear) and dropout"""
    E, H, F_ = LAYER_CASES[0][0]
    info = student.describe("TransformerEncoderLayer", (E, H, F_))
    children = dict(info.children)
    want = {
        "norm1": "LayerNorm",
        "self_attn": "MultiHeadAttention",
        "norm2": "LayerNorm",
        "mlp": "Sequential",
        "dropout": "Dropout",
    }
    for name, kind in want.items():
        assert children.get(name) == kind, (
            f"TransformerEncoderLayer needs an attribute `{name}` = {kind}(...); found {children.get(name)}"
        )
    assert "GELU" in info.text and "ReLU" not in info.text, (
        "the MLP should be Linear - GELU - Dropout - Linear (the ViT MLP uses GELU, not ReLU)"
    )
    want_params = {n: tuple(p.shape) for n, p in ref.TransformerEncoderLayer(E, H, F_).named_parameters()}
    assert info.parameters == want_params, (
        f"TransformerEncoderLayer({E}, {H}, {F_}) has parameters {sorted(info.parameters.items())}; expected "
        f"{sorted(want_params.items())}"
    )


@pytest.mark.part("encoder_layer")
@pytest.mark.points(2)
def test_encoder_layer_forward(student):
    """forward matches the pre-norm reference (several shapes, one head, E/H not a power of two)"""
    for i, (args, shape) in enumerate(LAYER_CASES):
        model, x, _, result = _layer_run(student, args, shape, seed=40 + 3 * i)
        with torch.no_grad():
            want = model(x)
            hints = [(_layer(model, x, m), msg) for m, msg in LAYER_HINTS.items()]
        assert_matches(
            result.output,
            want,
            what=f"TransformerEncoderLayer{args} on {shape}",
            atol=ATOL,
            rtol=RTOL,
            hints=hints,
        )


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_is_pre_norm(student):
    """with both branches' output layers zeroed the layer is the identity (pre-norm residual stream)"""
    args, shape = LAYER_CASES[0]
    w = reference_state(ref.TransformerEncoderLayer(*args).double(), 50)
    for name in ("self_attn.proj.weight", "self_attn.proj.bias", "mlp.3.weight", "mlp.3.bias"):
        w[name] = torch.zeros_like(w[name])
    model, x, _, result = _layer_run(student, args, shape, 50, weights=w)
    assert_matches(
        result.output,
        x,
        what="the layer with zero output projections",
        atol=ATOL,
        rtol=RTOL,
        hints=[(_layer(model, x, "post_norm").detach(), LAYER_HINTS["post_norm"])],
    )


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_gradients(student):
    """gradients with respect to the input and every weight match the reference"""
    args, shape = LAYER_CASES[1]
    model, x, g, result = _layer_run(student, args, shape, 60, grad=True)
    xr = x.clone().requires_grad_(True)
    model(xr).backward(g)
    assert_gradients_match(result, [("the input", xr)], model, on=str(shape), atol=ATOL, rtol=RTOL)


@pytest.mark.part("encoder_layer")
@pytest.mark.points(1)
def test_encoder_layer_dropout(student):
    """eval mode is deterministic; train mode applies dropout"""
    args, shape = LAYER_CASES[0]
    model = ref.TransformerEncoderLayer(*args).double()
    w = reference_state(model, 70)
    x = seeded(shape, 71)

    def run(train, seed):
        return student_call(
            student,
            Call(
                "TransformerEncoderLayer",
                args=args,
                kwargs={"dropout": 0.5},
                inputs=(x,),
                state_dict=w,
                dtype=torch.float64,
                train=train,
                seed=seed,
            ),
        ).output

    assert torch.equal(run(False, 0), run(False, 1)), "two calls in eval mode gave different outputs"
    assert not torch.allclose(run(True, 0), run(False, 0)), (
        "with dropout=0.5 the output in train mode equals the output in eval mode: pass dropout to the "
        "attention and use self.dropout on both branches"
    )


# ----------------------------------------------------------------------------------------------------------
# VisionTransformer
# ----------------------------------------------------------------------------------------------------------


def _vit_reference(student, kwargs: dict, seed: int) -> tuple[ref.VisionTransformer, dict[str, torch.Tensor]]:
    """The reference model and its weights, ``pe`` as long as the student's (any max_len >= tokens works)."""
    model = ref.VisionTransformer(**kwargs).double()
    pe_shape = student.describe("VisionTransformer", kwargs=kwargs).buffers.get("positional_encoding.pe")
    if pe_shape is not None and len(pe_shape) == 3 and pe_shape[1] >= model.positional_encoding.pe.shape[1]:
        model.positional_encoding = pe_ref.PositionalEncoding(
            kwargs["embed_dim"], max_len=pe_shape[1]
        ).double()
    return model, reference_state(model, seed)


def _vit_run(student, kwargs, seed, *, grad=False, n=2):
    model, w = _vit_reference(student, kwargs, seed)
    model.load_state_dict(w)
    model.eval()
    size, C = kwargs["img_size"], kwargs["in_channels"]
    x = seeded((n, C, size, size), seed + 1)
    g = seeded((n, kwargs["num_classes"]), seed + 2) if grad else None
    result = student_call(
        student,
        Call(
            "VisionTransformer", kwargs=kwargs, inputs=(x,), state_dict=w, dtype=torch.float64, grad_outputs=g
        ),
    )
    return model, x, g, result


def _check_vit(student, kwargs, seed, hints: dict[str, str]):
    model, x, _, result = _vit_run(student, kwargs, seed)
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


def _kwargs(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_vit_structure(student):
    """the model has patch_embed, positional_encoding, layers, norm, head; cls_token only with pool='cls'"""
    for kwargs in (VIT_MEAN, VIT_CLS):
        info = student.describe("VisionTransformer", kwargs=kwargs)
        children = dict(info.children)
        want = {
            "patch_embed": "PatchEmbedding",
            "positional_encoding": "PositionalEncoding",
            "layers": "ModuleList",
            "norm": "LayerNorm",
            "head": "Linear",
        }
        for name, kind in want.items():
            assert children.get(name) == kind, (
                f"VisionTransformer needs an attribute `{name}` = {kind}(...); found {children.get(name)}"
            )
        want_params = {n: tuple(p.shape) for n, p in ref.VisionTransformer(**kwargs).named_parameters()}
        missing = sorted(want_params.keys() - info.parameters.keys())
        unexpected = sorted(info.parameters.keys() - want_params.keys())
        resized = sorted(
            k for k in want_params.keys() & info.parameters.keys() if want_params[k] != info.parameters[k]
        )
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
def test_vit_output_shape(student):
    """forward maps (N, C, H, W) to scores (N, num_classes)"""
    for kwargs in (VIT_MEAN, VIT_SMALL, VIT_CLS):
        x = seeded((3, kwargs["in_channels"], kwargs["img_size"], kwargs["img_size"]), 80).float()
        out = student_call(student, Call("VisionTransformer", kwargs=kwargs, inputs=(x,))).output
        want = (3, kwargs["num_classes"])
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        assert got == want, f"VisionTransformer({_kwargs(kwargs)}) gave {got} for 3 images; expected {want}"


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
    model, x, g, result = _vit_run(student, VIT_CLS, 110, grad=True)
    xr = x.clone().requires_grad_(True)
    model(xr).backward(g)
    assert_gradients_match(result, [("the images", xr)], model, atol=ATOL, rtol=RTOL)


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
