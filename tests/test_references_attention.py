"""The references of notebooks 2 and 3 agree with independent oracles.

scaled_dot_product_attention against torch's F.scaled_dot_product_attention, MultiHeadAttention against
nn.MultiheadAttention with mapped weights, the positional encodings against the formula evaluated entry by
entry with math.sin / math.cos in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograde.assignments.multi_head_attention import reference as mha
from autograde.assignments.positional_encoding import reference as pe


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def random_mask(*shape: int, seed: int) -> torch.Tensor:
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.4
    mask[..., 0] = True  # every query may attend to something
    return mask


# ---------------------------------------------------------------- scaled_dot_product_attention


@pytest.mark.parametrize(
    ("batch", "S", "T", "D", "mask"),
    [
        ((2, 3), 4, 6, 5, None),
        ((), 5, 5, 8, "causal"),
        ((2, 3), 4, 6, 5, "random"),
        ((2,), 3, 6, 4, "padding"),
    ],
)
def test_function_equals_torch_sdpa(batch, S, T, D, mask):
    q, k, v = randn(*batch, S, D, seed=1), randn(*batch, T, D, seed=2), randn(*batch, T, D, seed=3)
    if mask == "causal":
        mask = torch.ones(S, T, dtype=torch.bool).tril()
    elif mask == "random":
        mask = random_mask(S, T, seed=4)
    elif mask == "padding":
        mask = torch.tensor([[True] * T, [True] * 2 + [False] * (T - 2)])[:, None, :]  # (N, 1, T)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out, weights = mha.scaled_dot_product_attention(*leaves, mask)
    oracle_leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    oracle = F.scaled_dot_product_attention(*oracle_leaves, attn_mask=mask)
    torch.testing.assert_close(out, oracle, atol=1e-12, rtol=1e-10)
    assert weights.shape == (*batch, S, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(*batch, S, dtype=torch.float64))
    g = randn(*batch, S, D, seed=5)
    out.backward(g)
    oracle.backward(g)
    for mine, theirs in zip(leaves, oracle_leaves, strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-12, rtol=1e-10)


def test_function_gives_zeros_for_a_row_that_may_attend_to_nothing():
    q, k, v = randn(2, 4, 3, seed=10), randn(2, 5, 3, seed=11), randn(2, 5, 3, seed=12)
    mask = random_mask(4, 5, seed=13)
    mask[2] = False
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out, weights = mha.scaled_dot_product_attention(*leaves, mask)
    assert torch.equal(weights[:, 2], torch.zeros(2, 5, dtype=torch.float64))
    assert torch.equal(out[:, 2], torch.zeros(2, 3, dtype=torch.float64))
    keep = torch.tensor([0, 1, 3])
    oracle = F.scaled_dot_product_attention(q[:, keep], k, v, attn_mask=mask[keep])
    torch.testing.assert_close(out[:, keep], oracle, atol=1e-12, rtol=1e-10)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)


def test_integer_mask_equals_boolean_mask():
    q, k, v = randn(3, 4, 2, seed=20), randn(3, 6, 2, seed=21), randn(3, 6, 2, seed=22)
    mask = random_mask(4, 6, seed=23)
    for as_bool, as_int in zip(
        mha.scaled_dot_product_attention(q, k, v, mask),
        mha.scaled_dot_product_attention(q, k, v, mask.long()),
        strict=True,
    ):
        assert torch.equal(as_bool, as_int)


def test_function_dropout_drops_weights_at_rate_p_and_rescales_the_rest():
    p = 0.3
    q, k, v = randn(8, 4, 16, 4, seed=30), randn(8, 4, 16, 4, seed=31), randn(8, 4, 16, 4, seed=32)
    torch.manual_seed(0)
    out, weights = mha.scaled_dot_product_attention(q, k, v, dropout=nn.Dropout(p))
    _, clean = mha.scaled_dot_product_attention(q, k, v)
    kept = weights != 0
    assert abs((1 - kept.double().mean().item()) - p) < 0.03
    torch.testing.assert_close(weights[kept], clean[kept] / (1 - p))
    torch.testing.assert_close(out, weights @ v)


# ---------------------------------------------------------------- MultiHeadAttention


def mapped_torch_mha(module: mha.MultiHeadAttention) -> nn.MultiheadAttention:
    """nn.MultiheadAttention holding the same weights (packed in_proj, out_proj), batch first, no dropout."""
    E, H = module.query.in_features, module.num_heads
    oracle = nn.MultiheadAttention(E, H, dropout=0.0, batch_first=True).double().eval()
    with torch.no_grad():
        oracle.in_proj_weight.copy_(torch.cat([module.query.weight, module.key.weight, module.value.weight]))
        oracle.in_proj_bias.copy_(torch.cat([module.query.bias, module.key.bias, module.value.bias]))
        oracle.out_proj.weight.copy_(module.proj.weight)
        oracle.out_proj.bias.copy_(module.proj.bias)
    return oracle


def seeded_module(E: int, H: int, seed: int) -> mha.MultiHeadAttention:
    torch.manual_seed(seed)
    module = mha.MultiHeadAttention(E, H).double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)  # non-zero biases too
    return module


@pytest.mark.parametrize(
    ("N", "S", "T", "E", "H", "mask"),
    [
        (2, 5, 5, 12, 3, None),
        (3, 4, 6, 8, 2, None),
        (1, 6, 6, 8, 1, "causal"),
        (2, 3, 7, 18, 6, "random"),
        (2, 6, 6, 16, 4, "causal"),
    ],
)
def test_module_equals_torch_multihead_attention(N, S, T, E, H, mask):
    module = seeded_module(E, H, seed=S * T + E)
    oracle = mapped_torch_mha(module)
    xq, xk, xv = randn(N, S, E, seed=40), randn(N, T, E, seed=41), randn(N, T, E, seed=42)
    if S == T and mask is None:
        xk = xv = xq  # self-attention
    if mask == "causal":
        mask = torch.ones(S, T, dtype=torch.bool).tril()
    elif mask == "random":
        mask = random_mask(S, T, seed=43)
    mine = [t.clone().requires_grad_(True) for t in (xq, xk, xv)]
    theirs = [t.clone().requires_grad_(True) for t in (xq, xk, xv)]
    out = module(*mine, attn_mask=mask)
    want, want_weights = oracle(
        *theirs, attn_mask=None if mask is None else ~mask, need_weights=True, average_attn_weights=False
    )
    torch.testing.assert_close(out, want, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(module.attn_weights, want_weights, atol=1e-12, rtol=1e-10)
    g = randn(N, S, E, seed=44)
    out.backward(g)
    want.backward(g)
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(module.query.weight.grad, oracle.in_proj_weight.grad[:E], atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(module.proj.weight.grad, oracle.out_proj.weight.grad, atol=1e-12, rtol=1e-10)


def test_module_blocked_row_outputs_the_projection_bias():
    module = seeded_module(8, 2, seed=50)
    oracle = mapped_torch_mha(module)
    xq, xkv = randn(2, 4, 8, seed=51), randn(2, 6, 8, seed=52)
    mask = random_mask(4, 6, seed=53)
    mask[1] = False
    out = module(xq, xkv, xkv, attn_mask=mask)
    torch.testing.assert_close(out[:, 1], module.proj.bias.detach().expand(2, 8))
    assert torch.equal(module.attn_weights[:, :, 1], torch.zeros(2, 2, 6, dtype=torch.float64))
    want, _ = oracle(xq, xkv, xkv, attn_mask=~mask)  # torch gives NaN for the blocked row
    keep = torch.tensor([0, 2, 3])
    torch.testing.assert_close(out[:, keep], want[:, keep], atol=1e-12, rtol=1e-10)


def test_module_dropout_acts_on_the_weights_in_training_only():
    p = 0.3
    module = seeded_module(16, 4, seed=60)
    module.attn_drop.p = p
    x = randn(8, 16, 16, seed=61)
    clean = module(x, x, x)
    clean_weights = module.attn_weights
    assert torch.equal(module(x, x, x), clean), "eval mode must be deterministic"
    module.train()
    torch.manual_seed(0)
    noisy = module(x, x, x)
    kept = module.attn_weights != 0
    assert abs((1 - kept.double().mean().item()) - p) < 0.03
    torch.testing.assert_close(module.attn_weights[kept], clean_weights[kept] / (1 - p))
    assert not torch.allclose(noisy, clean)


def test_module_contract_and_indivisible_heads():
    module = mha.MultiHeadAttention(12, 3, dropout=0.2)
    assert (module.num_heads, module.head_dim, module.attn_drop.p) == (3, 4, 0.2)
    assert {name for name, _ in module.named_children()} == {"query", "key", "value", "proj", "attn_drop"}
    with pytest.raises(ValueError, match="not divisible"):
        mha.MultiHeadAttention(10, 3)


# ---------------------------------------------------------------- positional encodings


def loop_table(num_positions: int, d: int) -> torch.Tensor:
    """The seed's formula, one entry at a time in float64."""
    rows = []
    for i in range(num_positions):
        rows.append(
            [math.sin(i * 10000 ** (-j / d)) if j % 2 == 0 else math.cos(i * 10000 ** (-(j - 1) / d)) for j in range(d)]
        )
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(("E", "L"), [(16, 64), (6, 40), (7, 10), (64, 200)])
def test_positional_encoding_equals_the_formula(E, L):
    module = pe.PositionalEncoding(E, max_len=L)
    assert module.pe.shape == (1, L, E) and module.pe.dtype == torch.float32
    torch.testing.assert_close(module.pe[0].double(), loop_table(L, E), atol=1e-7, rtol=0)


def test_positional_encoding_is_a_persistent_buffer_that_moves_with_to():
    module = pe.PositionalEncoding(8, max_len=20)
    assert [n for n, _ in module.named_parameters()] == []
    assert "pe" in dict(module.named_buffers()) and "pe" in module.state_dict()
    assert module.to(torch.float64).pe.dtype == torch.float64
    if torch.cuda.is_available():
        assert module.to("cuda").pe.device.type == "cuda"


def test_positional_encoding_forward_dropout_and_length_check():
    module = pe.PositionalEncoding(12, dropout=0.25, max_len=30).double()  # float32 table, upcast
    x = randn(8, 30, 12, seed=70)
    clean = x + loop_table(30, 12)[None]
    torch.testing.assert_close(module.eval()(x[:, :17]), clean[:, :17], atol=1e-7, rtol=0)
    torch.manual_seed(0)
    noisy = module.train()(x)
    kept = noisy != 0
    assert abs((1 - kept.double().mean().item()) - 0.25) < 0.03
    torch.testing.assert_close(noisy[kept], clean[kept] / 0.75, atol=2e-7, rtol=0)
    with pytest.raises(ValueError, match="max_len=30"):
        module(randn(1, 31, 12, seed=71))


@pytest.mark.parametrize(("H", "W", "E"), [(4, 6, 16), (5, 3, 8), (7, 2, 12)])
def test_sinusoidal_2d_is_rows_then_columns_in_row_major_order(H, W, E):
    table = loop_table(max(H, W), E // 2)
    want = torch.stack([torch.cat([table[r], table[c]]) for r in range(H) for c in range(W)])
    torch.testing.assert_close(pe.sinusoidal_2d(H, W, E).double(), want, atol=1e-7, rtol=0)


def test_sinusoidal_2d_rejects_embed_dim_not_divisible_by_4():
    with pytest.raises(ValueError, match="divisible by 4"):
        pe.sinusoidal_2d(2, 2, 6)


def test_learned_embedding_init_forward_and_gradient():
    torch.manual_seed(0)
    module = pe.LearnedPositionalEmbedding(64, 100)
    assert [(n, tuple(p.shape)) for n, p in module.named_parameters()] == [("pos_embed", (1, 64, 100))]
    assert 0.019 < module.pos_embed.std().item() < 0.021 and abs(module.pos_embed.mean().item()) < 0.002
    x = torch.randn(2, 30, 100)
    out = module(x)
    torch.testing.assert_close(out, x + module.pos_embed[:, :30])
    out.sum().backward()
    assert torch.equal(module.pos_embed.grad[0, :30], torch.full((30, 100), 2.0))
    assert torch.equal(module.pos_embed.grad[0, 30:], torch.zeros(34, 100))
    with pytest.raises(ValueError, match="num_positions=64"):
        module(torch.zeros(1, 65, 100))
