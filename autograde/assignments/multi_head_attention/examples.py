"""Example submissions of notebook 2: the solution, the blank release and realistic mistakes.

Each example lists the grader tests it fails. A mistake in the function costs points in ``sdpa`` only: the
module is graded with the grader's stand-in for the function when the student's own gives a wrong result.
"""

from __future__ import annotations

from autograde.example_notebooks import BLANK, Edit, Example, solution

# A wrong forward pass of the module: every check that compares its output or weights with the reference. A query
# that may attend to nothing and the gradients are proven on their own, so they keep their points.
WRONG_MHA = (
    "test_mha_self_attention",
    "test_mha_cross_attention",
    "test_mha_keeps_attention_weights",
    "test_mha_masks",
)
# A wrong mask in the function: the masked checks of the function's values. The module is graded with the
# grader's stand-in for the function, so it keeps its points; only its diagnostic names the function. The 0/1
# integer mask is compared with the student's own boolean mask, so it passes.
WRONG_MASK = ("test_sdpa_masks", "test_mha_with_your_own_function")

SPLIT_Q = "q = self.query(query).view(N, S, h, D).transpose(1, 2)  # (N, h, S, D)"
SPLIT_K = "k = self.key(key).view(N, T, h, D).transpose(1, 2)  # (N, h, T, D)"
SPLIT_V = "v = self.value(value).view(N, T, h, D).transpose(1, 2)  # (N, h, T, D)"
MERGE = "out = out.transpose(1, 2).reshape(N, S, E)  # (N, S, h, D) -> (N, S, E)"
CALL = "out, weights = scaled_dot_product_attention(q, k, v, attn_mask, self.attn_drop)  # (N, h, S, D)"
MASK_SCORES = 'scores = scores.masked_fill(~mask.bool(), float("-inf"))'
ZERO_BLOCKED = """    if mask is not None:
        weights = weights.masked_fill(~mask.bool(), 0.0)  # a row with nothing to attend: NaN -> 0
"""

# The student writes the attention inside the module instead of calling the function, and scales by sqrt(E).
INLINE_SQRT_E = """scores = q @ k.transpose(-2, -1) / math.sqrt(E)  # (N, h, S, T)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask.bool(), float("-inf"))
        weights = self.attn_drop(torch.nan_to_num(F.softmax(scores, dim=-1)))
        out = weights @ v  # (N, h, S, D)"""

# The student calls PyTorch's fused attention in the module (and computes the weights on the side).
BUILTIN = """out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop.p)
        weights = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), dim=-1)"""

EXAMPLES = [
    solution(),
    BLANK,
    Example(
        "wrong_head_split",
        "heads split with view(N, h, L, D) without the transpose, merged back with a plain reshape",
        (*WRONG_MHA, "test_mha_blocked_rows"),  # the mask then blocks the wrong query
        (
            Edit("mha", SPLIT_Q, "q = self.query(query).view(N, h, S, D)"),
            Edit("mha", SPLIT_K, "k = self.key(key).view(N, h, T, D)"),
            Edit("mha", SPLIT_V, "v = self.value(value).view(N, h, T, D)"),
            Edit("mha", MERGE, "out = out.reshape(N, S, E)"),
        ),
    ),
    Example(
        "sqrt_e_scale",
        "attention written inside the module with the scores scaled by 1/sqrt(E) instead of 1/sqrt(E/h)",
        WRONG_MHA,
        (Edit("mha", CALL, INLINE_SQRT_E),),
    ),
    Example(
        "sqrt_s_scale",
        "the scores divided by sqrt(S), the number of queries, instead of sqrt(D)",
        ("test_sdpa_matches_reference", "test_sdpa_masks", "test_mha_with_your_own_function"),
        (Edit("sdpa", "/ math.sqrt(q.shape[-1])", "/ math.sqrt(q.shape[-2])"),),
    ),
    Example(
        "mask_after_softmax",
        "the mask zeroes the weights after the softmax instead of filling the scores with -inf before it",
        WRONG_MASK,
        (Edit("sdpa", f"    if mask is not None:\n        {MASK_SCORES}\n", ""),),
    ),
    Example(
        "mask_inverted",
        "mask polarity inverted: True treated as 'blocked'",
        (*WRONG_MASK, "test_sdpa_blocked_rows"),  # the query that may attend to nothing attends to everything
        (
            Edit("sdpa", MASK_SCORES, 'scores = scores.masked_fill(mask.bool(), float("-inf"))'),
            Edit("sdpa", "weights.masked_fill(~mask.bool(), 0.0)", "weights.masked_fill(mask.bool(), 0.0)"),
        ),
    ),
    Example(
        "large_negative_fill",
        "forbidden scores filled with -1e9 and no zeroing: a fully blocked row gets uniform weights",
        ("test_sdpa_blocked_rows",),
        (Edit("sdpa", 'float("-inf")', "-1e9"), Edit("sdpa", ZERO_BLOCKED, "")),
    ),
    Example(
        "mha_mask_inverted",
        "the module itself passes the mask the wrong way round (True taken as 'blocked')",
        ("test_mha_masks", "test_mha_blocked_rows"),
        (
            Edit(
                "mha", "attn_mask, self.attn_drop)", "None if attn_mask is None else ~attn_mask.bool(), self.attn_drop)"
            ),
        ),
    ),
    Example(
        "dropout_in_eval",
        "F.dropout(w, p) passed as the dropout, so it stays active in eval mode",
        (*WRONG_MHA, "test_mha_eval_is_deterministic", "test_mha_dropout_in_training"),
        (Edit("mha", "attn_mask, self.attn_drop)", "attn_mask, lambda w: F.dropout(w, p=self.attn_drop.p))"),),
    ),
    Example(
        "no_output_projection",
        "the merged heads are returned without self.proj",
        ("test_mha_self_attention", "test_mha_cross_attention", "test_mha_masks"),
        (Edit("mha", "return self.proj(out)", "return out"),),
    ),
    Example(
        "builtin_attention",
        "the module calls F.scaled_dot_product_attention instead of writing attention",
        (
            *WRONG_MHA,
            "test_mha_output_shape",
            "test_mha_blocked_rows",
            "test_mha_gradients",
            "test_mha_eval_is_deterministic",
            "test_mha_dropout_in_training",
        ),
        (Edit("mha", CALL, BUILTIN),),
    ),
]
