"""Example submissions of notebook 4 and the points nbgrader must give each hidden test cell.

No example carries a checkpoint (a submission folder holds only the notebook here), so ``checkpoint_tests``
gives 0 points with its "no checkpoint" message throughout; tests/test_checkpoint_grading.py grades real
checkpoints. A mistake in a building block also costs the value points of the parts built on it: the ViT keeps
only its structure and output-shape points (2 of 7) when its patches, layers or attention are wrong.
"""

from autograde.examples import Edit, Example

FULL = {
    "reused_tests": 2,
    "patch_embed_tests": 6,
    "encoder_layer_tests": 6,
    "vit_tests": 7,
    "rollout_tests": 2,
    "q_cost_tests": 1,
    "checkpoint_tests": 0,
}
PATCHIFY = """x = x.reshape(N, C, H // p, p, W // p, p)  # (N, C, H/p, p, W/p, p)
        x = x.permute(0, 2, 4, 1, 3, 5)  # (N, H/p, W/p, C, p, p)
        x = x.reshape(N, (H // p) * (W // p), C * p * p)  # (N, L, C*p*p)"""
PRE_NORM = """h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h))
        return x + self.dropout(self.mlp(self.norm2(x)))"""
POST_NORM = """x = self.norm1(x + self.dropout(self.self_attn(x, x, x)))
        return self.norm2(x + self.dropout(self.mlp(x)))"""

EXAMPLES = [
    Example("solution", "the full solution", FULL),
    Example("blank", "the untouched release", {cell: 0 for cell in FULL}, blank=True),
    Example(
        "view_patchify",
        "patches cut with x.view(N, -1, C*p*p), as a seed student did",
        {**FULL, "patch_embed_tests": 2, "vit_tests": 2},
        edits=(Edit("patch_embed", PATCHIFY, "x = x.view(N, -1, C * p * p)"),),
    ),
    Example(
        "post_norm",
        "a post-norm encoder layer: x = norm(x + f(x))",
        {**FULL, "encoder_layer_tests": 2, "vit_tests": 2},
        edits=(Edit("encoder_layer", PRE_NORM, POST_NORM),),
    ),
    Example(
        "relu_mlp",
        "ReLU instead of GELU in the MLP",
        {**FULL, "encoder_layer_tests": 2, "vit_tests": 2},
        edits=(Edit("encoder_layer", "nn.GELU(),\n", "nn.ReLU(),\n"),),
    ),
    Example(
        "no_final_norm",
        "the final LayerNorm is left out",
        {**FULL, "vit_tests": 2},
        edits=(Edit("vit", "        x = self.norm(x)\n", ""),),
    ),
    Example(
        "pe_added_twice",
        "the positional encoding is added again after PositionalEncoding already added it",
        {**FULL, "vit_tests": 2},
        edits=(
            Edit(
                "vit",
                "x = self.positional_encoding(x)",
                "x = self.positional_encoding(x)\n"
                "        x = x + self.positional_encoding.pe[:, : x.shape[1]]",
            ),
        ),
    ),
    Example(
        "cls_token_mean_pooled",
        "with pool='cls' the class token is prepended but the head reads the mean of all tokens",
        {**FULL, "vit_tests": 4},
        edits=(Edit("vit", 'x = x[:, 0] if self.pool == "cls" else x.mean(dim=1)', "x = x.mean(dim=1)"),),
    ),
    Example(
        "mha_without_projection",
        "the pasted MultiHeadAttention skips its output projection",
        {**FULL, "reused_tests": 1, "encoder_layer_tests": 2, "vit_tests": 2},
        edits=(Edit("reused", "return self.proj(out)", "return out"),),
    ),
    Example(
        "rollout_reversed",
        "attention rollout multiplies the layers first on the left",
        {**FULL, "rollout_tests": 1},
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
        {**FULL, "q_cost_tests": 0},
        edits=(Edit("q_cost", "answer_q_cost = 3", "answer_q_cost = 2"),),
    ),
]
