"""The contract of notebook 4's modules as their docstrings state it, checked on a module's structure (a
:class:`~autograde.worker.protocol.ModuleInfo`, without running it): the attributes' names and types, the
parameters' names and shapes. Each check raises AssertionError with a message that says what to change.
"""

from __future__ import annotations

from autograde.assignments.vision_transformer import reference as ref
from autograde.checks import call_text, parameter_differences
from autograde.worker.protocol import ModuleInfo

# The positional encoding that VisionTransformer(pos_encoding=...) builds, by kind ("sin1d" is the default).
POSITIONAL_MODULES = {"sin2d": "PositionalEncoding", "learned": "LearnedPositionalEmbedding", "none": "Identity"}


def check_children(info: ModuleInfo, owner: str, **want: str) -> None:
    """``owner``'s module has each attribute of ``want`` (attribute -> class name) as a direct child."""
    children = dict(info.children)
    for name, kind in want.items():
        assert children.get(name) == kind, (
            f"{owner} needs an attribute `{name}` = {kind}(...); found {children.get(name)}"
        )


def check_patch_embedding(info: ModuleInfo, args: tuple[int, int, int, int]) -> None:
    """PatchEmbedding(img_size, p, C, E) has proj = nn.Linear(C*p*p, E) and no other parameters."""
    _, p, C, E = args
    want = {"proj.weight": (E, C * p * p), "proj.bias": (E,)}
    assert info.parameters == want, (
        f"PatchEmbedding{args} has parameters {info.parameters}; expected {want}: proj = nn.Linear({C}*{p}*{p}, {E})"
    )


def check_encoder_layer(info: ModuleInfo, args: tuple[int, int, int]) -> None:
    """TransformerEncoderLayer(E, h, F) has norm1, self_attn, norm2, mlp (Linear, GELU, Dropout, Linear), dropout."""
    owner = call_text("TransformerEncoderLayer", *args)
    check_children(
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
    want = {n: tuple(p.shape) for n, p in ref.TransformerEncoderLayer(*args).named_parameters()}
    assert info.parameters == want, (
        f"{owner} has parameters {sorted(info.parameters.items())}; expected {sorted(want.items())}"
    )


def check_vision_transformer(info: ModuleInfo, kwargs: dict) -> None:
    """VisionTransformer(**kwargs) has patch_embed, positional_encoding, layers, norm, head, and the reference's
    parameters (cls_token only with pool='cls')."""
    check_children(
        info,
        "VisionTransformer",
        patch_embed="PatchEmbedding",
        positional_encoding="PositionalEncoding",
        layers="ModuleList",
        norm="LayerNorm",
        head="Linear",
    )
    want = {n: tuple(p.shape) for n, p in ref.VisionTransformer(**kwargs).named_parameters()}
    differences = parameter_differences(info.parameters, want)
    cls_token = "cls_token" in want.keys() ^ info.parameters.keys()
    assert not differences, f"{call_text('VisionTransformer', **kwargs)}: {differences}" + (
        " (cls_token is a parameter of shape (1, 1, embed_dim), only with pool='cls')" if cls_token else ""
    )


def check_positional_module(info: ModuleInfo, kind: str) -> None:
    """VisionTransformer(pos_encoding=kind) builds the positional encoding of that kind."""
    got = dict(info.children).get("positional_encoding")
    assert got == POSITIONAL_MODULES[kind], (
        f"with pos_encoding={kind!r}, positional_encoding should be a {POSITIONAL_MODULES[kind]}; found {got}"
    )


def check_pasted_positional_encoding(info: ModuleInfo) -> None:
    """PositionalEncoding(10, max_len=20) (pasted from notebook 3) keeps the buffer pe (1, 20, 10), no parameters."""
    assert info.buffers.get("pe") == (1, 20, 10), (
        f"PositionalEncoding(10, max_len=20) has buffers {info.buffers}; expected pe of shape (1, 20, 10) "
        "(registered with register_buffer)."
    )
    assert not info.parameters, f"PositionalEncoding should have no parameters, found {list(info.parameters)}"
