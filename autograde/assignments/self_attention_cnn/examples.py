"""Example submissions of notebook 1 and the grader tests each one fails."""

from autograde.example_notebooks import BLANK, Edit, Example, solution

# A wrong Attention keeps the checks that do not compare values: its layers, the output shape, the gradients
# (checked against the student's own forward pass) and eval-mode determinism. The models are graded with the
# grader's stand-in for Attention, so they keep every point; only their diagnostic (no points) says that their
# difference comes from Attention.
WRONG_ATTENTION = (
    "test_forward_square_maps",
    "test_forward_non_square_maps",
    "test_models_with_your_own_attention",
)

EXAMPLES = [
    solution(),
    BLANK,
    Example(
        "channels_attention",
        "attention over channels (a C x C matrix), as a seed student did",
        WRONG_ATTENTION,
        edits=(
            Edit("attention", "q = self.conv_query(x).flatten(2).transpose(1, 2)", "q = self.conv_query(x).flatten(2)"),
            Edit("attention", "k = self.conv_key(x).flatten(2).transpose(1, 2)", "k = self.conv_key(x).flatten(2)"),
            Edit("attention", "v = self.conv_value(x).flatten(2).transpose(1, 2)", "v = self.conv_value(x).flatten(2)"),
            Edit(
                "attention",
                "out = (weights @ v).transpose(1, 2).reshape(N, C, H, W)",
                "out = (weights @ v).reshape(N, C, H, W)",
            ),
        ),
    ),
    Example(
        "no_scale",
        "the 1/sqrt(C) scale is missing",
        WRONG_ATTENTION,
        edits=(Edit("attention", "q @ k.transpose(1, 2) / math.sqrt(C)", "q @ k.transpose(1, 2)"),),
    ),
    Example(
        "softmax_wrong_axis",
        "softmax over the queries instead of the keys",
        WRONG_ATTENTION,
        edits=(Edit("attention", "/ math.sqrt(C), dim=-1)", "/ math.sqrt(C), dim=1)"),),
    ),
    Example(
        "no_residual",
        "the residual x + ... is missing",
        WRONG_ATTENTION,
        edits=(Edit("attention", "return x + out", "return out"),),
    ),
    Example(
        "cuda_hardcoded",
        "the scale is a tensor moved to 'cuda' (fails on a CPU)",
        ("test_output_shape", "test_gradients", "test_eval_mode_is_deterministic_and_device_free", *WRONG_ATTENTION),
        edits=(Edit("attention", "/ math.sqrt(C)", "/ torch.sqrt(torch.Tensor([C])).to('cuda')"),),
    ),
    Example(
        "late_attention_misplaced",
        "late_attention_cnn puts the attention block after the first convolution",
        ("test_model_architecture[late_attention_cnn]", "test_model_output[late_attention_cnn]"),
        edits=(
            Edit(
                "models",
                """        nn.Conv2d(3, channel_1, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1),
        nn.ReLU(),
        Attention(channel_2),""",
                """        nn.Conv2d(3, channel_1, kernel_size=3, padding=1),
        nn.ReLU(),
        Attention(channel_1),
        nn.ReLU(),
        nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1),""",
            ),
        ),
    ),
    Example(
        "sagan_scaled",
        "SAGANAttention divides its scores by sqrt(C'), as notebook 1's Attention does; SAGAN uses no scale",
        ("test_sagan_forward_and_gradients",),
        edits=(Edit("sagan", "F.softmax(q @ k, dim=-1)", "F.softmax(q @ k / math.sqrt(q.shape[-1]), dim=-1)"),),
    ),
    Example(
        "wrong_choice",
        "Inline Question 1 answered 'Residual block'",
        ("test_inline_question_1",),
        edits=(Edit("q1", "answer_q1 = 2", "answer_q1 = 3"),),
    ),
]
