"""Similar submissions: copies disguised by renaming, reformatting, reordering and new comments are flagged among
independent correct solutions of notebook 2; independent solutions and students who changed only the release's
own code are not.

The class: eight independent solutions of notebook 2's two answer cells (``sdpa``, ``mha``), each written in its
own style (einsum, bmm, a loop over heads, an explicit softmax, ...), and three copies of three of them, each
disguised the ways copying is cheap. ``test_the_independent_solutions_are_correct`` grades the eight with the
real graders, so the class is what a real class looks like: correct code written independently.
"""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest

from autograde import course
from autograde.report.answers import answer_cells, release_code
from autograde.report.normalise import Cell, normalise
from autograde.report.similarity import Code, Settings, _shared_counts, find_similar

A2 = "02_multi_head_attention"
STUB = "# YOUR CODE HERE\n"
RAISE = "raise NotImplementedError()"

# ------------------------------------------------------------------------------------------------ the class
# Each solution: the body of scaled_dot_product_attention, of MultiHeadAttention.__init__ (after the release's
# first two lines) and of forward (after the release's first three lines), indented as in the cell.
INDEPENDENT = {
    "ada": (
        """
    d = q.size(-1)
    logits = torch.matmul(q, k.transpose(-1, -2)) / d ** 0.5
    if mask is not None:
        allowed = mask.to(torch.bool)
        logits = logits.masked_fill(allowed.logical_not(), float("-inf"))
    attn = torch.softmax(logits, dim=-1)
    if mask is not None:
        attn = torch.where(allowed, attn, torch.zeros_like(attn))
    if dropout is not None:
        attn = dropout(attn)
    out = torch.matmul(attn, v)
    return out, attn
""",
        """
        if embed_dim % num_heads:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(dropout)
""",
        """
        def split(x, length):
            return x.reshape(N, length, h, D).permute(0, 2, 1, 3)

        q = split(self.query(query), S)
        k = split(self.key(key), T)
        v = split(self.value(value), T)
        out, w = scaled_dot_product_attention(q, k, v, attn_mask, self.attn_drop)
        self.attn_weights = w.detach()
        out = out.permute(0, 2, 1, 3).reshape(N, S, E)
        return self.proj(out)
""",
    ),
    "ben": (
        """
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.einsum("...sd,...td->...st", q, k) * scale
    if mask is not None:
        keep = mask != 0
        scores = scores.masked_fill(~keep, -math.inf)
        weights = torch.softmax(scores, -1).nan_to_num(0.0)
    else:
        weights = torch.softmax(scores, -1)
    if dropout:
        weights = dropout(weights)
    return torch.einsum("...st,...td->...sd", weights, v), weights
""",
        """
        message = f"{embed_dim} is not a multiple of {num_heads}"
        if embed_dim % num_heads != 0:
            raise ValueError(message)
        self.head_dim, self.num_heads = embed_dim // num_heads, num_heads
        self.query, self.key, self.value = (nn.Linear(embed_dim, embed_dim) for _ in range(3))
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(p=dropout)
""",
        """
        q = self.query(query).unflatten(-1, (h, D)).transpose(1, 2)
        k = self.key(key).unflatten(-1, (h, D)).transpose(1, 2)
        v = self.value(value).unflatten(-1, (h, D)).transpose(1, 2)
        context, attn = scaled_dot_product_attention(q, k, v, mask=attn_mask, dropout=self.attn_drop)
        self.attn_weights = attn.detach()
        context = context.transpose(1, 2).flatten(2)
        return self.proj(context)
""",
    ),
    "chen": (
        """
    D = q.shape[-1]
    scores = q.matmul(k.transpose(-2, -1)).div(math.sqrt(D))
    if mask is not None:
        mask = mask.bool()
        scores = scores.masked_fill(mask == False, float("-inf"))  # noqa: E712
    probs = F.softmax(scores, dim=-1)
    if mask is not None:
        probs = probs * mask
    probs = torch.nan_to_num(probs)
    if dropout is not None:
        probs = dropout(probs)
    output = probs.matmul(v)
    return output, probs
""",
        """
        if embed_dim % num_heads != 0:
            raise ValueError(f"cannot split {embed_dim} channels into {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(embed_dim, embed_dim)
""",
        """
        Q = self.query(query)
        K = self.key(key)
        V = self.value(value)
        heads, maps = [], []
        for g in range(h):
            cols = slice(g * D, (g + 1) * D)
            o, w = scaled_dot_product_attention(Q[..., cols], K[..., cols], V[..., cols], attn_mask, self.attn_drop)
            heads.append(o)
            maps.append(w)
        self.attn_weights = torch.stack(maps, dim=1).detach()
        return self.proj(torch.cat(heads, dim=-1))
""",
    ),
    "dana": (
        """
    *lead, S, D = q.shape
    T = k.shape[-2]
    att = torch.bmm(q.reshape(-1, S, D), k.reshape(-1, T, D).transpose(1, 2)) / (D ** 0.5)
    att = att.view(*lead, S, T)
    if mask is not None:
        blocked = mask.logical_not() if mask.dtype == torch.bool else mask == 0
        att = att.masked_fill(blocked, float("-inf"))
    att = att.softmax(dim=-1)
    if mask is not None:
        att = att.masked_fill(torch.isnan(att), 0.0)
    if dropout is not None:
        att = dropout(att)
    result = torch.bmm(att.reshape(-1, S, T), v.reshape(-1, T, v.shape[-1])).view(*lead, S, -1)
    return result, att
""",
        """
        if (embed_dim // num_heads) * num_heads != embed_dim:
            raise ValueError("num_heads must divide embed_dim")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        for name in ("query", "key", "value", "proj"):
            setattr(self, name, nn.Linear(embed_dim, embed_dim))
        self.attn_drop = nn.Dropout(dropout)
""",
        """
        q = self.query(query).view(N, S, h, D).permute(0, 2, 1, 3).contiguous()
        k = self.key(key).view(N, T, h, D).permute(0, 2, 1, 3).contiguous()
        v = self.value(value).view(N, T, h, D).permute(0, 2, 1, 3).contiguous()
        y, att = scaled_dot_product_attention(q, k, v, attn_mask, self.attn_drop)
        self.attn_weights = att.detach().clone()
        y = y.permute(0, 2, 1, 3).contiguous().view(N, S, E)
        return self.proj(y)
""",
    ),
    "emil": (
        """
    head_dim = q.size(-1)
    sim = (q @ k.swapaxes(-1, -2)) * head_dim ** -0.5
    if mask is None:
        w = sim.softmax(-1)
    else:
        ok = mask.bool()
        sim = torch.where(ok, sim, torch.full_like(sim, float("-inf")))
        w = sim.softmax(-1)
        w = torch.where(ok, w, torch.zeros_like(w))
    w = w if dropout is None else dropout(w)
    return w @ v, w
""",
        """
        self.num_heads = num_heads
        self.head_dim, remainder = divmod(embed_dim, num_heads)
        if remainder:
            raise ValueError(f"embed_dim ({embed_dim}) % num_heads ({num_heads}) = {remainder}, must be 0")
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(dropout)
""",
        """
        def heads(x):
            n, length, _ = x.shape
            return x.view(n, length, h, D).swapaxes(1, 2)

        attended, weights = scaled_dot_product_attention(
            heads(self.query(query)), heads(self.key(key)), heads(self.value(value)), attn_mask, self.attn_drop
        )
        self.attn_weights = weights.detach()
        merged = attended.swapaxes(1, 2).reshape(N, S, h * D)
        return self.proj(merged)
""",
    ),
    "fay": (
        """
    scores = q @ k.mT
    scores = scores / math.sqrt(k.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask.eq(0), float("-inf"))
    top = scores.amax(dim=-1, keepdim=True).clamp_min(-1e30)
    e = torch.exp(scores - top)
    p = e / e.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    if dropout is not None:
        p = dropout(p)
    return p @ v, p
""",
        """
        if embed_dim % num_heads:
            raise ValueError("embed_dim=%d, num_heads=%d: not divisible" % (embed_dim, num_heads))
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(dropout)
""",
        """
        shape_q = (N, S, h, D)
        shape_kv = (N, T, h, D)
        queries = torch.transpose(self.query(query).reshape(shape_q), 1, 2)
        keys = torch.transpose(self.key(key).reshape(shape_kv), 1, 2)
        values = torch.transpose(self.value(value).reshape(shape_kv), 1, 2)
        out, att = scaled_dot_product_attention(queries, keys, values, attn_mask, self.attn_drop)
        self.attn_weights = att.detach()
        out = torch.transpose(out, 1, 2).reshape(N, S, E)
        out = self.proj(out)
        return out
""",
    ),
    "gus": (
        """
    dk = q.shape[-1]
    kt = k.transpose(-2, -1)
    raw = torch.matmul(q, kt) / torch.sqrt(torch.tensor(dk, dtype=q.dtype))
    if mask is not None:
        blocked = ~(mask.bool())
        raw = raw.masked_fill(blocked, -float("inf"))
    weights = nn.functional.softmax(raw, dim=-1)
    weights = weights.nan_to_num(nan=0.0)
    if dropout is not None:
        weights = dropout(weights)
    out = torch.matmul(weights, v)
    return out, weights
""",
        """
        if embed_dim % num_heads != 0:
            raise ValueError("The embedding size has to be a multiple of the number of heads.")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.query = nn.Linear(in_features=embed_dim, out_features=embed_dim)
        self.key = nn.Linear(in_features=embed_dim, out_features=embed_dim)
        self.value = nn.Linear(in_features=embed_dim, out_features=embed_dim)
        self.proj = nn.Linear(in_features=embed_dim, out_features=embed_dim)
        self.attn_drop = nn.Dropout(p=dropout)
""",
        """
        q = torch.stack(self.query(query).chunk(h, dim=-1), dim=1)
        k = torch.stack(self.key(key).chunk(h, dim=-1), dim=1)
        v = torch.stack(self.value(value).chunk(h, dim=-1), dim=1)
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask, self.attn_drop)
        self.attn_weights = weights.detach()
        out = torch.cat(out.unbind(dim=1), dim=-1)
        return self.proj(out)
""",
    ),
    "hana": (
        """
    if mask is not None:
        mask = mask.to(dtype=torch.bool)
    scores = torch.einsum("...id,...jd->...ij", q, k).div(q.shape[-1] ** 0.5)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    attention = F.softmax(scores, dim=-1)
    if mask is not None:
        attention = attention.masked_fill(~mask, 0.0)
    if dropout is not None:
        attention = dropout(attention)
    values = torch.einsum("...ij,...jd->...id", attention, v)
    return values, attention
""",
        """
        if embed_dim % num_heads > 0:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.query = nn.Linear(embed_dim, embed_dim, bias=True)
        self.key = nn.Linear(embed_dim, embed_dim, bias=True)
        self.value = nn.Linear(embed_dim, embed_dim, bias=True)
        self.proj = nn.Linear(embed_dim, embed_dim, bias=True)
        self.attn_drop = nn.Dropout(dropout)
""",
        """
        qh = self.query(query).view(N, S, h, D).transpose(1, 2)
        kh = self.key(key).view(N, T, h, D).transpose(1, 2)
        vh = self.value(value).view(N, T, h, D).transpose(1, 2)
        ctx, attention = scaled_dot_product_attention(qh, kh, vh, mask=attn_mask, dropout=self.attn_drop)
        self.attn_weights = attention.detach()
        ctx = ctx.transpose(1, 2).contiguous().view(N, S, E)
        return self.proj(ctx)
""",
    ),
}

# Copies of ada, chen and fay: every name changed, reformatted (line breaks, parentheses, quotes, spacing),
# independent statements reordered, comments changed or added.
COPIES = {
    "ivo": (
        "ada",
        """
    # size of one head
    width = q.size(-1)
    keep = None
    sc = torch.matmul(
        q,
        k.transpose(-1, -2),
    ) / (width**0.5)
    if mask is not None:
        keep = mask.to(torch.bool)   # True = may attend
        sc = sc.masked_fill(keep.logical_not(), float('-inf'))
    probs = torch.softmax(sc, dim=-1)
    if mask is not None:
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    if dropout is not None:
        probs = dropout(probs)
    result = torch.matmul(probs, v)
    return result, probs
""",
        """
        if embed_dim % num_heads:
            raise ValueError('num_heads has to divide embed_dim')
        self.head_dim = embed_dim // num_heads
        self.num_heads = num_heads
        self.value = nn.Linear(embed_dim, embed_dim)
        self.query = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(dropout)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
""",
        """
        # (N, L, E) -> (N, h, L, D)
        def to_heads(t, n_tokens):
            return t.reshape(N, n_tokens, h, D).permute(0, 2, 1, 3)
        vv = to_heads(self.value(value), T)
        qq = to_heads(self.query(query), S)
        kk = to_heads(self.key(key), T)
        res, attn_w = scaled_dot_product_attention(qq, kk, vv, attn_mask, self.attn_drop)
        self.attn_weights = attn_w.detach()
        res = res.permute(0, 2, 1, 3).reshape(N, S, E)
        return self.proj(res)
""",
    ),
    "jon": (
        "chen",
        """
    d_head = q.shape[-1]
    s = q.matmul(k.transpose(-2, -1)).div(math.sqrt(d_head))
    if mask is not None:
        mask = mask.bool()
        s = s.masked_fill(mask == False, float('-inf'))  # noqa: E712  blocked positions
    p = F.softmax(s, dim=-1)
    if mask is not None:
        p = p * mask
    p = torch.nan_to_num(p)  # fully blocked rows
    if dropout is not None:
        p = dropout(p)
    return p.matmul(v), p
""",
        """
        if embed_dim % num_heads != 0:
            raise ValueError(f'{num_heads} heads do not divide {embed_dim} channels')
        self.head_dim = embed_dim // num_heads
        self.num_heads = num_heads
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(dropout)
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
""",
        """
        qs, ks, vs = self.query(query), self.key(key), self.value(value)
        outs, ws = [], []
        for head in range(h):
            sel = slice(head * D, (head + 1) * D)
            o_h, w_h = scaled_dot_product_attention(
                qs[..., sel], ks[..., sel], vs[..., sel], attn_mask, self.attn_drop
            )
            outs.append(o_h)
            ws.append(w_h)
        self.attn_weights = torch.stack(ws, dim=1).detach()
        return self.proj(torch.cat(outs, dim=-1))
""",
    ),
    "kim": (
        "fay",
        """
    logits = q @ k.mT
    logits = logits / math.sqrt(k.shape[-1])
    if mask is not None:
        # forbidden -> -inf
        logits = logits.masked_fill(mask.eq(0), float('-inf'))
    m = logits.amax(dim=-1, keepdim=True).clamp_min(-1e30)
    ex = torch.exp(logits - m)
    att = ex / ex.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    if dropout is not None:
        att = dropout(att)
    return att @ v, att
""",
        """
        if embed_dim % num_heads:
            raise ValueError('embed_dim=%d is not divisible by num_heads=%d' % (embed_dim, num_heads))
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.key = nn.Linear(embed_dim, embed_dim)
        self.query = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(embed_dim, embed_dim)
""",
        """
        kv_shape = (N, T, h, D)
        q_shape = (N, S, h, D)
        vals = torch.transpose(self.value(value).reshape(kv_shape), 1, 2)
        qs = torch.transpose(self.query(query).reshape(q_shape), 1, 2)
        ks = torch.transpose(self.key(key).reshape(kv_shape), 1, 2)
        o, a = scaled_dot_product_attention(qs, ks, vals, attn_mask, self.attn_drop)
        self.attn_weights = a.detach()
        o = torch.transpose(o, 1, 2).reshape(N, S, E)
        o = self.proj(o)
        return o
""",
    ),
}


def _fill(release_source: str, bodies: list[str]) -> str:
    """The release cell with each ``# YOUR CODE HERE`` stub (and its raise) replaced by the next body."""
    out = release_source
    for body in bodies:
        stub = re.search(rf"( *){re.escape(STUB)} *{re.escape(RAISE)}\n?", out)
        assert stub, "the release's stub changed: update the test class"
        out = out[: stub.start()] + body.strip("\n") + "\n" + out[stub.end() :]
    return out


def _release_answer_cells() -> dict[str, str]:
    nb = nbformat.read(course.get(A2).release_notebook, as_version=4)
    return {c.label: c.source for c in answer_cells(nb.cells) if c.label in ("sdpa", "mha")}


def submission(bodies: tuple[str, str, str]) -> tuple[Cell, ...]:
    """The answer cells of a notebook-2 submission with these bodies in the release's stubs."""
    release = _release_answer_cells()
    sdpa, init, forward = bodies
    return (Cell("sdpa", _fill(release["sdpa"], [sdpa])), Cell("mha", _fill(release["mha"], [init, forward])))


def the_class() -> dict[str, tuple[Cell, ...]]:
    cells = {name: submission(bodies) for name, bodies in INDEPENDENT.items()}
    cells.update({name: submission(bodies) for name, (_, *bodies) in COPIES.items()})
    return cells


PLANTED = {frozenset((copy, original)) for copy, (original, *_) in COPIES.items()}


@pytest.fixture(scope="module")
def release():
    return release_code(A2)


def _flagged(cells: dict[str, tuple[Cell, ...]], release, **settings) -> dict[frozenset, object]:
    codes = [Code(name, c) for name, c in cells.items()]
    result = find_similar(A2, codes, release, Settings(**settings))
    return {frozenset((p.a, p.b)): p for p in result.pairs}


# ------------------------------------------------------------------------------------------------- tests
def test_every_planted_pair_is_flagged_and_no_independent_pair(release):
    flagged = _flagged(the_class(), release)
    assert set(flagged) == PLANTED, {tuple(sorted(k)): round(p.score, 2) for k, p in flagged.items()}


# A helper every student pasted from the same tutorial: common code, not a sign of copying between them.
TUTORIAL_HELPER = """


def count_parameters(model, trainable_only=True):
    total = 0
    for name, parameter in model.named_parameters():
        if trainable_only and not parameter.requires_grad:
            continue
        total += parameter.numel()
    return total


def train_one_epoch(model, loader, optimizer, loss_fn, device="cpu", clip=1.0):
    model.train()
    running, seen, correct = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = loss_fn(logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        running += loss.item() * labels.shape[0]
        correct += (logits.argmax(dim=1) == labels).sum().item()
        seen += labels.shape[0]
    return running / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(model, loader, device="cpu"):
    model.eval()
    correct, seen = 0, 0
    for images, labels in loader:
        predictions = model(images.to(device)).argmax(dim=1).cpu()
        correct += (predictions == labels).sum().item()
        seen += labels.numel()
    return correct / max(seen, 1)
"""


def test_code_that_more_students_share_than_the_limit_is_common_and_ignored(release):
    """Eleven students pasted the same helpers from a tutorial; with ten as the limit they are common code and no
    independent pair is flagged, while without the limit the helpers alone make independent students look alike."""
    cells = {name: (*c[:-1], Cell(c[-1].label, c[-1].source + TUTORIAL_HELPER)) for name, c in the_class().items()}
    assert set(_flagged(cells, release, max_share=10)) == PLANTED
    assert set(_flagged(cells, release, max_share=len(cells))) > PLANTED


def test_release_code_alone_never_makes_two_submissions_alike(release):
    """Two students who handed in the release with only its own code changed (stubs deleted, the given lines
    reformatted, comments rewritten), two who did the same but broke the indentation (their cells no longer parse
    and are read line by line) and two who handed in the blank release are not flagged."""
    answers = _release_answer_cells()

    def edited(source: str, variant: int) -> str:
        source = re.sub(rf"\n *{re.escape(STUB)}", "\n", source).replace(RAISE, "pass")
        if variant:
            source = source.replace("N, S, E = query.shape", "N,S,E=query.shape  # sizes")
            source = source.replace("T = key.shape[1]", "T = key.shape[1]  # keys")
            source = re.sub(r"# TODO:.*", "# my notes", source)
        return source

    cells = {
        "blank1": tuple(Cell(k, v) for k, v in answers.items()),
        "blank2": tuple(Cell(k, v) for k, v in answers.items()),
        "edit1": tuple(Cell(k, edited(v, 0)) for k, v in answers.items()),
        "edit2": tuple(Cell(k, edited(v, 1)) for k, v in answers.items()),
        # the same edits with the indentation broken: the cells no longer parse and are read line by line
        "broken1": tuple(Cell(k, v.replace(STUB, "").replace(RAISE, "pass")) for k, v in answers.items()),
        "broken2": tuple(Cell(k, v.replace(STUB, "").replace(RAISE, "pass  # later")) for k, v in answers.items()),
        **{name: submission(INDEPENDENT[name]) for name in ("ada", "ben")},
    }
    assert _flagged(cells, release) == {}
    # Without the release removed, the two blank notebooks would be identical: the removal is what saves them.
    assert frozenset(("blank1", "blank2")) in _flagged(cells, None, min_shared=1)


def test_normalisation_undoes_renaming_reformatting_and_reordering():
    a = Cell("x", "def f(x, y):\n    a = x + 1  # one\n    b = y * 2\n    return a - b\n")
    b = Cell("x", "def g(p,q):\n    '''doc'''\n    second = (q*2)\n    first = p+1\n    return first-second\n")
    assert normalise([a]).values == normalise([b]).values
    dependent = Cell("x", "def g(p, q):\n    a = p + 1\n    a = a * 2\n    return a\n")
    swapped = Cell("x", "def g(p, q):\n    a = a * 2\n    a = p + 1\n    return a\n")
    assert normalise([dependent]).values != normalise([swapped]).values  # order that matters is kept


def test_shared_code_is_shown_side_by_side_with_its_cells(release):
    flagged = _flagged(the_class(), release)
    pair = flagged[frozenset(("ada", "ivo"))]
    assert pair.blocks, "a flagged pair shows where its shared code is"
    cells = {span.cell for block in pair.blocks for span in (*block.a, *block.b)}
    assert cells <= {"sdpa", "mha"}
    block = pair.blocks[0]
    assert all(span.matched and span.first <= min(span.matched) for span in (*block.a, *block.b))


def test_hostile_and_unusual_code_is_read_without_running_it():
    cells = [
        Cell("a", "%%time\nx = 1\n!ls /\n%matplotlib inline\ny = x"),
        Cell("b", "def broken(:\n    pass"),
        Cell("c", "x = " + "(" * 5000 + ")" * 5000),
        Cell("d", "import os\nos.system('rm -rf /')  # never runs"),
    ]
    tokens = normalise(cells)
    assert {tokens.cells[i] for i in range(len(tokens))} >= {0, 1, 3}


@pytest.mark.slow
def test_the_independent_solutions_are_correct():
    """Every independent solution scores full marks on sdpa and mha with the real graders (in process)."""
    from tests.grader_reports import grade_part

    setup = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
    for name, bodies in INDEPENDENT.items():
        namespace: dict = {}
        exec(setup + "\n".join(c.source for c in submission(bodies)), namespace)  # noqa: S102 (our own code)
        for part in ("sdpa", "mha"):
            report = grade_part(A2, namespace, part)
            assert report.earned == report.possible, f"{name}/{part}:\n{report.text()}"


def test_the_index_counts_only_pairs_that_share_a_rare_fingerprint():
    """The inverted index never looks at a pair that shares nothing, and skips fingerprints over the limit."""
    prints = [np.array(p, dtype=np.uint64) for p in ([1, 2, 3], [2, 3, 4], [5], [1, 9], [9])]
    counts, common = _shared_counts(prints, limit=2)
    assert dict(counts) == {(0, 1): 2, (0, 3): 1, (3, 4): 1}  # 2 and 3 in two submissions; 1 and 9 likewise
    counts, common = _shared_counts([*prints, np.array([2], dtype=np.uint64)], limit=2)
    assert common.tolist() == [2] and (0, 1) in counts and counts[(0, 1)] == 1


def test_a_notebook_is_read_as_the_grader_reads_files(tmp_path, release):
    """A link is not followed (it could point at another student's notebook); the submission is listed as not
    compared, with the reason."""
    real = tmp_path / "real.ipynb"
    nb = nbformat.read(course.get(A2).release_notebook, as_version=4)
    nbformat.write(nb, real)
    (tmp_path / "link.ipynb").symlink_to(real)
    codes = [Code("real", path=real), Code("link", path=tmp_path / "link.ipynb")]
    result = find_similar(A2, codes, release, Settings())
    assert result.compared == ["real"] and "symbolic link" in result.missing["link"]
