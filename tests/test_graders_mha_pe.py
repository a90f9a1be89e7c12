"""The graders of notebooks 2 and 3 give the references full marks and name the usual mistakes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograde.assignments.multi_head_attention import reference as mha
from autograde.assignments.positional_encoding import reference as pe
from autograde.catalog import catalog
from autograde.harness import PartReport
from tests.grader_reports import failed
from tests.grader_reports import grade_part as grade

MHA_ID, PE_ID = "02_multi_head_attention", "03_positional_encoding"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The graders run many tiny ops, which extra threads only slow down on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mha_namespace(**overrides) -> dict:
    return {**mha.SOLUTION, **overrides}


def pe_namespace(**overrides) -> dict:
    return {**pe.SOLUTION, **overrides}


def assert_named(report: PartReport, message: str, *, lost: int | None = None) -> None:
    """Some points were lost, one failure names ``message``; ``lost`` is the exact number of points lost."""
    assert report.earned < report.possible, report.text()
    assert any(message in m for m in failed(report).values()), report.text()
    if lost is not None:
        assert report.possible - report.earned == lost, report.text()


# ---------------------------------------------------------------- scaled_dot_product_attention mutants


def sdpa_mutant(mistake: str):
    """The reference function with one realistic mistake."""

    def attend(q, k, v, mask=None, dropout=None):
        D = q.shape[-1]
        scale = {"no_scale": 1.0, "scale_d": D, "sqrt_s": math.sqrt(q.shape[-2])}.get(mistake, math.sqrt(D))
        scores = q @ k.transpose(-2, -1) / scale
        if mistake == "builtin":
            weights = F.softmax(scores if mask is None else scores.masked_fill(~mask.bool(), -math.inf), -1)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights.nan_to_num(0.0)
        if mask is not None:
            blocked = mask.bool() if mistake == "inverted" else (~mask if mistake == "tilde" else ~mask.bool())
            fill = -1e9 if mistake == "large_negative" else -math.inf
            if mistake != "after_softmax":
                scores = scores.masked_fill(blocked, fill)
        weights = F.softmax(scores, dim=-2 if mistake == "axis" else -1)
        if mask is not None and mistake not in ("large_negative", "nan_rows"):
            weights = weights.masked_fill(blocked, 0.0)
        used = weights
        if dropout is not None and mistake != "no_dropout":
            used = dropout(weights)
        out = used @ v
        if mistake == "dropout_on_output" and dropout is not None:
            out, used = dropout(weights @ v), weights
        if mistake == "pre_dropout_weights":
            return out, weights
        return (used, out) if mistake == "swapped" else (out, used)

    return attend


@pytest.mark.parametrize(
    ("mistake", "message", "lost"),
    [
        ("no_scale", "the 1/sqrt(D) scale is missing", None),
        ("scale_d", "the scores are divided by D", None),
        ("sqrt_s", "scaled by 1/sqrt of the number of queries S or of keys T", None),
        ("axis", "the softmax runs over the queries", None),
        ("inverted", "the mask is inverted", 5),  # a conceptual error: the masks and the blocked row
        ("after_softmax", "the mask is applied after the softmax", 3),  # its blocked row is zero: only the masks
        ("large_negative", "uniform weights 1/T", 2),
        ("nan_rows", "must get zero weights and a zero output", 2),
        ("tilde", "~ on an integer tensor", 1),
        ("swapped", "the tuple is in the wrong order", None),
        ("builtin", "calls F.scaled_dot_product_attention", 12),
        ("no_dropout", "nothing was dropped", 2),
        ("dropout_on_output", "the returned weights show no dropout", 2),
        ("pre_dropout_weights", "the returned weights show no dropout", 2),
    ],
)
def test_sdpa_mistakes_are_named_and_lose_points(mistake, message, lost):
    report = grade(MHA_ID, mha_namespace(scaled_dot_product_attention=sdpa_mutant(mistake)), "sdpa")
    assert_named(report, message, lost=lost)


SDPA_VALUES = {  # the sdpa tests that compare values with the reference
    "without a mask, output and weights match the reference (several shapes, S != T)",
    "a causal mask, a random mask and a batched padding mask (bool, broadcast) give the reference result",
}


@pytest.mark.parametrize("mistake", ["no_scale", "scale_d", "sqrt_s"])
def test_a_scale_error_in_the_function_fails_only_the_tests_of_its_values(mistake):
    """No cascade: the blocked row, the integer mask, the gradients and dropout are proven on their own."""
    report = grade(MHA_ID, mha_namespace(scaled_dot_product_attention=sdpa_mutant(mistake)), "sdpa")
    assert set(failed(report)) == SDPA_VALUES, report.text()


# ---------------------------------------------------------------- MultiHeadAttention mutants


class WrongSplit(mha.MultiHeadAttention):
    """view(N, H, L, D) without the transpose, and the matching reshape back."""

    def _split_heads(self, x):
        N, L, _ = x.shape
        return x.view(N, self.num_heads, L, self.head_dim)

    def forward(self, query, key, value, attn_mask=None):
        N, S, E = query.shape
        q, k, v = (
            self._split_heads(self.query(query)),
            self._split_heads(self.key(key)),
            self._split_heads(self.value(value)),
        )
        out, self.attn_weights = mha.scaled_dot_product_attention(q, k, v, attn_mask, self.attn_drop)
        return self.proj(out.reshape(N, S, E))


def mha_mutant(mistake: str) -> type[nn.Module]:
    """The reference module with one realistic mistake in forward."""

    class Mutant(mha.MultiHeadAttention):
        def forward(self, query, key, value, attn_mask=None):
            N, S, E = query.shape
            if mistake == "keys_from_query":
                key = value = query
            q, k, v = (
                self._split_heads(lin(x)) for lin, x in ((self.query, query), (self.key, key), (self.value, value))
            )
            if mistake == "builtin":
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
                self.attn_weights = None
                return self.proj(out.transpose(1, 2).reshape(N, S, E))
            scale = math.sqrt(E) if mistake == "sqrt_e" else math.sqrt(self.head_dim)
            scores = q @ k.transpose(-2, -1) / scale
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask.bool(), -math.inf)
            weights = F.softmax(scores, -1)
            if attn_mask is not None:
                weights = weights.masked_fill(~attn_mask.bool(), 0.0)
            if mistake == "dropout_in_eval":
                weights = F.dropout(weights, self.attn_drop.p)
            elif mistake != "dropout_on_output":
                weights = self.attn_drop(weights)
            if mistake != "no_attn_weights":
                self.attn_weights = weights.detach()
            out = weights @ v
            out = out.reshape(N, S, E) if mistake == "merge" else out.transpose(1, 2).reshape(N, S, E)
            if mistake == "dropout_on_output":
                out = self.attn_drop(out)
            return out if mistake == "no_proj" else self.proj(out)

    return Mutant


class NoHeadCheck(mha.MultiHeadAttention):
    def __init__(self, embed_dim, num_heads, dropout=0.1):
        nn.Module.__init__(self)
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.query, self.key, self.value, self.proj = (nn.Linear(embed_dim, embed_dim) for _ in range(4))
        self.attn_drop = nn.Dropout(dropout)
        self.attn_weights = None


def test_wrong_head_split_fails_the_forward_tests_with_its_message():
    report = grade(MHA_ID, mha_namespace(MultiHeadAttention=WrongSplit), "mha")
    failures = failed(report)
    for test in (
        "self-attention (query = key = value) matches the reference in eval mode",
        "cross-attention (S != T, different key and value inputs) matches the reference in eval mode",
        "attn_weights holds the last (N, h, S, T) weights, each query's row summing to 1",
    ):
        assert "the heads are split in the wrong order" in failures.get(test, ""), report.text()


@pytest.mark.parametrize(
    ("mistake", "message", "lost"),
    [
        ("merge", "the heads are merged in the wrong order", None),
        ("sqrt_e", "scale by 1/sqrt(E / h)", None),
        ("no_proj", "the output projection is missing", None),
        ("keys_from_query", "keys and values are computed from `query`", None),
        ("dropout_in_eval", "dropout is still active", None),
        ("dropout_on_output", "apply self.attn_drop to the attention weights (not to the output)", 2),
        ("no_attn_weights", "keep the (N, h, S, T) attention weights", None),
        ("builtin", "calls F.scaled_dot_product_attention", 16),  # all but the two contract checks
    ],
)
def test_mha_mistakes_are_named_and_lose_points(mistake, message, lost):
    report = grade(MHA_ID, mha_namespace(MultiHeadAttention=mha_mutant(mistake)), "mha")
    assert_named(report, message, lost=lost)


def test_a_scale_error_in_the_module_fails_only_the_tests_of_its_values():
    """No cascade: a query that attends to nothing and the gradients are proven on their own."""
    report = grade(MHA_ID, mha_namespace(MultiHeadAttention=mha_mutant("sqrt_e")), "mha")
    assert set(failed(report)) == {
        "self-attention (query = key = value) matches the reference in eval mode",
        "cross-attention (S != T, different key and value inputs) matches the reference in eval mode",
        "attn_weights holds the last (N, h, S, T) weights, each query's row summing to 1",
        "a causal (S, S) mask and a random (S, T) mask give the reference result",
    }, report.text()


def test_missing_head_check_loses_one_point():
    report = grade(MHA_ID, mha_namespace(MultiHeadAttention=NoHeadCheck), "mha")
    assert_named(report, "raise a ValueError when embed_dim is not divisible", lost=1)


@pytest.mark.parametrize("mistake", ["inverted", "sqrt_s"])  # sqrt_s: S differs from D in every check
def test_mha_using_the_students_broken_function_loses_points_in_the_function_only(mistake):
    namespace = mha_namespace(scaled_dot_product_attention=sdpa_mutant(mistake))

    class UsesStudentFunction(mha.MultiHeadAttention):
        def forward(self, query, key, value, attn_mask=None):
            N, S, E = query.shape
            q, k, v = (
                self._split_heads(lin(x)) for lin, x in ((self.query, query), (self.key, key), (self.value, value))
            )
            out, self.attn_weights = namespace["scaled_dot_product_attention"](q, k, v, attn_mask, self.attn_drop)
            return self.proj(out.transpose(1, 2).reshape(N, S, E))

    namespace["MultiHeadAttention"] = UsesStudentFunction
    report = grade(MHA_ID, namespace, "mha")  # graded with the grader's stand-in function: no points lost here
    assert report.earned == report.possible, report.text()
    diagnostic = "diagnostic (no points): your MultiHeadAttention with your own scaled_dot_product_attention"
    assert "scaled_dot_product_attention" in failed(report)[diagnostic], report.text()


def test_missing_definitions_score_zero():
    for part in catalog(MHA_ID).parts:
        report = grade(MHA_ID, {}, part)
        pointed = [o for o in report.outcomes if o.spec.points]
        assert report.earned == 0 and all("is not defined" in o.message for o in pointed), report.text()


# ---------------------------------------------------------------- positional encoding mutants


def table(L: int, d: int, mistake: str) -> torch.Tensor:
    """The 1D table written the usual vectorised way, with one mistake."""
    position = torch.arange(L, dtype=torch.float32)[:, None] + (1 if mistake == "start_1" else 0)
    exponent = torch.arange(0, d, 2, dtype=torch.float32) / d * (2 if mistake == "double_j" else 1)
    freq = 10000.0 ** (-exponent)
    out = torch.zeros(L, d)
    sin, cos = (torch.cos, torch.sin) if mistake == "swap" else (torch.sin, torch.cos)
    if mistake == "halves":
        return torch.cat([torch.sin(position * freq), torch.cos(position * freq)], dim=1)
    out[:, 0::2] = sin(position * freq)
    odd_freq = 10000.0 ** (-torch.arange(1, d, 2, dtype=torch.float32) / d) if mistake == "odd_j" else freq
    out[:, 1::2] = cos(position * odd_freq)
    return out


def pe_mutant(mistake: str) -> type[nn.Module]:
    class Mutant(nn.Module):
        def __init__(self, embed_dim, dropout=0.1, max_len=5000):
            super().__init__()
            self.dropout = nn.Dropout(dropout)
            values = table(max_len, embed_dim, mistake)[None]
            if mistake == "parameter":
                self.pe = nn.Parameter(values)
            elif mistake == "attribute":
                self.pe = values
            else:
                self.register_buffer("pe", values, persistent=mistake != "not_persistent")

        def forward(self, x):
            S = x.shape[1]
            if mistake != "no_length_check" and S > self.pe.shape[1]:
                raise ValueError(f"sequence of {S} positions is longer than max_len={self.pe.shape[1]}")
            if mistake == "dropout_on_pe":
                return x + self.dropout(self.pe[:, :S])
            if mistake == "pe_only":
                return self.dropout(self.pe[:, :S]).expand_as(x)
            return self.dropout(x + self.pe[:, :S])

    return Mutant


@pytest.mark.parametrize(
    ("mistake", "message", "lost"),
    [
        ("swap", "sin and cos are swapped", None),
        ("odd_j", "odd channels use the exponent j/d", None),
        ("double_j", "the exponent is 2j/d", None),
        ("halves", "interleave them", None),
        ("start_1", "positions start at 1", None),
        ("parameter", "is an nn.Parameter", 2),
        ("attribute", "is a plain tensor attribute", 3),
        ("not_persistent", "The buffer must be persistent", 2),
        ("no_length_check", "does not mention max_len", 1),
        ("dropout_on_pe", "dropout is applied to pe alone", 1),
        ("pe_only", "forward returns the encoding only", None),
    ],
)
def test_pe_mistakes_are_named_and_lose_points(mistake, message, lost):
    report = grade(PE_ID, pe_namespace(PositionalEncoding=pe_mutant(mistake)), "pe")
    assert_named(report, message, lost=lost)


@pytest.mark.parametrize("mistake", ["swap", "odd_j", "double_j", "halves", "start_1"])
def test_a_wrong_table_loses_only_the_value_points(mistake):
    report = grade(PE_ID, pe_namespace(PositionalEncoding=pe_mutant(mistake)), "pe")
    assert set(failed(report)) == {
        "pe[0, i, j] follows the formula (sin for even j, cos for odd j, exponent (j - 1)/d for odd j)"
    }, report.text()


def grid_mutant(mistake: str):
    def grid(height, width, embed_dim):
        half = embed_dim // 2
        d = embed_dim if mistake == "full_d" else half
        rows = table(height, d, "none")[:, :half][:, None].expand(height, width, half)
        cols = table(width, d, "none")[:, :half][None].expand(height, width, half)
        out = torch.cat([cols, rows] if mistake == "swap" else [rows, cols], -1)
        return (out.transpose(0, 1) if mistake == "column_major" else out).reshape(-1, embed_dim)

    return grid


@pytest.mark.parametrize(
    ("mistake", "message"),
    [("swap", "the halves are swapped"), ("column_major", "column-major order"), ("full_d", "use d = E/2")],
)
def test_2d_mistakes_are_named_and_lose_the_value_points(mistake, message):
    report = grade(PE_ID, pe_namespace(sinusoidal_2d=grid_mutant(mistake)), "pe2d")
    assert_named(report, message, lost=3)


def learned_mutant(mistake: str) -> type[nn.Module]:
    class Mutant(nn.Module):
        def __init__(self, num_positions, embed_dim):
            super().__init__()
            shape = (num_positions, embed_dim) if mistake == "no_batch_dim" else (1, num_positions, embed_dim)
            init = {"randn": torch.randn(shape), "zeros": torch.zeros(shape)}.get(mistake, torch.randn(shape) * 0.02)
            self.pos_embed = nn.Parameter(init)

        def forward(self, x):
            return x + self.pos_embed[..., : x.shape[1], :]

    return Mutant


@pytest.mark.parametrize(
    ("mistake", "message", "lost"),
    [
        ("randn", "expected mean 0 and std 0.02", 1),
        ("zeros", "starts as a constant", 1),
        ("no_batch_dim", "expected only pos_embed of shape (1, 10, 8)", None),
    ],
)
def test_learned_mistakes_are_named_and_lose_points(mistake, message, lost):
    report = grade(PE_ID, pe_namespace(LearnedPositionalEmbedding=learned_mutant(mistake)), "learned")
    assert_named(report, message, lost=lost)


def test_the_visible_checks_name_the_new_diagnoses_in_the_graders_words():
    """The scale by the wrong size is named, word for word, by the notebook's checks and by the graders."""
    from autograde.assignments.multi_head_attention.mistakes import MESSAGES
    from tests.notebook_cells import code_strings

    strings = code_strings(MHA_ID)
    assert any(MESSAGES["scale_by_wrong_dim"] in s for s in strings)


# ---------------------------------------------------------------- interpolating position embeddings


def interpolation_mutant(mistake: str):
    """interpolate_pos_embed written the way students write it, with one mistake."""

    def interpolate(pos_embed, old_grid, new_grid, class_token=False):
        (H, W), (H2, W2) = old_grid, new_grid
        E = pos_embed.shape[-1]
        first = 1 if class_token else 0
        cls, patches = pos_embed[:, :first], pos_embed[:, first:]
        if mistake == "straight_reshape":
            grid = patches.reshape(1, E, H, W)
        else:
            grid = patches.transpose(1, 2).reshape(1, E, H, W)  # the same as permuting (1, H, W, E)
        size = (W2, H2) if mistake == "sides_swapped" else (H2, W2)
        mode = "bilinear" if mistake == "bilinear" else "bicubic"
        grid = F.interpolate(grid, size=size, mode=mode, align_corners=mistake == "align_corners")
        if mistake in ("straight_reshape", "straight_back"):
            patches = grid.reshape(1, H2 * W2, E)
        else:
            patches = grid.flatten(2).transpose(1, 2)  # (1, H'*W', E)
        if mistake == "class_token_dropped":
            return patches
        if mistake == "class_token_zeroed":
            cls = torch.zeros_like(cls)
        return torch.cat([cls, patches], dim=1)

    return interpolate


INTERPOLATION_VALUES = (
    "the patches' embeddings are the H x W grid resized to H' x W' (bicubic, align_corners=False), row-major"
)
INTERPOLATION_SHAPE = (
    "the result has shape (1, H'*W', E), or (1, 1 + H'*W', E) with the class token's embedding first, unchanged"
)


def test_the_interpolation_written_another_way_earns_every_point():
    report = grade(PE_ID, pe_namespace(interpolate_pos_embed=interpolation_mutant("none")), "interpolate")
    assert report.earned == report.possible == 3, report.text()


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("straight_reshape", "reshaped straight to (1, E, H, W)"),
        ("straight_back", "reshaped straight to (1, H'*W', E)"),
        ("sides_swapped", "resized to W' rows and H' columns"),
        ("bilinear", "bilinear interpolation"),
        ("align_corners", "align_corners=True"),
    ],
)
def test_interpolation_mistakes_are_named_and_lose_only_the_value_points(mistake, message):
    report = grade(PE_ID, pe_namespace(interpolate_pos_embed=interpolation_mutant(mistake)), "interpolate")
    assert set(failed(report)) == {INTERPOLATION_VALUES}, report.text()
    assert message in failed(report)[INTERPOLATION_VALUES], report.text()


@pytest.mark.parametrize(
    ("mistake", "message"), [("class_token_dropped", "the class token is missing"), ("class_token_zeroed", "class")]
)
def test_a_lost_class_token_costs_only_its_point(mistake, message):
    report = grade(PE_ID, pe_namespace(interpolate_pos_embed=interpolation_mutant(mistake)), "interpolate")
    assert set(failed(report)) == {INTERPOLATION_SHAPE}, report.text()
    assert message in failed(report)[INTERPOLATION_SHAPE], report.text()
    assert report.possible - report.earned == 1, report.text()


def test_the_visible_check_names_the_interpolation_mistakes_in_the_graders_words():
    from autograde.assignments.positional_encoding.mistakes import MESSAGES, interpolation_mistakes
    from tests.notebook_cells import code_strings

    strings = code_strings(PE_ID)
    names = [m.name for m in interpolation_mistakes(torch.zeros(1, 4, 2), (2, 2), (3, 3), False)]
    missing = [name for name in names if not any(MESSAGES[name] in s for s in strings)]
    assert not missing, f"interpolation mistakes the notebook's check does not name in the graders' words: {missing}"
