"""Example submissions of notebook 5 and the grader tests each one fails.

A mistake in LocalSelfAttention2d is charged to its own part only: the fully attentional network is graded with
the grader's stand-in for the layer, and only its diagnostic (which earns nothing) says that the layer is at fault.
"""

from autograde.example_notebooks import BLANK, Edit, Example, solution

# A wrong forward pass fails the tests of the values; the gradients are checked against the student's own forward
# pass, so they keep their point.
LOCAL_WRONG = (
    "test_local_attention_one_head",
    "test_local_attention_heads",
    "test_local_attention_small_maps",
)
BLAMED = "test_net_with_your_own_attention"  # the diagnostic that names the layer
SCORES = 'scores = torch.einsum("ngdl,ngdkl->ngkl", q, k) + torch.einsum("ngdl,gdk->ngkl", q, r)  # (N, h, m*m, L)'
SOFTMAX_AND_SUM = """        scores = scores.masked_fill(~inside, float("-inf"))
        weights = F.softmax(scores, dim=2)  # (N, h, m*m, L): each pixel's weights sum to 1
        out = torch.einsum("ngkl,ngdkl->ngdl", weights, v)  # (N, h, D, L)"""
PER_CHANNEL = """        scores = q[:, :, :, None] * (k + r[None, :, :, :, None])  # (N, h, D, m*m, L): one per channel
        inside = F.unfold(torch.ones_like(x[:1, :1]), m, padding=pad) > 0  # (1, m*m, L)
        scores = scores.masked_fill(~inside[:, None], float("-inf"))
        weights = F.softmax(scores, dim=3)  # every channel its own softmax over the neighbours
        out = (weights * v).sum(dim=3)  # (N, h, D, L)"""

# The review's AttentionConv under the notebook's names: `self.groups` is num_heads, padding and stride are those of
# a stride-1 layer of the same size, and the parameters carry the contract's names and shapes (rel_h and rel_w are
# views of rel_rows and rel_cols). Its maths is left as it is: relative embeddings added to the values, a
# per-channel softmax of q * k, zero padding.
SOLUTION_INIT = """        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"kernel_size={kernel_size} must be odd (1, 3, 5, ...): the pixel is the centre.")
        if out_channels % num_heads:
            raise ValueError(f"out_channels={out_channels} must be divisible by num_heads={num_heads}.")
        if (out_channels // num_heads) % 2:
            raise ValueError(
                f"every head has {out_channels // num_heads} channels; choose out_channels and num_heads so that "
                "it is even (half for the row offset, half for the column offset)."
            )
        self.kernel_size = kernel_size
        self.num_heads = num_heads
        self.conv_query = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.conv_key = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.conv_value = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.rel_rows = nn.Parameter(torch.randn(out_channels // 2, kernel_size))
        self.rel_cols = nn.Parameter(torch.randn(out_channels // 2, kernel_size))"""
REVIEW_INIT = """        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = 1
        self.padding = (kernel_size - 1) // 2
        self.groups = num_heads
        self.num_heads = num_heads

        self.rel_rows = nn.Parameter(torch.randn(out_channels // 2, kernel_size), requires_grad=True)
        self.rel_cols = nn.Parameter(torch.randn(out_channels // 2, kernel_size), requires_grad=True)

        self.conv_key = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.conv_query = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.conv_value = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)"""
SOLUTION_FORWARD = f"""        h, m = self.num_heads, self.kernel_size
        C = self.conv_query.out_channels
        D, pad = C // h, m // 2
        q = self.conv_query(x).view(N, h, D, H * W)  # (N, h, D, L) with L = H*W
        k = F.unfold(self.conv_key(x), m, padding=pad).view(N, h, D, m * m, H * W)  # (N, h, D, m*m, L)
        v = F.unfold(self.conv_value(x), m, padding=pad).view(N, h, D, m * m, H * W)  # (N, h, D, m*m, L)
        rows = self.rel_rows.view(h, D // 2, m, 1).expand(h, D // 2, m, m)  # varies with the row offset
        cols = self.rel_cols.view(h, D // 2, 1, m).expand(h, D // 2, m, m)  # varies with the column offset
        r = torch.cat([rows, cols], dim=1).reshape(h, D, m * m)  # (h, D, m*m), neighbours row by row
        {SCORES}
        inside = F.unfold(torch.ones_like(x[:1, :1]), m, padding=pad) > 0  # (1, m*m, L)
{SOFTMAX_AND_SUM}
        return out.reshape(N, C, H, W)"""
REVIEW_FORWARD = """        batch, channels, height, width = x.size()
        rel_h = self.rel_rows.view(self.out_channels // 2, 1, 1, self.kernel_size, 1)
        rel_w = self.rel_cols.view(self.out_channels // 2, 1, 1, 1, self.kernel_size)

        padded_x = F.pad(x, [self.padding, self.padding, self.padding, self.padding])
        q_out = self.conv_query(x)
        k_out = self.conv_key(padded_x)
        v_out = self.conv_value(padded_x)

        k_out = k_out.unfold(2, self.kernel_size, self.stride).unfold(3, self.kernel_size, self.stride)
        v_out = v_out.unfold(2, self.kernel_size, self.stride).unfold(3, self.kernel_size, self.stride)

        v_out_h, v_out_w = v_out.split(self.out_channels // 2, dim=1)
        v_out = torch.cat((v_out_h + rel_h, v_out_w + rel_w), dim=1)

        k_out = k_out.contiguous().view(batch, self.groups, self.out_channels // self.groups, height, width, -1)
        v_out = v_out.contiguous().view(batch, self.groups, self.out_channels // self.groups, height, width, -1)

        q_out = q_out.view(batch, self.groups, self.out_channels // self.groups, height, width, 1)

        out = q_out * k_out
        out = F.softmax(out, dim=-1)
        out = torch.einsum('bnchwk,bnchwk -> bnchw', out, v_out).view(batch, -1, height, width)

        return out"""
ONLINE_UPDATE = """        mu_new = torch.maximum(mu, s.amax(dim=-1, keepdim=True))  # (..., S, 1)
        reference = torch.where(torch.isinf(mu_new), torch.zeros_like(mu_new), mu_new)
        rescale = torch.exp(mu - reference)  # (..., S, 1), 0 while nothing was seen
        e = torch.exp(s - reference)  # (..., S, B)
        total = total * rescale + e.sum(dim=-1, keepdim=True)
        acc = acc * rescale + e @ v[..., start:end, :]
        mu = mu_new"""
NO_MAXIMUM = """        e = torch.exp(s)  # (..., S, B), no maximum subtracted
        total = total + e.sum(dim=-1, keepdim=True)
        acc = acc + e @ v[..., start:end, :]"""
CHUNK_MAXIMUM_ONLY = """        mu_new = s.amax(dim=-1, keepdim=True)  # this chunk's own maximum
        reference = torch.where(torch.isinf(mu_new), torch.zeros_like(mu_new), mu_new)
        e = torch.exp(s - reference)  # (..., S, B)
        total = total + e.sum(dim=-1, keepdim=True)
        acc = acc + e @ v[..., start:end, :]"""

# A first pass over the whole (S, T) matrix of scores for each row's maximum, then the chunks against it.
GLOBAL_MAXIMUM = """    every = (q @ k.transpose(-2, -1)) * scale  # (..., S, T): the whole matrix, for the maximum
    if mask is not None:
        every = every.masked_fill(~mask, float("-inf"))
    top = every.amax(dim=-1, keepdim=True)  # (..., S, 1)
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    for start in range(0, T, chunk_size):
"""
GLOBAL_UPDATE = """        e = torch.exp(s - top)  # (..., S, B)
        total = total + e.sum(dim=-1, keepdim=True)
        acc = acc + e @ v[..., start:end, :]"""

EXAMPLES = [
    solution(),
    BLANK,
    Example(
        "review_code",
        "the AttentionConv of Inline Question 3 under the contract's names (its groups are num_heads), its maths "
        "as shown: embeddings added to the values, a per-channel softmax of q * k, zero padding, and no argument "
        "checks",
        ("test_local_attention_rejects_bad_arguments", *LOCAL_WRONG, BLAMED),
        edits=(
            Edit("local_attention", SOLUTION_INIT, REVIEW_INIT),
            Edit("local_attention", SOLUTION_FORWARD, REVIEW_FORWARD),
        ),
    ),
    Example(
        "chunked_no_running_max",
        "the chunked softmax sums exp(score) without a running maximum: it overflows for large scores",
        ("test_chunked_large_scores",),
        edits=(Edit("chunked", ONLINE_UPDATE, NO_MAXIMUM),),
    ),
    Example(
        "rel_on_values",
        "the relative embeddings added to the values instead of being scored with the keys",
        (*LOCAL_WRONG, BLAMED),
        edits=(
            Edit(
                "local_attention",
                SCORES,
                'scores = torch.einsum("ngdl,ngdkl->ngkl", q, k)  # (N, h, m*m, L)\n'
                "        v = v + r[None, :, :, :, None]  # the embedding added to the values",
            ),
        ),
    ),
    Example(
        "per_channel_softmax",
        "a softmax per channel of the elementwise product q * (k + r) instead of one per head of the dot product",
        (*LOCAL_WRONG, BLAMED),
        edits=(
            Edit(
                "local_attention",
                f"        {SCORES}\n"
                "        inside = F.unfold(torch.ones_like(x[:1, :1]), m, padding=pad) > 0  # (1, m*m, L)\n"
                f"{SOFTMAX_AND_SUM}",
                PER_CHANNEL,
            ),
        ),
    ),
    Example(
        "attends_to_padding",
        "border pixels attend to the zero padding (no -inf for the neighbours outside the image)",
        (*LOCAL_WRONG, BLAMED),
        edits=(Edit("local_attention", '        scores = scores.masked_fill(~inside, float("-inf"))\n', ""),),
    ),
    Example(
        "halves_swapped",
        "the row and column halves of r swapped: the column embedding first",
        (*LOCAL_WRONG, BLAMED),
        edits=(Edit("local_attention", "torch.cat([rows, cols], dim=1)", "torch.cat([cols, rows], dim=1)"),),
    ),
    Example(
        "offsets_flipped",
        "offsets taken as (i - a, j - b) instead of (a - i, b - j)",
        (*LOCAL_WRONG, BLAMED),
        edits=(
            Edit("local_attention", "rows = self.rel_rows.view(", "rows = self.rel_rows.flip(1).view("),
            Edit("local_attention", "cols = self.rel_cols.view(", "cols = self.rel_cols.flip(1).view("),
        ),
    ),
    Example(
        "softmax_wrong_axis",
        "the softmax over the pixels (dim=3) instead of over each pixel's neighbours",
        (*LOCAL_WRONG, BLAMED),
        edits=(Edit("local_attention", "F.softmax(scores, dim=2)", "F.softmax(scores, dim=3)"),),
    ),
    Example(
        "chunk_maximum_not_rescaled",
        "each chunk's exponentials taken against that chunk's own maximum, the running sums never rescaled",
        (
            "test_chunked_matches_attention",
            "test_chunked_uneven_chunks",
            "test_chunked_masks",
            "test_chunked_large_scores",
        ),
        edits=(Edit("chunked", ONLINE_UPDATE, CHUNK_MAXIMUM_ONLY),),
    ),
    Example(
        "normaliser_not_rescaled",
        "the running output is rescaled when the maximum grows, the running normaliser is not",
        ("test_chunked_matches_attention",),
        edits=(
            Edit(
                "chunked",
                "total = total * rescale + e.sum(dim=-1, keepdim=True)",
                "total = total + e.sum(dim=-1, keepdim=True)",
            ),
        ),
    ),
    Example(
        "global_maximum_first",
        "the whole (S, T) matrix of scores computed first for each row's maximum, then the chunks: exact, but "
        "it breaks the memory contract",
        ("test_chunked_memory",),
        edits=(
            Edit("chunked", "    for start in range(0, T, chunk_size):\n", GLOBAL_MAXIMUM),
            Edit("chunked", ONLINE_UPDATE, GLOBAL_UPDATE),
        ),
    ),
]
