"""The built-in attention of torch, which notebook 2 asks students to write by hand (and notebook 5's chunked
attention after it): for each built-in, the names of the torch functions and aten operators that carry it out,
however they are reached. A grader passes these as :attr:`autograde.worker.protocol.Call.watch` and fails a call
that used one (:func:`autograde.checks.forbid_watched`).
"""

from __future__ import annotations

SCALED_DOT_PRODUCT_ATTENTION: dict[str, frozenset[str]] = {
    "F.scaled_dot_product_attention": frozenset(
        {
            "scaled_dot_product_attention",
            "_scaled_dot_product_attention_math",
            "_scaled_dot_product_attention_math_for_mps",
            "_scaled_dot_product_flash_attention",
            "_scaled_dot_product_flash_attention_for_cpu",
            "_scaled_dot_product_efficient_attention",
            "_scaled_dot_product_cudnn_attention",
            "_scaled_dot_product_fused_attention_overrideable",
        }
    ),
}
MULTIHEAD_ATTENTION: dict[str, frozenset[str]] = {
    "nn.MultiheadAttention": frozenset(
        {"multi_head_attention_forward", "_native_multi_head_attention", "_transformer_encoder_layer_fwd"}
    ),
}
