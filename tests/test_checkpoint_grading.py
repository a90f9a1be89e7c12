"""Checkpoint grading of notebook 4: the points follow the accuracy measured on CIFAR-10; a missing, broken or
smuggling checkpoint or missing test data gives a message instead of a crash or a free point.

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

from autograde import eval_data
from autograde.assignments.multi_head_attention import reference as mha_ref
from autograde.assignments.positional_encoding import reference as pe_ref
from autograde.assignments.vision_transformer import checkpoint_grading as ckpt
from autograde.assignments.vision_transformer import reference as ref
from autograde.harness import Context, run_part
from autograde.worker.in_process import InProcessStudent
from autograde.worker.protocol import Call
from autograde.worker.results import Kind
from course_utils.cifar import load_cifar10
from course_utils.loaders import TensorLoader
from course_utils.model_checkpoint import load_checkpoint, save_checkpoint
from course_utils.training import check_accuracy

ASSIGNMENT = "04_vision_transformer"
REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COURSE_TEST_DATA") or REPO.parent / "shared" / "data")
SUBSET = DATA / "cifar10-subset"
needs_data = pytest.mark.skipif(
    not (SUBSET / "cifar-10-batches-py").is_dir(),
    reason=f"real CIFAR-10 images not found in {SUBSET} (set COURSE_TEST_DATA to the folder holding it)",
)
TINY = dict(img_size=32, patch_size=8, embed_dim=32, num_layers=2, num_heads=2, dim_feedforward=64, dropout=0.0)


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
    """The grader reads the subset's test split (instructors set COURSE_DATA)."""
    monkeypatch.setenv("COURSE_DATA", str(SUBSET))
    return monkeypatch


def run_resources() -> dict:
    """What a grading run prepares for the checkpoint part (from $COURSE_DATA), before any student code runs."""
    return eval_data.prepare_resources({eval_data.RESOURCE}, notify=lambda message: None)


def grade_checkpoint(folder: Path, ns: dict | None = None, resources: dict | None = None):
    student = InProcessStudent(namespace() if ns is None else ns)
    resources = run_resources() if resources is None else resources
    return run_part(ASSIGNMENT, "checkpoint", Context(student, submission_dir=folder, resources=resources))


@needs_data
def test_measured_accuracy_equals_an_independent_evaluation(grading_env, submission, independent_accuracy):
    evaluation = ckpt.evaluate_submission(InProcessStudent(namespace()), submission, run_resources())
    assert evaluation.total == 1017
    assert evaluation.accuracy == pytest.approx(independent_accuracy, abs=1e-9)
    assert evaluation.init_kwargs == TINY
    assert 15 < evaluation.accuracy < ckpt.TARGET_ACCURACY  # learned something, far from the real tiers


@needs_data
@pytest.mark.parametrize(
    ("target", "second_tier", "earned"),
    [(-1.0, -0.5, 3), (0.0, 0.0, 3), (-1.0, 0.5, 2), (0.5, 1.0, 0)],
    ids=["both tiers", "exactly at the thresholds", "target only", "below both"],
)
def test_points_follow_the_measured_accuracy(
    grading_env, submission, independent_accuracy, target, second_tier, earned
):
    grading_env.setattr(ckpt, "TARGET_ACCURACY", independent_accuracy + target)
    grading_env.setattr(ckpt, "SECOND_TIER_ACCURACY", independent_accuracy + second_tier)
    report = grade_checkpoint(submission)
    assert report.possible == 3
    assert report.earned == earned, report.text()
    for outcome in report.outcomes:
        if not outcome.passed:
            assert f"{independent_accuracy:.2f}%" in outcome.message, report.text()
            assert "this tier needs" in outcome.message


@needs_data
def test_the_real_tiers_give_the_tiny_model_nothing(grading_env, submission):
    report = grade_checkpoint(submission)
    assert report.earned == 0
    assert "this tier needs 45%" in report.text() and "this tier needs 65%" in report.text()


def test_missing_checkpoint_gives_a_message(tmp_path):
    report = grade_checkpoint(tmp_path)
    assert report.earned == 0
    assert all("no checkpoint: vit_checkpoint.pt is not in the submission folder" in o.message for o in report.outcomes)
    assert all(o.kind is Kind.MISSING_FILE for o in report.outcomes)
    assert "COURSE_FAST=0" in report.text() and str(tmp_path) not in report.text()


def test_missing_test_data_is_told_to_the_instructor_once_with_the_fix(monkeypatch, tmp_path):
    save_checkpoint(ref.VisionTransformer(**TINY), tmp_path / ckpt.CHECKPOINT_NAME, **TINY)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "nowhere"))
    told: list[str] = []
    resources = eval_data.prepare_resources({eval_data.RESOURCE}, notify=told.append)
    assert len(told) == 1 and "set COURSE_DATA" in told[0] and "--eval-data" in told[0]
    report = grade_checkpoint(tmp_path, resources=resources)
    assert report.earned == 0
    assert all("your instructor has been told" in o.message for o in report.outcomes), report.text()
    assert all(o.kind is Kind.GRADER_ERROR for o in report.outcomes)
    assert "COURSE_DATA" not in report.text() and str(tmp_path) not in report.text()


def test_unreadable_checkpoint_gives_a_message(tmp_path):
    (tmp_path / ckpt.CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    report = grade_checkpoint(tmp_path)
    assert report.earned == 0
    assert "vit_checkpoint.pt could not be read" in report.text()


def test_checkpoint_of_another_model_gives_a_message(tmp_path):
    save_checkpoint(nn.Linear(3, 10), tmp_path / ckpt.CHECKPOINT_NAME, in_features=3, out_features=10)
    report = grade_checkpoint(tmp_path)
    assert report.earned == 0
    assert "holds a Linear, not a VisionTransformer" in report.text()


@needs_data
def test_class_changed_since_training_gives_a_message(grading_env, submission):
    def VisionTransformer(**kwargs):  # the student's class now builds a wider model than the saved one
        return ref.VisionTransformer(**{**kwargs, "embed_dim": 48})

    report = grade_checkpoint(submission, {"VisionTransformer": VisionTransformer})
    assert report.earned == 0
    assert "could not run the weights saved in vit_checkpoint.pt" in report.text()
    assert "train and save the checkpoint again" in report.text()


# ---------------------------------------------------------------------------------------- the schema
class MemorisingViT(ref.VisionTransformer):
    """An untrained ViT that answers from a table of test-image fingerprints smuggled in as an argument."""

    def __init__(self, lookup=None, **kwargs):
        super().__init__(**kwargs)
        self.lookup = lookup or {}

    def forward(self, x):
        scores = torch.zeros(len(x), 10)
        for i, image in enumerate(x):
            scores[i, self.lookup.get(str(round(float(image.sum()), 2)), 0)] = 1.0
        return scores


def test_arguments_outside_the_schema_are_refused(tmp_path):
    model = MemorisingViT(lookup={"1.0": 3}, **TINY)
    save_checkpoint(model, tmp_path / ckpt.CHECKPOINT_NAME, lookup={"1.0": 3}, **TINY)
    torch.save(
        {**torch.load(tmp_path / ckpt.CHECKPOINT_NAME), "class_name": "VisionTransformer"},
        tmp_path / ckpt.CHECKPOINT_NAME,
    )
    report = grade_checkpoint(tmp_path, {"VisionTransformer": MemorisingViT})
    assert report.earned == 0 and "which are not arguments of VisionTransformer" in report.text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"patch_size": 3}, "allowed: 2, 4, 8, 16"),
        ({"embed_dim": 100_000}, "allowed: 8 to 512"),
        ({"pool": "max"}, "allowed: 'mean', 'cls'"),
        ({"dropout": "0.1"}, "is a str; expected float"),
        ({"num_heads": 3}, "not divisible by num_heads"),
        (
            {"patch_size": 2, "embed_dim": 512, "num_layers": 12, "dim_feedforward": 2048},
            "the grader evaluates models up to",
        ),
    ],
)
def test_the_constructor_arguments_follow_the_documented_ranges(change, message):
    with pytest.raises(ckpt.CheckpointUnavailable, match=message):
        ckpt.check_init_kwargs({**TINY, **change})


def test_the_tensors_must_be_the_models_own(tmp_path):
    model = ref.VisionTransformer(**TINY)
    state = model.state_dict()
    with pytest.raises(ckpt.CheckpointUnavailable, match="unexpected"):
        ckpt.check_state_dict({**state, "lookup": torch.zeros(10_000)}, TINY, 16)
    with pytest.raises(ckpt.CheckpointUnavailable, match="missing"):
        ckpt.check_state_dict({k: v for k, v in state.items() if k != "head.bias"}, TINY, 16)
    long_table = {**state, "positional_encoding.pe": torch.ones(1, 200, TINY["embed_dim"])}
    clean = ckpt.check_state_dict(long_table, TINY, 16)
    assert clean["positional_encoding.pe"][:, :16].eq(1).all() and clean["positional_encoding.pe"][:, 16:].eq(0).all()


def test_evaluation_data_comes_from_the_run_and_is_hash_checked(tmp_path):
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    held_out = eval_data.EvalSet.of(images, torch.arange(20) % 10, "a held-out set")
    save_checkpoint(ref.VisionTransformer(**TINY), tmp_path / ckpt.CHECKPOINT_NAME, **TINY)
    evaluation = ckpt.evaluate_submission(InProcessStudent(namespace()), tmp_path, {eval_data.RESOURCE: held_out})
    assert evaluation.total == 20 and "a held-out set" in evaluation.summary()
    held_out.images[0, 0, 0, 0] += 1
    with pytest.raises(eval_data.EvaluationDataUnavailable, match="changed"):
        held_out.verified()


def test_a_private_held_out_set_is_read_without_pickle(tmp_path):
    import numpy as np

    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "held_out.npz", images=images, labels=np.arange(5))
    data = eval_data.from_npz(tmp_path / "held_out.npz")
    assert data.images.shape == (5, 3, 32, 32) and data.labels.tolist() == [0, 1, 2, 3, 4]
    np.savez(tmp_path / "pickled.npz", images=np.array([object()], dtype=object), labels=np.arange(1))
    with pytest.raises(eval_data.EvaluationDataUnavailable):
        eval_data.from_npz(tmp_path / "pickled.npz")


def without_course_imports(source: str) -> str:
    """``source`` without its imports from ``autograde`` (the cells before it define those names, as in a
    student's notebook)."""
    import ast

    lines = source.splitlines(keepends=True)
    for node in reversed(ast.parse(source).body):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autograde"):
            del lines[node.lineno - 1 : node.end_lineno]
    return "".join(lines)


@pytest.mark.slow
def test_the_largest_documented_model_is_evaluated_within_the_sandboxs_limits(tmp_path):
    """A legitimate bigger ViT (patches of 2, E=192, 8 layers) runs under the default memory and time limits."""
    from autograde import settings
    from autograde.graded_source import Chunk, GradedSource
    from autograde.isolation.sandbox import Zygote
    from autograde.isolation.worker_student import WorkerStudent
    from autograde.pipeline import grader_paths

    big = dict(img_size=32, patch_size=2, embed_dim=192, num_layers=8, num_heads=6, dim_feedforward=384, dropout=0.0)
    save_checkpoint(ref.VisionTransformer(**big), tmp_path / ckpt.CHECKPOINT_NAME, **big)
    checkpoint = ckpt.read_checkpoint(tmp_path / ckpt.CHECKPOINT_NAME)
    step = ckpt.batch_size(checkpoint)
    images = torch.randint(0, 256, (step + 3, 3, 32, 32), dtype=torch.uint8)
    data = eval_data.EvalSet.of(images, torch.arange(step + 3) % 10, "random images")
    cells = [
        without_course_imports(REPO.joinpath("autograde/assignments", folder, "reference.py").read_text())
        for folder in ("multi_head_attention", "positional_encoding", "vision_transformer")
    ]
    zygote = Zygote(settings.DEFAULTS, grader_paths())
    try:
        import ast

        chunks = [
            Chunk(f"cell {i}", f"<cell {i}>", code, tuple(range(len(ast.parse(code).body))))
            for i, code in enumerate(cells, start=1)
        ]
        student = WorkerStudent(zygote, GradedSource(chunks), settings.DEFAULTS.budget())
        evaluation = ckpt.evaluate_checkpoint(student, checkpoint, data)
        student.close()
    finally:
        zygote.close()
    assert evaluation.total == step + 3


# ------------------------------------------------------------------------ what the student cannot reach
def test_a_linked_checkpoint_is_not_followed(tmp_path, submission):
    (tmp_path / ckpt.CHECKPOINT_NAME).symlink_to(submission / ckpt.CHECKPOINT_NAME)  # a classmate's, say
    with pytest.raises(ckpt.CheckpointUnavailable, match="symbolic link"):
        ckpt.read_checkpoint(tmp_path / ckpt.CHECKPOINT_NAME)


def test_a_checkpoint_that_would_inflate_is_refused_before_it_is_loaded(tmp_path):
    """1.5 MB of deflated zeros would inflate to 200 GiB within the file limit: only stored entries are read."""
    import zipfile

    path = tmp_path / ckpt.CHECKPOINT_NAME
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * (64 << 20))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ckpt.CheckpointUnavailable, match="compressed"):
        ckpt.read_checkpoint(path)


class LookUp(ref.VisionTransformer):
    """An untrained model whose forward recognises the evaluation images by a fingerprint and answers from a
    table (about 170 KiB for 10,000 images would fit in a notebook): the accuracy must not come from it."""

    TABLE: dict = {}

    def forward(self, x):
        keys = [round(float(image.sum()), 3) for image in x]
        if x.shape[-1] == 32 and all(k in self.TABLE for k in keys):
            return torch.nn.functional.one_hot(torch.tensor([self.TABLE[k] for k in keys]), 10).float() * 10
        return super().forward(x)


class Different(ref.VisionTransformer):
    """A model that is not the reference's (no final norm): evaluated as itself, in the sandbox, and marked."""

    def forward(self, x):
        self.norm = torch.nn.Identity()
        return super().forward(x)


@needs_data
def test_the_accuracy_that_decides_the_points_comes_from_the_trusted_side(grading_env, tmp_path):
    data = eval_data.from_cifar10(SUBSET)
    LookUp.TABLE = {
        round(float(image.sum()), 3): int(label)
        for image, label in zip(ckpt.normalize(data.images), data.labels, strict=True)
    }
    save_checkpoint(ref.VisionTransformer(**TINY), tmp_path / ckpt.CHECKPOINT_NAME, **TINY)  # untrained
    cheating = {**namespace(), "VisionTransformer": LookUp}
    assert (
        InProcessStudent(cheating)
        .call(  # the table does answer the evaluation images
            Call("VisionTransformer", kwargs=TINY, inputs=(ckpt.normalize(data.images[:8]),))
        )
        .output.argmax(1)
        .tolist()
        == data.labels[:8].tolist()
    )
    report = grade_checkpoint(tmp_path, cheating)
    assert report.earned == 0, report.text()  # evaluated by the reference: an untrained model's accuracy
    evaluation = ckpt.evaluate_submission(InProcessStudent(cheating), tmp_path, run_resources())
    assert evaluation.by_reference and evaluation.accuracy < 20


@needs_data
def test_a_model_unlike_the_reference_is_evaluated_as_itself_and_marked_for_review(grading_env, submission):
    student = InProcessStudent({**namespace(), "VisionTransformer": Different})
    context = Context(student, submission_dir=submission, resources=run_resources())
    run_part(ASSIGNMENT, "checkpoint", context)
    evaluation = ckpt.evaluate_submission(student, submission, run_resources())
    assert not evaluation.by_reference
    assert [r.reason for r in context.review] == [ckpt.REVIEW_OWN_MODEL]
    honest = Context(InProcessStudent(namespace()), submission_dir=submission, resources=run_resources())
    run_part(ASSIGNMENT, "checkpoint", honest)
    assert honest.review == []
