"""Hidden graders of notebook 2: scaled dot-product attention and multi-head attention.

Tolerances: outputs and weights are compared in float64 with atol=1e-6, rtol=1e-5 (the student's module gets the
reference weights, so only the order of floating-point operations differs). Dropout is checked by its statistics
(fraction of dropped weights, rescaling of the survivors), never against random draws. Gradients are checked against
the student's own forward pass (autograd against centred differences along random directions,
:func:`autograde.checks.assert_gradients_follow_forward`): a gradient test proves that back-propagation works, so a
forward-pass mistake costs the forward tests' points only. Every shape has distinct sizes, so a mix-up of two
dimensions cannot pass. Each test proves one feature: a query that may attend to nothing is checked on its own row
(zero weights, an output that depends on no input), and a 0/1 integer mask against the student's own result for the
same boolean mask, so a scale error costs the tests of the values only.

Weighting (the points are the ``@pytest.mark.points`` of each test): they follow how much of the concept a test
proves. The masks weigh most, since a mask used the wrong way round is a conceptual error, then the unmasked
values, fully blocked rows (zero weights, never NaN), dropout and, in ``mha``, self- and cross-attention and
gradients; the return contract, integer masks, the contract's layers, the divisibility check, the output shape,
the kept weights and eval-mode determinism are bookkeeping. ``mha`` is graded with the grader's stand-in function
(``stand_ins.py``) when the student's own ``scaled_dot_product_attention`` is wrong, so a mistake there costs its
points once, in ``sdpa``; the 0-point diagnostic names it. A test that needs ``attn_weights`` only as a means
(dropout) measures through the output when the attribute is missing. Calling torch's built-in attention
(``built_in_attention.py``) fails the check. The known mistakes are in ``mistakes.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from torch import nn

from autograde import checks
from autograde.assignments.multi_head_attention import reference as ref
from autograde.assignments.multi_head_attention.built_in_attention import (
    MULTIHEAD_ATTENTION,
    SCALED_DOT_PRODUCT_ATTENTION,
)
from autograde.assignments.multi_head_attention.mistakes import (
    BLOCKED_ROW_HINT,
    MESSAGES,
    mha_mistakes,
    pick,
    sdpa_mistakes,
)
from autograde.checks import StandIns, reference_state, seeded, student_call
from autograde.compare import assert_matches, close
from autograde.worker.protocol import Call, CallResult, Student
from autograde.worker.results import KnownMistake, StudentError

ATOL, RTOL = 1e-6, 1e-5
SDPA = "scaled_dot_product_attention"
MHA = "MultiHeadAttention"
WATCH_SDPA = SCALED_DOT_PRODUCT_ATTENTION
WATCH_MHA = {**SCALED_DOT_PRODUCT_ATTENTION, **MULTIHEAD_ATTENTION}
BUILT_IN = (
    "the exercise is to write attention yourself (q @ k^T, scale, mask, softmax, dropout, @ v). Built-ins may only "
    "appear in the checks."
)
# (N, S, T, E, H): self- and cross-attention, a batch of one with one head, head sizes not powers of two. In every
# check N, S, T, E, H and D = E / H differ (S = T only in self-attention, D = E only with one head), so a scale by
# the wrong size or a mix-up of two dimensions cannot pass.
MHA_SHAPES = [(2, 5, 5, 12, 3), (3, 5, 6, 8, 2), (1, 6, 6, 8, 1), (2, 4, 7, 18, 6), (2, 6, 6, 20, 4)]
INTEGER_MASK_HINT = (
    "With a 0/1 integer mask: turn it into booleans first (mask.bool() or mask == 0 for the blocked positions); "
    "~ on an integer tensor is a bitwise not (~1 == -2), not 'not'."
)


def _checked(student: Student, call: Call) -> CallResult:
    """Run ``call`` and fail when it used a built-in attention it was meant to write by hand."""
    return checks.forbid_watched(student_call(student, call), BUILT_IN)


def _causal(S: int, T: int) -> torch.Tensor:
    return torch.ones(S, T, dtype=torch.bool).tril()


def _random_mask(S: int, T: int, seed: int) -> torch.Tensor:
    """A mask in which every row allows some keys and blocks others (so does its inverse)."""
    scores = torch.rand((S, T), generator=torch.Generator().manual_seed(seed))
    mask = scores > 0.5
    mask[:, 0], mask[:, -1] = True, False
    return mask


def _nan_message(actual: object, mask: torch.Tensor | None, what: str) -> None:
    """Name the NaN mistakes: a blocked row left as NaN, or NaN caused by an inverted mask."""
    if not isinstance(actual, torch.Tensor) or not actual.is_floating_point() or not actual.isnan().any():
        return
    if mask is not None and not mask.bool().any(-1).all():
        raise AssertionError(f"NaN in {what}: {BLOCKED_ROW_HINT}")
    if mask is not None and mask.bool().all(-1).any():
        raise AssertionError(
            f"NaN in {what}, in a row that the mask fully allows: is the mask inverted? True (or 1) "
            "means 'may attend', so fill the scores where the mask is False with -inf."
        )
    raise AssertionError(f"NaN in {what}.")


# ---------------------------------------------------------------- scaled_dot_product_attention


def _sdpa_call(q, k, v, **kwargs) -> Call:
    return Call(SDPA, build=False, inputs=(q, k, v), input_kwargs=kwargs, watch=WATCH_SDPA)


def _unpack(result: CallResult) -> tuple[torch.Tensor, torch.Tensor]:
    out = result.output
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise AssertionError(f"{SDPA} returned {type(out).__name__}; it must return a tuple (output, weights).")
    return out[0], out[1]


def _check_sdpa(student, q, k, v, mask=None, *, what: str, given_mask=None) -> None:
    """Compare the student's (output, weights) with the reference; ``given_mask`` is what the student gets."""
    kwargs = {} if mask is None else {"mask": mask if given_mask is None else given_mask}
    out, weights = _unpack(_checked(student, _sdpa_call(q, k, v, **kwargs)))
    want_out, want_weights = ref.scaled_dot_product_attention(q, k, v, mask)
    mistakes = sdpa_mistakes(q, k, v, mask)
    for got, want, index, name in ((weights, want_weights, 1, "weights"), (out, want_out, 0, "output")):
        _nan_message(got, mask, f"the {name} {what}")
        assert_matches(got, want, what=f"the {name} {what}", atol=ATOL, rtol=RTOL, hints=pick(mistakes, index))


def _qkv(batch: tuple[int, ...], S: int, T: int, D: int, seed: int):
    return seeded((*batch, S, D), seed), seeded((*batch, T, D), seed + 1), seeded((*batch, T, D), seed + 2)


@pytest.mark.part("sdpa")
@pytest.mark.points(1)
def test_sdpa_returns_output_and_weights(student):
    """returns (output (..., S, D), weights (..., S, T)) for any number of leading dimensions"""
    for batch, S, T, D in [((2, 3), 4, 6, 5), ((), 3, 2, 4), ((2,), 5, 7, 8)]:
        q, k, v = (t.float() for t in _qkv(batch, S, T, D, 0))
        out, weights = _unpack(_checked(student, _sdpa_call(q, k, v)))
        shapes = (tuple(getattr(out, "shape", ())), tuple(getattr(weights, "shape", ())))
        want = ((*batch, S, D), (*batch, S, T))
        if shapes == want[::-1]:
            raise AssertionError("the tuple is in the wrong order: return (output, weights), output first.")
        assert shapes == want, f"q {tuple(q.shape)}, k and v {tuple(k.shape)} gave shapes {shapes}; expected {want}"


@pytest.mark.part("sdpa")
@pytest.mark.points(2)
def test_sdpa_matches_reference(student):
    """without a mask, output and weights match the reference (several shapes, S != T)"""
    for i, (batch, S, T, D) in enumerate([((2, 3), 4, 6, 5), ((1,), 5, 9, 8), ((4,), 2, 7, 3)]):
        _check_sdpa(student, *_qkv(batch, S, T, D, 10 * i), what=f"for q {(*batch, S, D)}, k {(*batch, T, D)}")


@pytest.mark.part("sdpa")
@pytest.mark.points(3)
def test_sdpa_masks(student):
    """a causal mask, a random mask and a batched padding mask (bool, broadcast) give the reference result"""
    q, k, v = _qkv((2, 3), 5, 5, 4, 20)
    _check_sdpa(student, q, k, v, _causal(5, 5), what="with a causal (5, 5) mask")
    q, k, v = _qkv((2, 3), 5, 7, 4, 21)
    _check_sdpa(student, q, k, v, _random_mask(5, 7, 22), what="with a (5, 7) mask (cross-attention)")
    q, k, v = _qkv((2,), 5, 6, 4, 23)
    padding = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:, None, :]  # (N, 1, T)
    _check_sdpa(student, q, k, v, padding, what="with a padding mask of shape (N, 1, T) = (2, 1, 6)")


@pytest.mark.part("sdpa")
@pytest.mark.points(1)
def test_sdpa_integer_mask(student):
    """a 0/1 integer mask gives what the same mask as booleans gives (1 = may attend)"""
    q, k, v = _qkv((2,), 5, 6, 3, 30)
    mask = _random_mask(5, 6, 31)
    as_bool = _unpack(_checked(student, _sdpa_call(q, k, v, mask=mask)))
    try:
        as_integers = _unpack(_checked(student, _sdpa_call(q, k, v, mask=mask.long())))
    except StudentError as exc:
        raise StudentError(f"{exc}\n{INTEGER_MASK_HINT}", exc.kind, exc.exc_type) from None
    for got, want, name in zip(as_integers, as_bool, ("output", "weights"), strict=True):
        try:
            assert_matches(
                got,
                want,
                what=f"your {name} with a (5, 6) 0/1 (torch.long) mask, compared with your {name} for the same "
                "mask as booleans,",
                atol=ATOL,
                rtol=RTOL,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc} {INTEGER_MASK_HINT}") from None


def _check_blocked_row(
    out: object, weights: object, mask: torch.Tensor, row: int, what: str, inverted: torch.Tensor | None = None
) -> None:
    """Query ``row``, which may attend to nothing, has zero weights and a zero output; nothing is NaN. ``what``
    names the call ("with ... mask"); ``inverted``: the weights an inverted mask gives, to name that mistake."""
    S, T = mask.shape
    for got, name in ((weights, "weights"), (out, "output")):
        if not isinstance(got, torch.Tensor) or got.dim() < 2 or got.shape[-2] != S:
            raise AssertionError(
                f"the {name} {what}: expected a tensor with {S} rows, one per query; got a {type(got).__name__} "
                f"{tuple(getattr(got, 'shape', ()))}"
            )
        _nan_message(got, mask, f"the {name} {what}")
    blocked, blocked_out = weights[..., row, :], out[..., row, :]
    if blocked.shape[-1] == T and torch.allclose(blocked, torch.full_like(blocked, 1 / T)):
        raise KnownMistake(f"the weights {what}: {MESSAGES['large_negative_fill']}", "large_negative_fill")
    if inverted is not None and close(weights, inverted, atol=ATOL, rtol=RTOL):
        raise KnownMistake(f"the weights {what}: {MESSAGES['mask_inverted']}", "mask_inverted")
    weight_max, out_max = blocked.abs().max().item(), blocked_out.abs().max().item()
    assert weight_max == 0 and out_max <= ATOL, (
        f"{what}, the weights and the output of query {row} (whose mask row is all False) are not all zero (largest "
        f"|weight| {weight_max:.3g}, largest |output| {out_max:.3g}): {BLOCKED_ROW_HINT}"
    )


@pytest.mark.part("sdpa")
@pytest.mark.points(2)
def test_sdpa_blocked_rows(student):
    """a query that may attend to nothing gets zero weights and output, never NaN; gradients stay finite"""
    q, k, v = _qkv((2,), 4, 5, 3, 40)
    mask = _random_mask(4, 5, 41)
    mask[1] = False
    out, weights = _unpack(_checked(student, _sdpa_call(q, k, v, mask=mask)))
    inverted = ref.scaled_dot_product_attention(q, k, v, ~mask)[1]
    _check_blocked_row(out, weights, mask, 1, "with a fully blocked row 1 (of a (4, 5) mask)", inverted)
    g = seeded(tuple(q.shape), 42)
    grads = student_call(
        student, Call(SDPA, build=False, inputs=(q, k, v), input_kwargs={"mask": mask}, grad_outputs=g)
    ).input_grads
    for name, grad in zip("qkv", grads, strict=True):
        assert grad is None or torch.isfinite(grad).all(), (
            f"the gradient of {name} contains NaN with a fully blocked row: zero the NaN weights in a way "
            "autograd can follow (weights.masked_fill(~mask, 0) after the softmax over -inf-filled scores)."
        )


@pytest.mark.part("sdpa")
@pytest.mark.points(1)
def test_sdpa_gradients(student):
    """gradients with respect to q, k and v agree with your forward pass (cross-attention, no mask)"""
    q, k, v = _qkv((2, 3), 5, 7, 4, 50)
    call = Call(SDPA, build=False, inputs=(q, k, v), grad_outputs=seeded(tuple(q.shape), 51), watch=WATCH_SDPA)
    checks.assert_gradients_follow_forward(
        lambda c: _checked(student, c),
        call,
        _checked(student, call),
        ("q", "k", "v"),
        seed=52,
        what="scaled_dot_product_attention on q (2, 3, 5, 4), k and v (2, 3, 7, 4)",
    )


@pytest.mark.part("sdpa")
@pytest.mark.points(2)
def test_sdpa_dropout(student):
    """dropout acts on the weights: about p of them become 0, the rest grow by 1/(1-p); out = weights @ v"""
    p = 0.3
    q, k, v = _qkv((8, 4), 16, 16, 5, 60)
    clean_out, clean = _unpack(_checked(student, _sdpa_call(q, k, v)))
    out, weights = _unpack(_checked(student, _sdpa_call(q, k, v, dropout=nn.Dropout(p))))
    shapes = {"output": (8, 4, 16, 5), "weights": (8, 4, 16, 16)}
    for got, name in ((clean_out, "output"), (clean, "weights"), (out, "output"), (weights, "weights")):
        shape = shapes[name]
        assert isinstance(got, torch.Tensor) and got.shape == shape, (
            f"the {name} with and without dropout: expected a tensor of shape {shape}; got a {type(got).__name__} "
            f"{tuple(getattr(got, 'shape', ()))}"
        )
    if (weights != 0).all():
        if torch.allclose(out, clean_out, atol=ATOL, rtol=RTOL):
            raise AssertionError(
                "with dropout=nn.Dropout(0.3) nothing was dropped: apply `dropout` to the "
                "weights (weights = dropout(weights)) when it is not None."
            )
        raise AssertionError(
            "the returned weights show no dropout although the output changed: apply dropout to "
            "the weights and return the weights after dropout (the ones multiplied with v)."
        )
    checks.check_dropout_statistics(weights, clean, p, "scaled_dot_product_attention(..., dropout=nn.Dropout(0.3))")
    assert_matches(
        out,
        weights @ v,
        what="the output with dropout (it must be the returned weights @ v)",
        atol=ATOL,
        rtol=RTOL,
    )


# ---------------------------------------------------------------- MultiHeadAttention


@checks.computed_once
def _weights(E: int, H: int, seed: int) -> dict[str, torch.Tensor]:
    return reference_state(ref.MultiHeadAttention(E, H).double(), seed)


# MultiHeadAttention is graded on its own: when the student's module gives a wrong result with their own
# scaled_dot_product_attention, it is checked again with the grader's stand-in for that function, so a mistake in
# the function costs points in sdpa only. A module that writes attention inline is checked against the reference
# directly.
STAND_INS = StandIns("autograde.assignments.multi_head_attention.stand_ins", (SDPA,), ref)


def _reference(xq, xk, xv, w, H, mask=None, with_stand_ins=False) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference module's (output (N, S, E), weights (N, H, S, T)) in eval mode."""
    with STAND_INS.in_reference(with_stand_ins):
        model = ref.MultiHeadAttention(xq.shape[-1], H).double().eval()
        model.load_state_dict(w)
        with torch.no_grad():
            out = model(xq, xk, xv, attn_mask=mask)
    return out, model.attn_weights


def _mha_mistakes(xq, xk, xv, w, H, mask, with_stand_ins: bool):
    return mha_mistakes(xq, xk, xv, w, H, mask, STAND_INS.objects[SDPA] if with_stand_ins else None)


def _mha_inputs(shape, seed, *, cross=True):
    N, S, T, E, H = shape
    xq = seeded((N, S, E), seed)
    if not cross:
        return xq, xq, xq
    return xq, seeded((N, T, E), seed + 1), seeded((N, T, E), seed + 2)


def _mha_call(E, H, inputs, w, mask=None, **extra) -> Call:
    return Call(
        MHA,
        args=(E, H),
        inputs=inputs,
        input_kwargs={} if mask is None else {"attn_mask": mask},
        state_dict=w,
        dtype=torch.float64,
        watch=WATCH_MHA,
        attrs=("attn_weights",),
        **extra,
    )


DROPOUT_IN_EVAL = (
    "dropout is still active in eval mode (some attention weights are exactly 0 without a mask). Use "
    "self.attn_drop (an nn.Dropout), which model.eval() switches off; F.dropout(w, p) is always on unless "
    "you pass training=self.training."
)


def _check_no_dropout_in_eval(result: CallResult, what: str) -> None:
    """Fail with the dropout message when the eval-mode attn_weights of an unmasked call hold zeros."""
    weights = result.attrs.get("attn_weights")
    if isinstance(weights, torch.Tensor) and (weights == 0).any():
        raise AssertionError(f"{what}: {DROPOUT_IN_EVAL}")


def _graded(student, call: Call, check: Callable[[CallResult, bool], None]) -> CallResult:
    """Check ``call`` with the student's own function, else with the stand-in (see STAND_INS); the result."""

    def checked(result: CallResult, with_stand_ins: bool) -> None:
        check(checks.forbid_watched(result, BUILT_IN), with_stand_ins)

    return checks.own_or_stand_ins(student, call, STAND_INS, checked)


def _mha_check(xq, xk, xv, w, H, mask, what: str) -> Callable[[CallResult, bool], None]:
    def check(result: CallResult, with_stand_ins: bool) -> None:
        want, _ = _reference(xq, xk, xv, w, H, mask, with_stand_ins)
        _nan_message(result.output, mask, f"the output {what}")
        if mask is None:  # with a mask, zero weights may also come from a wrong mask
            _check_no_dropout_in_eval(result, f"the output {what}")
        assert_matches(
            result.output,
            want,
            what=f"the output {what}",
            atol=ATOL,
            rtol=RTOL,
            hints=pick(_mha_mistakes(xq, xk, xv, w, H, mask, with_stand_ins), 0),
        )

    return check


def _check_mha(student, shape, seed, *, cross, mask=None, what: str) -> CallResult:
    N, S, T, E, H = shape
    xq, xk, xv = _mha_inputs(shape, seed, cross=cross)
    w = _weights(E, H, seed + 3)
    return _graded(student, _mha_call(E, H, (xq, xk, xv), w, mask), _mha_check(xq, xk, xv, w, H, mask, what))


@pytest.mark.part("mha")
@pytest.mark.points(1)
def test_mha_layers_follow_the_contract(student):
    """MultiHeadAttention(E, h, dropout) has query, key, value, proj, attn_drop, num_heads and head_dim"""
    for E, H, p in [(12, 3, 0.2), (8, 1, 0.0)]:
        info = student.describe(MHA, (E, H), {"dropout": p}, attrs=("num_heads", "head_dim"))
        children = dict(info.children)
        for name in ("query", "key", "value", "proj"):
            assert children.get(name) == "Linear", f"{MHA}({E}, {H}) needs an attribute `{name}` = nn.Linear(E, E)"
            assert info.parameters.get(f"{name}.weight") == (E, E) and info.parameters.get(f"{name}.bias") == (E,), (
                f"`{name}` of {MHA}({E}, {H}) should be nn.Linear({E}, {E}) with a bias"
            )
        assert children.get("attn_drop") == "Dropout", "the module needs `attn_drop = nn.Dropout(dropout)`"
        assert f"(attn_drop): Dropout(p={p}" in info.text, f"attn_drop should drop with the given p={p}"
        assert info.attrs == {"num_heads": H, "head_dim": E // H}, (
            f"{MHA}({E}, {H}) has num_heads, head_dim = {info.attrs}; expected {H} and {E // H}"
        )
        assert set(info.parameters) == {
            f"{n}.{t}" for n in ("query", "key", "value", "proj") for t in ("weight", "bias")
        }, f"{MHA} should have exactly the parameters of query, key, value and proj; it has {sorted(info.parameters)}"


@pytest.mark.part("mha")
@pytest.mark.points(1)
def test_mha_rejects_indivisible_heads(student):
    """MultiHeadAttention(10, 3) raises a ValueError (or AssertionError): 10 is not divisible by 3"""
    checks.must_raise(
        lambda: student.describe(MHA, (10, 3)),
        ("ValueError", "AssertionError"),
        what=f"{MHA}(10, 3)",
        otherwise="raise a ValueError when embed_dim is not divisible by num_heads (the heads would not cover "
        "every channel).",
    )


@pytest.mark.part("mha")
@pytest.mark.points(1)
def test_mha_output_shape(student):
    """forward maps query (N, S, E), key and value (N, T, E) to (N, S, E)"""
    for shape in MHA_SHAPES:
        N, S, T, E, H = shape
        inputs = tuple(x.float() for x in _mha_inputs(shape, 0))

        def check(result: CallResult, _: bool, N=N, S=S, T=T, E=E) -> None:
            out = result.output
            assert isinstance(out, torch.Tensor), f"forward returned {type(out).__name__}, expected a tensor"
            assert tuple(out.shape) == (N, S, E), f"query {(N, S, E)}, key {(N, T, E)} gave {tuple(out.shape)}"

        _graded(student, Call(MHA, args=(E, H), inputs=inputs, watch=WATCH_MHA), check)


@pytest.mark.part("mha")
@pytest.mark.points(2)
def test_mha_self_attention(student):
    """self-attention (query = key = value) matches the reference in eval mode"""
    for i, (N, S, _, E, H) in enumerate(MHA_SHAPES):
        _check_mha(student, (N, S, S, E, H), 100 + i, cross=False, what=f"for self-attention on {(N, S, E)}, h={H}")


@pytest.mark.part("mha")
@pytest.mark.points(2)
def test_mha_cross_attention(student):
    """cross-attention (S != T, different key and value inputs) matches the reference in eval mode"""
    for i, shape in enumerate(s for s in MHA_SHAPES if s[1] != s[2]):
        N, S, T, E, H = shape
        _check_mha(student, shape, 110 + i, cross=True, what=f"for query {(N, S, E)}, key/value {(N, T, E)}, h={H}")


@pytest.mark.part("mha")
@pytest.mark.points(1)
def test_mha_keeps_attention_weights(student):
    """attn_weights holds the last (N, h, S, T) weights, each query's row summing to 1"""
    shape = (2, 5, 6, 12, 3)
    xq, xk, xv = _mha_inputs(shape, 120)
    w = _weights(12, 3, 121)

    def check(result: CallResult, with_stand_ins: bool) -> None:
        got = result.attrs.get("attn_weights")
        assert isinstance(got, torch.Tensor), (
            f"after forward, self.attn_weights is {got!r}: keep the (N, h, S, T) attention weights in it"
        )
        _, want = _reference(xq, xk, xv, w, 3, None, with_stand_ins)
        _check_no_dropout_in_eval(result, "attn_weights")
        hints = pick(_mha_mistakes(xq, xk, xv, w, 3, None, with_stand_ins), 1)
        assert_matches(got, want, what="attn_weights", atol=ATOL, rtol=RTOL, hints=hints)

    _graded(student, _mha_call(12, 3, (xq, xk, xv), w), check)


@pytest.mark.part("mha")
@pytest.mark.points(3)
def test_mha_masks(student):
    """a causal (S, S) mask and a random (S, T) mask give the reference result"""
    _check_mha(student, (2, 6, 6, 12, 3), 130, cross=False, mask=_causal(6, 6), what="with a causal (6, 6) mask")
    _check_mha(
        student,
        (2, 5, 7, 8, 2),
        131,
        cross=True,
        mask=_random_mask(5, 7, 132),
        what="with a (5, 7) mask in cross-attention",
    )


@pytest.mark.part("mha")
@pytest.mark.points(2)
def test_mha_blocked_rows(student):
    """a query that may attend to nothing gets zero weights, so its output depends on no input; never NaN"""
    N, S, T, E, H = shape = (2, 5, 7, 12, 3)
    mask = _random_mask(S, T, 140)
    mask[2] = False
    xq, xk, xv = _mha_inputs(shape, 141)
    w = _weights(E, H, 144)
    what = f"with a {(S, T)} mask whose row 2 is all False"

    def check(result: CallResult, with_stand_ins: bool) -> None:
        out = result.output
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (N, S, E):
            raise AssertionError(
                f"the output {what}: expected a tensor of shape {(N, S, E)}; got a {type(out).__name__} "
                f"{tuple(getattr(out, 'shape', ()))}"
            )
        _nan_message(out, mask, f"the output {what}")
        weights = result.attrs.get("attn_weights")
        if isinstance(weights, torch.Tensor) and tuple(weights.shape) == (N, H, S, T):  # else graded elsewhere
            _nan_message(weights, mask, f"attn_weights {what}")
            blocked = weights[:, :, 2]
            if torch.allclose(blocked, torch.full_like(blocked, 1 / T)):
                raise KnownMistake(f"attn_weights {what}: {MESSAGES['large_negative_fill']}", "large_negative_fill")
            inverted = _reference(xq, xk, xv, w, H, ~mask, with_stand_ins)[1]
            if close(weights, inverted, atol=ATOL, rtol=RTOL):
                raise KnownMistake(f"attn_weights {what}: {MESSAGES['mask_inverted']}", "mask_inverted")
            assert (blocked == 0).all(), (
                f"attn_weights {what}: query 2 may attend to nothing, but its weights are not all zero (the "
                f"largest is {blocked.abs().max().item():.3g}): {BLOCKED_ROW_HINT}"
            )
        # The two sequences of the batch hold different inputs: a query that attends to nothing gets the same output
        # (proj.bias) in both.
        assert torch.allclose(out[0, 2], out[1, 2], atol=ATOL, rtol=RTOL), (
            f"the output {what}: query 2 may attend to nothing, but its output differs between the two sequences "
            f"of the batch, so it attends to some key: {BLOCKED_ROW_HINT}"
        )

    _graded(student, _mha_call(E, H, (xq, xk, xv), w, mask), check)


@pytest.mark.part("mha")
@pytest.mark.points(2)
def test_mha_gradients(student):
    """gradients with respect to query, key, value and every weight agree with your forward pass (cross-attention)"""
    for i, shape in enumerate([(2, 5, 6, 12, 3), (1, 5, 7, 8, 2)]):
        N, S, T, E, H = shape
        call = _mha_call(
            E, H, _mha_inputs(shape, 150 + i), _weights(E, H, 160 + i), grad_outputs=seeded((N, S, E), 180 + i)
        )

        def check(result: CallResult, with_stand_ins: bool, call=call, i=i, shape=shape) -> None:
            N, S, T, E, H = shape
            checks.assert_gradients_follow_forward(
                lambda c: _checked(student, c),
                replace(call, substitutes=STAND_INS.sources if with_stand_ins else {}),
                result,
                ("the query input", "the key input", "the value input"),
                seed=170 + i,
                what=f"{MHA}({E}, {H}) on query {(N, S, E)}, key and value {(N, T, E)}",
            )

        _graded(student, call, check)


@pytest.mark.part("mha")
@pytest.mark.points(1)
def test_mha_eval_is_deterministic(student):
    """in eval mode dropout is off: two calls agree, in float32 and float64, and keep the input's dtype"""
    E, H = 8, 2
    for dtype in (torch.float32, torch.float64):
        inputs = tuple(x.to(dtype) for x in _mha_inputs((3, 5, 5, E, H), 190))
        w = {k: v.to(dtype) for k, v in _weights(E, H, 191).items()}
        call = Call(
            MHA, args=(E, H), kwargs={"dropout": 0.5}, inputs=inputs, state_dict=w, dtype=dtype, watch=WATCH_MHA
        )

        def check(result: CallResult, with_stand_ins: bool, dtype=dtype, call=call) -> None:
            again = replace(call, seed=1, substitutes=STAND_INS.sources if with_stand_ins else {})
            first, second = result.output, student_call(student, again).output
            assert first.dtype == dtype, f"a {dtype} input gave a {first.dtype} output: do not fix the dtype"
            assert torch.equal(first, second), f"two calls in eval mode gave different outputs: {DROPOUT_IN_EVAL}"

        _graded(student, call, check)


# The dropout statistics are measured on N * H * S * T = 14 * 3 * 12 * 5 weights (T = D by construction).
DROPOUT_N, DROPOUT_S = 14, 12


def _weights_from_output(E: int, H: int, T: int, seed: int) -> tuple[tuple, dict]:
    """Inputs and weights under which the module's output *is* its attention weights after dropout: value and
    proj are identities and the value input holds an identity matrix per head (T = head_dim), so output
    channel h*D + t of query s is the weight of key t in head h. Dropout can then be measured without
    reading ``attn_weights`` (a missing attribute is graded by its own test)."""
    D = E // H
    assert T == D
    w = _weights(E, H, seed)
    w["value.weight"], w["value.bias"] = torch.eye(E, dtype=torch.float64), torch.zeros(E, dtype=torch.float64)
    w["proj.weight"], w["proj.bias"] = torch.eye(E, dtype=torch.float64), torch.zeros(E, dtype=torch.float64)
    N, S = DROPOUT_N, DROPOUT_S
    xq, xk = seeded((N, S, E), seed + 1), seeded((N, T, E), seed + 2)
    xv = torch.eye(T, dtype=torch.float64).repeat(1, H).expand(N, T, E).clone()  # (N, T, E)
    return (xq, xk, xv), w


@pytest.mark.part("mha")
@pytest.mark.points(2)
def test_mha_dropout_in_training(student):
    """in training mode attn_drop drops about p of the attention weights and rescales the rest by 1/(1-p)"""
    p, E, H, T = 0.3, 15, 3, 5
    N, S = DROPOUT_N, DROPOUT_S
    inputs, w = _weights_from_output(E, H, T, 201)
    train = Call(
        MHA,
        args=(E, H),
        kwargs={"dropout": p},
        inputs=inputs,
        state_dict=w,
        dtype=torch.float64,
        train=True,
        attrs=("attn_weights",),
        watch=WATCH_MHA,
    )

    def check(after: CallResult, with_stand_ins: bool) -> None:
        clean = _checked(student, replace(after_call(with_stand_ins), train=False))
        _check_no_dropout_in_eval(clean, "attn_weights")
        want, _ = _reference(*inputs, w, H, None, with_stand_ins)
        forward_right = isinstance(clean.output, torch.Tensor) and close(clean.output, want, atol=ATOL, rtol=RTOL)
        weights = [r.attrs.get("attn_weights") for r in (clean, after)]
        if all(isinstance(x, torch.Tensor) and x.shape == (N, H, S, T) for x in weights):
            measured = weights  # the attribute, when it is there (its own test grades it)
        elif forward_right:
            measured = [r.output.view(N, S, H, T).transpose(1, 2) for r in (clean, after)]  # (N, H, S, T)
        else:
            raise AssertionError(
                "dropout could not be measured: attn_weights is missing and the forward pass is wrong (see the "
                "other checks)"
            )
        if (measured[1] != 0).all():
            output_dropped = isinstance(after.output, torch.Tensor) and isinstance(clean.output, torch.Tensor)
            if output_dropped and (after.output == 0).any() and not (clean.output == 0).any():
                raise AssertionError(
                    f"with dropout={p} in training mode the output lost entries but no attention weight was dropped: "
                    "apply self.attn_drop to the attention weights (not to the output)."
                )
            raise AssertionError(
                f"with dropout={p} in training mode no attention weight was dropped: pass the weights through "
                "self.attn_drop."
            )
        checks.check_dropout_statistics(measured[1], measured[0], p, f"{MHA}({E}, {H}, dropout={p})")
        if forward_right and measured is weights:
            assert_matches(
                after.output.view(N, S, H, T).transpose(1, 2),
                weights[1],
                what="the output in training mode (it must use attn_weights after dropout)",
                atol=ATOL,
                rtol=RTOL,
            )

    def after_call(with_stand_ins: bool) -> Call:
        return replace(train, substitutes=STAND_INS.sources if with_stand_ins else {})

    _graded(student, train, check)


@pytest.mark.part("mha")
@pytest.mark.points(0)
def test_mha_with_your_own_function(student):
    """diagnostic (no points): your MultiHeadAttention with your own scaled_dot_product_attention"""
    N, S, T, E, H = shape = (2, 5, 7, 12, 3)
    xq, xk, xv = _mha_inputs(shape, 210)
    w = _weights(E, H, 213)
    mask = _random_mask(S, T, 214)
    q, k, v = _qkv((N, H), S, T, E // H, 215)
    what = f"with a {(S, T)} mask"
    suspect = ("scaled_dot_product_attention", lambda: _check_sdpa(student, q, k, v, mask, what=what))
    call = _mha_call(E, H, (xq, xk, xv), w, mask)
    checks.blame_earlier_part(student, call, _mha_check(xq, xk, xv, w, H, mask, what), [suspect], MHA)
