"""Hidden graders of notebook 2: scaled dot-product attention and multi-head attention.

Tolerances: outputs, weights and gradients are compared in float64 with atol=1e-6, rtol=1e-5 (the student's
module gets the reference weights, so only the order of floating-point operations differs). Dropout is checked
by its statistics (fraction of dropped weights, rescaling of the survivors), never against random draws.

Weighting (points follow how much of the concept a test proves): in ``sdpa`` (12) the masks weigh most, 3, since
a mask used the wrong way round is a conceptual error, then the unmasked values 2, fully blocked rows 2 (zero
weights, never NaN) and dropout 2; the return contract, integer masks and gradients 1 each. In ``mha`` (18) the
masks 3, self- and cross-attention 2 each, blocked rows 2, gradients 2 and dropout 2; the contract's layers, the
divisibility check, the output shape, the kept weights and eval-mode determinism 1 each (bookkeeping). ``mha`` is
graded with the grader's stand-in function when the student's own ``scaled_dot_product_attention`` is wrong, so a
mistake there costs its points once, in ``sdpa``; the 0-point diagnostic names it. A test that needs
``attn_weights`` only as a means (dropout) measures through the output when the attribute is missing.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograde.assignments.multi_head_attention import reference as ref
from autograde.checks import (
    assert_gradients_match,
    blame_earlier_part,
    check_dropout_statistics,
    must_raise,
    own_or_stand_ins,
    reference_state,
    seeded,
    student_call,
)
from autograde.compare import assert_matches, close
from autograde.results import GradingFailure, Kind, StudentError
from autograde.student import Call, CallResult, Student, stand_ins, substituted

ATOL, RTOL = 1e-6, 1e-5
SDPA = "scaled_dot_product_attention"
MHA = "MultiHeadAttention"
SDPA_FORBIDDEN = ("F.scaled_dot_product_attention",)
MHA_FORBIDDEN = ("F.scaled_dot_product_attention", "nn.MultiheadAttention")
# (N, S, T, E, H): self- and cross-attention, a batch of one with one head, head sizes not powers of two.
MHA_SHAPES = [(2, 5, 5, 12, 3), (3, 4, 6, 8, 2), (1, 6, 6, 8, 1), (2, 3, 7, 18, 6), (2, 6, 6, 16, 4)]
BLOCKED_ROW_HINT = (
    "a query whose mask row is all False must get zero weights and a zero output; after the softmax over "
    "-inf scores, set the weights of blocked positions to 0 (weights.masked_fill(~mask, 0) or "
    "torch.nan_to_num)."
)


def _checked(student: Student, call: Call) -> CallResult:
    """Run ``call`` and fail when it used a built-in attention it was meant to write by hand."""
    return forbid(student_call(student, call))


def forbid(result: CallResult) -> CallResult:
    """``result``, unless the call used a built-in attention it was meant to write by hand."""
    if result.forbidden_used:
        raise GradingFailure(
            f"your code calls {', '.join(result.forbidden_used)}: the exercise is to write "
            "attention yourself (q @ k^T, scale, mask, softmax, dropout, @ v). Built-ins may only appear in "
            "the checks.",
            Kind.FORBIDDEN_CALL,
        )
    return result


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
        raise AssertionError(f"{what} contains NaN: {BLOCKED_ROW_HINT}")
    if mask is not None and mask.bool().all(-1).any():
        raise AssertionError(
            f"{what} contains NaN for a row that the mask fully allows: is the mask inverted? True (or 1) "
            "means 'may attend', so fill the scores where the mask is False with -inf."
        )
    raise AssertionError(f"{what} contains NaN values.")


# ---------------------------------------------------------------- scaled_dot_product_attention


def _attend(q, k, v, mask=None, *, scale=None, axis=-1, after=False, fill=float("-inf"), zero_blocked=True):
    """Attention with the usual mistakes switchable: scale, softmax axis, the mask's place and fill."""
    scale = math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) / scale
    if mask is not None and not after:
        scores = scores.masked_fill(~mask.bool(), fill)
    weights = F.softmax(scores, dim=axis)
    if mask is not None and zero_blocked:
        weights = weights.masked_fill(~mask.bool(), 0.0)
    return weights @ v, weights


def _large_negative_fill(q, k, v, mask, **kwargs):
    """The mistake of filling blocked scores with -1e9: a row with nothing to attend gets uniform weights."""
    return _attend(q, k, v, mask, fill=-1e9, zero_blocked=False, **kwargs)


def _mask_after_softmax(q, k, v, mask, **kwargs):
    return _attend(q, k, v, mask, after=True, **kwargs)


UNIFORM_ROW = (
    "the fully blocked row got uniform weights 1/T (blocked scores filled with a large negative number "
    f"such as -1e9 instead of -inf): {BLOCKED_ROW_HINT}"
)
INVERTED = "the mask is inverted: True (or 1) means 'may attend', so fill the scores where the mask is False with -inf."
AFTER_SOFTMAX = (
    "the mask is applied after the softmax, so the remaining weights no longer sum to 1: fill blocked "
    "scores with -inf before the softmax."
)


def _sdpa_hints(q, k, v, mask=None) -> list[tuple[Callable[[], tuple[torch.Tensor, torch.Tensor]], str]]:
    """(what a known mistake returns, as a thunk run only on failure, message) pairs for the function."""
    D = q.shape[-1]
    hints = [
        (
            lambda: _attend(q, k, v, mask, scale=1.0),
            "the 1/sqrt(D) scale is missing: divide q @ k^T by math.sqrt(D).",
        ),
        (
            lambda: _attend(q, k, v, mask, scale=D),
            "the scores are divided by D: the scale is 1/sqrt(D), D = q.shape[-1].",
        ),
        (
            lambda: _attend(q, k, v, mask, axis=-2),
            "the softmax runs over the queries: normalise over the keys (dim=-1), so each query's weights sum to 1.",
        ),
    ]
    if mask is not None:
        hints += [
            (lambda: _attend(q, k, v, ~mask.bool()), INVERTED),
            (lambda: _mask_after_softmax(q, k, v, mask), AFTER_SOFTMAX),
            (lambda: _large_negative_fill(q, k, v, mask), UNIFORM_ROW),
        ]
    return hints


def _pick(hints, index: int) -> list[tuple[Callable[[], torch.Tensor], str]]:
    """The ``index``-th returned tensor (0: output, 1: weights) of each hint, still lazily evaluated."""
    return [(lambda thunk=thunk: thunk()[index], message) for thunk, message in hints]


def _sdpa_call(q, k, v, **kwargs) -> Call:
    return Call(SDPA, build=False, inputs=(q, k, v), input_kwargs=kwargs, forbidden=SDPA_FORBIDDEN)


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
    hints = _sdpa_hints(q, k, v, mask)
    for got, want, index, name in ((weights, want_weights, 1, "weights"), (out, want_out, 0, "output")):
        _nan_message(got, mask, f"the {name} {what}")
        assert_matches(got, want, what=f"the {name} {what}", atol=ATOL, rtol=RTOL, hints=_pick(hints, index))


def _qkv(batch: tuple[int, ...], S: int, T: int, D: int, seed: int):
    return seeded((*batch, S, D), seed), seeded((*batch, T, D), seed + 1), seeded((*batch, T, D), seed + 2)


@pytest.mark.part("sdpa")
@pytest.mark.points(1)
def test_sdpa_returns_output_and_weights(student):
    """returns (output (..., S, D), weights (..., S, T)) for any number of leading dimensions"""
    for batch, S, T, D in [((2, 3), 4, 6, 5), ((), 3, 2, 4), ((2,), 5, 5, 8)]:
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
    for i, (batch, S, T, D) in enumerate([((2, 3), 4, 6, 5), ((1,), 5, 5, 8), ((3,), 2, 7, 3)]):
        _check_sdpa(student, *_qkv(batch, S, T, D, 10 * i), what=f"for q {(*batch, S, D)}, k {(*batch, T, D)}")


# Weights (points) of the function's checks: a mask used the wrong way round or a blocked row turned into NaN
# is a conceptual error and weighs 3 and 2; the returned tuple's form and the integer mask weigh 1 each.
@pytest.mark.part("sdpa")
@pytest.mark.points(3)
def test_sdpa_masks(student):
    """a causal mask, a random mask and a batched padding mask (bool, broadcast) give the reference result"""
    q, k, v = _qkv((2, 3), 5, 5, 4, 20)
    _check_sdpa(student, q, k, v, _causal(5, 5), what="with a causal (5, 5) mask")
    q, k, v = _qkv((2, 3), 4, 6, 4, 21)
    _check_sdpa(student, q, k, v, _random_mask(4, 6, 22), what="with a (4, 6) mask (cross-attention)")
    q, k, v = _qkv((2,), 4, 6, 4, 23)
    padding = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:, None, :]  # (N, 1, T)
    _check_sdpa(student, q, k, v, padding, what="with a padding mask of shape (N, 1, T) = (2, 1, 6)")


@pytest.mark.part("sdpa")
@pytest.mark.points(1)
def test_sdpa_integer_mask(student):
    """a 0/1 integer mask works like the boolean mask (1 = may attend)"""
    q, k, v = _qkv((2,), 4, 6, 4, 30)
    mask = _random_mask(4, 6, 31)
    try:
        _check_sdpa(student, q, k, v, mask, what="with a 0/1 (torch.long) mask", given_mask=mask.long())
    except StudentError as exc:
        raise StudentError(
            f"{exc}\nWith a 0/1 integer mask: turn it into booleans first (mask.bool() or "
            "mask == 0 for the blocked positions); ~ on an integer tensor is not 'not'.",
            exc.kind,
            exc.exc_type,
        ) from None


@pytest.mark.part("sdpa")
@pytest.mark.points(2)
def test_sdpa_blocked_rows(student):
    """a query that may attend to nothing gets zero weights and output, never NaN; gradients stay finite"""
    q, k, v = _qkv((2,), 4, 5, 3, 40)
    mask = _random_mask(4, 5, 41)
    mask[1] = False
    _check_sdpa(student, q, k, v, mask, what="with a fully blocked row 1")
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
    """gradients with respect to q, k and v match the reference (cross-attention, no mask)"""
    q, k, v = _qkv((2, 2), 5, 7, 4, 50)
    g = seeded(tuple(q.shape), 51)
    call = Call(SDPA, build=False, inputs=(q, k, v), grad_outputs=g, forbidden=SDPA_FORBIDDEN)
    result = _checked(student, call)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    ref.scaled_dot_product_attention(*leaves)[0].backward(g)
    assert_gradients_match(result, list(zip("qkv", leaves, strict=True)), atol=ATOL, rtol=RTOL)


@pytest.mark.part("sdpa")
@pytest.mark.points(2)
def test_sdpa_dropout(student):
    """dropout acts on the weights: about p of them become 0, the rest grow by 1/(1-p); out = weights @ v"""
    p = 0.3
    q, k, v = _qkv((8, 4), 16, 16, 4, 60)
    clean_out, clean = _unpack(_checked(student, _sdpa_call(q, k, v)))
    out, weights = _unpack(_checked(student, _sdpa_call(q, k, v, dropout=nn.Dropout(p))))
    shapes = {"output": (8, 4, 16, 4), "weights": (8, 4, 16, 16)}
    for got, name in ((clean_out, "output"), (clean, "weights"), (out, "output"), (weights, "weights")):
        shape = shapes[name]
        assert isinstance(got, torch.Tensor) and got.shape == shape, (
            f"the {name} is {type(got).__name__} {tuple(getattr(got, 'shape', ()))}; expected {shape}"
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
    check_dropout_statistics(weights, clean, p, "scaled_dot_product_attention(..., dropout=nn.Dropout(0.3))")
    assert_matches(
        out,
        weights @ v,
        what="the output with dropout (it must be the returned weights @ v)",
        atol=ATOL,
        rtol=RTOL,
    )


# ---------------------------------------------------------------- MultiHeadAttention


def _weights(E: int, H: int, seed: int) -> dict[str, torch.Tensor]:
    return reference_state(ref.MultiHeadAttention(E, H).double(), seed)


# MultiHeadAttention is graded on its own: when the student's module gives a wrong result with their own
# scaled_dot_product_attention, it is checked again with the grader's stand-in for that function (sigmoid
# weights, the mask and dropout applied, no softmax), so a mistake in the function costs points in sdpa only.
# A module that writes attention inline is checked against the reference directly.
STAND_INS = {
    SDPA: """
import torch


def scaled_dot_product_attention(q, k, v, mask=None, dropout=None):
    weights = torch.sigmoid(q @ k.transpose(-2, -1))
    if mask is not None:
        weights = weights * mask.bool().to(weights.dtype)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ v, weights
"""
}
STAND_IN_SDPA = stand_ins(STAND_INS)[SDPA]


def _stand_in_attend(q, k, v, mask=None, *, scale=None, **_):
    return STAND_IN_SDPA(q, k, v, mask)


def _reference(xq, xk, xv, w, H, mask=None, with_stand_ins=False) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference module's (output (N, S, E), weights (N, H, S, T)) in eval mode."""
    context = substituted(vars(ref), stand_ins(STAND_INS)) if with_stand_ins else contextlib.nullcontext()
    with context:
        model = ref.MultiHeadAttention(xq.shape[-1], H).double().eval()
        model.load_state_dict(w)
        with torch.no_grad():
            out = model(xq, xk, xv, attn_mask=mask)
    return out, model.attn_weights


def _mha(xq, xk, xv, w, H, mask=None, *, split=True, merge=True, scale=None, proj=True, mask_fn=None):
    """Multi-head attention from the weights ``w``, usual mistakes switchable; returns (out, weights)."""
    N, S, E = xq.shape
    D = E // H

    def heads(x, name):
        y = F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])  # (N, L, E)
        if split:
            return y.view(N, -1, H, D).transpose(1, 2)  # (N, H, L, D)
        return y.reshape(N, H, -1, D)  # (N, H, L, D) with positions and heads mixed

    q, k, v = heads(xq, "query"), heads(xk, "key"), heads(xv, "value")
    out, weights = (mask_fn or _attend)(q, k, v, mask, scale=scale)
    out = out.transpose(1, 2).reshape(N, S, E) if merge else out.reshape(N, S, E)  # (N, S, E)
    return (F.linear(out, w["proj.weight"], w["proj.bias"]) if proj else out), weights


WRONG_SPLIT = (
    "the heads are split in the wrong order: view(N, L, H, D) then transpose(1, 2) to (N, H, L, D); "
    "view(N, H, L, D) directly mixes positions and heads."
)


def _mha_hints(
    xq, xk, xv, w, H, mask=None, with_stand_ins=False
) -> list[tuple[Callable[[], tuple[torch.Tensor, torch.Tensor]], str]]:
    """(what a known mistake returns, as a thunk evaluated only on failure, message) pairs for the module."""
    attend = _stand_in_attend if with_stand_ins else _attend
    E = xq.shape[-1]
    hints = []
    if H > 1:
        hints += [
            (lambda: _mha(xq, xk, xv, w, H, mask, split=False, merge=False, mask_fn=attend), WRONG_SPLIT),
            (lambda: _mha(xq, xk, xv, w, H, mask, split=False, mask_fn=attend), WRONG_SPLIT),
            (
                lambda: _mha(xq, xk, xv, w, H, mask, merge=False, mask_fn=attend),
                "the heads are merged in the wrong order: transpose (N, H, S, D) back to (N, S, H, D) before "
                "reshaping to (N, S, E).",
            ),
            (
                lambda: _mha(xq, xk, xv, w, H, mask, scale=math.sqrt(E), mask_fn=attend),
                "the scores are scaled by 1/sqrt(E): each head works in D = E / H dimensions, so scale by "
                "1/sqrt(E / H) (the head_dim).",
            ),
        ]
    hints += [
        (lambda: _mha(xq, xk, xv, w, H, mask, scale=1.0, mask_fn=attend), "the 1/sqrt(head_dim) scale is missing."),
        (
            lambda: _mha(xq, xk, xv, w, H, mask, proj=False, mask_fn=attend),
            "the output projection is missing: return self.proj(...) of the merged heads.",
        ),
    ]
    if xk is not xq:
        hints.append(
            (lambda: _mha(xq, xv, xk, w, H, mask, mask_fn=attend), "the `key` and `value` inputs are swapped.")
        )
        if mask is None or xk.shape == xq.shape:
            hints.append(
                (
                    lambda: _mha(xq, xq, xq, w, H, mask, mask_fn=attend),
                    "keys and values are computed from `query`: use the `key` "
                    "and `value` inputs (they differ in cross-attention).",
                )
            )
    if mask is not None:
        hints.append((lambda: _mha(xq, xk, xv, w, H, ~mask.bool(), mask_fn=attend), INVERTED))
    if mask is not None and not with_stand_ins:  # mistakes inside the attention function itself
        hints += [
            (lambda: _mha(xq, xk, xv, w, H, mask, mask_fn=_mask_after_softmax), AFTER_SOFTMAX),
            (lambda: _mha(xq, xk, xv, w, H, mask, mask_fn=_large_negative_fill), UNIFORM_ROW),
        ]
    return hints


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
        forbidden=MHA_FORBIDDEN,
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
    results: list[CallResult] = []

    def keep(result: CallResult, with_stand_ins: bool) -> None:
        forbid(result)
        results.append(result)
        check(result, with_stand_ins)

    own_or_stand_ins(student, call, STAND_INS, keep)
    return results[-1]


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
            hints=_pick(_mha_hints(xq, xk, xv, w, H, mask, with_stand_ins), 0),
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
    """MultiHeadAttention(E, H, dropout) has query, key, value, proj, attn_drop, num_heads and head_dim"""
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
    must_raise(
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

        _graded(student, Call(MHA, args=(E, H), inputs=inputs, forbidden=MHA_FORBIDDEN), check)


@pytest.mark.part("mha")
@pytest.mark.points(2)
def test_mha_self_attention(student):
    """self-attention (query = key = value) matches the reference in eval mode"""
    for i, (N, S, _, E, H) in enumerate(MHA_SHAPES):
        _check_mha(student, (N, S, S, E, H), 100 + i, cross=False, what=f"for self-attention on {(N, S, E)}, H={H}")


@pytest.mark.part("mha")
@pytest.mark.points(2)
def test_mha_cross_attention(student):
    """cross-attention (S != T, different key and value inputs) matches the reference in eval mode"""
    for i, shape in enumerate(s for s in MHA_SHAPES if s[1] != s[2]):
        N, S, T, E, H = shape
        _check_mha(student, shape, 110 + i, cross=True, what=f"for query {(N, S, E)}, key/value {(N, T, E)}, H={H}")


@pytest.mark.part("mha")
@pytest.mark.points(1)
def test_mha_keeps_attention_weights(student):
    """attn_weights holds the last (N, H, S, T) weights, each query's row summing to 1"""
    shape = (2, 4, 6, 12, 3)
    xq, xk, xv = _mha_inputs(shape, 120)
    w = _weights(12, 3, 121)

    def check(result: CallResult, with_stand_ins: bool) -> None:
        got = result.attrs.get("attn_weights")
        assert isinstance(got, torch.Tensor), (
            f"after forward, self.attn_weights is {got!r}: keep the (N, H, S, T) attention weights in it"
        )
        _, want = _reference(xq, xk, xv, w, 3, None, with_stand_ins)
        _check_no_dropout_in_eval(result, "attn_weights")
        hints = _pick(_mha_hints(xq, xk, xv, w, 3, None, with_stand_ins), 1)
        assert_matches(got, want, what="attn_weights", atol=ATOL, rtol=RTOL, hints=hints)

    _graded(student, _mha_call(12, 3, (xq, xk, xv), w), check)


# Weights (points) of the module's checks: a mask used the wrong way round or a blocked row turned into NaN
# is a conceptual error and weighs 3 and 2; the contract's attributes and error type weigh 1 each.
@pytest.mark.part("mha")
@pytest.mark.points(3)
def test_mha_masks(student):
    """a causal (S, S) mask and a random (S, T) mask give the reference result"""
    _check_mha(student, (2, 6, 6, 12, 3), 130, cross=False, mask=_causal(6, 6), what="with a causal (6, 6) mask")
    _check_mha(
        student,
        (2, 4, 6, 8, 2),
        131,
        cross=True,
        mask=_random_mask(4, 6, 132),
        what="with a (4, 6) mask in cross-attention",
    )


@pytest.mark.part("mha")
@pytest.mark.points(2)
def test_mha_blocked_rows(student):
    """a query that may attend to nothing gets zero weights, so its output is proj.bias; never NaN"""
    mask = _random_mask(4, 6, 140)
    mask[2] = False
    result = _check_mha(student, (2, 4, 6, 8, 2), 141, cross=True, mask=mask, what="with a fully blocked row 2")
    weights = result.attrs.get("attn_weights")
    if isinstance(weights, torch.Tensor) and weights.dim() == 4:  # a missing attn_weights is graded elsewhere
        assert_matches(
            weights[:, :, 2],
            torch.zeros(2, 2, 6, dtype=torch.float64),
            what="attn_weights of the fully blocked row",
            atol=0,
            rtol=0,
        )


@pytest.mark.part("mha")
@pytest.mark.points(2)
def test_mha_gradients(student):
    """gradients with respect to query, key, value and every weight match the reference (cross-attention)"""
    for i, shape in enumerate([(2, 4, 6, 12, 3), (1, 5, 5, 8, 2)]):
        N, S, T, E, H = shape
        inputs = _mha_inputs(shape, 150 + i)
        w = _weights(E, H, 160 + i)
        g = seeded((N, S, E), 180 + i)

        def check(result: CallResult, with_stand_ins: bool, E=E, H=H, w=w, g=g, inputs=inputs, shape=shape) -> None:
            context = substituted(vars(ref), stand_ins(STAND_INS)) if with_stand_ins else contextlib.nullcontext()
            with context:
                expected = ref.MultiHeadAttention(E, H).double().eval()
                expected.load_state_dict(w)
                leaves = [x.clone().requires_grad_(True) for x in inputs]
                expected(*leaves).backward(g)
            named = [(f"the {name} input", leaf) for name, leaf in zip(("query", "key", "value"), leaves, strict=True)]
            assert_gradients_match(result, named, expected, on=str(shape[:3]), atol=ATOL, rtol=RTOL)

        _graded(student, _mha_call(E, H, inputs, w, grad_outputs=g), check)


@pytest.mark.part("mha")
@pytest.mark.points(1)
def test_mha_eval_is_deterministic(student):
    """in eval mode dropout is off: two calls agree, in float32 and float64, and keep the input's dtype"""
    E, H = 8, 2
    for dtype in (torch.float32, torch.float64):
        inputs = tuple(x.to(dtype) for x in _mha_inputs((2, 5, 5, E, H), 190))
        w = {k: v.to(dtype) for k, v in _weights(E, H, 191).items()}
        call = Call(
            MHA, args=(E, H), kwargs={"dropout": 0.5}, inputs=inputs, state_dict=w, dtype=dtype, forbidden=MHA_FORBIDDEN
        )

        def check(result: CallResult, with_stand_ins: bool, dtype=dtype, call=call) -> None:
            again = replace(call, seed=1, substitutes=STAND_INS if with_stand_ins else {})
            first, second = result.output, student_call(student, again).output
            assert first.dtype == dtype, f"a {dtype} input gave a {first.dtype} output: do not fix the dtype"
            assert torch.equal(first, second), f"two calls in eval mode gave different outputs: {DROPOUT_IN_EVAL}"

        _graded(student, call, check)


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
    N, S = 8, 16
    xq, xk = seeded((N, S, E), seed + 1), seeded((N, T, E), seed + 2)
    xv = torch.eye(T, dtype=torch.float64).repeat(1, H).expand(N, T, E).clone()  # (N, T, E)
    return (xq, xk, xv), w


@pytest.mark.part("mha")
@pytest.mark.points(2)
def test_mha_dropout_in_training(student):
    """in training mode attn_drop drops about p of the attention weights and rescales the rest by 1/(1-p)"""
    p, E, H, T = 0.3, 16, 4, 4
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
        forbidden=MHA_FORBIDDEN,
    )

    def check(after: CallResult, with_stand_ins: bool) -> None:
        clean = forbid(student_call(student, replace(after_call(with_stand_ins), train=False)))
        _check_no_dropout_in_eval(clean, "attn_weights")
        want, _ = _reference(*inputs, w, H, None, with_stand_ins)
        forward_right = isinstance(clean.output, torch.Tensor) and close(clean.output, want, atol=ATOL, rtol=RTOL)
        weights = [r.attrs.get("attn_weights") for r in (clean, after)]
        if all(isinstance(x, torch.Tensor) and x.shape == (8, H, 16, T) for x in weights):
            measured = weights  # the attribute, when it is there (its own test grades it)
        elif forward_right:
            measured = [r.output.view(8, 16, H, T).transpose(1, 2) for r in (clean, after)]  # (N, H, S, T)
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
        check_dropout_statistics(measured[1], measured[0], p, f"{MHA}(16, 4, dropout={p})")
        if forward_right and measured is weights:
            assert_matches(
                after.output.view(8, 16, H, T).transpose(1, 2),
                weights[1],
                what="the output in training mode (it must use attn_weights after dropout)",
                atol=ATOL,
                rtol=RTOL,
            )

    def after_call(with_stand_ins: bool) -> Call:
        return replace(train, substitutes=STAND_INS if with_stand_ins else {})

    _graded(student, train, check)


@pytest.mark.part("mha")
@pytest.mark.points(0)
def test_mha_with_your_own_function(student):
    """diagnostic (no points): your MultiHeadAttention with your own scaled_dot_product_attention"""
    shape = (2, 4, 6, 8, 2)
    xq, xk, xv = _mha_inputs(shape, 210)
    w = _weights(8, 2, 213)
    mask = _random_mask(4, 6, 214)
    q, k, v = _qkv((2, 2), 4, 6, 4, 215)
    suspect = ("scaled_dot_product_attention", lambda: _check_sdpa(student, q, k, v, mask, what="with a mask"))
    call = _mha_call(8, 2, (xq, xk, xv), w, mask)
    blame_earlier_part(student, call, _mha_check(xq, xk, xv, w, 2, mask, "with a mask"), [suspect], MHA)
