"""The images a trained checkpoint is evaluated on, prepared by the trusted side before any student code runs.

Two sources: the CIFAR-10 test split (``$COURSE_DATA``, read with the array-only unpickler of
:mod:`course_utils.cifar`), or an instructor's private held-out set, a ``.npz`` file with ``images`` (uint8,
(N, 3, 32, 32) or (N, 32, 32, 3)) and ``labels`` (integers 0-9), read with ``allow_pickle=False``. Either is
read once into memory, where no worker can reach it, and its SHA-256 is recorded; :meth:`EvalSet.verified`
checks it again before every evaluation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from course_utils.cifar import DataUnavailableError, load_cifar10, resolve_data_root

RESOURCE = "evaluation_set"  # what a grader test declares it needs: @pytest.mark.needs(RESOURCE)


class EvaluationDataUnavailable(Exception):
    """The evaluation images cannot be read; the message tells the instructor why and what to do."""


@dataclass(frozen=True)
class Unavailable:
    """A resource the run could not prepare (the instructor was told why); what the tests that need it say."""

    reason: str

    @property
    def student_message(self) -> str:
        return (
            "the images your checkpoint is evaluated on are not available where the grader runs, so it could not "
            "be evaluated; this is not your mistake, and your instructor has been told"
        )


def _digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class EvalSet:
    """images uint8 (N, 3, 32, 32), labels int64 (N,), where they came from and their SHA-256."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    sha256: str

    @classmethod
    def of(cls, images: torch.Tensor, labels: torch.Tensor, source: str) -> EvalSet:
        images, labels = images.contiguous().clone(), labels.to(torch.int64).contiguous().clone()
        return cls(images, labels, source, _digest(images, labels))

    def verified(self) -> EvalSet:
        """Itself, after checking that not one byte changed since it was read."""
        if _digest(self.images, self.labels) != self.sha256:
            raise EvaluationDataUnavailable("the evaluation images changed since they were read; grading stopped")
        return self

    @property
    def description(self) -> str:
        return f"{len(self.labels):,} images of {self.source}"


def from_cifar10(root: str | os.PathLike | None = None) -> EvalSet:
    """The CIFAR-10 test split of ``root`` (default ``$COURSE_DATA``, else ``./data``)."""
    folder = resolve_data_root(root)
    try:
        data = load_cifar10(folder)
    except DataUnavailableError as exc:
        raise EvaluationDataUnavailable(
            f"the CIFAR-10 test split is not in {Path(folder).resolve()}, so checkpoints cannot be evaluated and score "
            "0 on their part: set COURSE_DATA to the folder that holds cifar-10-batches-py, or pass --eval-data "
            f"FILE.npz (a private held-out set). ({str(exc).splitlines()[0]})"
        ) from None
    return EvalSet.of(data.test_images, data.test_labels, "the CIFAR-10 test split")


def from_npz(path: Path) -> EvalSet:
    """An instructor's held-out set: ``images`` uint8 (N, 3, 32, 32) or (N, 32, 32, 3), ``labels`` 0-9."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = np.asarray(archive["images"]), np.asarray(archive["labels"])
    except (OSError, KeyError, ValueError) as exc:
        raise EvaluationDataUnavailable(
            f"{path} is not a held-out set: an .npz file with arrays 'images' and 'labels' ({exc})"
        ) from None
    if images.ndim == 4 and images.shape[1:] == (32, 32, 3):
        images = images.transpose(0, 3, 1, 2)
    if images.dtype != np.uint8 or images.shape[1:] != (3, 32, 32):
        raise EvaluationDataUnavailable(
            f"{path}: images must be uint8 (N, 3, 32, 32); got {images.dtype} {images.shape}"
        )
    if (
        labels.shape != (len(images),)
        or not np.issubdtype(labels.dtype, np.integer)
        or labels.min() < 0
        or labels.max() > 9
    ):
        raise EvaluationDataUnavailable(f"{path}: labels must be {len(images)} integers from 0 to 9")
    return EvalSet.of(
        torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), f"the held-out set {path.name}"
    )


def prepare(private: Path | None = None) -> EvalSet:
    """The evaluation set of a grading run: ``private`` when given, else the CIFAR-10 test split."""
    return from_npz(private) if private is not None else from_cifar10()


def prepare_resources(
    needs: set[str], private: Path | None = None, notify: Callable[[str], None] = print
) -> dict[str, EvalSet | Unavailable]:
    """What the graded parts declared they need (``@pytest.mark.needs``), prepared before any student code runs.
    A resource that cannot be prepared is :class:`Unavailable`, and ``notify`` tells the instructor once, with the
    fix."""
    resources: dict[str, EvalSet | Unavailable] = {}
    unknown = needs - {RESOURCE}
    if unknown:
        raise ValueError(f"grader tests need resources nobody prepares: {sorted(unknown)}")
    if RESOURCE in needs:
        try:
            resources[RESOURCE] = prepare(private)
        except EvaluationDataUnavailable as exc:
            notify(f"warning: {exc}")
            resources[RESOURCE] = Unavailable(str(exc))
    return resources
