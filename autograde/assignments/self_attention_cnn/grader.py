"""Hidden graders of notebook 1: self-attention in a CNN.

Tolerances: forward outputs and gradients are compared in float64 with atol=1e-6, rtol=1e-5 (the student's
module is converted with the reference weights, so only the order of floating-point operations differs).

Weighting (points follow how much of the concept a test proves): ``attention`` 10 = the forward pass on square
maps 3 and on non-square maps 2 (the attention itself: scale, softmax axis, residual, reshape back), gradients 2,
and 1 each for the contract's layers, the output shape and eval-mode determinism (bookkeeping). ``models`` 6 = per
model its layers 1 and its output 1, graded with the grader's stand-in for ``Attention`` so that a wrong block
costs its points in ``attention`` only (the 0-point diagnostic names it). ``q1`` 1, ``sagan`` 2 (starts as the
identity 1, forward and gradients 1).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autograde.assignments.self_attention_cnn import reference as ref
from autograde.checks import (
    assert_gradients_match,
    blame_earlier_part,
    check_choice,
    own_or_stand_ins,
    reference_state,
    seeded,
    student_call,
)
from autograde.compare import assert_matches
from autograde.results import StudentError
from autograde.student import Call, stand_ins, substituted

ATOL, RTOL = 1e-6, 1e-5
# (N, C, H, W): square and non-square maps, a batch of one, channel counts that are not powers of two.
SHAPES = [(2, 8, 4, 4), (3, 5, 3, 6), (1, 6, 5, 5), (2, 3, 7, 2)]
ANSWER_Q1 = 2  # Non-local means


def _weights(C: int, seed: int) -> dict[str, torch.Tensor]:
    return reference_state(ref.Attention(C).double(), seed)


def _known_mistakes(x: torch.Tensor, w: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, str]]:
    """What the usual wrong implementations return for input x and weights w."""
    N, C, H, W = x.shape

    def proj(name: str) -> torch.Tensor:
        return F.conv2d(x, w[f"conv_{name}.weight"], w[f"conv_{name}.bias"])

    q, k, v = proj("query").flatten(2), proj("key").flatten(2), proj("value").flatten(2)  # (N, C, HW)
    scores = q.transpose(1, 2) @ k  # (N, HW, HW)
    good = (F.softmax(scores / math.sqrt(C), -1) @ v.transpose(1, 2)).transpose(1, 2).reshape(N, C, H, W)
    channels = (F.softmax(q @ k.transpose(1, 2) / math.sqrt(C), -1) @ v).reshape(N, C, H, W)
    no_scale = (F.softmax(scores, -1) @ v.transpose(1, 2)).transpose(1, 2).reshape(N, C, H, W)
    wrong_axis = (F.softmax(scores / math.sqrt(C), 1) @ v.transpose(1, 2)).transpose(1, 2).reshape(N, C, H, W)
    scrambled = (F.softmax(scores / math.sqrt(C), -1) @ v.transpose(1, 2)).reshape(N, C, H, W)
    return [
        (
            x + channels,
            "your output matches attention over channels (a C x C matrix), not over positions "
            "(an H*W x H*W matrix): reshape q and k to (N, H*W, C) before q @ k^T.",
        ),
        (x + no_scale, "the 1/sqrt(C) scale is missing: divide the scores q @ k^T by math.sqrt(C)."),
        (
            x + wrong_axis,
            "the softmax runs over the wrong axis: normalise over the keys (dim=-1 of the "
            "(N, H*W, H*W) scores), so each query's weights sum to 1.",
        ),
        (good, "the residual is missing: return x + attention output."),
        (
            x + scrambled,
            "the (N, H*W, C) result is reshaped straight to (N, C, H, W): transpose it to "
            "(N, C, H*W) first, or channels and positions get mixed.",
        ),
    ]


def _run(student, shape, seed, *, grad=False):
    N, C, H, W = shape
    x = seeded(shape, seed)
    w = _weights(C, seed + 1)
    g = seeded(shape, seed + 2) if grad else None
    call = Call("Attention", args=(C,), inputs=(x,), state_dict=w, dtype=torch.float64, grad_outputs=g)
    return x, w, g, student_call(student, call)


@pytest.mark.part("attention")
@pytest.mark.points(1)
def test_layers_follow_the_contract(student):
    """Attention(C) has conv_query, conv_key, conv_value, each nn.Conv2d(C, C, kernel_size=1)"""
    for C in (8, 5):
        info = student.describe("Attention", (C,))
        children = dict(info.children)
        for name in ("conv_query", "conv_key", "conv_value"):
            assert children.get(name) == "Conv2d", f"Attention({C}) needs an attribute `{name}` = nn.Conv2d(...)"
            assert info.parameters.get(f"{name}.weight") == (C, C, 1, 1), (
                f"`{name}` of Attention({C}) has weight shape {info.parameters.get(f'{name}.weight')}, "
                f"expected ({C}, {C}, 1, 1): nn.Conv2d({C}, {C}, kernel_size=1)"
            )
            assert info.parameters.get(f"{name}.bias") == (C,), f"`{name}` should keep its bias (the default)"


def _check_forward(student, shape, seed):
    x, w, _, result = _run(student, shape, seed)
    expected = ref.Attention(shape[1]).double()
    expected.load_state_dict(w)
    with torch.no_grad():
        want = expected(x)
    assert_matches(
        result.output,
        want,
        what=f"Attention forward on input {shape}",
        atol=ATOL,
        rtol=RTOL,
        hints=_known_mistakes(x, w),
    )


@pytest.mark.part("attention")
@pytest.mark.points(1)
def test_output_shape(student):
    """forward maps (N, C, H, W) to (N, C, H, W)"""
    for shape in SHAPES:
        result = student_call(student, Call("Attention", args=(shape[1],), inputs=(seeded(shape, 0).float(),)))
        out = result.output
        assert isinstance(out, torch.Tensor), f"forward returned {type(out).__name__}, expected a tensor"
        assert tuple(out.shape) == shape, f"input {shape} gave output {tuple(out.shape)}; expected {shape}"


@pytest.mark.part("attention")
@pytest.mark.points(3)
def test_forward_square_maps(student):
    """forward matches the reference on square feature maps"""
    for i, shape in enumerate(s for s in SHAPES if s[2] == s[3]):
        _check_forward(student, shape, seed=10 + i)


@pytest.mark.part("attention")
@pytest.mark.points(2)
def test_forward_non_square_maps(student):
    """forward matches the reference on non-square feature maps (H != W)"""
    for i, shape in enumerate(s for s in SHAPES if s[2] != s[3]):
        _check_forward(student, shape, seed=20 + i)


@pytest.mark.part("attention")
@pytest.mark.points(2)
def test_gradients(student):
    """gradients with respect to the input and every weight match the reference"""
    for i, shape in enumerate(SHAPES[:3]):
        x, w, g, result = _run(student, shape, 30 + i, grad=True)
        expected = ref.Attention(shape[1]).double()
        expected.load_state_dict(w)
        xr = x.clone().requires_grad_(True)
        expected(xr).backward(g)
        assert_gradients_match(result, [("the input", xr)], expected, on=str(shape), atol=ATOL, rtol=RTOL)


@pytest.mark.part("attention")
@pytest.mark.points(1)
def test_eval_mode_is_deterministic_and_device_free(student):
    """in eval mode two calls give the same output, on the CPU, in float32 and float64"""
    shape = (2, 4, 3, 3)
    for dtype in (torch.float32, torch.float64):
        x = seeded(shape, 40, dtype)
        outs = [
            student_call(
                student, Call("Attention", args=(4,), inputs=(x,), seed=s, state_dict=_weights(4, 41), dtype=dtype)
            ).output
            for s in (0, 1)
        ]
        assert outs[0].dtype == dtype, f"a {dtype} input gave a {outs[0].dtype} output: do not fix the dtype"
        assert torch.equal(outs[0], outs[1]), "two calls in eval mode gave different outputs"


# The models are graded on their own: when the student's Attention is wrong, the models are checked again with
# the grader's stand-in for it (a gated 1x1 convolution with the contract's three layers, not attention), so a
# mistake in Attention costs points in the attention part only.
STAND_INS = {
    "Attention": """
import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.conv_query = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.conv_key = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.conv_value = nn.Conv2d(in_channels, in_channels, kernel_size=1)

    def forward(self, x):
        return x + self.conv_value(x) * torch.sigmoid(self.conv_query(x) + self.conv_key(x))
"""
}
MODELS = ["early_attention_cnn", "late_attention_cnn", "double_attention_cnn"]


def _reference_model(name: str, with_stand_ins: bool) -> torch.nn.Module:
    if not with_stand_ins:
        return getattr(ref, name)().double()
    with substituted(vars(ref), stand_ins(STAND_INS)):
        return getattr(ref, name)().double()


def _check_architecture(info, name: str, expected: torch.nn.Module) -> None:
    want_layers = [type(m).__name__ for m in expected]
    got_layers = [t for _, t in info.children]
    assert info.type_name == "Sequential", f"{name}() should return an nn.Sequential, got {info.type_name}"
    assert got_layers == want_layers, f"{name}() has layers {got_layers}; expected {want_layers}"
    ref_count = sum(p.numel() for p in expected.parameters())
    assert info.num_parameters == ref_count, (
        f"{name}() has {info.num_parameters:,} parameters; expected {ref_count:,} (check the channel counts)"
    )


def _model_call(name: str) -> tuple[Call, dict[str, torch.Tensor], torch.Tensor]:
    w = reference_state(_reference_model(name, False), 50, scale=0.05)
    x = seeded((2, 3, 32, 32), 51)
    return Call(name, inputs=(x,), state_dict=w, dtype=torch.float64), w, x


def _output_check(name: str, w: dict, x: torch.Tensor):
    def check(result, with_stand_ins: bool) -> None:
        expected = _reference_model(name, with_stand_ins)
        expected.load_state_dict(w)
        with torch.no_grad():
            want = expected(x)
        assert_matches(result.output, want, what=f"{name}() output for a batch of 2 images", atol=1e-5, rtol=1e-4)

    return check


@pytest.mark.part("models")
@pytest.mark.points(1)
@pytest.mark.parametrize("name", MODELS)
def test_model_architecture(student, name):
    """the model has the specified layers in order and the reference parameter count"""
    try:
        _check_architecture(student.describe(name), name, _reference_model(name, False))
    except (AssertionError, StudentError) as own:
        try:
            info = student.describe(name, substitutes=STAND_INS)
        except StudentError:
            raise own from None
        _check_architecture(info, name, _reference_model(name, True))


@pytest.mark.part("models")
@pytest.mark.points(1)
@pytest.mark.parametrize("name", MODELS)
def test_model_output(student, name):
    """with the reference weights the model's scores (N, 10) match the reference"""
    call, w, x = _model_call(name)
    try:
        own_or_stand_ins(student, call, STAND_INS, _output_check(name, w, x))
    except StudentError as exc:
        raise StudentError(
            f"{exc}\nThe layer order or sizes differ from the specification.", exc.kind, exc.exc_type
        ) from None


@pytest.mark.part("models")
@pytest.mark.points(0)
def test_models_with_your_own_attention(student):
    """diagnostic (no points): the three models with your own Attention match the reference"""
    suspects = [("Attention", lambda: _check_forward(student, (2, 4, 3, 5), 52))]
    for name in MODELS:
        call, w, x = _model_call(name)
        blame_earlier_part(student, call, _output_check(name, w, x), suspects, f"{name}()")


@pytest.mark.part("q1")
@pytest.mark.points(1)
def test_inline_question_1(student):
    """Inline Question 1: the multiple-choice answer"""
    check_choice(student, "answer_q1", ANSWER_Q1, "")


def _sagan_weights(C: int, k: int, seed: int) -> dict[str, torch.Tensor]:
    w = reference_state(ref.SAGANAttention(C, k).double(), seed)
    w["gamma"] = torch.tensor([0.7], dtype=torch.float64)
    return w


@pytest.mark.part("sagan")
@pytest.mark.points(1)
def test_sagan_starts_as_identity(student):
    """SAGANAttention has the specified layers, gamma starts at 0 and the fresh block is the identity"""
    info = student.describe("SAGANAttention", (16,), {"k": 4})
    want = {n: tuple(p.shape) for n, p in ref.SAGANAttention(16, 4).named_parameters()}
    assert info.parameters == want, f"SAGANAttention(16, k=4) has parameters {info.parameters}; expected {want}"
    x = seeded((2, 16, 4, 6), 60)
    out = student_call(
        student, Call("SAGANAttention", args=(16,), kwargs={"k": 4}, inputs=(x,), dtype=torch.float64)
    ).output
    assert_matches(out, x, what="a freshly built SAGANAttention (gamma = 0)", atol=1e-6, rtol=0)


@pytest.mark.part("sagan")
@pytest.mark.points(1)
def test_sagan_forward_and_gradients(student):
    """with gamma != 0, forward and gradients match the reference"""
    for i, (shape, k) in enumerate([((2, 16, 4, 6), 4), ((1, 24, 6, 6), 8)]):
        C = shape[1]
        x, g, w = seeded(shape, 70 + i), seeded(shape, 80 + i), _sagan_weights(C, k, 90 + i)
        result = student_call(
            student,
            Call(
                "SAGANAttention",
                args=(C,),
                kwargs={"k": k},
                inputs=(x,),
                state_dict=w,
                dtype=torch.float64,
                grad_outputs=g,
            ),
        )
        expected = ref.SAGANAttention(C, k).double()
        expected.load_state_dict(w)
        xr = x.clone().requires_grad_(True)
        want = expected(xr)
        want.backward(g)
        assert_matches(result.output, want.detach(), what=f"SAGANAttention forward on {shape}", atol=ATOL, rtol=RTOL)
        assert_matches(result.input_grads[0], xr.grad, what=f"the gradient of the input {shape}", atol=ATOL, rtol=RTOL)
