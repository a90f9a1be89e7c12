"""Example submissions of notebook 4 and the grader tests each one fails.

No example carries a checkpoint (a submission folder holds only the notebook here), so the checkpoint tests
fail with their "no checkpoint" message throughout; tests/test_checkpoint_grading.py grades real checkpoints.
A mistake in a building block costs points in its own part only: the parts built on it are graded with the
grader's stand-ins, and only their diagnostics (no points) say which earlier part is at fault.
"""

from autograde.example_notebooks import BLANK, Edit, Example, solution

NO_CHECKPOINT = ("test_checkpoint_reaches_the_target", "test_checkpoint_reaches_the_second_tier")
# A forward-pass mistake fails the tests of the values; the gradients are checked against the student's own
# forward pass, so they keep their point.
WRONG_VIT = ("test_vit_forward_mean_pool", "test_vit_forward_cls_pool")
BLAMED = "test_vit_with_your_own_parts"  # the diagnostic that names an earlier part
WRONG_PATCHES = ("test_patch_embedding_forward", "test_patch_embedding_non_square")
PATCHIFY = """x = x.reshape(N, C, H // p, p, W // p, p)  # (N, C, H/p, p, W/p, p)
        x = x.permute(0, 2, 4, 1, 3, 5)  # (N, H/p, W/p, C, p, p)
        x = x.reshape(N, (H // p) * (W // p), C * p * p)  # (N, M, C*p*p)"""
PRE_NORM = """y = self.norm1(x)
        x = x + self.dropout(self.self_attn(y, y, y))
        return x + self.dropout(self.mlp(self.norm2(x)))"""
POST_NORM = """x = self.norm1(x + self.dropout(self.self_attn(x, x, x)))
        return self.norm2(x + self.dropout(self.mlp(x)))"""

EXAMPLES = [
    solution(*NO_CHECKPOINT),
    BLANK,
    Example(
        "view_patchify",
        "patches cut with x.view(N, -1, C*p*p)",
        (*NO_CHECKPOINT, BLAMED, *WRONG_PATCHES),
        edits=(Edit("patch_embed", PATCHIFY, "x = x.view(N, -1, C * p * p)"),),
    ),
    Example(
        "patches_channels_last",
        "one wrong permute: each patch flattened in (p, p, C) order instead of (C, p, p)",
        (*NO_CHECKPOINT, BLAMED, *WRONG_PATCHES),
        edits=(Edit("patch_embed", "x.permute(0, 2, 4, 1, 3, 5)", "x.permute(0, 2, 4, 3, 5, 1)"),),
    ),
    Example(
        "patches_split_p_first",
        "each side split as (p, H/p) instead of (H/p, p): the patches are not p x p squares",
        (*NO_CHECKPOINT, BLAMED, *WRONG_PATCHES),
        edits=(
            Edit("patch_embed", "x.reshape(N, C, H // p, p, W // p, p)", "x.reshape(N, C, p, H // p, p, W // p)"),
            Edit("patch_embed", "x.permute(0, 2, 4, 1, 3, 5)", "x.permute(0, 3, 5, 1, 2, 4)"),
        ),
    ),
    Example(
        "post_norm",
        "a post-norm encoder layer: x = norm(x + f(x))",
        (
            *NO_CHECKPOINT,
            BLAMED,
            "test_encoder_layer_forward",
            "test_encoder_layer_is_pre_norm",
        ),
        edits=(Edit("encoder_layer", PRE_NORM, POST_NORM),),
    ),
    Example(
        "relu_mlp",
        "ReLU instead of GELU in the MLP",
        (
            *NO_CHECKPOINT,
            BLAMED,
            "test_encoder_layer_structure",
            "test_encoder_layer_forward",
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
        "the positional encoding is applied twice",
        (*NO_CHECKPOINT, *WRONG_VIT),
        edits=(
            Edit(
                "vit",
                "x = self.positional_encoding(x)",
                "x = self.positional_encoding(x)\n        x = self.positional_encoding(x)",
            ),
        ),
    ),
    Example(
        "cls_token_mean_pooled",
        "with pool='cls' the class token is prepended but the head reads the mean of all tokens",
        (*NO_CHECKPOINT, "test_vit_forward_cls_pool"),
        edits=(Edit("vit", 'x = x[:, 0] if self.pool == "cls" else x.mean(dim=1)', "x = x.mean(dim=1)"),),
    ),
    Example(
        "mha_without_projection",
        "the pasted MultiHeadAttention skips its output projection",
        (*NO_CHECKPOINT, BLAMED, "test_reused_multi_head_attention", "test_encoder_layer_with_your_own_attention"),
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
        "Inline Question 5 answered 'about 4x'",
        (*NO_CHECKPOINT, "test_inline_question_cost"),
        edits=(Edit("q_cost", "answer_q_cost = 3", "answer_q_cost = 2"),),
    ),
]
