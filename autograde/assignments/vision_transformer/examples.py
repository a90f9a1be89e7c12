"""Example submissions of notebook 4 and the grader tests each one fails.

No example carries a checkpoint (a submission folder holds only the notebook here), so the checkpoint tests
fail with their "no checkpoint" message throughout; tests/test_checkpoint_grading.py grades real checkpoints.
A mistake in a building block also fails the value checks of the parts built on it: the ViT keeps only its
structure and output-shape checks when its patches, layers or attention are wrong.
"""

from autograde.examples import BLANK, Edit, Example, solution

NO_CHECKPOINT = ("test_checkpoint_reaches_the_target", "test_checkpoint_reaches_the_bonus_tier")
WRONG_VIT = ("test_vit_forward_mean_pool", "test_vit_forward_cls_pool", "test_vit_gradients")
PATCHIFY = """x = x.reshape(N, C, H // p, p, W // p, p)  # (N, C, H/p, p, W/p, p)
        x = x.permute(0, 2, 4, 1, 3, 5)  # (N, H/p, W/p, C, p, p)
        x = x.reshape(N, (H // p) * (W // p), C * p * p)  # (N, L, C*p*p)"""
PRE_NORM = """h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h))
        return x + self.dropout(self.mlp(self.norm2(x)))"""
POST_NORM = """x = self.norm1(x + self.dropout(self.self_attn(x, x, x)))
        return self.norm2(x + self.dropout(self.mlp(x)))"""

EXAMPLES = [
    solution(*NO_CHECKPOINT),
    BLANK,
    Example(
        "view_patchify",
        "patches cut with x.view(N, -1, C*p*p), as a seed student did",
        (
            *NO_CHECKPOINT,
            *WRONG_VIT,
            "test_patch_embedding_forward",
            "test_patch_embedding_non_square",
            "test_patch_embedding_gradients",
        ),
        edits=(Edit("patch_embed", PATCHIFY, "x = x.view(N, -1, C * p * p)"),),
    ),
    Example(
        "post_norm",
        "a post-norm encoder layer: x = norm(x + f(x))",
        (
            *NO_CHECKPOINT,
            *WRONG_VIT,
            "test_encoder_layer_forward",
            "test_encoder_layer_is_pre_norm",
            "test_encoder_layer_gradients",
        ),
        edits=(Edit("encoder_layer", PRE_NORM, POST_NORM),),
    ),
    Example(
        "relu_mlp",
        "ReLU instead of GELU in the MLP",
        (
            *NO_CHECKPOINT,
            *WRONG_VIT,
            "test_encoder_layer_structure",
            "test_encoder_layer_forward",
            "test_encoder_layer_gradients",
        ),
        edits=(Edit("encoder_layer", "nn.GELU(),\n", "nn.ReLU(),\n"),),
    ),
    Example(
        "no_final_norm",
        "the final LayerNorm is left out",
        (*NO_CHECKPOINT, *WRONG_VIT),
        edits=(Edit("vit", "        x = self.norm(x)\n", ""),),
    ),
    Example(
        "pe_added_twice",
        "the positional encoding is added again after PositionalEncoding already added it",
        (*NO_CHECKPOINT, *WRONG_VIT),
        edits=(
            Edit(
                "vit",
                "x = self.positional_encoding(x)",
                "x = self.positional_encoding(x)\n        x = x + self.positional_encoding.pe[:, : x.shape[1]]",
            ),
        ),
    ),
    Example(
        "cls_token_mean_pooled",
        "with pool='cls' the class token is prepended but the head reads the mean of all tokens",
        (*NO_CHECKPOINT, "test_vit_forward_cls_pool", "test_vit_gradients"),
        edits=(Edit("vit", 'x = x[:, 0] if self.pool == "cls" else x.mean(dim=1)', "x = x.mean(dim=1)"),),
    ),
    Example(
        "mha_without_projection",
        "the pasted MultiHeadAttention skips its output projection",
        (
            *NO_CHECKPOINT,
            *WRONG_VIT,
            "test_reused_multi_head_attention",
            "test_encoder_layer_forward",
            "test_encoder_layer_is_pre_norm",
            "test_encoder_layer_gradients",
        ),
        edits=(Edit("reused", "return self.proj(out)", "return out"),),
    ),
    Example(
        "rollout_reversed",
        "attention rollout multiplies the layers first on the left",
        (*NO_CHECKPOINT, "test_rollout_layers"),
        edits=(
            Edit(
                "rollout",
                "rollout = 0.5 * (w.mean(dim=1) + eye) @ rollout",
                "rollout = rollout @ (0.5 * (w.mean(dim=1) + eye))",
            ),
        ),
    ),
    Example(
        "wrong_choice",
        "Inline Question 1 answered 'about 4x'",
        (*NO_CHECKPOINT, "test_inline_question_cost"),
        edits=(Edit("q_cost", "answer_q_cost = 3", "answer_q_cost = 2"),),
    ),
]
