"""Checkpoint grading of notebook 4: the points follow the accuracy measured on CIFAR-10, and a missing or
broken checkpoint or missing test data gives a message instead of a crash.

A tiny ViT is trained here for a few seconds on ``cifar10-subset`` (real CIFAR-10 images) and saved with
``course_utils.save_checkpoint``, as the notebook does; the grader evaluates it on the subset's 1,017 test
images. The tier thresholds are moved around the measured accuracy to show that the points follow it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from autograde import checkpoint_grading as ckpt
from autograde.harness import run_part
from autograde.references import multi_head_attention as mha_ref
from autograde.references import positional_encoding as pe_ref
from autograde.references import vision_transformer as ref
from autograde.student import InProcessStudent
from course_utils.checkpoint import load_checkpoint, save_checkpoint
from course_utils.cifar import load_cifar10
from course_utils.loaders import TensorLoader
from course_utils.training import check_accuracy

ASSIGNMENT = "04_vision_transformer"
REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COURSE_TEST_DATA") or REPO.parent / "shared" / "data")
SUBSET = DATA / "cifar10-subset"
needs_data = pytest.mark.skipif(
    not (SUBSET / "cifar-10-batches-py").is_dir(),
    reason=f"real CIFAR-10 images not found in {SUBSET} (set COURSE_TEST_DATA to the folder holding it)",
)
TINY = dict(
    img_size=32, patch_size=8, embed_dim=32, num_layers=2, num_heads=2, dim_feedforward=64, dropout=0.0
)


def namespace() -> dict:
    """What the notebook defines: the student's classes (here the reference)."""
    return {
        "MultiHeadAttention": mha_ref.MultiHeadAttention,
        "PositionalEncoding": pe_ref.PositionalEncoding,
        "PatchEmbedding": ref.PatchEmbedding,
        "TransformerEncoderLayer": ref.TransformerEncoderLayer,
        "VisionTransformer": ref.VisionTransformer,
    }


@pytest.fixture(scope="module")
def submission(tmp_path_factory) -> Path:
    """A submission folder holding a checkpoint of a tiny ViT trained for one pass over the subset."""
    if not (SUBSET / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real CIFAR-10 images not found in {SUBSET}")
    data = load_cifar10(SUBSET)
    loader = TensorLoader(data.train_images, data.train_labels, 128, train=True, shuffle=True, device="cpu")
    torch.manual_seed(0)
    model = ref.VisionTransformer(**TINY)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for x, y in loader:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("submission")
    save_checkpoint(model, folder / ckpt.CHECKPOINT_NAME, **TINY)
    return folder


@pytest.fixture(scope="module")
def independent_accuracy(submission) -> float:
    """The checkpoint's test accuracy measured without the grader: course_utils' loader and check_accuracy."""
    model = load_checkpoint(submission / ckpt.CHECKPOINT_NAME, ref.VisionTransformer)
    data = load_cifar10(SUBSET)
    loader = TensorLoader(data.test_images, data.test_labels, 256, train=False, device="cpu")
    return check_accuracy(loader, model, verbose=False)


@pytest.fixture
def grading_env(monkeypatch, submission):
    """The grader looks in ``submission`` and reads the subset's test split (instructors set COURSE_DATA)."""
    monkeypatch.setenv(ckpt.SUBMISSION_DIR_VARIABLE, str(submission))
    monkeypatch.setenv("COURSE_DATA", str(SUBSET))
    return monkeypatch


def grade_checkpoint(ns: dict | None = None):
    return run_part(ASSIGNMENT, "checkpoint", InProcessStudent(namespace() if ns is None else ns))


@needs_data
def test_measured_accuracy_equals_an_independent_evaluation(grading_env, submission, independent_accuracy):
    evaluation = ckpt.evaluate_submission(InProcessStudent(namespace()))
    assert evaluation.total == 1017
    assert evaluation.accuracy == pytest.approx(independent_accuracy, abs=1e-9)
    assert evaluation.init_kwargs == TINY
    assert 15 < evaluation.accuracy < ckpt.TARGET_ACCURACY  # learned something, far from the real tiers


@needs_data
@pytest.mark.parametrize(
    ("target", "bonus", "earned"),
    [(-1.0, -0.5, 3), (0.0, 0.0, 3), (-1.0, 0.5, 2), (0.5, 1.0, 0)],
    ids=["both tiers", "exactly at the thresholds", "target only", "below both"],
)
def test_points_follow_the_measured_accuracy(grading_env, independent_accuracy, target, bonus, earned):
    grading_env.setattr(ckpt, "TARGET_ACCURACY", independent_accuracy + target)
    grading_env.setattr(ckpt, "BONUS_ACCURACY", independent_accuracy + bonus)
    report = grade_checkpoint()
    assert report.possible == 3
    assert report.earned == earned, report.text()
    for outcome in report.outcomes:
        if not outcome.passed:
            assert f"{independent_accuracy:.2f}%" in outcome.message, report.text()
            assert "this tier needs" in outcome.message


@needs_data
def test_the_real_tiers_give_the_tiny_model_nothing(grading_env):
    report = grade_checkpoint()
    assert report.earned == 0
    assert "this tier needs 45%" in report.text() and "this tier needs 65%" in report.text()


def test_missing_checkpoint_gives_a_message(monkeypatch, tmp_path):
    monkeypatch.setenv(ckpt.SUBMISSION_DIR_VARIABLE, str(tmp_path))
    report = grade_checkpoint()
    assert report.earned == 0
    assert all(
        "no checkpoint: vit_checkpoint.pt is not in the submission folder" in o.message
        for o in report.outcomes
    )
    assert "COURSE_FAST=0" in report.text()


def test_missing_test_data_gives_a_message(monkeypatch, tmp_path):
    save_checkpoint(ref.VisionTransformer(**TINY), tmp_path / ckpt.CHECKPOINT_NAME, **TINY)
    monkeypatch.setenv(ckpt.SUBMISSION_DIR_VARIABLE, str(tmp_path))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "nowhere"))
    report = grade_checkpoint()
    assert report.earned == 0
    assert all("the CIFAR-10 test split is not available" in o.message for o in report.outcomes), (
        report.text()
    )
    assert "set COURSE_DATA" in report.text()


def test_unreadable_checkpoint_gives_a_message(monkeypatch, tmp_path):
    (tmp_path / ckpt.CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    monkeypatch.setenv(ckpt.SUBMISSION_DIR_VARIABLE, str(tmp_path))
    report = grade_checkpoint()
    assert report.earned == 0
    assert "vit_checkpoint.pt could not be read" in report.text()


def test_checkpoint_of_another_model_gives_a_message(monkeypatch, tmp_path):
    save_checkpoint(nn.Linear(3, 10), tmp_path / ckpt.CHECKPOINT_NAME, in_features=3, out_features=10)
    monkeypatch.setenv(ckpt.SUBMISSION_DIR_VARIABLE, str(tmp_path))
    report = grade_checkpoint()
    assert report.earned == 0
    assert "holds a Linear, not a VisionTransformer" in report.text()


@needs_data
def test_class_changed_since_training_gives_a_message(grading_env):
    def VisionTransformer(**kwargs):  # the student's class now builds a wider model than the saved one
        return ref.VisionTransformer(**{**kwargs, "embed_dim": 48})

    report = grade_checkpoint({"VisionTransformer": VisionTransformer})
    assert report.earned == 0
    assert "could not run the weights saved in vit_checkpoint.pt" in report.text()
    assert "train and save the checkpoint again" in report.text()
