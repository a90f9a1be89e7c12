"""Grade the model a student trained in notebook 4 from the checkpoint handed in with the notebook.

The trusted side reads ``vit_checkpoint.pt`` (written by ``course_utils.save_checkpoint``): a regular file, not
followed if it is a link, at most the registry's size, and (a ``torch.save`` zip) only stored entries, so that
nothing inflates; with ``weights_only=True``. It checks it against a schema before anything runs: the constructor
arguments must be the documented ones, with values in their documented ranges (:data:`SCHEMA`), and the tensors
must be exactly the model's own ``state_dict`` (the reference's keys and shapes for those arguments, nothing else).

The accuracy that decides the points is computed where the student cannot reach it. The student's
``VisionTransformer(**init_kwargs)`` with the checkpoint's weights is run once on random images and compared with
the reference model with the same weights; when they agree, the reference model evaluates the checkpoint on the
trusted side and the student's code plays no part in the accuracy. When they do not (the student's model is not
the reference's), the student's model evaluates it in the sandbox, as the model the student trained, and the
submission is marked for review. The evaluation images were prepared by the trusted side before any student code
ran (:mod:`autograde.eval_data`). Points follow the measured accuracy in tiers. A missing or unusable checkpoint
gives a message that says what to do, never a crash.
"""

from __future__ import annotations

import io
import os
import pickle
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from autograde import course, eval_data
from autograde.assignments.vision_transformer import reference as ref
from autograde.checks import call_text
from autograde.submissions import NotebookError, read_bytes
from autograde.worker.protocol import Call, Student
from autograde.worker.results import GradingFailure, Kind, StudentError
from course_utils.cifar import CIFAR10_MEAN, CIFAR10_STD

CHECKPOINT = next(f for f in course.of_package(__package__).extra_files if f.part == "checkpoint")
CHECKPOINT_NAME = CHECKPOINT.name
MODEL_CLASS = "VisionTransformer"
TARGET_ACCURACY = 45.0  # percent of the evaluation images (the 2-epoch target)
SECOND_TIER_ACCURACY = 65.0
MAX_BATCH = 500
BATCH_MEMORY = 512 * 2**20  # bytes of activations one evaluation call may need
BATCH_MACS = 4e10  # multiply-adds per evaluation call (a few seconds on one CPU core)


REVIEW_OWN_MODEL = (
    "the checkpoint's accuracy was measured by the submission's own VisionTransformer, in the sandbox, because it "
    "does not compute what the reference computes with these weights; check the accuracy by hand"
)


class CheckpointUnavailable(Exception):
    """The checkpoint cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Allowed:
    """A documented constructor argument: its type and its allowed values (a set, or an inclusive range)."""

    kind: type
    values: tuple = ()
    low: float | None = None
    high: float | None = None

    def check(self, name: str, value: Any) -> None:
        if type(value) is not self.kind and not (self.kind is float and type(value) is int):
            raise CheckpointUnavailable(
                f"init_kwargs[{name!r}] is a {type(value).__name__}; expected {self.kind.__name__}"
            )
        if self.values and value not in self.values:
            raise CheckpointUnavailable(
                f"init_kwargs[{name!r}] = {value!r}; allowed: {', '.join(map(repr, self.values))}"
            )
        if self.low is not None and not (self.low <= value <= self.high):
            raise CheckpointUnavailable(f"init_kwargs[{name!r}] = {value!r}; allowed: {self.low:g} to {self.high:g}")


# The arguments a checkpoint may pass to VisionTransformer, as notebook 4 documents them.
SCHEMA: dict[str, Allowed] = {
    "img_size": Allowed(int, (32,)),
    "patch_size": Allowed(int, (2, 4, 8, 16)),
    "in_channels": Allowed(int, (3,)),
    "embed_dim": Allowed(int, low=8, high=512),
    "num_layers": Allowed(int, low=1, high=12),
    "num_heads": Allowed(int, low=1, high=16),
    "dim_feedforward": Allowed(int, low=8, high=2048),
    "num_classes": Allowed(int, (10,)),
    "dropout": Allowed(float, low=0.0, high=0.9),
    "pool": Allowed(str, ref.POOLS),
    "pos_encoding": Allowed(str, ref.POSITIONAL_ENCODINGS),
}
MAX_MACS_PER_IMAGE = 1.5e9


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    init_kwargs: dict
    state_dict: dict[str, torch.Tensor]
    tokens: int
    macs_per_image: float


@dataclass(frozen=True)
class CheckpointEvaluation:
    """What the checkpoint scored: ``correct`` of ``total`` images of ``source``; ``by_reference``: evaluated by the
    reference model on the trusted side (else by the student's own model, in the sandbox)."""

    path: Path
    source: str
    init_kwargs: dict
    correct: int
    total: int
    seconds: float
    by_reference: bool = False

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.total

    def summary(self) -> str:
        return (
            f"{self.path.name} ({call_text(MODEL_CLASS, **self.init_kwargs)}) classifies {self.correct:,} of "
            f"{self.total:,} images of {self.source} correctly: {self.accuracy:.2f}% ({self.seconds:.1f} s)"
        )


def model_cost(kwargs: dict) -> tuple[int, float]:
    """(tokens, multiply-adds per image) of ``VisionTransformer(**kwargs)``, counted from its shapes."""
    full = {**_defaults(), **kwargs}
    p, E, F_, layers = full["patch_size"], full["embed_dim"], full["dim_feedforward"], full["num_layers"]
    patches = (full["img_size"] // p) ** 2
    tokens = patches + (1 if full["pool"] == "cls" else 0)
    per_layer = 4 * tokens * E * E + 2 * tokens * tokens * E + 2 * tokens * E * F_
    return tokens, patches * 3 * p * p * E + layers * per_layer + E * full["num_classes"]


def _defaults() -> dict:
    import inspect

    return {
        name: parameter.default
        for name, parameter in inspect.signature(ref.VisionTransformer).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def check_init_kwargs(kwargs: Any) -> dict:
    """``kwargs`` if it follows :data:`SCHEMA` (documented names, types and ranges), else CheckpointUnavailable."""
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CheckpointUnavailable("init_kwargs must be a dict of the constructor's arguments")
    unknown = sorted(set(kwargs) - set(SCHEMA))
    if unknown:
        raise CheckpointUnavailable(
            f"init_kwargs holds {unknown}, which are not arguments of {MODEL_CLASS} (allowed: {', '.join(SCHEMA)})"
        )
    for name, value in kwargs.items():
        SCHEMA[name].check(name, value)
    full = {**_defaults(), **kwargs}
    if full["embed_dim"] % full["num_heads"]:
        raise CheckpointUnavailable(f"embed_dim={full['embed_dim']} is not divisible by num_heads={full['num_heads']}")
    _, macs = model_cost(kwargs)
    if macs > MAX_MACS_PER_IMAGE:
        raise CheckpointUnavailable(
            f"this model costs {macs / 1e9:.2f} G multiply-adds per image; the grader evaluates models up to "
            f"{MAX_MACS_PER_IMAGE / 1e9:g} G (use fewer layers, a smaller embed_dim or a larger patch_size)"
        )
    return dict(kwargs)


def check_state_dict(state_dict: Any, kwargs: dict, tokens: int) -> dict[str, torch.Tensor]:
    """The model's own tensors: exactly the reference's keys and shapes for ``kwargs``. Rows of the
    positional table beyond the tokens the model uses are zeroed (nothing may be kept there)."""
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise CheckpointUnavailable("state_dict must map parameter names to tensors")
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in ref.VisionTransformer(**kwargs).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
    wrong = sorted(
        k
        for k in want.keys() & got.keys()
        if got[k] != want[k] and not (k.endswith("positional_encoding.pe") and _longer_table(got[k], want[k]))
    )
    if missing or extra or wrong:
        raise CheckpointUnavailable(
            f"the saved tensors are not those of {call_text(MODEL_CLASS, **kwargs)}: "
            f"missing {missing[:5]}, unexpected {extra[:5]}, wrong shapes {wrong[:5]}. Keep the attribute names of "
            "the docstring and save with save_checkpoint(model, ...)."
        )
    clean = {k: v.detach().clone() for k, v in state_dict.items()}
    for key, value in clean.items():
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise CheckpointUnavailable(f"{key} holds non-finite or non-float values")
        if key.endswith("positional_encoding.pe"):
            value[:, tokens:] = 0
    return clean


def _longer_table(got: tuple, want: tuple) -> bool:
    return len(got) == 3 and got[0] == 1 and got[2] == want[2] and want[1] <= got[1] <= 5000


def _checkpoint_bytes(path: Path) -> bytes:
    """The file's bytes: a regular file (a link is not followed), at most the registry's size, whose archive
    entries (a ``torch.save`` zip) are stored, not compressed, so that loading it inflates nothing."""
    if not os.path.lexists(path):
        raise CheckpointUnavailable(
            f"no checkpoint: {path.name} is not in the submission folder. Train your model with COURSE_FAST=0, "
            f"let the notebook save {path.name} next to it, and submit that file together with the notebook."
        )
    limit = CHECKPOINT.max_mb * 2**20
    try:
        data = read_bytes(path, limit, path.name)
    except (NotebookError, OSError) as exc:
        raise CheckpointUnavailable(
            f"{exc}; submit the checkpoint file itself, at most {CHECKPOINT.max_mb} MiB"
        ) from None
    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            entries = zipfile.ZipFile(io.BytesIO(data)).infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise CheckpointUnavailable(f"{path.name} is not a readable archive ({type(exc).__name__})") from None
        if any(e.compress_type != zipfile.ZIP_STORED for e in entries) or sum(e.file_size for e in entries) > limit:
            raise CheckpointUnavailable(
                f"{path.name} holds compressed data (torch.save never writes any); save it again with "
                f"save_checkpoint(model, {path.name!r}, **config)."
            )
    return data


def read_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint in ``path``, checked against the schema; CheckpointUnavailable says what to fix."""
    data = _checkpoint_bytes(path)
    try:
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointUnavailable(
            f"{path.name} could not be read ({type(exc).__name__}: {str(exc)[:200]}). Save it again with "
            f"save_checkpoint(model, {path.name!r}, **config) and submit the new file."
        ) from None
    keys = {"state_dict", "init_kwargs", "class_name"}
    if not isinstance(saved, dict) or not keys <= saved.keys():
        raise CheckpointUnavailable(
            f"{path.name} was not written by course_utils.save_checkpoint (it lacks {sorted(keys)}). "
            f"Save it with save_checkpoint(model, {path.name!r}, **config)."
        )
    if saved["class_name"] != MODEL_CLASS:
        raise CheckpointUnavailable(
            f"{path.name} holds a {str(saved['class_name'])[:40]}, not a {MODEL_CLASS}: save your trained "
            f"{MODEL_CLASS} there."
        )
    kwargs = check_init_kwargs(saved["init_kwargs"])
    tokens, macs = model_cost(kwargs)
    return Checkpoint(path, kwargs, check_state_dict(saved["state_dict"], kwargs, tokens), tokens, macs)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 normalised with the course's CIFAR-10 mean and std, as the loaders do."""
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def batch_size(checkpoint: Checkpoint) -> int:
    """Images per evaluation call, so that a call fits in memory and takes seconds, whatever the model size."""
    full = {**_defaults(), **checkpoint.init_kwargs}
    T, heads = checkpoint.tokens, full["num_heads"]
    per_image = 4 * (3 * heads * T * T + 6 * T * max(full["embed_dim"], full["dim_feedforward"]))
    return max(1, min(MAX_BATCH, BATCH_MEMORY // per_image, int(BATCH_MACS // checkpoint.macs_per_image)))


def evaluate_checkpoint(student: Student, checkpoint: Checkpoint, data: eval_data.EvalSet) -> CheckpointEvaluation:
    """Accuracy of the student's ``VisionTransformer(**init_kwargs)`` with the checked weights, in eval mode."""
    data = data.verified()
    start = time.perf_counter()
    correct, step = 0, batch_size(checkpoint)
    for first in range(0, len(data.labels), step):
        x = normalize(data.images[first : first + step])  # (B, 3, 32, 32)
        y = data.labels[first : first + step]  # (B,)
        call = Call(MODEL_CLASS, kwargs=checkpoint.init_kwargs, state_dict=checkpoint.state_dict, inputs=(x,))
        try:
            scores = student.call(call).output
        except StudentError as exc:
            raise StudentError(
                f"{exc}\nYour {MODEL_CLASS} could not run the weights saved in {checkpoint.path.name}: if the "
                "class changed after training, train and save the checkpoint again.",
                exc.kind,
                exc.exc_type,
            ) from None
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (len(y), 10):
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise CheckpointUnavailable(
                f"the model loaded from {checkpoint.path.name} returned {got} for {len(y)} images; expected "
                f"scores of shape ({len(y)}, 10)."
            )
        correct += int((scores.argmax(dim=1) == y).sum())
    return CheckpointEvaluation(
        checkpoint.path, data.source, checkpoint.init_kwargs, correct, len(data.labels), time.perf_counter() - start
    )


def reference_model(checkpoint: Checkpoint, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The reference ``VisionTransformer`` with the checkpoint's weights, in eval mode (a positional table longer
    than the model's tokens is cut to them: the rows beyond are zero and never read)."""
    model = ref.VisionTransformer(**checkpoint.init_kwargs).to(dtype).eval()
    own = model.state_dict()
    state = {
        k: v[:, : own[k].shape[1]] if k.endswith("positional_encoding.pe") else v
        for k, v in checkpoint.state_dict.items()
    }
    model.load_state_dict(state, strict=True)
    return model


def computes_like_the_reference(student: Student, checkpoint: Checkpoint) -> bool:
    """Whether the student's model with the checkpoint's weights computes what the reference computes, on random
    images (float64): then the reference may stand in for it."""
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(404), dtype=torch.float64)
    call = Call(MODEL_CLASS, kwargs=checkpoint.init_kwargs, state_dict=checkpoint.state_dict, inputs=(x,))
    try:
        got = student.call(replace(call, dtype=torch.float64)).output
    except StudentError:
        return False
    with torch.no_grad():
        want = reference_model(checkpoint, torch.float64)(x)
    return isinstance(got, torch.Tensor) and got.shape == want.shape and torch.allclose(got, want, atol=1e-6, rtol=1e-5)


def evaluate_with_the_reference(checkpoint: Checkpoint, data: eval_data.EvalSet) -> CheckpointEvaluation:
    """Accuracy of the reference model with the checkpoint's weights, computed here, on the trusted side."""
    data = data.verified()
    start = time.perf_counter()
    model, correct, step = reference_model(checkpoint), 0, batch_size(checkpoint)
    with torch.no_grad():
        for first in range(0, len(data.labels), step):
            scores = model(normalize(data.images[first : first + step]))  # (B, 10)
            correct += int((scores.argmax(dim=1) == data.labels[first : first + step]).sum())
    seconds = time.perf_counter() - start
    return CheckpointEvaluation(
        checkpoint.path, data.source, checkpoint.init_kwargs, correct, len(data.labels), seconds, by_reference=True
    )


def evaluate_submission(student: Student, folder: Path | None, resources: dict) -> CheckpointEvaluation:
    """Evaluate the checkpoint in ``folder`` on the run's evaluation set (prepared before any student code ran):
    by the reference model on the trusted side when the student's model computes what it computes, else by the
    student's model in the sandbox. A missing checkpoint is reported before missing evaluation data."""
    checkpoint = read_checkpoint((folder or Path.cwd()) / CHECKPOINT_NAME)
    data = resources.get(eval_data.RESOURCE)
    if not isinstance(data, eval_data.EvalSet):
        reason = data.student_message if isinstance(data, eval_data.Unavailable) else "no evaluation images"
        raise eval_data.EvaluationDataUnavailable(reason)
    if computes_like_the_reference(student, checkpoint):
        return evaluate_with_the_reference(checkpoint, data)
    return evaluate_checkpoint(student, checkpoint, data)


def graded_evaluation(student: Student, folder: Path | None, resources: dict) -> CheckpointEvaluation:
    """:func:`evaluate_submission`, its failures told apart for the grade: a missing or unusable checkpoint is the
    student's (MISSING_FILE), missing evaluation data is the grader's (GRADER_ERROR)."""
    try:
        return evaluate_submission(student, folder, resources)
    except CheckpointUnavailable as exc:
        raise GradingFailure(str(exc), Kind.MISSING_FILE) from None
    except eval_data.EvaluationDataUnavailable as exc:
        raise GradingFailure(str(exc), Kind.GRADER_ERROR) from None


def check_tier(evaluation: CheckpointEvaluation, threshold: float) -> None:
    """Raise AssertionError (with the measured accuracy) unless the checkpoint reaches ``threshold``%."""
    if evaluation.accuracy < threshold:
        raise AssertionError(f"{evaluation.summary()}; this tier needs {threshold:g}%.")
