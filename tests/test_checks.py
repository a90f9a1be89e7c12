"""The shared grading tools of autograde.checks: values computed once per run, and the gradient check that proves
back-propagation without charging a forward-pass mistake again."""

from __future__ import annotations

import pytest
import torch

from autograde import checks
from autograde.worker.in_process import InProcessStudent
from autograde.worker.protocol import Call


def test_computed_once_computes_once_and_hands_out_copies():
    calls = []

    @checks.computed_once
    def weights(seed: int) -> dict[str, torch.Tensor]:
        calls.append(seed)
        return {"w": checks.seeded((2, 3), seed)}

    first = weights(1)
    first["w"].zero_()  # a caller that changes what it got
    first["extra"] = torch.ones(1)
    second = weights(1)
    assert calls == [1]
    assert set(second) == {"w"} and torch.equal(second["w"], checks.seeded((2, 3), 1))


def test_computed_once_refuses_what_it_cannot_copy():
    @checks.computed_once
    def module() -> torch.nn.Module:
        return torch.nn.Linear(2, 2)

    with pytest.raises(TypeError, match="tensors and plain containers"):
        module()


def attention(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1) @ v


def detached_keys(q, k, v):
    return attention(q, k.detach(), v)


def twice_the_scale(q, k, v):  # a forward-pass mistake: its gradients still follow its forward pass
    return attention(2 * q, k, v)


def gradient_check(fn) -> None:
    q, k, v = checks.seeded((2, 5, 4), 0), checks.seeded((2, 7, 4), 1), checks.seeded((2, 7, 3), 2)
    student = InProcessStudent({"attend": fn})
    call = Call("attend", build=False, inputs=(q, k, v), grad_outputs=checks.seeded((2, 5, 3), 3))
    checks.assert_gradients_follow_forward(
        student.call, call, student.call(call), ("q", "k", "v"), seed=4, what="attend"
    )


@pytest.mark.parametrize("fn", [attention, twice_the_scale])
def test_gradients_that_follow_the_forward_pass_pass(fn):
    gradient_check(fn)


def test_a_detached_input_is_named():
    with pytest.raises(AssertionError, match=r"for k \(autograd's directional derivative 0,"):
        gradient_check(detached_keys)


def test_a_module_whose_weights_are_detached_fails():
    class Half(torch.nn.Linear):
        def forward(self, x):
            return x @ self.weight.detach().T + self.bias

    layer = torch.nn.Linear(3, 2).double()
    w = {k: v.detach().clone() for k, v in layer.state_dict().items()}
    student = InProcessStudent({"Half": Half})
    call = Call(
        "Half",
        args=(3, 2),
        inputs=(checks.seeded((4, 3), 0),),
        state_dict=w,
        dtype=torch.float64,
        grad_outputs=checks.seeded((4, 2), 1),
    )
    with pytest.raises(AssertionError, match="for the weights"):
        checks.assert_gradients_follow_forward(
            student.call, call, student.call(call), ("the input",), seed=2, what="Half(3, 2)"
        )
