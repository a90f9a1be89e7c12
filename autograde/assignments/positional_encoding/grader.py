"""Hidden graders of notebook 3: sinusoidal (1D and 2D) and learned positional encodings.

The expected tables come from the reference, computed in float64; the known mistakes (``mistakes.py``) are the
formula with one thing changed. Students usually compute the tables in float32 (up to ~1e-6 off for positions
below 100, ~1e-4 at position 5,000), so values are compared with atol=1e-5 on short tables and atol=1e-3 on the
default max_len=5000; a mistake in the formula is off by far more (0.1 to 2).

Weighting (the points are the ``@pytest.mark.points`` of each test): they follow how much of the concept a test
proves. In ``pe`` the table's values weigh most, then the buffer (saved, moved, never trained) and the forward
pass; dropout, the length check and moving with ``.to`` are details. In ``pe2d`` the 2D table's values weigh more
than its shape; both are graded with the grader's stand-in for the 1D table (``stand_ins.py``) so that a wrong
1D table costs its points in ``pe`` only. In ``learned`` the parameter, its initialisation and the forward pass
weigh the same. In ``interpolate`` the resized grid's values weigh more than the shape and the class token, and
each is graded on its own (the grid's values are read from the last H'*W' rows, whatever happened to the class
token).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from autograde import checks
from autograde.assignments.positional_encoding import reference as ref
from autograde.assignments.positional_encoding.mistakes import (
    formula,
    forward_mistakes,
    grid_from,
    grid_mistakes,
    interpolation_mistakes,
    table_mistakes,
)
from autograde.checks import StandIns, seeded, student_call
from autograde.compare import Mistake, assert_matches
from autograde.worker.protocol import Call, CallResult
from autograde.worker.results import StudentError

ATOL = 1e-5
PE = "PositionalEncoding"
PE2D = "sinusoidal_2d"
LEARNED = "LearnedPositionalEmbedding"
INTERP = "interpolate_pos_embed"


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
            hints=table_mistakes(L, E),
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
            hints=forward_mistakes(x, pe),
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
    checks.check_dropout_statistics(out, clean, p, "forward in training mode", apply_to="the outputs")


@pytest.mark.part("pe")
@pytest.mark.points(1)
def test_pe_too_long(student):
    """a sequence longer than max_len raises an error whose message mentions max_len"""
    x = seeded((1, 12, 8), 20)
    error = checks.must_raise(
        lambda: student_call(student, Call(PE, args=(8,), kwargs={"max_len": 10}, inputs=(x,))),
        (),
        what="a sequence of 12 positions with max_len=10",
        otherwise="raise a ValueError that names max_len when S > max_len.",
    )
    message = str(error)
    assert "max_len" in message or "max len" in message.lower() or "maximum length" in message.lower(), (
        f"a sequence of 12 positions with max_len=10 raised, but the message does not mention max_len: "
        f"{message}\nCheck the length yourself: raise ValueError(f'... {{S}} positions ... max_len=...')."
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


# sinusoidal_2d is graded on its own: when the student's function gives a wrong table with their own
# PositionalEncoding, it is checked again with the grader's stand-in for that class (a table that is not the
# sinusoid), so a mistake in the 1D encoding costs points in the pe part only. A function that builds its
# own 1D table is checked against the reference directly.
STAND_INS = StandIns("autograde.assignments.positional_encoding.stand_ins", (PE,), ref)


def _stand_in_table(num_positions: int, d: int) -> torch.Tensor:
    """The stand-in's 1D table (num_positions, d) in float64."""
    return in_float64(lambda: STAND_INS.objects[PE](d, 0.0, num_positions).pe[0].double())


def _2d_check(H: int, W: int, E: int) -> Callable[[CallResult, bool], None]:
    def check(result: CallResult, with_stand_ins: bool) -> None:
        out = result.output
        assert isinstance(out, torch.Tensor) and out.is_floating_point(), f"{PE2D} returned {type(out).__name__}"
        if with_stand_ins:
            one_d = _stand_in_table(max(H, W), E // 2)
            want, mistakes = grid_from(one_d, H, W), grid_mistakes(H, W, E, _stand_in_table)
        else:
            want, mistakes = in_float64(ref.sinusoidal_2d, H, W, E), grid_mistakes(H, W, E, formula)
        assert_matches(out, want, what=f"{PE2D}({H}, {W}, {E})", atol=ATOL, rtol=0, hints=mistakes)

    return check


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

        checks.own_or_stand_ins(student, Call(PE2D, build=False, inputs=(H, W, E)), STAND_INS, check)


@pytest.mark.part("pe2d")
@pytest.mark.points(3)
def test_2d_values(student):
    """row-major positions; the first E/2 channels encode the row, the last E/2 the column (d = E/2 each)"""
    for H, W, E in [(4, 6, 16), (5, 3, 8), (7, 2, 12)]:
        checks.own_or_stand_ins(student, Call(PE2D, build=False, inputs=(H, W, E)), STAND_INS, _2d_check(H, W, E))


@pytest.mark.part("pe2d")
@pytest.mark.points(0)
def test_2d_with_your_own_encoding(student):
    """diagnostic (no points): sinusoidal_2d with your own PositionalEncoding"""
    suspects = [(PE, lambda: test_pe_values(student))]
    checks.blame_earlier_part(student, Call(PE2D, build=False, inputs=(4, 6, 16)), _2d_check(4, 6, 16), suspects, PE2D)


# ---------------------------------------------------------------- LearnedPositionalEmbedding


@pytest.mark.part("learned")
@pytest.mark.points(1)
def test_learned_parameter(student):
    """LearnedPositionalEmbedding(L, E) has one parameter pos_embed of shape (1, L, E)"""
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


# ---------------------------------------------------------------- interpolate_pos_embed

# (old grid (H, W), new grid (H', W'), E, class token): H, W, H', W', E and the numbers of tokens differ in each;
# the grids grow and shrink, square and not.
INTERP_CASES = [((3, 4), (5, 7), 6, True), ((4, 4), (6, 6), 10, False), ((6, 5), (4, 3), 8, True)]


def _interpolated(student, old: tuple[int, int], new: tuple[int, int], E: int, class_token: bool, seed: int):
    """The embeddings (1, [1 +] H*W, E) given and what the student's function returns for them."""
    pos = seeded((1, int(class_token) + old[0] * old[1], E), seed)
    call = Call(INTERP, build=False, inputs=(pos, old, new), input_kwargs={"class_token": class_token})
    return pos, student_call(student, call).output


def _what(old: tuple[int, int], new: tuple[int, int], E: int, class_token: bool) -> str:
    return f"{INTERP} from a {old[0]} x {old[1]} to a {new[0]} x {new[1]} grid (E = {E}, class_token={class_token})"


@pytest.mark.part("interpolate")
@pytest.mark.points(1)
def test_interpolate_shape_and_class_token(student):
    """the result has shape (1, H'*W', E), or (1, 1 + H'*W', E) with the class token's embedding first, unchanged"""
    for i, (old, new, E, class_token) in enumerate(INTERP_CASES):
        pos, out = _interpolated(student, old, new, E, class_token, 60 + i)
        P, tokens = int(class_token), new[0] * new[1]
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        if class_token and shape == (1, tokens, E):
            raise AssertionError(
                f"{_what(old, new, E, class_token)} has shape {shape}: the class token is missing. Keep its "
                f"embedding in front of the resized grid: (1, 1 + {tokens}, {E})."
            )
        assert shape == (1, P + tokens, E), (
            f"{_what(old, new, E, class_token)} has shape {shape}; expected {(1, P + tokens, E)}"
        )
        if class_token:
            assert_matches(
                out[:, :1],
                pos[:, :1],
                what=f"the class token's embedding after {_what(old, new, E, class_token)} (it has no place on the "
                "grid, so it is kept as it is)",
                atol=1e-12,
                rtol=0,
            )


@pytest.mark.part("interpolate")
@pytest.mark.points(2)
def test_interpolate_values(student):
    """the patches' embeddings are the H x W grid resized to H' x W' (bicubic, align_corners=False), row-major"""
    for i, (old, new, E, class_token) in enumerate(INTERP_CASES):
        pos, out = _interpolated(student, old, new, E, class_token, 70 + i)
        tokens = new[0] * new[1]
        want = ref.interpolate_pos_embed(pos, old, new, class_token)[:, -tokens:]
        # the last H'*W' rows: a class token that is missing or changed costs the point of the test above only
        got = out[:, -tokens:] if isinstance(out, torch.Tensor) and out.dim() == 3 else out
        hints = [
            Mistake(m.name, lambda m=m, tokens=tokens: m.value()[:, -tokens:], m.message)
            for m in interpolation_mistakes(pos, old, new, class_token)
        ]
        assert_matches(
            got,
            want,
            what=f"the patches' embeddings of {_what(old, new, E, class_token)}",
            atol=1e-5,
            rtol=0,
            hints=hints,
        )
