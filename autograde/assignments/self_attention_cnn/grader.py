"""Hidden graders of notebook 1: self-attention in a CNN.

Tolerances: forward outputs are compared in float64 with atol=1e-6, rtol=1e-5 (the student's module is converted
with the reference weights, so only the order of floating-point operations differs). Gradients are checked against
the student's own forward pass (autograd against centred differences along random directions,
:func:`autograde.checks.assert_gradients_follow_forward`): a gradient test proves that back-propagation works, so a
forward-pass mistake costs the forward tests' points only. Every shape has distinct sizes, so a mix-up of two
dimensions cannot pass. What does not depend on the student (weights, inputs, the reference's outputs) is computed
once per grading process (:func:`autograde.checks.computed_once`).

Weighting (the points are the ``@pytest.mark.points`` of each test): they follow how much of the concept a test
proves. In ``attention`` the forward pass (the attention itself: scale, softmax axis, residual, reshape back)
weighs most, then gradients; the contract's layers, the output shape and eval-mode determinism are bookkeeping.
The ``models`` are graded with the grader's stand-in for ``Attention`` (``stand_ins.py``) so that a wrong block
costs its points in ``attention`` only (the 0-point diagnostic names it). The known mistakes are in
``mistakes.py``.
"""

from __future__ import annotations

import pytest
import torch

from autograde import checks
from autograde.assignments.self_attention_cnn import reference as ref
from autograde.assignments.self_attention_cnn.mistakes import attention_mistakes, sagan_mistakes
from autograde.checks import StandIns, computed_once, reference_state, seeded, student_call
from autograde.compare import assert_matches
from autograde.worker.protocol import Call
from autograde.worker.results import StudentError

ATOL, RTOL = 1e-6, 1e-5
# (N, C, H, W): square and non-square maps, a batch of one, channel counts that are not powers of two. N, C, H, W
# and H*W differ in each (H = W only where the map is square), so a mix-up of two of them cannot pass.
SHAPES = [(2, 8, 4, 4), (3, 5, 2, 6), (1, 6, 5, 5), (2, 3, 7, 4)]


# What does not depend on the student (weights, inputs, the reference's outputs) is computed once
# per grading process (checks.computed_once), not once per submission.
@computed_once
def _weights(C: int, seed: int) -> dict[str, torch.Tensor]:
    return reference_state(ref.Attention(C).double(), seed)


def _reference_attention(C: int, seed: int) -> torch.nn.Module:
    """The reference Attention(C) in float64 with the weights ``_weights(C, seed)``."""
    model = ref.Attention(C).double()
    model.load_state_dict(_weights(C, seed))
    return model


@computed_once
def _expected_attention(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The reference output for the input ``seeded(shape, seed)`` and the weights ``_weights(C, seed + 1)``."""
    with torch.no_grad():
        return _reference_attention(shape[1], seed + 1)(seeded(shape, seed))


def _attention_call(shape, seed, *, grad=False) -> Call:
    x, w = seeded(shape, seed), _weights(shape[1], seed + 1)
    g = seeded(shape, seed + 2) if grad else None
    return Call("Attention", args=(shape[1],), inputs=(x,), state_dict=w, dtype=torch.float64, grad_outputs=g)


def _run(student, shape, seed):
    call = _attention_call(shape, seed)
    return call.inputs[0], call.state_dict, student_call(student, call)


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
    x, w, result = _run(student, shape, seed)
    assert_matches(
        result.output,
        _expected_attention(shape, seed),
        what=f"Attention forward on input {shape}",
        atol=ATOL,
        rtol=RTOL,
        hints=attention_mistakes(x, w),
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
    """gradients with respect to the input and every weight agree with your forward pass"""
    for i, shape in enumerate(SHAPES[:3]):
        call = _attention_call(shape, 30 + i, grad=True)
        result = student_call(student, call)
        what = f"Attention({shape[1]}) on input {shape}"
        checks.assert_gradients_follow_forward(
            lambda c: student_call(student, c), call, result, ("the input",), seed=33 + i, what=what
        )


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
# the grader's stand-in for it, so a mistake in Attention costs points in the attention part only.
STAND_INS = StandIns("autograde.assignments.self_attention_cnn.stand_ins", ("Attention",), ref)
MODELS = ["early_attention_cnn", "late_attention_cnn", "double_attention_cnn"]


def _reference_model(name: str, with_stand_ins: bool) -> torch.nn.Module:
    with STAND_INS.in_reference(with_stand_ins):
        return getattr(ref, name)().double()


# The models' Linear layer needs 32 x 32 maps; one image is enough to show how the layers are composed.
MODEL_INPUT = (1, 3, 32, 32)


@computed_once
def _model_weights(name: str) -> dict[str, torch.Tensor]:
    return reference_state(_reference_model(name, False), 50, scale=0.05)


@computed_once
def _expected_scores(name: str, with_stand_ins: bool) -> torch.Tensor:
    """The reference model's scores (1, 10) for the image ``seeded(MODEL_INPUT, 51)`` with ``_model_weights``."""
    model = _reference_model(name, with_stand_ins)
    model.load_state_dict(_model_weights(name))
    with torch.no_grad():
        return model(seeded(MODEL_INPUT, 51))


def _model_call(name: str) -> Call:
    return Call(name, inputs=(seeded(MODEL_INPUT, 51),), state_dict=_model_weights(name), dtype=torch.float64)


def _output_check(name: str):
    def check(result, with_stand_ins: bool) -> None:
        want = _expected_scores(name, with_stand_ins)
        assert_matches(result.output, want, what=f"{name}() output for one image", atol=1e-5, rtol=1e-4)

    return check


@pytest.mark.part("models")
@pytest.mark.points(1)
@pytest.mark.parametrize("name", MODELS)
def test_model_architecture(student, name):
    """the model has the specified layers in order and the reference parameter count"""

    def check(info, with_stand_ins: bool) -> None:
        expected = _reference_model(name, with_stand_ins)
        checks.check_layers(info, f"{name}()", expected, sizes="check the channel counts")

    checks.describe_own_or_stand_ins(student, name, STAND_INS, check)


@pytest.mark.part("models")
@pytest.mark.points(1)
@pytest.mark.parametrize("name", MODELS)
def test_model_output(student, name):
    """with the reference weights the model's scores (N, 10) match the reference"""
    try:
        checks.own_or_stand_ins(student, _model_call(name), STAND_INS, _output_check(name))
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
        checks.blame_earlier_part(student, _model_call(name), _output_check(name), suspects, f"{name}()")


@pytest.mark.part("q1")
@pytest.mark.points(1)
def test_inline_question_1(student):
    """Inline Question 1: the multiple-choice answer"""
    checks.check_choice(student, "answer_q1", ref.ANSWER_Q1, "")


# SAGANAttention(C, k) and an input (N, C, H, W): C' = C // k, N, C, C', H, W and the H*W/4 pooled positions all
# differ, so a scale by sqrt(C') or a mix-up of two sizes cannot pass.
SAGAN_IDENTITY = ((2, 12, 6, 10), 4)
SAGAN_CASES = [((2, 12, 6, 10), 4), ((1, 14, 6, 8), 2)]


@computed_once
def _sagan_weights(C: int, k: int, seed: int) -> dict[str, torch.Tensor]:
    w = reference_state(ref.SAGANAttention(C, k).double(), seed)
    w["gamma"] = torch.tensor([0.7], dtype=torch.float64)
    return w


@computed_once
def _expected_sagan(shape: tuple[int, ...], k: int, seed: int) -> dict:
    """The reference's output and input gradient for ``_sagan_call(shape, k, seed)``."""
    expected = ref.SAGANAttention(shape[1], k).double()
    expected.load_state_dict(_sagan_weights(shape[1], k, seed + 20))
    x = seeded(shape, seed).requires_grad_(True)
    out = expected(x)
    out.backward(seeded(shape, seed + 10))
    return {"output": out.detach(), "input_grad": x.grad}


def _sagan_call(shape: tuple[int, ...], k: int, seed: int) -> Call:
    C = shape[1]
    return Call(
        "SAGANAttention",
        args=(C,),
        kwargs={"k": k},
        inputs=(seeded(shape, seed),),
        state_dict=_sagan_weights(C, k, seed + 20),
        dtype=torch.float64,
        grad_outputs=seeded(shape, seed + 10),
    )


@pytest.mark.part("sagan")
@pytest.mark.points(1)
def test_sagan_starts_as_identity(student):
    """SAGANAttention has the specified layers, gamma starts at 0 and the fresh block is the identity"""
    shape, k = SAGAN_IDENTITY
    C = shape[1]
    info = student.describe("SAGANAttention", (C,), {"k": k})
    want = {n: tuple(p.shape) for n, p in ref.SAGANAttention(C, k).named_parameters()}
    assert info.parameters == want, f"SAGANAttention({C}, k={k}) has parameters {info.parameters}; expected {want}"
    x = seeded(shape, 60)
    out = student_call(
        student, Call("SAGANAttention", args=(C,), kwargs={"k": k}, inputs=(x,), dtype=torch.float64)
    ).output
    assert_matches(out, x, what="a freshly built SAGANAttention (gamma = 0)", atol=1e-6, rtol=0)


@pytest.mark.part("sagan")
@pytest.mark.points(1)
def test_sagan_forward_and_gradients(student):
    """with gamma != 0, forward and gradients match the reference"""
    for i, (shape, k) in enumerate(SAGAN_CASES):
        call = _sagan_call(shape, k, 70 + i)
        result = student_call(student, call)
        want = _expected_sagan(shape, k, 70 + i)
        what = f"SAGANAttention({shape[1]}, k={k}) forward on {shape}"
        hints = sagan_mistakes(call.inputs[0], call.state_dict)
        assert_matches(result.output, want["output"], what=what, atol=ATOL, rtol=RTOL, hints=hints)
        assert_matches(
            result.input_grads[0], want["input_grad"], what=f"the gradient of the input {shape}", atol=ATOL, rtol=RTOL
        )
