"""Hidden graders of notebook 5: local self-attention with relative positions, and attention over chunks of keys.

Outputs are compared in float64 with the reference weights copied in, atol=1e-6, rtol=1e-5 (only the order of
floating-point operations differs). Gradients are checked against the student's own forward pass (autograd against
centred differences along random directions, :func:`autograde.checks.assert_gradients_follow_forward`): a gradient
test proves that back-propagation works, so a forward-pass mistake costs the forward tests' points only. Every shape
has distinct sizes, so a mix-up of two dimensions cannot pass. Maps are small (at most 6 x 8 pixels, 24 channels)
and the sequences short, so every part runs in about a second.

Weighting (the points are each test's ``@pytest.mark.points``) follows how much of the concept a test proves:

* ``local_attention``: the formula itself is most of it: the forward pass with one head and borders, with several
  heads, kernel 5 and non-square maps, and on maps smaller than the neighbourhood, where every pixel sees the whole
  image; the contract's layers, the argument checks and gradients weigh less.
* ``attention_net``: composition only (the layers, in order, with the right sizes; the forward pass with the
  reference weights); graded with the grader's stand-in for ``LocalSelfAttention2d`` (``stand_ins.py``) when the
  student's own is wrong, so a mistake there costs points in ``local_attention`` only.
* ``chunked``: exactness against the reference for chunk sizes that divide T (the online softmax: running maximum,
  rescaling); chunk sizes that do not divide T or exceed it; masks (rows whose first chunks are all masked, a row
  with nothing to attend); no overflow for large scores, which is what the running maximum is for; gradients; and
  the memory contract, measured (no tensor as large as the whole (S, T) matrix of scores). The uneven, mask and
  large-score tests use inputs whose scores fall along the keys, so the running maximum never grows after the
  first chunk with a key to attend and a rescaling mistake costs the exactness test only. Calling
  ``F.scaled_dot_product_attention`` fails every check of the part.
* ``swin`` (optional extension): windows without and with a shift.

The known mistakes are in ``mistakes.py``. The reference is checked against independent oracles in
``tests/test_references_local.py`` (a per-pixel loop, notebook 2's masked attention with a banded mask,
``F.scaled_dot_product_attention``, torchvision's ``shifted_window_attention``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from autograde import checks
from autograde.assignments.local_attention import reference as ref
from autograde.assignments.local_attention.mistakes import (
    MESSAGES,
    chunked_mistakes,
    local_attention,
    local_mistakes,
    swin_mistakes,
)
from autograde.assignments.multi_head_attention.built_in_attention import SCALED_DOT_PRODUCT_ATTENTION
from autograde.checks import StandIns, reference_state, seeded, student_call
from autograde.compare import assert_matches
from autograde.worker.protocol import Call, CallResult, ModuleInfo
from autograde.worker.results import KnownMistake

ATOL, RTOL = 1e-6, 1e-5
LOCAL, NET, CHUNKED, SWIN = "LocalSelfAttention2d", "fully_attentional_net", "chunked_attention", "swin_attention"
BUILT_IN = (
    "the exercise is to compute attention yourself, one chunk of keys at a time (scores, running maximum, "
    "normaliser, weighted values). Built-ins may only appear in the checks and the measurements."
)

# LocalSelfAttention2d(C_in, C, m, G) and an input shape (N, C_in, H, W). In each, N, C_in, C, D = C / G, G, m, H and
# W differ (but D = C with one head), so a mix-up of two sizes cannot pass.
ONE_HEAD = [((4, 6, 3, 1), (2, 4, 5, 7)), ((3, 8, 5, 1), (2, 3, 6, 4))]
HEADS = [((9, 12, 5, 2), (3, 9, 4, 7)), ((7, 24, 3, 4), (1, 7, 5, 8))]
SMALL_MAPS = [((4, 6, 5, 1), (1, 4, 2, 3)), ((6, 20, 3, 2), (4, 6, 1, 5))]


# -------------------------------------------------------------------------------- LocalSelfAttention2d


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
            hints=local_mistakes(w, x, G, m),
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
        checks.must_raise(
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
    """gradients with respect to the input and every weight agree with your forward pass"""
    args, shape = HEADS[0]
    call, *_ = _local_call(args, shape, 40, grad=True)
    checks.assert_gradients_follow_forward(
        lambda c: student_call(student, c),
        call,
        student_call(student, call),
        ("the input",),
        seed=43,
        what=f"{LOCAL}{args} on an input {shape}",
    )


# ------------------------------------------------------------------------------ The fully attentional network
# Graded with the grader's stand-in for LocalSelfAttention2d when the student's own is wrong, so a mistake in the
# layer costs points in its own part only.

STAND_INS = StandIns("autograde.assignments.local_attention.stand_ins", (LOCAL,), ref)
NET_CONFIGS = [{}, {"kernel_size": 5, "num_heads": 2}]


def _reference_net(kwargs: dict, with_stand_ins: bool) -> torch.nn.Module:
    with STAND_INS.in_reference(with_stand_ins):
        return ref.fully_attentional_net(**kwargs).double()


def _check_net_structure(info: ModuleInfo, kwargs: dict, with_stand_ins: bool) -> None:
    sizes = "check the channels (3 -> 64 -> 32), the kernel size and the heads."
    checks.check_layers(info, checks.call_text(NET, **kwargs), _reference_net(kwargs, with_stand_ins), sizes=sizes)


# The network's Linear needs 32 x 32 maps; one image shows the composition. Its weights, input and the reference's
# scores do not depend on the student: computed once per grading process.
NET_INPUT = (1, 3, 32, 32)


@checks.computed_once
def _net_weights(config: int, seed: int) -> dict[str, torch.Tensor]:
    return reference_state(_reference_net(NET_CONFIGS[config], False), seed, scale=0.05)


@checks.computed_once
def _expected_scores(config: int, seed: int, with_stand_ins: bool) -> torch.Tensor:
    """The reference network's scores (1, 10) for ``_net_call(config, seed)``."""
    model = _reference_net(NET_CONFIGS[config], with_stand_ins)
    model.load_state_dict(_net_weights(config, seed))
    with torch.no_grad():
        return model(seeded(NET_INPUT, seed + 1))


def _net_call(config: int, seed: int) -> Call:
    """The call of the student's network ``NET_CONFIGS[config]`` with the reference weights of ``seed``."""
    x, w = seeded(NET_INPUT, seed + 1), _net_weights(config, seed)
    return Call(NET, kwargs=NET_CONFIGS[config], inputs=(x,), state_dict=w, dtype=torch.float64)


def _net_check(config: int, seed: int) -> Callable[[CallResult, bool], None]:
    def check(result: CallResult, with_stand_ins: bool) -> None:
        assert_matches(
            result.output,
            _expected_scores(config, seed, with_stand_ins),
            what=f"{checks.call_text(NET, **NET_CONFIGS[config])} scores for one image",
            atol=ATOL,
            rtol=RTOL,
        )

    return check


@pytest.mark.part("attention_net")
@pytest.mark.points(1)
def test_net_layers(student):
    """attention 3 -> 64, ReLU, attention 64 -> 32, ReLU, Flatten, Linear(32*32*32, 10), kernel and heads passed on"""
    for kwargs in NET_CONFIGS:

        def check(info: ModuleInfo, with_stand_ins: bool, kwargs=kwargs) -> None:
            _check_net_structure(info, kwargs, with_stand_ins)

        checks.describe_own_or_stand_ins(student, NET, STAND_INS, check, kwargs=kwargs)


@pytest.mark.part("attention_net")
@pytest.mark.points(2)
def test_net_forward(student):
    """with the reference weights the scores (N, 10) match the reference"""
    for config in range(len(NET_CONFIGS)):
        seed = 50 + 2 * config
        checks.own_or_stand_ins(student, _net_call(config, seed), STAND_INS, _net_check(config, seed))


@pytest.mark.part("attention_net")
@pytest.mark.points(0)
def test_net_with_your_own_attention(student):
    """diagnostic (no points): your network with your own LocalSelfAttention2d"""
    suspects = [(LOCAL, lambda: check_local(student, *HEADS[0], 55))]
    checks.blame_earlier_part(student, _net_call(0, 54), _net_check(0, 54), suspects, f"{NET}()")


# ----------------------------------------------------------------------------------- Chunked attention


def _chunk_call(q, k, v, chunk_size, mask=None, grad_outputs=None) -> Call:
    kwargs = {} if mask is None else {"mask": mask}
    return Call(
        CHUNKED,
        build=False,
        inputs=(q, k, v, chunk_size),
        input_kwargs=kwargs,
        watch=SCALED_DOT_PRODUCT_ATTENTION,
        grad_outputs=grad_outputs,
    )


def _checked(student, call: Call) -> CallResult:
    """Run ``call``; a call of the built-in attention fails the check."""
    return checks.forbid_watched(student_call(student, call), BUILT_IN)


def _qkv(batch: tuple[int, ...], S: int, T: int, D: int, Dv: int, seed: int):
    return seeded((*batch, S, D), seed), seeded((*batch, T, D), seed + 1), seeded((*batch, T, Dv), seed + 2)


def _falling_scores(
    batch: tuple[int, ...], S: int, T: int, D: int, Dv: int, seed: int, *, step: float = 0.5, offset: float = 0.0
):
    """q, k, v whose scores q . k_t / sqrt(D) fall from each key to the next, in every row, by ``step`` times a
    number in [1, 2) (plus noise below a tenth of ``step``), all raised by ``offset``.

    A row's largest score is then its first key's, and with a mask its first visible key's, so the running maximum
    never grows after the first chunk that holds a key to attend: a mistake in the rescaling (which
    test_chunked_matches_attention grades) does not show, and these inputs grade one feature each (masks, an
    uneven last chunk, large scores)."""
    generator = torch.Generator().manual_seed(seed)
    root = math.sqrt(D)
    slope = 1 + torch.rand((*batch, S, 1), generator=generator, dtype=torch.float64)  # (..., S, 1) in [1, 2)
    noise = 0.04 * step / max(D - 2, 1) ** 0.5
    q = torch.cat(
        [
            slope,
            torch.ones_like(slope),
            noise * torch.randn((*batch, S, D - 2), generator=generator, dtype=torch.float64),
        ],
        dim=-1,
    )  # (..., S, D)
    t = torch.arange(T, dtype=torch.float64).expand(*batch, T)[..., None]  # (..., T, 1)
    k = torch.cat(
        [
            -step * root * t,
            torch.full_like(t, offset * root),
            torch.randn((*batch, T, D - 2), generator=generator, dtype=torch.float64),
        ],
        dim=-1,
    )  # (..., T, D)
    v = torch.randn((*batch, T, Dv), generator=generator, dtype=torch.float64)
    scores = q @ k.transpose(-2, -1) / root  # (..., S, T)
    assert (scores.diff(dim=-1) < -0.5 * step).all(), "the grader's inputs do not fall along the keys"
    return q, k, v


def _nonfinite_mistake(out: object, mask: torch.Tensor | None, large: bool) -> str | None:
    """The known mistake behind NaN/Inf in the output (None when it is finite, "" when none explains it):
    overflow (large scores), a fully masked chunk, a blocked row."""
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or torch.isfinite(out).all():
        return None
    if large:
        return "overflow"
    if mask is None:
        return ""
    blocked = ~mask.bool().any(-1)  # (..., S): rows with nothing to attend
    bad_rows = ~torch.isfinite(out).all(-1)  # (..., S)
    bad_rows, blocked = torch.broadcast_tensors(bad_rows, blocked)
    return "masked_chunk" if (bad_rows & ~blocked).any() else "blocked_row"


def check_chunked(student, q, k, v, chunk_size, mask=None, *, what: str, large: bool = False) -> None:
    out = _checked(student, _chunk_call(q, k, v, chunk_size, mask)).output
    mistake = _nonfinite_mistake(out, mask, large)
    if mistake:
        raise KnownMistake(f"{what}: {MESSAGES[mistake]}", mistake)
    if mistake == "":
        raise AssertionError(
            f"{what}: the output has NaN or Inf values, although every score is small and every key may be attended."
        )
    want = ref.chunked_attention(q, k, v, chunk_size, mask)
    assert_matches(out, want, what=what, atol=ATOL, rtol=RTOL, hints=chunked_mistakes(q, k, v, chunk_size, mask))


@pytest.mark.part("chunked")
@pytest.mark.points(2)
def test_chunked_matches_attention(student):
    """equals softmax(q k^T / sqrt(D)) v for chunk sizes that divide T (1, 3, 4, T), batched, S != T, Dv != D"""
    q, k, v = _qkv((2, 8), 7, 12, 5, 6, 60)
    for chunk_size in (1, 3, 4, 12):
        check_chunked(student, q, k, v, chunk_size, what=f"{CHUNKED} with T = 12, chunk_size = {chunk_size}")


@pytest.mark.part("chunked")
@pytest.mark.points(1)
def test_chunked_uneven_chunks(student):
    """chunk sizes that do not divide T, and one larger than T"""
    q, k, v = _falling_scores((3,), 6, 11, 8, 4, 70)
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
        ("a mask with one row that sees nothing", blocked),
    ]


@pytest.mark.part("chunked")
@pytest.mark.points(1)
def test_chunked_masks(student):
    """with a mask (True = may attend): rows whose first chunks are all masked, and a row with nothing to attend"""
    q, k, v = _falling_scores((2,), 6, 10, 5, 7, 80)
    for name, mask in _masks(6, 10, 81):
        for chunk_size in (2, 5):
            check_chunked(student, q, k, v, chunk_size, mask, what=f"{CHUNKED} with {name}, chunk_size = {chunk_size}")
    batched = torch.stack([_masks(6, 10, 82)[0][1], _masks(6, 10, 83)[1][1]])[:, None]  # (2, 1, S, T)
    q, k, v = _falling_scores((2, 3), 6, 10, 5, 7, 84)
    check_chunked(student, q, k, v, 5, batched, what=f"{CHUNKED} with a mask of shape (2, 1, 6, 10)")


@pytest.mark.part("chunked")
@pytest.mark.points(1)
def test_chunked_large_scores(student):
    """scores in the thousands give the right output, without overflow (the running maximum)"""
    q, k, v = _falling_scores((2,), 5, 9, 8, 3, 90, step=50.0, offset=3000.0)
    check_chunked(student, q, k, v, 4, what=f"{CHUNKED} with scores of about 3000", large=True)


@pytest.mark.part("chunked")
@pytest.mark.points(1)
def test_chunked_gradients(student):
    """gradients with respect to q, k and v agree with your forward pass"""
    q, k, v = _qkv((2,), 5, 9, 4, 3, 100)
    call = _chunk_call(q, k, v, 4, grad_outputs=seeded((2, 5, 3), 103))
    checks.assert_gradients_follow_forward(
        lambda c: _checked(student, c),
        call,
        _checked(student, call),
        ("q", "k", "v", ""),
        seed=104,
        what=f"{CHUNKED} on q (2, 5, 4), k (2, 9, 4), v (2, 9, 3) with chunk_size = 4",
    )


# The memory contract, measured: the largest tensor that any torch operation creates during the call (views
# included) must be smaller than the whole (S, T) matrix of scores. No batch dimension, S > D and chunk_size > Dv,
# so that the inputs, the output, one chunk's scores and even the stacked outputs of all chunks stay below S * T.
MEMORY_SHAPES = {"S": 12, "T": 60, "D": 4, "Dv": 3, "chunk_size": 5}


@pytest.mark.part("chunked")
@pytest.mark.points(1)
def test_chunked_memory(student):
    """never creates a tensor as large as the whole (S, T) matrix of scores (the memory contract)"""
    S, T, D, Dv, chunk_size = MEMORY_SHAPES.values()
    q, k, v = _qkv((), S, T, D, Dv, 110)
    call = replace(_chunk_call(q, k, v, chunk_size), measure_created=True)
    largest = _checked(student, call).largest_created
    if largest >= S * T:
        raise KnownMistake(
            f"{CHUNKED} on q {(S, D)}, k {(T, D)}, v {(T, Dv)} with chunk_size = {chunk_size} created a tensor of "
            f"{largest} elements, as many as the whole (S, T) = {(S, T)} matrix of scores or more: "
            f"{MESSAGES['full_score_matrix']}",
            "full_score_matrix",
        )


# ----------------------------------------------------------------- Extension: shifted-window attention


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


def check_swin(student, N, side, C, G, m, s, seed) -> None:
    tensors = _swin_inputs(N, side, C, G, m, seed)
    result = student_call(student, Call(SWIN, build=False, inputs=(*tensors, m, s, G)))
    want = ref.swin_attention(*tensors, m, s, G)
    assert_matches(
        result.output,
        want,
        what=f"{SWIN} on x {(N, *side, C)}, window {m}, shift {s}, {G} heads",
        atol=ATOL,
        rtol=RTOL,
        hints=swin_mistakes(tensors, m, s, G),
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
