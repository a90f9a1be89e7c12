"""The known mistakes of notebook 2: functional forms of the reference with the usual mistakes switchable, and the
message that names each (the names are counted in the instructor's class report).

To add one: a message in :data:`MESSAGES` under a new name, and what the mistake computes in
:func:`sdpa_mistakes` or :func:`mha_mistakes`. Both return (output, weights) pairs; :func:`pick` takes one of
the two for a check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from autograde.compare import Mistake

# What a query whose mask row is all False must get (the failure messages of the blocked-row checks use it too).
BLOCKED_ROW_HINT = (
    "a query whose mask row is all False must get zero weights and a zero output; after the softmax over "
    "-inf scores, set the weights of blocked positions to 0 (weights.masked_fill(~mask, 0) or "
    "torch.nan_to_num)."
)
MESSAGES = {
    # scaled_dot_product_attention (and, for the mask, the attention inside MultiHeadAttention)
    "no_scale": "the 1/sqrt(D) scale is missing: divide q @ k^T by math.sqrt(D).",
    "scale_by_d": "the scores are divided by D: the scale is 1/sqrt(D), D = q.shape[-1].",
    "scale_by_wrong_dim": (
        "the scores are scaled by 1/sqrt of the number of queries S or of keys T; the scale is 1/sqrt(D), with D "
        "the length of each query and key vector (q.shape[-1]; in MultiHeadAttention the head_dim)."
    ),
    "softmax_over_queries": (
        "the softmax runs over the queries: normalise over the keys (dim=-1), so each query's weights sum to 1."
    ),
    "mask_inverted": (
        "the mask is inverted: True (or 1) means 'may attend', so fill the scores where the mask is False with -inf."
    ),
    "mask_after_softmax": (
        "the mask is applied after the softmax, so the remaining weights no longer sum to 1: fill blocked "
        "scores with -inf before the softmax."
    ),
    "large_negative_fill": (
        "the fully blocked row got uniform weights 1/T (blocked scores filled with a large negative number "
        f"such as -1e9 instead of -inf): {BLOCKED_ROW_HINT}"
    ),
    # MultiHeadAttention
    "heads_split_order": (
        "the heads are split in the wrong order: view(N, S, h, D) then transpose(1, 2) to (N, h, S, D) (and the "
        "same with T for the keys and values); view(N, h, S, D) directly mixes positions and heads."
    ),
    "heads_merge_order": (
        "the heads are merged in the wrong order: transpose (N, h, S, D) back to (N, S, h, D) before "
        "reshaping to (N, S, E)."
    ),
    "scale_by_embed_dim": (
        "the scores are scaled by 1/sqrt(E): each head works in D = E / h dimensions, so scale by "
        "1/sqrt(E / h) (the head_dim)."
    ),
    "no_head_scale": "the 1/sqrt(head_dim) scale is missing.",
    "no_output_projection": "the output projection is missing: return self.proj(...) of the merged heads.",
    "key_value_swapped": "the `key` and `value` inputs are swapped.",
    "keys_from_query": (
        "keys and values are computed from `query`: use the `key` and `value` inputs (they differ in cross-attention)."
    ),
}

Pair = tuple[torch.Tensor, torch.Tensor]


def attend(q, k, v, mask=None, *, scale=None, axis=-1, after=False, fill=float("-inf"), zero_blocked=True) -> Pair:
    """Attention (output, weights) with the usual mistakes switchable: scale, softmax axis, the mask's place and
    fill."""
    scale = math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) / scale
    if mask is not None and not after:
        scores = scores.masked_fill(~mask.bool(), fill)
    weights = F.softmax(scores, dim=axis)
    if mask is not None and zero_blocked:
        weights = weights.masked_fill(~mask.bool(), 0.0)
    return weights @ v, weights


def _large_negative_fill(q, k, v, mask, **kwargs) -> Pair:
    """The mistake of filling blocked scores with -1e9: a row with nothing to attend gets uniform weights."""
    return attend(q, k, v, mask, fill=-1e9, zero_blocked=False, **kwargs)


def _mask_after_softmax(q, k, v, mask, **kwargs) -> Pair:
    return attend(q, k, v, mask, after=True, **kwargs)


def _mistake(name: str, compute: Callable[[], Pair]) -> Mistake:
    return Mistake(name, compute, MESSAGES[name])


def sdpa_mistakes(q, k, v, mask=None) -> list[Mistake]:
    """The known mistakes of ``scaled_dot_product_attention`` for q, k, v and mask, computed only when tried."""
    D, S, T = q.shape[-1], q.shape[-2], k.shape[-2]
    mistakes = [
        _mistake("no_scale", lambda: attend(q, k, v, mask, scale=1.0)),
        _mistake("scale_by_d", lambda: attend(q, k, v, mask, scale=D)),
        *(_mistake("scale_by_wrong_dim", lambda n=n: attend(q, k, v, mask, scale=math.sqrt(n))) for n in (S, T)),
        _mistake("softmax_over_queries", lambda: attend(q, k, v, mask, axis=-2)),
    ]
    if mask is not None:
        mistakes += [
            _mistake("mask_inverted", lambda: attend(q, k, v, ~mask.bool())),
            _mistake("mask_after_softmax", lambda: _mask_after_softmax(q, k, v, mask)),
            _mistake("large_negative_fill", lambda: _large_negative_fill(q, k, v, mask)),
        ]
    return mistakes


def multi_head(xq, xk, xv, w, H, mask=None, *, split=True, merge=True, scale=None, proj=True, mask_fn=None) -> Pair:
    """Multi-head attention (out (N, S, E), weights (N, h, S, T)) from the weights ``w``, the usual mistakes
    switchable; ``mask_fn`` computes the attention of the heads (default :func:`attend`)."""
    N, S, E = xq.shape
    D = E // H

    def heads(x, name):
        y = F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])  # (N, L, E)
        if split:
            return y.view(N, -1, H, D).transpose(1, 2)  # (N, h, L, D)
        return y.reshape(N, H, -1, D)  # (N, h, L, D) with positions and heads mixed

    q, k, v = heads(xq, "query"), heads(xk, "key"), heads(xv, "value")
    out, weights = (mask_fn or attend)(q, k, v, mask, scale=scale)
    out = out.transpose(1, 2).reshape(N, S, E) if merge else out.reshape(N, S, E)  # (N, S, E)
    return (F.linear(out, w["proj.weight"], w["proj.bias"]) if proj else out), weights


def mha_mistakes(xq, xk, xv, w, H, mask=None, stand_in: Callable[..., Pair] | None = None) -> list[Mistake]:
    """The known mistakes of ``MultiHeadAttention`` with weights ``w``, computed only when tried. ``stand_in``:
    the grader's stand-in for the attention function, when the module is graded with it (the mistakes inside the
    function itself are then left out)."""
    if stand_in is None:
        fn = attend
    else:

        def fn(q, k, v, mask=None, *, scale=None, **_):
            return stand_in(q, k, v, mask)

    def wrong(name: str, xk=xk, xv=xv, mask=mask, mask_fn=fn, **switches) -> Mistake:
        return _mistake(name, lambda: multi_head(xq, xk, xv, w, H, mask, mask_fn=mask_fn, **switches))

    mistakes = []
    if H > 1:
        mistakes += [
            wrong("heads_split_order", split=False, merge=False),
            wrong("heads_split_order", split=False),
            wrong("heads_merge_order", merge=False),
            wrong("scale_by_embed_dim", scale=math.sqrt(xq.shape[-1])),
        ]
    mistakes += [wrong("scale_by_wrong_dim", scale=math.sqrt(n)) for n in (xq.shape[1], xk.shape[1])]
    mistakes += [wrong("no_head_scale", scale=1.0), wrong("no_output_projection", proj=False)]
    if xk is not xq:
        mistakes.append(wrong("key_value_swapped", xk=xv, xv=xk))
        if mask is None or xk.shape == xq.shape:
            mistakes.append(wrong("keys_from_query", xk=xq, xv=xq))
    if mask is not None:
        mistakes.append(wrong("mask_inverted", mask=~mask.bool()))
    if mask is not None and stand_in is None:  # mistakes inside the attention function itself
        mistakes += [
            wrong("mask_after_softmax", mask_fn=_mask_after_softmax),
            wrong("large_negative_fill", mask_fn=_large_negative_fill),
        ]
    return mistakes


def pick(mistakes: Sequence[Mistake], index: int) -> list[Mistake]:
    """The ``index``-th returned tensor (0: output, 1: weights) of each mistake, still computed only when tried."""
    return [Mistake(m.name, lambda m=m: m.value()[index], m.message) for m in mistakes]
