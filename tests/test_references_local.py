"""The notebook-5 references agree with independent oracles.

Local attention against a plain loop over pixels, neighbours and heads (float64, entry by entry), and against
global attention (notebook 2's masked ``scaled_dot_product_attention``, and PyTorch's) over all H*W positions with a
banded mask and the relative-position bias gathered for every pair of pixels; with m = 1, with equal scores and under
translation, against what the formula then reduces to. Chunked attention against ``F.scaled_dot_product_attention``
for every chunk size from 1 to beyond T, with masks and with large scores, gradients included. Shifted-window
attention against torchvision's ``shifted_window_attention``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.swin_transformer import shifted_window_attention

from autograde.assignments.local_attention import reference as ref
from autograde.assignments.multi_head_attention import reference as mha


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def randomized(args: tuple[int, ...], seed: int) -> ref.LocalSelfAttention2d:
    layer = ref.LocalSelfAttention2d(*args).double().eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return layer


# (C_in, C, m, G) and an input shape (N, C_in, H, W): one and several heads, kernels 1 to 5, non-square maps,
# maps smaller than the neighbourhood.
CASES = [
    ((3, 4, 3, 1), (2, 3, 5, 6)),
    ((4, 8, 5, 2), (1, 4, 6, 4)),
    ((2, 12, 3, 3), (2, 2, 4, 7)),
    ((3, 6, 5, 1), (1, 3, 2, 3)),
    ((2, 8, 3, 4), (1, 2, 1, 5)),
    ((3, 4, 1, 2), (1, 3, 3, 3)),
]


def per_pixel_loop(layer: ref.LocalSelfAttention2d, x: torch.Tensor) -> torch.Tensor:
    """The formula, one pixel, neighbour and head at a time, with plain Python sums and math.exp."""
    N, _, H, W = x.shape
    q, k, v = layer.conv_query(x), layer.conv_key(x), layer.conv_value(x)  # (N, C, H, W)
    C, G, m = q.shape[1], layer.num_heads, layer.kernel_size
    D, p = C // G, m // 2
    out = torch.zeros(N, C, H, W, dtype=x.dtype)
    for n in range(N):
        for g in range(G):
            channels = range(g * D, (g + 1) * D)
            rows = layer.rel_rows[g * D // 2 : (g + 1) * D // 2]  # (D/2, m)
            cols = layer.rel_cols[g * D // 2 : (g + 1) * D // 2]
            for i in range(H):
                for j in range(W):
                    scores = {}
                    for a in range(max(0, i - p), min(H, i + p + 1)):
                        for b in range(max(0, j - p), min(W, j + p + 1)):
                            r = torch.cat([rows[:, a - i + p], cols[:, b - j + p]])  # (D,)
                            scores[a, b] = sum(
                                float(q[n, c, i, j]) * (float(k[n, c, a, b]) + float(r[c - g * D])) for c in channels
                            )
                    top = max(scores.values())
                    total = sum(math.exp(s - top) for s in scores.values())
                    for c in channels:
                        out[n, c, i, j] = sum(
                            math.exp(s - top) / total * float(v[n, c, a, b]) for (a, b), s in scores.items()
                        )
    return out


@pytest.mark.parametrize(("args", "shape"), CASES)
def test_local_attention_equals_a_loop_over_pixels(args, shape):
    layer = randomized(args, 0)
    x = randn(*shape, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), per_pixel_loop(layer, x), atol=1e-10, rtol=1e-10)


def banded_global_inputs(layer: ref.LocalSelfAttention2d, x: torch.Tensor):
    """q, k, v over all H*W pixels (N, G, L, D), the band mask (L, L) and the relative-position bias (N, G, L, L)
    gathered pair by pair: bias[n, g, i, j] = q_i . r_{offset(i, j)} for the pixels j in i's neighbourhood."""
    N, _, H, W = x.shape
    C, G, m = layer.conv_query.out_channels, layer.num_heads, layer.kernel_size
    D, L, p = C // G, H * W, m // 2

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(N, G, D, L).transpose(2, 3)  # (N, G, L, D)

    q, k, v = heads(layer.conv_query(x)), heads(layer.conv_key(x)), heads(layer.conv_value(x))
    ys, xs = torch.arange(L) // W, torch.arange(L) % W
    dy, dx = ys[None, :] - ys[:, None], xs[None, :] - xs[:, None]  # (L, L): offset of key j from query i
    band = (dy.abs() <= p) & (dx.abs() <= p)
    r = torch.cat(
        [
            layer.rel_rows.view(G, D // 2, m)[:, :, (dy.clamp(-p, p) + p)],  # (G, D/2, L, L)
            layer.rel_cols.view(G, D // 2, m)[:, :, (dx.clamp(-p, p) + p)],
        ],
        dim=1,
    )  # (G, D, L, L): the embedding of every pair's offset
    bias = torch.einsum("ngid,gdij->ngij", q, r)
    return q, k, v, band, bias


def merged(out: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    N, G, L, D = out.shape
    return out.transpose(2, 3).reshape(N, G * D, *shape[2:])


@pytest.mark.parametrize(("args", "shape"), CASES)
def test_local_attention_equals_global_attention_with_a_banded_mask(args, shape):
    """Notebook 2's masked attention over all pixels: the bias enters as extra dimensions of q and k (q_i gets its
    bias row, k_j the one-hot of j, so that q~_i . k~_j = q_i . k_j + bias_ij), the 1/sqrt scale undone."""
    layer = randomized(args, 2)
    x = randn(*shape, seed=3)
    with torch.no_grad():
        q, k, v, band, bias = banded_global_inputs(layer, x)
        L = q.shape[2]
        eye = torch.eye(L, dtype=q.dtype).expand(*k.shape[:2], L, L)
        q_ext, k_ext = torch.cat([q, bias], dim=-1), torch.cat([k, eye], dim=-1)
        out, _ = mha.scaled_dot_product_attention(q_ext * math.sqrt(q_ext.shape[-1]), k_ext, v, band)
        torch.testing.assert_close(layer(x), merged(out, shape), atol=1e-10, rtol=1e-10)
        additive = bias.masked_fill(~band, float("-inf"))
        torch_out = F.scaled_dot_product_attention(q, k, v, attn_mask=additive, scale=1.0)
        torch.testing.assert_close(layer(x), merged(torch_out, shape), atol=1e-10, rtol=1e-10)


def test_kernel_one_is_the_value_projection():
    layer = randomized((3, 6, 1, 3), 4)
    x = randn(2, 3, 4, 5, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.conv2d(x, layer.conv_value.weight))


def test_equal_scores_average_the_neighbours_inside_the_image():
    layer = randomized((3, 4, 3, 2), 6)
    with torch.no_grad():
        for p in (layer.conv_key.weight, layer.rel_rows, layer.rel_cols):
            p.zero_()
        x = randn(2, 3, 5, 6, seed=7)
        want = F.avg_pool2d(layer.conv_value(x), 3, stride=1, padding=1, count_include_pad=False)
        torch.testing.assert_close(layer(x), want)


def test_local_attention_is_translation_equivariant_away_from_the_borders():
    layer = randomized((3, 4, 3, 2), 8)
    x = torch.zeros(1, 3, 12, 12, dtype=torch.float64)
    x[..., 3:7, 2:6] = randn(1, 3, 4, 4, seed=9)  # content well inside the map
    shifted = torch.roll(x, shifts=(3, 4), dims=(2, 3))  # still well inside: no wrap-around
    with torch.no_grad():
        torch.testing.assert_close(layer(shifted), torch.roll(layer(x), shifts=(3, 4), dims=(2, 3)))


def test_the_layer_rejects_impossible_arguments():
    for args in [(3, 8, 4, 2), (3, 6, 3, 4), (3, 6, 3, 2), (3, 8, 0, 1)]:
        with pytest.raises(ValueError):
            ref.LocalSelfAttention2d(*args)


def test_the_fully_attentional_net_replaces_the_convolutions_of_notebook_1():
    from autograde.assignments.self_attention_cnn import reference as nb1

    net, cnn = ref.fully_attentional_net(), nb1.vanilla_cnn()
    assert [type(m).__name__ for m in net] == ["LocalSelfAttention2d", "ReLU"] * 2 + ["Flatten", "Linear"]
    assert [type(m).__name__ for m in cnn] == ["Conv2d", "ReLU"] * 2 + ["Flatten", "Linear"]
    for ours, theirs in zip(net, cnn, strict=True):
        if isinstance(theirs, torch.nn.Conv2d):
            assert (ours.conv_query.in_channels, ours.conv_query.out_channels) == (
                theirs.in_channels,
                theirs.out_channels,
            )
            assert ours.kernel_size == theirs.kernel_size[0] == 3
    assert net[-1].weight.shape == cnn[-1].weight.shape
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# ------------------------------------------------------------------------------------------ chunked attention


@pytest.mark.parametrize(("batch", "S", "T", "D", "Dv"), [((2, 3), 5, 12, 4, 6), ((), 7, 7, 8, 8), ((2,), 1, 13, 3, 2)])
def test_chunked_attention_equals_torch_attention_for_every_chunk_size(batch, S, T, D, Dv):
    q, k, v = randn(*batch, S, D, seed=10), randn(*batch, T, D, seed=11), randn(*batch, T, Dv, seed=12)
    want = F.scaled_dot_product_attention(q, k, v)
    for chunk_size in range(1, T + 3):
        torch.testing.assert_close(ref.chunked_attention(q, k, v, chunk_size), want, atol=1e-12, rtol=1e-12)


def test_chunked_attention_with_masks():
    """Rows with something to attend match PyTorch's masked attention; a row with nothing to attend is zero."""
    S, T = 6, 10
    q, k, v = randn(2, 3, S, 4, seed=13), randn(2, 3, T, 4, seed=14), randn(2, 3, T, 5, seed=15)
    random = torch.rand((2, 1, S, T), generator=torch.Generator().manual_seed(16)) > 0.5
    random[..., -1] = True
    late = torch.ones(S, T, dtype=torch.bool).triu(T - S)  # the first chunks of every row are masked
    blocked = late.clone()
    blocked[2] = False
    for mask in (random, late, blocked):
        allowed = mask.any(-1).expand(2, 3, S)  # (2, 3, S)
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        for chunk_size in (1, 3, 4, 7, 10, 11):
            out = ref.chunked_attention(q, k, v, chunk_size, mask)
            torch.testing.assert_close(out[allowed], want[allowed], atol=1e-12, rtol=1e-12)
            assert torch.equal(out[~allowed], torch.zeros_like(out[~allowed]))


def test_chunked_attention_does_not_overflow_where_exp_would():
    q, k, v = randn(2, 4, 8, seed=17, scale=30.0), randn(2, 9, 8, seed=18, scale=30.0), randn(2, 9, 4, seed=19)
    scores = q @ k.transpose(-2, -1) / math.sqrt(8)
    assert scores.max() > 710  # exp overflows in float64 beyond about 709.8
    want = F.scaled_dot_product_attention(q, k, v)
    for chunk_size in (1, 2, 4, 9):
        torch.testing.assert_close(ref.chunked_attention(q, k, v, chunk_size), want, atol=1e-10, rtol=1e-10)
    with torch.no_grad():
        naive = (torch.exp(scores) / torch.exp(scores).sum(-1, keepdim=True)) @ v
    assert not torch.isfinite(naive).all()  # the test is one that needs the running maximum


def test_chunked_attention_gradients_equal_torch_attention_gradients():
    leaves = [randn(2, 5, 4, seed=20), randn(2, 9, 4, seed=21), randn(2, 9, 3, seed=22)]
    g = randn(2, 5, 3, seed=23)
    ours = [t.clone().requires_grad_(True) for t in leaves]
    theirs = [t.clone().requires_grad_(True) for t in leaves]
    ref.chunked_attention(*ours, 4).backward(g)
    F.scaled_dot_product_attention(*theirs).backward(g)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=1e-10)


def test_chunked_attention_rejects_an_empty_chunk():
    with pytest.raises(ValueError):
        ref.chunked_attention(randn(1, 2, 2, seed=0), randn(1, 3, 2, seed=1), randn(1, 3, 2, seed=2), 0)


# --------------------------------------------------------------------------------------- shifted windows


@pytest.mark.parametrize(
    ("N", "H", "W", "C", "G", "m", "s"),
    [
        (2, 4, 8, 8, 2, 4, 0),
        (2, 8, 8, 8, 2, 4, 2),
        (1, 6, 4, 6, 3, 2, 1),
        (1, 9, 6, 4, 1, 3, 1),
        (2, 8, 12, 12, 4, 4, 3),
    ],
)
def test_swin_attention_equals_torchvision(N, H, W, C, G, m, s):
    x = randn(N, H, W, C, seed=30)
    qkv_w, qkv_b = randn(3 * C, C, seed=31, scale=0.5), randn(3 * C, seed=32, scale=0.5)
    proj_w, proj_b = randn(C, C, seed=33, scale=0.5), randn(C, seed=34, scale=0.5)
    bias = randn(G, m * m, m * m, seed=35)
    ours = ref.swin_attention(x, qkv_w, qkv_b, proj_w, proj_b, bias, m, s, G)
    theirs = shifted_window_attention(
        x, qkv_w, proj_w, bias[None], [m, m], G, [s, s], qkv_bias=qkv_b, proj_bias=proj_b, training=False
    )
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)  # torchvision blocks with -100: e^-100 apart
