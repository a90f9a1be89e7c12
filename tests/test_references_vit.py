"""The notebook-4 reference is right: checked against torchvision's ViT pieces and closed forms.

Where the reference and torchvision's ``VisionTransformer`` coincide, they must compute the same function
once the weights are mapped: patch extraction (torchvision's ``conv_proj``, a p x p convolution with stride p,
is the reference's ``proj`` with its weight reshaped to (E, C, p, p)), the pre-norm encoder layer
(``EncoderBlock``: ``nn.MultiheadAttention``'s packed in-projection is the concatenation of query, key and
value), and with ``pool="cls"`` the whole model (class token first, positions added to every token, final
LayerNorm, head on the class token). Two differences are design choices, not errors: torchvision learns its
position embedding while the reference adds notebook 3's fixed sinusoidal table (the tests copy torchvision's
values into the reference's buffer, so the forward computations coincide), and torchvision has no mean
pooling (the tests compare it with torchvision's ``Encoder`` without a class token followed by a mean).
LayerNorm's epsilon is 1e-5 here (PyTorch's default) and 1e-6 in torchvision: the tests build torchvision's
modules with 1e-5.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import Encoder, EncoderBlock
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from autograde.assignments.vision_transformer import reference as ref
from autograde.assignments.vision_transformer import reference_recipe as part5
from autograde.nbgrader_cells import meta as nbgrader_meta
from tests.notebook_cells import source_notebook

LayerNorm = partial(nn.LayerNorm, eps=1e-5)


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter (and floating buffer) of ``module`` drawn from N(0, 0.5^2), in float64, eval mode."""
    generator = torch.Generator().manual_seed(seed)
    module.double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.5)
    return module


def map_layer(ours: ref.TransformerEncoderLayer, block: EncoderBlock) -> None:
    """Copy our layer's weights into torchvision's EncoderBlock."""
    attn = ours.self_attn
    with torch.no_grad():
        block.ln_1.load_state_dict(ours.norm1.state_dict())
        block.ln_2.load_state_dict(ours.norm2.state_dict())
        block.self_attention.in_proj_weight.copy_(torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]))
        block.self_attention.in_proj_bias.copy_(torch.cat([attn.query.bias, attn.key.bias, attn.value.bias]))
        block.self_attention.out_proj.load_state_dict(attn.proj.state_dict())
        block.mlp[0].load_state_dict(ours.mlp[0].state_dict())
        block.mlp[3].load_state_dict(ours.mlp[3].state_dict())


def conv_weight(patch: ref.PatchEmbedding, channels: int) -> torch.Tensor:
    """proj.weight (E, C*p*p) as the weight of nn.Conv2d(C, E, p, stride=p): (E, C, p, p)."""
    p = patch.patch_size
    return patch.proj.weight.reshape(-1, channels, p, p)


@pytest.mark.parametrize(
    ("img", "p", "C", "E", "shape"),
    [
        (8, 4, 3, 10, (2, 3, 8, 8)),
        (6, 3, 2, 7, (1, 2, 6, 6)),
        (8, 4, 3, 10, (2, 3, 8, 12)),
        (32, 4, 3, 16, (2, 3, 32, 32)),
    ],
)
def test_patch_embedding_equals_a_strided_convolution(img, p, C, E, shape):
    patch = randomize(ref.PatchEmbedding(img, p, C, E), 0)
    x = torch.randn(shape, dtype=torch.float64)
    conv = nn.Conv2d(C, E, p, stride=p).double()
    with torch.no_grad():
        conv.weight.copy_(conv_weight(patch, C))
        conv.bias.copy_(patch.proj.bias)
        want = conv(x).flatten(2).transpose(1, 2)  # (N, h*w, E), row-major patches
        torch.testing.assert_close(patch(x), want)


def test_patch_embedding_equals_torchvision_conv_proj():
    tv = randomize(TorchvisionViT(32, 4, 1, 2, 16, 32, norm_layer=LayerNorm), 1)
    patch = ref.PatchEmbedding(32, 4, 3, 16).double()
    with torch.no_grad():
        patch.proj.weight.copy_(tv.conv_proj.weight.reshape(16, -1))
        patch.proj.bias.copy_(tv.conv_proj.bias)
        x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
        torch.testing.assert_close(patch(x), tv._process_input(x))


def test_patch_vectors_are_the_pixels_of_each_square():
    patch = ref.PatchEmbedding(4, 2, 2, 8).double()
    with torch.no_grad():
        patch.proj.weight.copy_(torch.eye(8, dtype=torch.float64))
        patch.proj.bias.zero_()
    x = torch.arange(2 * 2 * 4 * 4, dtype=torch.float64).reshape(2, 2, 4, 4)
    tokens = patch(x)
    for n in range(2):
        for i, (r, c) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)]):  # row-major patch order
            torch.testing.assert_close(tokens[n, i], x[n, :, r : r + 2, c : c + 2].reshape(-1))  # (C, p, p)


@pytest.mark.parametrize("img", [30, 33])
def test_patch_embedding_rejects_sizes_the_patch_does_not_divide(img):
    with pytest.raises(ValueError, match="cannot be cut into 4 x 4 patches"):
        ref.PatchEmbedding(img, 4)
    with pytest.raises(ValueError, match="patch_size that divides"):
        ref.PatchEmbedding(32, 4)(torch.zeros(1, 3, img, img))


@pytest.mark.parametrize(("E", "H", "F", "shape"), [(12, 3, 20, (2, 5, 12)), (8, 1, 16, (1, 7, 8))])
def test_encoder_layer_equals_torchvision_encoder_block(E, H, F, shape):
    ours = randomize(ref.TransformerEncoderLayer(E, H, F), 2)
    block = EncoderBlock(H, E, F, dropout=0.0, attention_dropout=0.0, norm_layer=LayerNorm).double().eval()
    map_layer(ours, block)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    out, want = ours(x), block(y)
    torch.testing.assert_close(out, want)
    g = torch.randn(shape, dtype=torch.float64)
    out.backward(g)
    want.backward(g)
    torch.testing.assert_close(x.grad, y.grad)


def test_encoder_layer_keeps_the_attention_weights_of_every_head():
    layer = ref.TransformerEncoderLayer(8, 2, 16).eval()
    layer(torch.randn(3, 5, 8))
    weights = layer.self_attn.attn_weights
    assert weights.shape == (3, 2, 5, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 5))


def small_torchvision_vit(num_layers: int = 2) -> TorchvisionViT:
    return TorchvisionViT(8, 4, num_layers, 2, 8, 16, num_classes=5, norm_layer=LayerNorm)


def map_model(ours: ref.VisionTransformer, tv: TorchvisionViT) -> None:
    """Copy torchvision's weights and learned positions into our ViT (the positions into its pe buffer)."""
    with torch.no_grad():
        ours.patch_embed.proj.weight.copy_(tv.conv_proj.weight.reshape(tv.hidden_dim, -1))
        ours.patch_embed.proj.bias.copy_(tv.conv_proj.bias)
        ours.positional_encoding.pe.copy_(tv.encoder.pos_embedding)
        ours.norm.load_state_dict(tv.encoder.ln.state_dict())
        ours.head.load_state_dict(tv.heads.head.state_dict())
        if ours.pool == "cls":
            ours.cls_token.copy_(tv.class_token)
    for layer, block in zip(ours.layers, tv.encoder.layers, strict=True):
        attn = layer.self_attn
        with torch.no_grad():
            w = block.self_attention.in_proj_weight.chunk(3)
            b = block.self_attention.in_proj_bias.chunk(3)
            for linear, weight, bias in zip((attn.query, attn.key, attn.value), w, b, strict=True):
                linear.weight.copy_(weight)
                linear.bias.copy_(bias)
            attn.proj.load_state_dict(block.self_attention.out_proj.state_dict())
            layer.norm1.load_state_dict(block.ln_1.state_dict())
            layer.norm2.load_state_dict(block.ln_2.state_dict())
            layer.mlp[0].load_state_dict(block.mlp[0].state_dict())
            layer.mlp[3].load_state_dict(block.mlp[3].state_dict())


def test_vit_with_a_class_token_equals_torchvision_vit():
    tv = randomize(small_torchvision_vit(), 3)
    ours = ref.VisionTransformer(8, 4, 3, 8, 2, 2, 16, num_classes=5, pool="cls").double().eval()
    map_model(ours, tv)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x))


def test_vit_with_mean_pooling_equals_torchvision_encoder_then_mean():
    L = 4  # (8 / 4) ** 2 patches, no class token
    encoder = Encoder(L, 2, 2, 8, 16, dropout=0.0, attention_dropout=0.0, norm_layer=LayerNorm)
    encoder = randomize(encoder, 4)
    conv = randomize(nn.Conv2d(3, 8, 4, stride=4), 5)
    head = randomize(nn.Linear(8, 5), 6)
    ours = ref.VisionTransformer(8, 4, 3, 8, 2, 2, 16, num_classes=5, pool="mean").double().eval()
    tv = small_torchvision_vit().double()
    tv.conv_proj, tv.encoder, tv.heads.head = conv, encoder, head
    map_model(ours, tv)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        tokens = conv(x).flatten(2).transpose(1, 2)  # (N, L, E)
        torch.testing.assert_close(ours(x), head(encoder(tokens).mean(dim=1)))


@pytest.mark.parametrize(("pool", "tokens"), [("mean", 64), ("cls", 65)])
def test_vit_adds_the_sinusoidal_table_of_notebook_3(pool, tokens):
    model = ref.VisionTransformer(embed_dim=16, num_layers=1, num_heads=2, dim_feedforward=8, pool=pool)
    assert "positional_encoding.pe" in dict(model.named_buffers())
    assert not any("positional" in name for name, _ in model.named_parameters())
    pe = model.positional_encoding.pe
    assert pe.shape == (1, tokens, 16)
    for i in (0, 1, 17, tokens - 1):
        for j in (0, 1, 6, 15):
            angle = i * 10000 ** (-(j - j % 2) / 16)
            assert pe[0, i, j].item() == pytest.approx(math.sin(angle) if j % 2 == 0 else math.cos(angle), abs=1e-6)


@pytest.mark.parametrize(("pool", "first_patch"), [("mean", 0), ("cls", 1)])
def test_vit_sin2d_encodes_the_row_in_the_first_half_and_the_column_in_the_second(pool, first_patch):
    E, side = 16, 8
    model = ref.VisionTransformer(
        embed_dim=E, num_layers=1, num_heads=2, dim_feedforward=8, pool=pool, pos_encoding="sin2d"
    )
    pe = model.positional_encoding.pe[0]
    assert pe.shape == (first_patch + side * side, E) and not list(model.positional_encoding.parameters())
    assert first_patch == 0 or torch.count_nonzero(pe[0]) == 0  # the class token carries no position
    half = E // 2
    for r, c in [(0, 0), (0, 5), (3, 1), (7, 7)]:
        token = first_patch + r * side + c  # patches row by row
        for j in range(half):
            angle_r = r * 10000 ** (-(j - j % 2) / half)
            angle_c = c * 10000 ** (-(j - j % 2) / half)
            trig = math.sin if j % 2 == 0 else math.cos
            assert pe[token, j].item() == pytest.approx(trig(angle_r), abs=1e-6)
            assert pe[token, half + j].item() == pytest.approx(trig(angle_c), abs=1e-6)


def test_vit_learned_and_no_positions():
    learned = ref.VisionTransformer(
        embed_dim=16, num_layers=1, num_heads=2, dim_feedforward=8, pool="cls", pos_encoding="learned"
    )
    assert learned.positional_encoding.pos_embed.shape == (1, 65, 16)
    assert "positional_encoding.pos_embed" in dict(learned.named_parameters())
    none = ref.VisionTransformer(embed_dim=16, num_layers=1, num_heads=2, dim_feedforward=8, pos_encoding="none")
    assert isinstance(none.positional_encoding, nn.Identity)
    # without positions, permuting the patches of the input does not change the (mean-pooled) scores
    x = torch.randn(2, 3, 32, 32)
    patches = x.unfold(2, 4, 4).unfold(3, 4, 4)  # (N, C, 8, 8, 4, 4)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    shuffled = patches.reshape(2, 3, 64, 4, 4)[:, :, order].reshape(2, 3, 8, 8, 4, 4)
    shuffled = shuffled.permute(0, 1, 2, 4, 3, 5).reshape(2, 3, 32, 32)
    none.eval()
    with torch.no_grad():
        torch.testing.assert_close(none(shuffled), none(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="sin1d"):
        ref.VisionTransformer(pos_encoding="rotary")


def test_vit_class_token_is_a_parameter_only_with_cls_pooling():
    assert not hasattr(ref.VisionTransformer(pool="mean"), "cls_token")
    cls = ref.VisionTransformer(pool="cls").cls_token
    assert isinstance(cls, nn.Parameter) and cls.shape == (1, 1, 128)
    with pytest.raises(ValueError, match="use 'mean' or 'cls'"):
        ref.VisionTransformer(pool="max")


def test_default_vit_has_the_size_of_torchvision_vit_but_for_learned_positions_and_class_token():
    ours = sum(p.numel() for p in ref.VisionTransformer().parameters())
    tv = TorchvisionViT(32, 4, 6, 4, 128, 256, num_classes=10)
    learned_extra = tv.encoder.pos_embedding.numel() + tv.class_token.numel()
    assert ours == sum(p.numel() for p in tv.parameters()) - learned_extra


def test_small_vit_memorises_a_batch():
    torch.manual_seed(0)
    model = ref.VisionTransformer(8, 4, 3, 16, 1, 2, 32, num_classes=4, dropout=0.0)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(80):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (model(x).argmax(1) == y).all()


def permutation(order: list[int]) -> torch.Tensor:
    """The attention matrix in which query i attends only to key order[i]."""
    return torch.eye(len(order), dtype=torch.float64)[order]


def test_rollout_of_uniform_attention_has_a_closed_form():
    T, layers = 5, 3
    uniform = torch.full((2, 4, T, T), 1 / T, dtype=torch.float64)
    # (0.5 U + 0.5 I)^L = 0.5^L I + (1 - 0.5^L) U, since U @ U = U for the uniform averaging matrix U
    want = 0.5**layers * torch.eye(T, dtype=torch.float64) + (1 - 0.5**layers) / T
    torch.testing.assert_close(ref.attention_rollout([uniform] * layers), want.expand(2, T, T))


def test_rollout_multiplies_layers_last_on_the_left():
    I = torch.eye(4, dtype=torch.float64)
    p1, p2 = permutation([1, 2, 3, 0]), permutation([0, 0, 1, 1])  # they do not commute
    heads = [torch.stack([p, p]).unsqueeze(0) for p in (p1, p2)]  # (1, 2, 4, 4), both heads the same
    want = 0.25 * (p2 @ p1 + p2 + p1 + I)  # (0.5 (P2 + I)) (0.5 (P1 + I)) expanded
    torch.testing.assert_close(ref.attention_rollout(heads)[0], want)
    assert not torch.allclose(want, 0.25 * (p1 @ p2 + p2 + p1 + I))


def test_rollout_averages_the_heads_and_keeps_rows_stochastic():
    weights = [torch.softmax(torch.randn(3, 4, 6, 6, dtype=torch.float64), -1) for _ in range(4)]
    rollout = ref.attention_rollout(weights)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(3, 6, dtype=torch.float64))
    swapped = [w.flip(1) for w in weights]  # the same heads in another order
    torch.testing.assert_close(ref.attention_rollout(swapped), rollout)
    with pytest.raises(ValueError, match="at least one layer"):
        ref.attention_rollout([])


def tiny_vit(pool: str = "mean") -> ref.VisionTransformer:
    return ref.VisionTransformer(img_size=8, embed_dim=16, num_layers=2, num_heads=2, dim_feedforward=32, pool=pool)


def notebook_cell(grade_id: str):
    cells = source_notebook("04_vision_transformer").cells
    return next(c for c in cells if nbgrader_meta(c).get("grade_id") == grade_id)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_notebook_budgets_are_the_reference_budgets(device):
    """The locked ``budgets`` cell of notebook 4 sizes the runs that ``bench.vit`` measures."""
    namespace: dict = {
        "device": torch.device(device),
        "count_parameters": lambda model: sum(p.numel() for p in model.parameters()),
        "VisionTransformer": ref.VisionTransformer,
    }
    exec(notebook_cell("budgets").source, namespace)
    budget = "gpu" if device == "cuda" else "cpu"
    assert namespace["SMALL_VIT"] == part5.SMALL_VIT and namespace["LARGE_VIT"] == part5.LARGE_VIT
    assert namespace["EXPERIMENT_EPOCHS"] == part5.EXPERIMENT_EPOCHS[budget]
    assert namespace["FINAL_CONFIG"] == part5.FINAL_CONFIG
    assert namespace["FINAL_EPOCHS"] == part5.FINAL_EPOCHS[budget]


@pytest.mark.parametrize("final_epochs", [2, 10])
def test_the_solution_recipe_is_the_reference_recipe(final_epochs):
    """The solution of ``my_recipe`` is the recipe that ``bench.vit --accuracy`` measures."""
    from course_utils.recipes import Recipe

    namespace: dict = {"Recipe": Recipe, "FINAL_EPOCHS": final_epochs, "baseline": Recipe()}
    exec(notebook_cell("my_recipe").source, namespace)
    assert namespace["my_recipe"] == part5.reference_recipe(final_epochs)
    assert namespace["my_pos_encoding"] == part5.RECIPE_POS_ENCODING
