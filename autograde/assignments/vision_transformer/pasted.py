"""The modules a student pastes into notebook 4 from notebooks 2 and 3, checked against those notebooks' references.

Each check raises ``AssertionError`` when the pasted module differs; :func:`as_pasted` adds where to fix it. Shapes:
queries (N, S, E), keys and values (N, T, E), with N, S, T, E and the heads h all different.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from autograde.assignments.multi_head_attention import reference as mha_ref
from autograde.assignments.positional_encoding import reference as pe_ref
from autograde.assignments.vision_transformer import contract
from autograde.checks import reference_state, seeded, student_call
from autograde.compare import assert_matches
from autograde.worker.protocol import Call

ATOL, RTOL = 1e-6, 1e-5


def as_pasted(check: Callable[[], None]) -> None:
    """Run the ``check`` of a module pasted from an earlier notebook; a failure says where to fix it."""
    try:
        check()
    except AssertionError as exc:
        raise AssertionError(
            f"{exc} Fix it in its own notebook (whose checks name the mistake) and paste it here again. The encoder "
            "layer and the ViT are graded with the grader's stand-ins, so this mistake costs no points there."
        ) from None


def check_positional_encoding(student) -> None:
    """The pasted PositionalEncoding against notebook 3's reference (raises when it differs)."""
    kwargs = {"dropout": 0.1, "max_len": 20}
    contract.check_pasted_positional_encoding(student.describe("PositionalEncoding", (10,), kwargs))
    x = seeded((2, 7, 10), 130)
    out = student_call(student, Call("PositionalEncoding", (10,), kwargs, (x,), dtype=torch.float64)).output
    want = x + pe_ref.sinusoidal_1d(20, 10).double()[:7]
    assert_matches(out, want, what="PositionalEncoding on (2, 7, 10) in eval mode", atol=1e-6, rtol=1e-5)


def check_multi_head_attention(student) -> None:
    """The pasted MultiHeadAttention against notebook 2's reference (raises when it differs)."""
    for i, (E, h, S, T) in enumerate([(12, 3, 5, 7), (15, 3, 4, 7)]):  # N = 2, D = E / h
        model = mha_ref.MultiHeadAttention(E, h).double().eval()
        w = reference_state(model, 100 + i)
        q, kv = seeded((2, S, E), 110 + i), seeded((2, T, E), 120 + i)
        result = student_call(
            student, Call("MultiHeadAttention", args=(E, h), inputs=(q, kv, kv), state_dict=w, dtype=torch.float64)
        )
        with torch.no_grad():
            want = model(q, kv, kv)
        what = f"MultiHeadAttention({E}, {h}) on query {(2, S, E)} and key/value {(2, T, E)}"
        assert_matches(result.output, want, what=what, atol=ATOL, rtol=RTOL)
