"""Grade the model a student trained in notebook 4 from the checkpoint submitted with the notebook.

The grader reads ``vit_checkpoint.pt`` (written by ``course_utils.save_checkpoint``) and the CIFAR-10 test
split itself; the student's code only rebuilds ``VisionTransformer(**init_kwargs)``, loads the saved
weights and runs forward passes, through the :class:`~autograde.student.Student` protocol. So the check runs
in nbgrader's kernel and against the isolated worker grader alike, and a checkpoint only scores with the
student's own class. Points follow the measured accuracy in tiers (``TARGET_ACCURACY``, ``BONUS_ACCURACY``);
a missing checkpoint or missing test data gives a message that says what to do, never a crash.
"""

from __future__ import annotations

import os
import pickle
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from autograde.student import Call, Student, StudentError
from course_utils.cifar import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DataUnavailableError,
    load_cifar10,
    resolve_data_root,
)

CHECKPOINT_NAME = "vit_checkpoint.pt"
MODEL_CLASS = "VisionTransformer"
# The submission folder; nbgrader runs the notebook there, so the working directory is the default.
SUBMISSION_DIR_VARIABLE = "AUTOGRADE_SUBMISSION_DIR"
TARGET_ACCURACY = 45.0  # percent on the CIFAR-10 test split (the seed's 2-epoch target)
BONUS_ACCURACY = 65.0
BATCH_SIZE = 500


class CheckpointUnavailable(Exception):
    """The checkpoint or the test data cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class CheckpointEvaluation:
    """What the checkpoint scored: ``correct`` of ``total`` test images of ``data_root``."""

    path: Path
    data_root: Path
    init_kwargs: dict
    correct: int
    total: int
    seconds: float

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.total

    def summary(self) -> str:
        kwargs = ", ".join(f"{k}={v!r}" for k, v in self.init_kwargs.items())
        return (
            f"{self.path.name} ({MODEL_CLASS}({kwargs})) classifies {self.correct:,} of "
            f"{self.total:,} CIFAR-10 test images correctly: {self.accuracy:.2f}% ({self.seconds:.1f} s)"
        )


def submission_dir() -> Path:
    """``$AUTOGRADE_SUBMISSION_DIR`` when set, else the working directory (nbgrader runs notebooks there)."""
    return Path(os.environ.get(SUBMISSION_DIR_VARIABLE, "") or ".")


def read_checkpoint(path: Path) -> dict:
    """The ``save_checkpoint`` dictionary in ``path`` (tensors on the CPU), checked for its keys."""
    if not path.is_file():
        raise CheckpointUnavailable(
            f"no checkpoint: {path.name} is not in the submission folder ({path.parent.resolve()}). "
            f"Train your model with COURSE_FAST=0, let the notebook save {path.name} next to it, and "
            "submit that file together with the notebook."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointUnavailable(
            f"{path.name} could not be read ({type(exc).__name__}: {exc}). Save it again with "
            f"save_checkpoint(model, {path.name!r}, **config) and submit the new file."
        ) from None
    keys = {"state_dict", "init_kwargs", "class_name"}
    if not isinstance(checkpoint, dict) or not keys <= checkpoint.keys():
        raise CheckpointUnavailable(
            f"{path.name} was not written by course_utils.save_checkpoint (it lacks {sorted(keys)}). "
            f"Save it with save_checkpoint(model, {path.name!r}, **config)."
        )
    if checkpoint["class_name"] != MODEL_CLASS:
        raise CheckpointUnavailable(
            f"{path.name} holds a {checkpoint['class_name']}, not a {MODEL_CLASS}: save your trained "
            f"{MODEL_CLASS} there."
        )
    return checkpoint


def load_test_split(root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor, Path]:
    """The CIFAR-10 test images uint8 (N, 3, 32, 32), labels (N,) and the folder they came from.

    ``root`` defaults to ``$COURSE_DATA`` (the instructors' copy), else ``./data``.
    """
    folder = resolve_data_root(root)
    try:
        data = load_cifar10(folder)
    except DataUnavailableError as exc:
        raise CheckpointUnavailable(
            "the CIFAR-10 test split is not available where the grader runs, so the checkpoint could not be "
            "evaluated (this is not your mistake; tell your instructor). Instructors: set COURSE_DATA to "
            f"the folder that holds cifar-10-batches-py.\n{exc}"
        ) from None
    return data.test_images, data.test_labels, folder


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 normalised with the course's CIFAR-10 mean and std, as the loaders do."""
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def evaluate_checkpoint(
    student: Student,
    path: Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    data_root: Path,
    batch_size: int = BATCH_SIZE,
) -> CheckpointEvaluation:
    """Accuracy of the student's ``VisionTransformer(**init_kwargs)`` with the weights saved in ``path``.

    images uint8 (N, 3, 32, 32), labels (N,); the model runs in eval mode, ``batch_size`` images per call.
    """
    checkpoint = read_checkpoint(path)
    init_kwargs = dict(checkpoint["init_kwargs"])
    start = time.perf_counter()
    correct = 0
    for first in range(0, len(labels), batch_size):
        x = normalize(images[first : first + batch_size])  # (B, 3, 32, 32)
        y = labels[first : first + batch_size]  # (B,)
        call = Call(MODEL_CLASS, kwargs=init_kwargs, state_dict=checkpoint["state_dict"], inputs=(x,))
        try:
            scores = student.call(call).output
        except StudentError as exc:
            raise StudentError(
                f"{exc}\nYour {MODEL_CLASS} could not run the weights saved in {path.name}: if the class "
                "changed after training, train and save the checkpoint again."
            ) from None
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (len(y), 10):
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise CheckpointUnavailable(
                f"the model loaded from {path.name} returned {got} for {len(y)} images; expected scores of "
                f"shape ({len(y)}, 10)."
            )
        correct += int((scores.argmax(dim=1) == y).sum())
    return CheckpointEvaluation(
        path, data_root, init_kwargs, correct, len(labels), time.perf_counter() - start
    )


def evaluate_submission(student: Student, folder: Path | None = None) -> CheckpointEvaluation:
    """Evaluate ``CHECKPOINT_NAME`` in ``folder`` (default ``submission_dir()``) on the CIFAR-10 test split.

    A missing checkpoint is reported before missing test data.
    """
    path = (folder if folder is not None else submission_dir()) / CHECKPOINT_NAME
    read_checkpoint(path)
    images, labels, root = load_test_split()
    return evaluate_checkpoint(student, path, images, labels, root)


def check_tier(evaluation: CheckpointEvaluation, threshold: float) -> None:
    """Raise AssertionError (with the measured accuracy) unless the checkpoint reaches ``threshold``%."""
    if evaluation.accuracy < threshold:
        raise AssertionError(f"{evaluation.summary()}; this tier needs {threshold:g}%.")
