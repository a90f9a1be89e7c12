"""The notebook-1 graders give the reference full marks and recognise the usual mistakes (in-process, fast)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograde.assignments.self_attention_cnn import reference as ref
from tests.grader_reports import assert_full_marks, grade_part

ASSIGNMENT = "01_self_attention_cnn"
PARTS = {"attention": 10, "models": 6, "q1": 1, "sagan": 2}


def reference_namespace() -> dict:
    return {
        "Attention": ref.Attention,
        "early_attention_cnn": ref.early_attention_cnn,
        "late_attention_cnn": ref.late_attention_cnn,
        "double_attention_cnn": ref.double_attention_cnn,
        "SAGANAttention": ref.SAGANAttention,
        "answer_q1": 2,
    }


def grade(namespace: dict, part: str):
    return grade_part(ASSIGNMENT, namespace, part)


@pytest.mark.parametrize("part", PARTS)
def test_reference_earns_every_point(part):
    assert_full_marks(grade(reference_namespace(), part), PARTS[part])


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
    from autograde import grade as grade_cell

    assert grade_cell(ASSIGNMENT, "q1", {"answer_q1": 2}) == 1
    out, err = capsys.readouterr()
    assert "[PASS] Inline Question 1" in out and "Score: 1 / 1" in out
    assert err == ""
