"""Hidden graders of notebook 3: sinusoidal (1D and 2D) and learned positional encodings.

The expected tables come from the reference, computed in float64; the known mistakes are the formula with one
thing changed (:func:`formula`). Students usually compute the tables in
float32 (up to ~1e-6 off for positions below 100, ~1e-4 at position 5,000), so values are compared with
atol=1e-5 on short tables and atol=1e-3 on the default max_len=5000; a mistake in the formula is off by far
more (0.1 to 2).

Weighting (points follow how much of the concept a test proves): in ``pe`` (10) the table's values 3, the buffer
(saved, moved, never trained) 2 and the forward pass 2; dropout, the length check and moving with ``.to`` 1 each.
In ``pe2d`` (4) the 2D table's values 3 and its shape 1, graded with the grader's stand-in for the 1D table so
that a wrong 1D table costs its points in ``pe`` only. In ``learned`` (3) the parameter, its initialisation and
the forward pass 1 each.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from autograde.assignments.positional_encoding import reference as ref
from autograde.checks import blame_earlier_part, check_dropout_statistics, own_or_stand_ins, seeded, student_call
from autograde.compare import assert_matches
from autograde.results import StudentError
from autograde.student import Call, CallResult, stand_ins

ATOL = 1e-5
PE = "PositionalEncoding"
PE2D = "sinusoidal_2d"
LEARNED = "LearnedPositionalEmbedding"


def in_float64(make, *args):
    """``make(*args)`` with float64 as the default dtype (the reference builds its tables in the default)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return make(*args)
    finally:
        torch.set_default_dtype(previous)


def table(num_positions: int, d: int) -> torch.Tensor:
    """The reference's 1D table (num_positions, d) in float64."""
    return in_float64(ref.sinusoidal_1d, num_positions, d)


def formula(num_positions: int, d: int, *, swap=False, odd_j=False, double_j=False, start=0, sign=-1.0):
    """P[i, j] = sin(i 10000^(-j/d)) (even j), cos(i 10000^(-(j-1)/d)) (odd j) float64, with mistakes."""
    i = torch.arange(start, start + num_positions, dtype=torch.float64)[:, None]  # (L, 1)
    j = torch.arange(d, dtype=torch.float64)
    even = j.remainder(2) == 0
    exponent = j if odd_j else torch.where(even, j, j - 1)
    angle = i * 10000.0 ** (sign * exponent * (2 if double_j else 1) / d)  # (L, d)
    sin, cos = angle.sin(), angle.cos()
    return torch.where(even, cos, sin) if swap else torch.where(even, sin, cos)


def halves(num_positions: int, d: int) -> torch.Tensor:
    """The concatenated layout: the sines of all frequencies in the first half of the channels, then cos."""
    i = torch.arange(num_positions, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    return torch.cat([(i * freq).sin(), (i * freq).cos()], dim=1)  # (L, d)


def _pe_hints(L: int, d: int) -> list[tuple[torch.Tensor, str]]:
    return [
        (formula(L, d, swap=True), "sin and cos are swapped: even channels j use sin, odd channels use cos."),
        (
            formula(L, d, odd_j=True),
            "odd channels use the exponent j/d: for odd j the formula uses (j - 1)/d, so "
            "channels 2m and 2m + 1 share one frequency.",
        ),
        (
            formula(L, d, double_j=True),
            "the exponent is 2j/d: here j is already the channel index, so the exponent "
            "is j/d for even j and (j - 1)/d for odd j (the paper's 2i counts pairs).",
        ),
        (
            halves(L, d),
            "the sines fill the first half of the channels and the cosines the second: interleave them "
            "(even channels sin, odd channels cos).",
        ),
        (formula(L, d, start=1), "positions start at 1: the first position is i = 0."),
        (
            formula(L, d, sign=1.0),
            "the exponent has the wrong sign: the frequencies are 10000^(-j/d), which decrease with j.",
        ),
    ]


def _own_table(result, S: int, E: int) -> torch.Tensor:
    """The student's own pe[:, :S] in float64 when it has a usable shape, else the formula's: forward is then
    graded on its own, whatever the table's values."""
    pe = result.attrs.get("pe")
    if isinstance(pe, torch.Tensor) and pe.dim() == 3 and pe.shape[0] == 1 and pe.shape[1] >= S and pe.shape[2] == E:
        return pe[:, :S].double()
    return table(S, E)[None]


def _describe_pe(student, E: int, max_len: int | None = None, **kwargs):
    kwargs = {"dropout": 0.0, **kwargs}
    if max_len is not None:
        kwargs["max_len"] = max_len
    return student.describe(PE, (E,), kwargs, attrs=("pe",))


# ---------------------------------------------------------------- PositionalEncoding


@pytest.mark.part("pe")
@pytest.mark.points(2)
def test_pe_is_a_buffer(student):
    """pe is a persistent buffer of shape (1, max_len, E), not a parameter (default max_len=5000)"""
    info = _describe_pe(student, 8, 20)
    if "pe" in info.parameters:
        raise AssertionError(
            "`pe` is an nn.Parameter, so the optimizer would train it: the encoding is fixed. "
            "Register it with self.register_buffer('pe', pe)."
        )
    if "pe" not in info.buffers:
        where = "a plain tensor attribute" if isinstance(info.attrs.get("pe"), torch.Tensor) else "missing"
        raise AssertionError(
            f"`pe` is {where}: register it with self.register_buffer('pe', pe), so that it is "
            "saved in the state_dict and moves with .to(device)."
        )
    assert info.buffers["pe"] == (1, 20, 8), (
        f"PositionalEncoding(8, max_len=20).pe has shape {info.buffers['pe']}; "
        "expected (1, 20, 8) = (1, max_len, embed_dim)"
    )
    assert info.num_parameters == 0, f"PositionalEncoding should have no parameters; it has {info.num_parameters}"
    default = student.describe(PE, (4,)).buffers.get("pe")
    assert default == (1, 5000, 4), f"PositionalEncoding(4).pe has shape {default}; the default max_len is 5000"
    x = seeded((1, 20, 8), 0)
    try:
        student_call(
            student,
            Call(
                PE,
                args=(8,),
                kwargs={"max_len": 20},
                inputs=(x,),
                dtype=torch.float64,
                state_dict={"pe": table(20, 8)[None]},
            ),
        )
    except StudentError as exc:
        raise AssertionError(
            f"{exc}\nThe buffer must be persistent (register_buffer('pe', pe), without "
            "persistent=False), so that it is saved with the model."
        ) from None


@pytest.mark.part("pe")
@pytest.mark.points(3)
def test_pe_values(student):
    """pe[0, i, j] follows the formula (sin for even j, cos for odd j, exponent (j - 1)/d for odd j)"""
    for E, L in [(16, 64), (6, 40), (32, 100)]:
        got = _describe_pe(student, E, L).attrs.get("pe")
        assert isinstance(got, torch.Tensor) and got.dim() == 3, f"pe is {got!r}; expected a (1, {L}, {E}) tensor"
        assert_matches(
            got[0],
            table(L, E),
            what=f"PositionalEncoding({E}, max_len={L}).pe",
            atol=ATOL,
            rtol=0,
            hints=_pe_hints(L, E),
        )
    got = _describe_pe(student, 8).attrs.get("pe")
    assert_matches(got[0], table(5000, 8), what="PositionalEncoding(8).pe (max_len=5000)", atol=1e-3, rtol=0)


@pytest.mark.part("pe")
@pytest.mark.points(2)
def test_pe_forward(student):
    """in eval mode forward(x) returns x + pe[:, :S] for S < max_len and S = max_len"""
    E, L = 12, 30
    for N, S in [(2, 17), (1, 30), (3, 1)]:
        x = seeded((N, S, E), S)
        result = student_call(
            student,
            Call(
                PE,
                args=(E,),
                kwargs={"dropout": 0.3, "max_len": L},
                inputs=(x,),
                dtype=torch.float64,
                attrs=("pe",),
            ),
        )
        out, pe = result.output, _own_table(result, S, E)
        assert_matches(
            out,
            x + pe,
            what=f"forward on x of shape {(N, S, E)} (max_len={L}, eval mode)",
            atol=ATOL,
            rtol=0,
            hints=[
                (pe.expand(N, S, E), "forward returns the encoding only: return x + pe[:, :S]."),
                (x, "forward returns x unchanged: add the encoding, x + pe[:, :S]."),
            ],
        )


@pytest.mark.part("pe")
@pytest.mark.points(1)
def test_pe_dropout(student):
    """in training mode dropout acts on x + pe: about p of the values become 0, the rest grow by 1/(1-p)"""
    p, E, L = 0.25, 32, 64
    x = seeded((8, L, E), 10)
    result = student_call(
        student,
        Call(
            PE,
            args=(E,),
            kwargs={"dropout": p, "max_len": L},
            inputs=(x,),
            dtype=torch.float64,
            train=True,
            attrs=("pe",),
        ),
    )
    out, clean = result.output, x + _own_table(result, L, E)
    assert isinstance(out, torch.Tensor) and out.shape == clean.shape, f"forward returned {out!r}"
    if (out == 0).double().mean().item() < 0.01:
        if ((out - x) == 0).double().mean().item() > p / 2:
            raise AssertionError("dropout is applied to pe alone: apply self.dropout to the sum x + pe.")
        raise AssertionError(f"with dropout={p} in training mode nothing was dropped: return self.dropout(x + pe).")
    check_dropout_statistics(out, clean, p, "forward in training mode", apply_to="the outputs")


@pytest.mark.part("pe")
@pytest.mark.points(1)
def test_pe_too_long(student):
    """a sequence longer than max_len raises an error whose message mentions max_len"""
    x = seeded((1, 12, 8), 20)
    try:
        out = student_call(student, Call(PE, args=(8,), kwargs={"max_len": 10}, inputs=(x,))).output
    except StudentError as exc:
        message = str(exc)
        assert "max_len" in message or "max len" in message.lower() or "maximum length" in message.lower(), (
            f"a sequence of 12 positions with max_len=10 raised, but the message does not mention max_len: "
            f"{message}\nCheck the length yourself: raise ValueError(f'... {{S}} positions ... max_len=...')."
        )
        return
    raise AssertionError(
        f"a sequence of 12 positions with max_len=10 returned {tuple(out.shape)} instead of "
        "raising: raise a ValueError that names max_len when S > max_len."
    )


@pytest.mark.part("pe")
@pytest.mark.points(1)
def test_pe_moves_with_to(student):
    """module.to(torch.bfloat16) converts pe too: a bfloat16 input gives a bfloat16 output"""
    x = seeded((2, 10, 8), 30).to(torch.bfloat16)
    result = student_call(
        student, Call(PE, args=(8,), kwargs={"max_len": 16}, inputs=(x,), dtype=torch.bfloat16, attrs=("pe",))
    )
    out = result.output
    assert out.dtype == torch.bfloat16, (
        f"after .to(torch.bfloat16) a bfloat16 input gave a {out.dtype} output: pe did not move with the "
        "module. Register it with register_buffer (and do not rebuild it in forward), so .to(...) converts "
        "and moves it."
    )
    assert_matches(out.double(), x.double() + _own_table(result, 10, 8), what="the bfloat16 output", atol=0.05, rtol=0)


# ---------------------------------------------------------------- sinusoidal_2d


def grid_from(one_d: torch.Tensor, height: int, width: int, *, swap=False, column_major=False) -> torch.Tensor:
    """The 2D table (H*W, E) from a 1D table ``one_d`` (L, E/2): row-major, row half then column half."""
    half = one_d.shape[1]
    rows = one_d[:height, None, :].expand(height, width, half)  # (H, W, E/2)
    cols = one_d[None, :width, :].expand(height, width, half)  # (H, W, E/2)
    grid = torch.cat([cols, rows] if swap else [rows, cols], dim=-1)  # (H, W, E)
    return (grid.transpose(0, 1) if column_major else grid).reshape(height * width, 2 * half)


def grid_2d(height: int, width: int, E: int, *, swap=False, column_major=False, full_d=False) -> torch.Tensor:
    """The 2D table (H*W, E) from the 1D formula, with mistakes switchable."""
    one_d = formula(max(height, width), E if full_d else E // 2)[:, : E // 2]  # (L, E/2)
    return grid_from(one_d, height, width, swap=swap, column_major=column_major)


# sinusoidal_2d is graded on its own: when the student's function gives a wrong table with their own
# PositionalEncoding, it is checked again with the grader's stand-in for that class (a table that is not the
# sinusoid), so a mistake in the 1D encoding costs points in the pe part only. A function that builds its
# own 1D table is checked against the reference directly.
STAND_INS = {
    PE: """
import torch
from torch import nn


class PositionalEncoding(nn.Module):
    def __init__(self, embed_dim, dropout=0.1, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        i = torch.arange(max_len, dtype=torch.float64)[:, None]
        j = torch.arange(embed_dim, dtype=torch.float64)
        self.register_buffer("pe", torch.sin(0.37 * i + 0.91 * j + 0.05 * i * j)[None].to(torch.get_default_dtype()))

    def forward(self, x):
        return self.dropout(x + self.pe[:, : x.shape[1]])
"""
}


def _stand_in_table(num_positions: int, d: int) -> torch.Tensor:
    return in_float64(lambda: stand_ins(STAND_INS)[PE](d, 0.0, num_positions).pe[0].double())


def _2d_check(H: int, W: int, E: int) -> Callable[[CallResult, bool], None]:
    def check(result: CallResult, with_stand_ins: bool) -> None:
        out = result.output
        assert isinstance(out, torch.Tensor) and out.is_floating_point(), f"{PE2D} returned {type(out).__name__}"
        if with_stand_ins:
            one_d = _stand_in_table(max(H, W), E // 2)
            want = grid_from(one_d, H, W)
            hints = [
                (grid_from(one_d, H, W, swap=True), HALVES_SWAPPED),
                (grid_from(one_d, H, W, column_major=True), COLUMN_MAJOR),
                (grid_from(_stand_in_table(max(H, W), E)[:, : E // 2], H, W), FULL_D),
            ]
        else:
            want = in_float64(ref.sinusoidal_2d, H, W, E)
            hints = [
                (grid_2d(H, W, E, swap=True), HALVES_SWAPPED),
                (grid_2d(H, W, E, column_major=True), COLUMN_MAJOR),
                (grid_2d(H, W, E, full_d=True), FULL_D),
            ]
        assert_matches(out, want, what=f"{PE2D}({H}, {W}, {E})", atol=ATOL, rtol=0, hints=hints)

    return check


HALVES_SWAPPED = "the halves are swapped: the first E/2 channels encode the row, the last E/2 the column."
COLUMN_MAJOR = (
    "the positions are in column-major order: position r * width + c is row r, column c (row-major, like .flatten())."
)
FULL_D = (
    "each half uses the 1D formula with d = E: it has only E/2 channels, so use d = E/2 (e.g. build the 1D table "
    "with embed_dim // 2)."
)


@pytest.mark.part("pe2d")
@pytest.mark.points(1)
def test_2d_shape(student):
    """sinusoidal_2d(height, width, E) returns a float tensor of shape (height * width, E)"""
    for H, W, E in [(4, 6, 16), (3, 3, 8)]:

        def check(result: CallResult, _: bool, H=H, W=W, E=E) -> None:
            out = result.output
            assert isinstance(out, torch.Tensor) and out.is_floating_point(), f"{PE2D} returned {type(out).__name__}"
            assert tuple(out.shape) == (H * W, E), (
                f"{PE2D}({H}, {W}, {E}) has shape {tuple(out.shape)}; expected {(H * W, E)}"
            )

        own_or_stand_ins(student, Call(PE2D, build=False, inputs=(H, W, E)), STAND_INS, check)


@pytest.mark.part("pe2d")
@pytest.mark.points(3)
def test_2d_values(student):
    """row-major positions; the first E/2 channels encode the row, the last E/2 the column (d = E/2 each)"""
    for H, W, E in [(4, 6, 16), (5, 3, 8), (7, 2, 12)]:
        own_or_stand_ins(student, Call(PE2D, build=False, inputs=(H, W, E)), STAND_INS, _2d_check(H, W, E))


@pytest.mark.part("pe2d")
@pytest.mark.points(0)
def test_2d_with_your_own_encoding(student):
    """diagnostic (no points): sinusoidal_2d with your own PositionalEncoding"""
    suspects = [(PE, lambda: test_pe_values(student))]
    blame_earlier_part(student, Call(PE2D, build=False, inputs=(4, 6, 16)), _2d_check(4, 6, 16), suspects, PE2D)


# ---------------------------------------------------------------- LearnedPositionalEmbedding


@pytest.mark.part("learned")
@pytest.mark.points(1)
def test_learned_parameter(student):
    """LearnedPositionalEmbedding(P, E) has one parameter pos_embed of shape (1, P, E)"""
    info = student.describe(LEARNED, (10, 8))
    assert info.parameters == {"pos_embed": (1, 10, 8)}, (
        f"{LEARNED}(10, 8) has parameters {info.parameters}; expected only pos_embed of shape (1, 10, 8) "
        "(an nn.Parameter)"
    )


@pytest.mark.part("learned")
@pytest.mark.points(1)
def test_learned_init(student):
    """pos_embed starts as N(0, 0.02^2) noise"""
    P, E = 64, 100
    result = student_call(student, Call(LEARNED, args=(P, E), inputs=(torch.zeros(1, P, E),), attrs=("pos_embed",)))
    pos = result.attrs.get("pos_embed")
    assert isinstance(pos, torch.Tensor), f"pos_embed is {pos!r}"
    std, mean = pos.double().std().item(), pos.double().mean().item()
    assert std > 0, "pos_embed starts as a constant: initialise it with nn.init.normal_(..., std=0.02)."
    assert 0.018 < std < 0.022 and abs(mean) < 0.003, (
        f"pos_embed has mean {mean:.3g} and std {std:.3g}; expected mean 0 and std 0.02 "
        "(nn.init.normal_(self.pos_embed, std=0.02), or torch.randn(...) * 0.02)."
    )


@pytest.mark.part("learned")
@pytest.mark.points(1)
def test_learned_forward(student):
    """forward(x) returns x + pos_embed[:, :S]; the gradient reaches pos_embed"""
    P, E = 10, 6
    pos = seeded((1, P, E), 40)
    for N, S in [(2, 10), (3, 7)]:
        x, g = seeded((N, S, E), 41 + S), seeded((N, S, E), 51 + S)
        result = student_call(
            student,
            Call(
                LEARNED,
                args=(P, E),
                inputs=(x,),
                state_dict={"pos_embed": pos},
                dtype=torch.float64,
                grad_outputs=g,
            ),
        )
        assert_matches(result.output, x + pos[:, :S], what=f"forward on x of shape {(N, S, E)}", atol=1e-12, rtol=0)
        want = torch.zeros_like(pos)
        want[:, :S] = g.sum(0)
        assert_matches(result.param_grads.get("pos_embed"), want, what="the gradient of pos_embed", atol=1e-12, rtol=0)
