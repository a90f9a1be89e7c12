"""The notebook-4 graders give the reference full marks and name the usual mistakes (in-process, fast)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autograde.assignments.multi_head_attention import reference as mha_ref
from autograde.assignments.positional_encoding import reference as pe_ref
from autograde.assignments.vision_transformer import reference as ref
from tests.grader_reports import failed, grade_part

ASSIGNMENT = "04_vision_transformer"


def reference_namespace() -> dict:
    return dict(ref.SOLUTION)


def grade(namespace: dict, part: str):
    return grade_part(ASSIGNMENT, namespace, part)


# Mutants: the reference with one realistic mistake each, named as the contract names the class.


def patch_embedding(mistake: str) -> type[nn.Module]:
    class PatchEmbedding(ref.PatchEmbedding):
        def __init__(self, img_size, patch_size, in_channels=3, embed_dim=128):
            if mistake == "no_check":
                nn.Module.__init__(self)
                self.patch_size = patch_size
                self.num_patches = (img_size // patch_size) ** 2
                self.proj = nn.Linear(in_channels * patch_size * patch_size, embed_dim)
            else:
                super().__init__(img_size, patch_size, in_channels, embed_dim)

        def forward(self, x):
            N, C, H, W = x.shape
            p = self.patch_size
            if mistake == "view":  # seed "Deep Learning Assignment 3": x.view(batch_size, -1, 3 * 4 * 4)
                return self.proj(x.view(N, -1, C * p * p))
            if mistake == "channels_last":  # einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'
                x = x.reshape(N, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
                return self.proj(x.reshape(N, -1, C * p * p))
            if mistake in ("split_p_first", "split_p_first_permute_kept"):  # (N, C, p, H/p, p, W/p)
                order = (0, 2, 4, 1, 3, 5) if mistake.endswith("kept") else (0, 3, 5, 1, 2, 4)
                x = x.reshape(N, C, p, H // p, p, W // p).permute(*order)
                return self.proj(x.reshape(N, -1, C * p * p))
            if mistake == "no_check":
                x = x[:, :, : H - H % p, : W - W % p]
            return super().forward(x)

    return PatchEmbedding


def encoder_layer(mistake: str) -> type[nn.Module]:
    class TransformerEncoderLayer(ref.TransformerEncoderLayer):
        def __init__(self, embed_dim, num_heads, dim_feedforward, dropout=0.1):
            super().__init__(embed_dim, num_heads, dim_feedforward, dropout)
            if mistake == "relu":
                self.mlp[1] = nn.ReLU()

        def forward(self, x):
            if mistake == "post_norm":
                x = self.norm1(x + self.dropout(self.self_attn(x, x, x)))
                return self.norm2(x + self.dropout(self.mlp(x)))
            return super().forward(x)

    return TransformerEncoderLayer


def vision_transformer(mistake: str, namespace: dict | None = None, max_len: int | None = None) -> type[nn.Module]:
    """The reference ViT with one composition mistake. With ``namespace``, its patch embedding and layers are
    looked up there when the model is built, as a notebook's class looks up its globals (so the grader's
    stand-ins take their place when it swaps them in)."""

    class VisionTransformer(ref.VisionTransformer):
        def __init__(
            self,
            img_size=32,
            patch_size=4,
            in_channels=3,
            embed_dim=128,
            num_layers=6,
            num_heads=4,
            dim_feedforward=256,
            num_classes=10,
            dropout=0.1,
            pool="mean",
            pos_encoding="sin1d",
        ):
            super().__init__(
                img_size,
                patch_size,
                in_channels,
                embed_dim,
                num_layers,
                num_heads,
                dim_feedforward,
                num_classes,
                dropout,
                pool,
                pos_encoding,
            )
            if namespace is not None:
                self.patch_embed = namespace["PatchEmbedding"](img_size, patch_size, in_channels, embed_dim)
                self.layers = nn.ModuleList(
                    namespace["TransformerEncoderLayer"](embed_dim, num_heads, dim_feedforward, dropout)
                    for _ in range(num_layers)
                )
            if max_len is not None and pos_encoding == "sin1d":
                self.positional_encoding = pe_ref.PositionalEncoding(embed_dim, dropout, max_len=max_len)

        def forward(self, x):
            x = self.patch_embed(x)
            if self.pool == "cls":
                x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
            x = self.positional_encoding(x)
            if mistake == "pe_twice":
                x = self.positional_encoding(x)
            for block in self.layers:
                x = block(x)
            if mistake != "no_final_norm":
                x = self.norm(x)
            if self.pool == "cls" and mistake != "cls_mean":
                return self.head(x[:, 0])
            return self.head(x.mean(dim=1))

    return VisionTransformer


def with_vit(namespace: dict, mistake: str = "") -> dict:
    """``namespace`` plus a ViT that builds its parts from it."""
    namespace = dict(namespace)
    namespace["VisionTransformer"] = vision_transformer(mistake, namespace)
    return namespace


DIAGNOSTIC = "diagnostic (no points): your VisionTransformer with your own PatchEmbedding, encoding and layers"


def test_patch_embedding_with_view_costs_points_in_patch_embed_only():
    namespace = with_vit({**reference_namespace(), "PatchEmbedding": patch_embedding("view")})
    report = grade(namespace, "patch_embed")
    messages = failed(report)
    forward = [m for d, m in messages.items() if d.startswith("forward")]
    assert len(forward) == 2 and all("x.view(N, -1, C*p*p)" in m for m in forward), report.text()
    assert report.earned == report.possible - 3  # forward (2), non-square (1); the gradients agree
    vit = grade(namespace, "vit")
    assert vit.earned == vit.possible, vit.text()  # graded with the grader's stand-in for PatchEmbedding
    assert set(failed(vit)) == {DIAGNOSTIC} and "PatchEmbedding" in failed(vit)[DIAGNOSTIC], vit.text()


def test_patch_vectors_in_channels_last_order_are_named():
    report = grade({**reference_namespace(), "PatchEmbedding": patch_embedding("channels_last")}, "patch_embed")
    assert any("(p, p, C) order" in m for m in failed(report).values()), report.text()
    assert report.earned < report.possible


@pytest.mark.parametrize("mistake", ["split_p_first", "split_p_first_permute_kept"])
def test_sides_split_as_p_then_h_over_p_are_named(mistake):
    report = grade({**reference_namespace(), "PatchEmbedding": patch_embedding(mistake)}, "patch_embed")
    named = [o for o in report.outcomes if o.mistake == "patches_split_p_first"]
    assert {o.description for o in named} >= {
        "forward cuts p x p patches in row-major order, each flattened as (C, p, p), then projects them",
        "forward handles a non-square input: (N, C, H, W) -> (N, (H/p)*(W/p), E)",
    }, report.text()


def test_patch_embedding_without_a_size_check_loses_that_point():
    report = grade({**reference_namespace(), "PatchEmbedding": patch_embedding("no_check")}, "patch_embed")
    assert set(failed(report)) == {"a patch size that does not divide the image size raises a ValueError"}
    assert "raise a ValueError" in report.text()


def test_post_norm_layer_is_named_and_charged_to_the_layer_only():
    namespace = with_vit({**reference_namespace(), "TransformerEncoderLayer": encoder_layer("post_norm")})
    report = grade(namespace, "encoder_layer")
    messages = failed(report)
    forward = "forward matches the pre-norm reference (several shapes, one head, E/h not a power of two)"
    assert "post-norm" in messages[forward], report.text()
    assert any("identity" in d and "post-norm" in m for d, m in messages.items()), report.text()
    assert report.earned <= report.possible - 3
    vit = grade(namespace, "vit")
    assert vit.earned == vit.possible, vit.text()
    assert "TransformerEncoderLayer" in failed(vit)[DIAGNOSTIC], vit.text()


def test_relu_in_the_mlp_is_named():
    namespace = {**reference_namespace(), "TransformerEncoderLayer": encoder_layer("relu")}
    report = grade(namespace, "encoder_layer")
    messages = failed(report)
    assert any("GELU" in m for d, m in messages.items() if "has norm1" in d), report.text()
    assert any("uses ReLU" in m for d, m in messages.items() if d.startswith("forward")), report.text()


@pytest.mark.parametrize(
    ("mistake", "message", "lost"),
    [
        ("no_final_norm", "the final LayerNorm is missing", 4),  # mean (2), cls (2); the gradients agree
        ("pe_twice", "positional encoding is added twice", 4),
        ("cls_mean", "reads the class token, x[:, 0]", 2),  # cls (2)
    ],
)
def test_vit_mistakes_are_named_and_lose_points(mistake, message, lost):
    report = grade(with_vit(reference_namespace(), mistake), "vit")
    assert any(message in m for m in failed(report).values()), report.text()
    assert report.earned == report.possible - lost, report.text()


def test_vit_without_pos_encoding_loses_the_three_choices_only():
    class VisionTransformer(ref.VisionTransformer):
        def __init__(
            self,
            img_size=32,
            patch_size=4,
            in_channels=3,
            embed_dim=128,
            num_layers=6,
            num_heads=4,
            dim_feedforward=256,
            num_classes=10,
            dropout=0.1,
            pool="mean",
        ):
            super().__init__(
                img_size,
                patch_size,
                in_channels,
                embed_dim,
                num_layers,
                num_heads,
                dim_feedforward,
                num_classes,
                dropout,
                pool,
            )

    report = grade({**reference_namespace(), "VisionTransformer": VisionTransformer}, "vit")
    assert report.earned == report.possible - 3, report.text()
    assert all("pos_encoding" in m for m in failed(report).values()), report.text()


def test_vit_accepts_any_positional_encoding_length():
    namespace = {**reference_namespace(), "VisionTransformer": vision_transformer("", max_len=5000)}
    report = grade(namespace, "vit")
    assert report.earned == report.possible, report.text()


def test_broken_multi_head_attention_is_reported_as_the_pasted_module():
    class MultiHeadAttention(mha_ref.MultiHeadAttention):
        def forward(self, query, key, value, attn_mask=None):  # sqrt(E) instead of sqrt(E / H)
            return super().forward(query / self.num_heads**0.5, key, value, attn_mask)

    report = grade({**reference_namespace(), "MultiHeadAttention": MultiHeadAttention}, "reused")
    assert report.earned == 1
    assert "Fix it in its own notebook" in report.text() and "costs no points there" in report.text()


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        (
            lambda ws: _product([0.5 * (w.mean(1) + torch.eye(w.shape[-1])) for w in ws], reverse=True),
            "wrong order",
        ),
        (lambda ws: _product([w.mean(1) for w in ws]), "residual connection is missing"),
    ],
)
def test_rollout_mistakes_are_named(rollout, message):
    report = grade({"attention_rollout": rollout}, "rollout")
    assert any(message in m for m in failed(report).values()), report.text()
    assert report.earned < report.possible


def _product(mats: list[torch.Tensor], reverse: bool = False) -> torch.Tensor:
    out = torch.eye(mats[0].shape[-1], dtype=mats[0].dtype).expand_as(mats[0])
    for a in mats:
        out = out @ a if reverse else a @ out
    return out


@pytest.mark.parametrize(("answer", "earned"), [(3, 1), (2, 0), ("3", 0), (None, 0)])
def test_multiple_choice(answer, earned):
    assert grade({"answer_q_cost": answer}, "q_cost").earned == earned


def test_missing_definitions_score_zero_with_a_message():
    report = grade({}, "vit")
    assert report.earned == 0
    assert all("`VisionTransformer` is not defined" in o.message for o in report.outcomes if o.spec.points), (
        report.text()
    )


def test_hard_coded_cuda_is_a_failure_with_a_message():
    if torch.cuda.is_available():
        pytest.skip("the CUDA mistake only shows on a machine without CUDA")

    class PatchEmbedding(ref.PatchEmbedding):
        def forward(self, x):
            return super().forward(x) + torch.zeros(1).to("cuda")

    report = grade({**reference_namespace(), "PatchEmbedding": PatchEmbedding}, "patch_embed")
    assert report.earned == 2  # the layer and size checks only
    assert "only runs on CUDA" in report.text()


def test_the_visible_check_names_the_split_in_the_graders_words():
    """The sides split as (p, H/p) are named, word for word, by the notebook's check and by the graders."""
    from autograde.assignments.vision_transformer.mistakes import MESSAGES
    from tests.notebook_cells import code_strings

    strings = code_strings(ASSIGNMENT)
    assert any(MESSAGES["patches_split_p_first"] in s for s in strings)
