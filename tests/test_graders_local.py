"""The notebook-5 graders give the reference full marks, name the usual mistakes, and charge each to its own part
(in-process, fast). The mutants are written here as students write them (padded maps sliced per offset, loops over
chunks), not with the grader's own functions."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograde.assignments.local_attention import examples as ex
from autograde.assignments.local_attention import reference as ref
from autograde.worker.results import Kind
from tests.grader_reports import failed, grade_part

ASSIGNMENT = "05_local_attention"
DIAGNOSTIC = "diagnostic (no points): your network with your own LocalSelfAttention2d"


def reference_namespace(**changes) -> dict:
    """The solution with ``changes``; unless changed, its network looks its layer up in the namespace (net_in)."""
    namespace = {**ref.SOLUTION, **changes}
    if "fully_attentional_net" not in changes:
        namespace["fully_attentional_net"] = net_in(namespace)
    return namespace


def net_in(namespace: dict):
    """fully_attentional_net whose layer is looked up in ``namespace`` when it is called, as a notebook's global
    is (so the grader's stand-in takes its place when the grader swaps it in)."""

    def fully_attentional_net(kernel_size=3, num_heads=4):
        layer = namespace["LocalSelfAttention2d"]
        return nn.Sequential(
            layer(3, 64, kernel_size, num_heads),
            nn.ReLU(),
            layer(64, 32, kernel_size, num_heads),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 32 * 32, 10),
        )

    return fully_attentional_net


def grade(namespace: dict, part: str):
    return grade_part(ASSIGNMENT, namespace, part)


# ----------------------------------------------------------------------------------------- local attention


def local_layer(mistake: str) -> type[nn.Module]:
    """The layer with one mistake, computed offset by offset on padded maps."""

    class LocalSelfAttention2d(ref.LocalSelfAttention2d):
        def forward(self, x):
            N, _, H, W = x.shape
            G, m = self.num_heads, self.kernel_size
            C = self.conv_query.out_channels
            D, p = C // G, m // 2
            q = self.conv_query(x).view(N, G, D, H, W)
            keys = F.pad(self.conv_key(x), [p] * 4).view(N, G, D, H + 2 * p, W + 2 * p)
            values = F.pad(self.conv_value(x), [p] * 4).view(N, G, D, H + 2 * p, W + 2 * p)
            inside = F.pad(torch.ones(H, W, dtype=torch.bool), [p] * 4)
            rows, cols = self.rel_rows.view(G, D // 2, m), self.rel_cols.view(G, D // 2, m)
            scores, moved = [], []
            for dy in range(-p, p + 1):
                for dx in range(-p, p + 1):
                    window = (slice(p + dy, p + dy + H), slice(p + dx, p + dx + W))
                    k, v = keys[..., window[0], window[1]], values[..., window[0], window[1]]
                    t, u = (p - dy, p - dx) if mistake == "offsets_flipped" else (p + dy, p + dx)
                    if mistake == "axes_swapped":
                        t, u = u, t
                    halves = [rows[:, :, t], cols[:, :, u]]  # (G, D/2) each
                    r = torch.cat(halves[::-1] if mistake == "halves_swapped" else halves, dim=1)  # (G, D)
                    if mistake == "heads_layout":
                        r = torch.cat([self.rel_rows[:, t], self.rel_cols[:, u]]).view(G, D)
                    r = r[None, :, :, None, None]
                    if mistake == "per_channel":
                        score = q * (k + r)  # (N, G, D, H, W)
                    elif mistake == "values":
                        score, v = (q * k).sum(2), v + r
                    else:
                        score = (q * (k + r)).sum(2)  # (N, G, H, W)
                    if mistake == "scaled":
                        score = score / math.sqrt(D)
                    if mistake != "padding":
                        score = score.masked_fill(~inside[window], float("-inf"))
                    scores.append(score)
                    moved.append(v)
            scores, moved = torch.stack(scores, -1), torch.stack(moved, -1)  # (..., m*m)
            if mistake == "per_channel":
                return (F.softmax(scores, -1) * moved).sum(-1).reshape(N, C, H, W)
            if mistake == "softmax_axis":
                weights = F.softmax(scores.flatten(2, 3), dim=2).view_as(scores)  # over the pixels
            else:
                weights = F.softmax(scores, dim=-1)
            return (weights[:, :, None] * moved).sum(-1).reshape(N, C, H, W)

    return LocalSelfAttention2d


def review_layer() -> type[nn.Module]:
    """The example submission's runnable version of the published AttentionConv (the notebook's names)."""
    source = (
        "class LocalSelfAttention2d(nn.Module):\n"
        "    def __init__(self, in_channels, out_channels, kernel_size, num_heads=1):\n"
        "        super().__init__()\n"
        f"{ex.REVIEW_INIT}\n\n"
        "    def forward(self, x):\n"
        f"{ex.REVIEW_FORWARD}\n"
    )
    scope = {"nn": nn, "torch": torch, "F": F}
    exec(compile(source, "<review>", "exec"), scope)
    return scope["LocalSelfAttention2d"]


def test_the_mutants_are_right_without_their_mistake():
    layer = ref.LocalSelfAttention2d(3, 8, 5, 2).double()
    mutant_layer = local_layer("")(3, 8, 5, 2).double()
    mutant_layer.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 4, 7, dtype=torch.float64)
    torch.testing.assert_close(mutant_layer(x), layer(x))


@pytest.mark.parametrize(
    ("mistake", "message", "lost"),
    [
        ("values", "added to the values", 5),  # one head (2), heads (2), small maps (1)
        ("per_channel", "softmax runs per channel", 5),
        ("padding", "attend to the zero padding", 5),
        ("halves_swapped", "halves are swapped", 5),
        ("axes_swapped", "rows and columns are swapped", 5),
        ("offsets_flipped", "(i - a, j - b)", 5),
        ("softmax_axis", "softmax runs over the wrong axis", 5),
        ("scaled", "this formula has no scale", 5),
        ("heads_layout", "each head g has its own halves", 3),  # heads (2), small maps (1)
    ],
)
def test_local_attention_mistakes_are_named_and_charged_to_the_layer_only(mistake, message, lost):
    namespace = reference_namespace(LocalSelfAttention2d=local_layer(mistake))
    report = grade(namespace, "local_attention")
    assert any(message in m for m in failed(report).values()), report.text()
    assert report.earned == report.possible - lost, report.text()
    net = grade(namespace, "attention_net")
    assert net.earned == net.possible, net.text()  # graded with the grader's stand-in for the layer
    assert set(failed(net)) == {DIAGNOSTIC} and "LocalSelfAttention2d" in failed(net)[DIAGNOSTIC], net.text()


def test_the_reviewed_layer_is_recognised_as_such():
    namespace = reference_namespace(LocalSelfAttention2d=review_layer())
    report = grade(namespace, "local_attention")
    messages = failed(report)
    assert (
        "computes what the AttentionConv of Inline Question 3 computes"
        in messages["forward with one head matches the formula, border pixels included (kernels 3 and 5)"]
    ), report.text()
    assert report.earned == 2, report.text()  # the layers' names and shapes, and back-propagation, are right
    net = grade(namespace, "attention_net")
    assert net.earned == net.possible, net.text()


def test_a_layer_without_argument_checks_loses_that_point_only():
    class LocalSelfAttention2d(ref.LocalSelfAttention2d):
        def __init__(self, in_channels, out_channels, kernel_size, num_heads=1):
            if kernel_size % 2 == 0:
                kernel_size += 1  # silently "fixed" instead of refused
            super().__init__(in_channels, out_channels, kernel_size, num_heads)

    report = grade({"LocalSelfAttention2d": LocalSelfAttention2d}, "local_attention")
    assert set(failed(report)) == {
        "an even kernel, heads that do not divide the channels, or an odd head width raise a ValueError"
    }, report.text()
    assert "kernel_size=4 is even" in report.text()


def test_a_wrong_network_is_named_in_its_own_part():
    def fully_attentional_net(kernel_size=3, num_heads=4):
        return nn.Sequential(
            ref.LocalSelfAttention2d(3, 64, kernel_size, num_heads),
            nn.ReLU(),
            ref.LocalSelfAttention2d(64, 32, kernel_size, num_heads),
            nn.Flatten(),  # the second ReLU is missing
            nn.Linear(32 * 32 * 32, 10),
        )

    report = grade(reference_namespace(fully_attentional_net=fully_attentional_net), "attention_net")
    assert report.earned == 0, report.text()
    assert "expected ['LocalSelfAttention2d', 'ReLU', 'LocalSelfAttention2d', 'ReLU'" in report.text()


# ---------------------------------------------------------------------------------------- chunked attention


def chunked(mistake: str):
    """chunked_attention with one mistake, written as a student would."""

    def chunked_attention(q, k, v, chunk_size, mask=None):
        if mistake == "builtin":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        T, D = k.shape[-2], q.shape[-1]
        scale = 1.0 if mistake == "no_scale" else 1 / math.sqrt(D)
        if mistake == "global_maximum":  # exact, but the whole (..., S, T) matrix of scores for the maximum
            scores = q @ k.transpose(-2, -1) * scale
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            top = scores.amax(-1, keepdim=True)
            top = torch.where(top.isinf(), 0.0, top)
            total = torch.zeros(q.shape[:-1] + (1,), dtype=q.dtype)
            out = torch.zeros(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
            for start in range(0, T, chunk_size):
                s = q @ k[..., start : start + chunk_size, :].transpose(-2, -1) * scale
                if mask is not None:
                    s = s.masked_fill(~mask[..., start : start + chunk_size], float("-inf"))
                e = torch.exp(s - top)
                total, out = total + e.sum(-1, keepdim=True), out + e @ v[..., start : start + chunk_size, :]
            return torch.where(total > 0, out / total.clamp_min(1e-300), 0.0)
        stop = T - T % chunk_size if mistake == "dropped_tail" else T
        best = torch.full(q.shape[:-1] + (1,), float("-inf"), dtype=q.dtype)
        total = torch.zeros(q.shape[:-1] + (1,), dtype=q.dtype)
        out = torch.zeros(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
        for start in range(0, stop, chunk_size):
            s = q @ k[..., start : start + chunk_size, :].transpose(-2, -1) * scale
            if mask is not None:
                s = s.masked_fill(~mask[..., start : start + chunk_size], float("-inf"))
            if mistake == "no_maximum":
                e = torch.exp(s)
                total, out = total + e.sum(-1, keepdim=True), out + e @ v[..., start : start + chunk_size, :]
                continue
            new = torch.maximum(best, s.amax(-1, keepdim=True))
            if mistake == "own_maximum":
                new = s.amax(-1, keepdim=True)
            safe = new if mistake.startswith("nan_") else torch.where(new.isinf(), 0.0, new)
            factor = torch.ones_like(total) if mistake == "own_maximum" else torch.exp(best - safe)
            e = torch.exp(s - safe)
            total = (total if mistake == "normaliser_not_rescaled" else total * factor) + e.sum(-1, keepdim=True)
            out = out * factor + e @ v[..., start : start + chunk_size, :]
            best = new
        if mistake in ("zero_over_zero", "nan_when_masked"):
            return out / total
        return torch.where(total > 0, out / total.clamp_min(1e-300), 0.0)

    return chunked_attention


def test_the_chunked_mutant_is_right_without_its_mistake():
    report = grade({"chunked_attention": chunked("")}, "chunked")
    assert report.earned == report.possible, report.text()


@pytest.mark.parametrize(
    ("mistake", "message", "lost"),
    [
        ("no_maximum", "the exponentials overflow", 1),  # large scores only
        ("own_maximum", "that chunk's own maximum", 5),  # every test of values; gradients and memory pass
        ("normaliser_not_rescaled", "the running normaliser is not", 2),  # exactness only: no cascade
        ("dropped_tail", "the last, shorter chunk is left out", 1),  # uneven chunks only
        ("no_scale", "the 1/sqrt(D) scale is missing", 4),  # scores in the thousands: both pick the same key
        ("nan_when_masked", "exp(-inf - (-inf)) is NaN", 1),  # masks only
        ("nan_hidden_by_where", "exp(-inf - (-inf)) is NaN", 1),  # the same, the NaN rows then set to 0
        ("zero_over_zero", "must get a zero output", 1),
        ("global_maximum", "holds as much memory as the whole matrix of scores", 1),  # the memory contract only
    ],
)
def test_chunked_mistakes_are_named(mistake, message, lost):
    report = grade({"chunked_attention": chunked(mistake)}, "chunked")
    assert any(message in m for m in failed(report).values()), report.text()
    assert report.earned == report.possible - lost, report.text()


def test_a_normaliser_not_rescaled_fails_only_the_exactness_test():
    """No cascade: masks, uneven chunks, large scores, gradients and memory are proven on their own."""
    report = grade({"chunked_attention": chunked("normaliser_not_rescaled")}, "chunked")
    assert set(failed(report)) == {
        "equals softmax(q k^T / sqrt(D)) v for chunk sizes that divide T (1, 3, 4, T), batched, S != T, Dv != D"
    }, report.text()
    assert all(o.mistake == "normaliser_not_rescaled" for o in report.outcomes if not o.passed), report.text()


def test_the_whole_matrix_of_scores_fails_only_the_memory_test():
    report = grade({"chunked_attention": chunked("global_maximum")}, "chunked")
    assert set(failed(report)) == {
        "never creates a tensor as large as the whole (S, T) matrix of scores (the memory contract)"
    }, report.text()


def test_calling_the_builtin_attention_earns_nothing():
    report = grade({"chunked_attention": chunked("builtin")}, "chunked")
    assert report.earned == 0
    assert all(o.kind is Kind.FORBIDDEN_CALL for o in report.outcomes), report.text()
    assert "F.scaled_dot_product_attention" in report.text()


# ----------------------------------------------------------------------------------------- shifted windows


def swin(mistake: str):
    def swin_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, position_bias, window_size, shift_size, heads):
        s = shift_size
        if mistake == "no_mask":  # rolled, but the windows attend as if nothing had moved
            rolled = torch.roll(x, (-s, -s), (1, 2))
            out = ref.swin_attention(
                rolled, qkv_weight, qkv_bias, proj_weight, proj_bias, position_bias, window_size, 0, heads
            )
            return torch.roll(out, (s, s), (1, 2))
        out = ref.swin_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, position_bias, window_size, s, heads)
        return torch.roll(out, (-s, -s), (1, 2))  # "no_roll_back"

    return swin_attention


@pytest.mark.parametrize(("mistake", "message"), [("no_mask", "same region"), ("no_roll_back", "not rolled back")])
def test_swin_mistakes_are_named_and_cost_the_shifted_windows(mistake, message):
    report = grade({"swin_attention": swin(mistake)}, "swin")
    assert report.earned == 1, report.text()
    assert (
        message
        in failed(report)[
            "with a shift: the map rolled by (-s, -s), regions masked inside the windows, the output rolled back"
        ]
    ), report.text()


def test_missing_definitions_score_zero_with_a_message():
    for part, name in [("local_attention", "LocalSelfAttention2d"), ("chunked", "chunked_attention")]:
        report = grade({}, part)
        assert report.earned == 0
        assert all(f"`{name}` is not defined" in o.message for o in report.outcomes), report.text()


def test_the_review_source_in_the_example_is_the_one_the_notebook_shows():
    """The runnable version differs from the code shown to students only by the edits the notebook marks."""
    from tests.notebook_cells import source_notebook

    shown = next(c.source for c in source_notebook(ASSIGNMENT).cells if "class AttentionConv" in c.source)
    for line in textwrap.dedent(ex.REVIEW_FORWARD).splitlines():
        line = line.strip()
        if line and "rel_" not in line and "x.size()" not in line and "self.conv_" not in line:
            assert line in shown, line


def test_the_visible_checks_name_the_known_mistakes_in_the_graders_words():
    """Every known-mistake message of the graders appears, word for word, as a string of the notebook's checks."""
    from autograde.assignments.local_attention.mistakes import MESSAGES
    from tests.notebook_cells import code_strings

    strings = code_strings(ASSIGNMENT)
    graded_only = {"swin_no_scale"}  # Swin's missing scale: the hidden tests name it, the visible check does not
    missing = [
        name for name, message in MESSAGES.items() if name not in graded_only and not any(message in s for s in strings)
    ]
    assert not missing, f"messages of the graders that the notebook's checks do not use: {missing}"
