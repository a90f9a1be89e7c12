"""The notebook-1 graders give the reference full marks and recognise the usual mistakes (in-process, fast)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograde.assignments.self_attention_cnn import reference as ref
from tests.grader_reports import grade_part

ASSIGNMENT = "01_self_attention_cnn"


def reference_namespace() -> dict:
    return dict(ref.SOLUTION)


def grade(namespace: dict, part: str):
    return grade_part(ASSIGNMENT, namespace, part)


def mutant_attention(mistake: str) -> type[nn.Module]:
    """The reference Attention with one realistic mistake."""

    class Mutant(ref.Attention):
        def forward(self, x):
            N, C, H, W = x.shape
            q, k, v = (conv(x).reshape(N, C, H * W) for conv in (self.conv_query, self.conv_key, self.conv_value))
            if mistake == "channels":  # the seed student's version: a C x C attention matrix
                return x + (F.softmax(q @ k.transpose(1, 2) / math.sqrt(C), -1) @ v).reshape(N, C, H, W)
            scale = 1.0 if mistake == "no_scale" else math.sqrt(C)
            axis = 1 if mistake == "axis" else -1
            out = (F.softmax(q.transpose(1, 2) @ k / scale, axis) @ v.transpose(1, 2)).transpose(1, 2)
            out = out.reshape(N, C, H, W)
            if mistake == "cuda":
                out = out + torch.zeros(1).to("cuda")
            return out if mistake == "residual" else x + out

    return Mutant


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("channels", "attention over channels"),
        ("no_scale", "1/sqrt(C) scale is missing"),
        ("axis", "softmax runs over the wrong axis"),
        ("residual", "residual is missing"),
        ("cuda", "only runs on CUDA"),
    ],
)
def test_attention_mistakes_are_named_and_lose_points(mistake, message):
    if mistake == "cuda" and torch.cuda.is_available():
        pytest.skip("the CUDA mistake only shows on a machine without CUDA")
    namespace = {**reference_namespace(), "Attention": mutant_attention(mistake)}
    report = grade(namespace, "attention")
    forward = [o for o in report.outcomes if "forward matches" in o.description]
    assert forward and all(not o.passed for o in forward), report.text()
    assert any(message in o.message for o in forward), report.text()
    assert 0 <= report.earned < report.possible


def test_wrong_layer_order_fails_only_that_model():
    def late_in_early_order():
        return nn.Sequential(*list(ref.late_attention_cnn())[:4], ref.Flatten(), nn.Linear(32 * 32 * 32, 10))

    namespace = {**reference_namespace(), "late_attention_cnn": late_in_early_order}
    report = grade(namespace, "models")
    failed = {o.description for o in report.outcomes if not o.passed}
    assert failed == {
        "the model has the specified layers in order and the reference parameter count [late_attention_cnn]",
        "with the reference weights the model's scores (N, 10) match the reference [late_attention_cnn]",
    }, report.text()
    assert report.earned == 4


@pytest.mark.parametrize(("answer", "earned"), [(2, 1), (1, 0), ("2", 0), (None, 0)])
def test_multiple_choice(answer, earned):
    assert grade({"answer_q1": answer}, "q1").earned == earned


def test_missing_definitions_score_zero_with_a_message():
    report = grade({}, "attention")
    assert report.earned == 0
    assert all("`Attention` is not defined" in o.message for o in report.outcomes), report.text()


def test_grade_prints_a_report_and_returns_the_points(capsys):
    from autograde.harness import grade as grade_cell

    assert grade_cell(ASSIGNMENT, "q1", {"answer_q1": 2}) == 1
    out, err = capsys.readouterr()
    assert "[PASS] Inline Question 1" in out and "Score: 1 / 1" in out
    assert err == ""


class ScaledSAGAN(ref.SAGANAttention):
    """The reference SAGANAttention with its scores divided by sqrt(C'), as notebook 1's Attention scales them."""

    def forward(self, x):
        N, C, H, W = x.shape
        q = self.conv_query(x).flatten(2).transpose(1, 2)  # (N, H*W, C')
        k, v = self.pool(self.conv_key(x)).flatten(2), self.pool(self.conv_value(x)).flatten(2).transpose(1, 2)
        weights = F.softmax(q @ k / math.sqrt(q.shape[-1]), dim=-1)
        return x + self.gamma * self.conv_out((weights @ v).transpose(1, 2).reshape(N, -1, H, W))


def test_a_scaled_sagan_is_named_and_fails_only_the_forward_test():
    report = grade({**reference_namespace(), "SAGANAttention": ScaledSAGAN}, "sagan")
    failed = [o for o in report.outcomes if not o.passed]
    assert [o.description for o in failed] == ["with gamma != 0, forward and gradients match the reference"]
    assert failed[0].mistake == "sagan_scaled" and "SAGAN uses no scale" in failed[0].message, report.text()


def test_the_visible_checks_name_the_known_mistakes_in_the_graders_words():
    """The SAGAN scale's message of the graders appears, word for word, as a string of the notebook's checks."""
    from autograde.assignments.self_attention_cnn.mistakes import MESSAGES
    from tests.notebook_cells import code_strings

    strings = code_strings(ASSIGNMENT)
    assert any(MESSAGES["sagan_scaled"] in s for s in strings)
