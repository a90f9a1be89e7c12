"""Tests for course_utils.gradcheck: numerical gradients agree with calculus; wrong backwards are caught."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils.gradcheck import (
    check_module_gradients,
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
)


def test_rel_error_is_the_largest_elementwise_relative_difference():
    assert rel_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])) == 0.0
    assert rel_error(torch.tensor([1.0, 10.0]), torch.tensor([1.1, 10.0])) == pytest.approx(0.1 / 2.1)
    assert rel_error(0.0, 1e-12) == pytest.approx(1e-12 / 1e-8), "tiny denominators are floored at 1e-8"


def test_eval_numerical_gradient_matches_the_derivative_of_a_cubic():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    before = x.clone()
    grad = eval_numerical_gradient(lambda z: (z**3).sum() + 2 * z[0, 1], x)
    analytic = 3 * before**2
    analytic[0, 1] += 2
    assert rel_error(grad, analytic) < 1e-8
    assert torch.equal(x, before), "x must be restored after nudging"


def test_eval_numerical_gradient_nudges_x_in_place_for_closures(capsys):
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    grad = eval_numerical_gradient(lambda _: (w * w).sum(), w, verbose=True)
    assert rel_error(grad, 2 * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)) < 1e-8
    assert capsys.readouterr().out.count("\n") == 3


def test_eval_numerical_gradient_array_backpropagates_an_upstream_gradient():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    dout = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    grad = eval_numerical_gradient_array(lambda z: torch.sin(z) @ w, x, dout)
    assert rel_error(grad, torch.cos(x) * (dout @ w.T)) < 1e-8


def test_numerical_gradients_refuse_float32():
    with pytest.raises(TypeError, match="float64"):
        eval_numerical_gradient(lambda z: z.sum(), torch.ones(2))


class Cube(torch.autograd.Function):
    """``x ** 3`` with a hand-written backward that is off by ``factor`` (1 = correct)."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.save_for_backward(x)
        ctx.factor = factor
        return x**3

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return ctx.factor * 3 * x**2 * grad_out, None


class ScaledCube(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor
        self.scale = nn.Parameter(torch.tensor([0.5, 1.5, -1.0]))

    def forward(self, x):
        return Cube.apply(x, self.factor) * self.scale


def test_a_correct_backward_passes():
    x = torch.randn(4, 3)
    report = check_module_gradients(ScaledCube(factor=1.0), x)
    assert report.passed, str(report)
    assert [(row.name, row.shape, row.checked) for row in report.rows] == [
        ("input[0]", (4, 3), 12),
        ("scale", (3,), 3),
    ]


def test_a_wrong_backward_fails_on_the_input_only_and_the_report_says_so():
    report = check_module_gradients(ScaledCube(factor=1.1), torch.randn(4, 3))
    assert not report.passed
    rows = {row.name: row for row in report.rows}
    assert not rows["input[0]"].passed and rows["input[0]"].max_rel_error > 0.05
    assert rows["scale"].passed
    lines = str(report).splitlines()
    assert "max rel error" in lines[0]
    assert lines[1].startswith("input[0]") and "FAIL" in lines[1]
    assert lines[2].startswith("scale") and lines[2].endswith("pass")


def test_a_wrong_softmax_backward_is_caught_although_softmax_rows_sum_to_one():
    class SoftmaxNoJacobian(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out = x.softmax(dim=-1)
            ctx.save_for_backward(out)
            return out

        @staticmethod
        def backward(ctx, grad_out):
            (out,) = ctx.saved_tensors
            return out * grad_out  # forgets the "- out * sum(out * grad_out)" term

    class Wrapper(nn.Module):
        def forward(self, x):
            return SoftmaxNoJacobian.apply(x)

    assert not check_module_gradients(Wrapper(), torch.randn(2, 5)).passed


class SelfAttention(nn.Module):
    """Single-head self-attention over ``(N, T, D)`` with dropout on the weights."""

    def __init__(self, dim: int):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (N, T, D) each
        weights = (q @ k.transpose(1, 2) / q.shape[-1] ** 0.5).softmax(dim=-1)  # (N, T, T)
        return self.dropout(weights) @ v


def test_a_float32_module_is_checked_in_float64_without_changing_it():
    torch.manual_seed(0)
    attention = SelfAttention(dim=4).train()
    before = {k: v.clone() for k, v in attention.state_dict().items()}
    x = torch.randn(2, 3, 4)
    report = check_module_gradients(attention, x, max_elems=30)
    assert report.passed, str(report)
    assert [(row.name, row.checked) for row in report.rows] == [
        ("input[0]", 24),
        ("qkv.weight", 30),
        ("qkv.bias", 12),
    ]
    assert attention.training and attention.qkv.weight.dtype == torch.float32
    assert all(torch.equal(v, before[k]) for k, v in attention.state_dict().items())
    assert x.dtype == torch.float32 and x.grad is None


def test_integer_inputs_pass_through_unchecked():
    embedding = nn.Embedding(6, 3)
    report = check_module_gradients(embedding, torch.tensor([[0, 2, 5]]))
    assert report.passed and [row.name for row in report.rows] == ["weight"]


def test_a_gradient_that_is_zero_up_to_rounding_passes_and_a_wrong_zero_fails():
    class KeyBias(nn.Module):
        """softmax(q . (k + b)) over keys: the bias b shifts every score of a row equally, so its gradient is 0."""

        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.randn(3))

        def forward(self, q, k):
            return (q @ (k + self.bias).T).softmax(dim=-1)

    report = check_module_gradients(KeyBias(), torch.randn(2, 3), torch.randn(4, 3))
    assert report.passed, str(report)
    assert not check_module_gradients(ScaledCube(factor=0.0), torch.randn(4, 3)).passed
