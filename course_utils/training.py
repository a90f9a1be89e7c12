"""Training and evaluation loops: the seeds' ``check_accuracy`` and ``train``, with checks for students."""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import resume
from .runtime import FAST_CAPS, is_fast_mode


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with neither."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` count as the same device."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _prepare_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    memory_format: torch.memory_format = torch.preserve_format,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check that ``x`` is ``(N, C, H, W)``; move ``x`` (float32) and ``y`` (int64) to ``device``."""
    if x.dim() != 4:
        raise ValueError(
            f"Expected a batch of images of shape (N, C, H, W), got {tuple(x.shape)}. Keep images 4-D in "
            "the loader and flatten inside the model (Flatten()); add a channel dimension with "
            "x.unsqueeze(1) for single-channel images."
        )
    x = x.to(device, dtype=torch.float32, non_blocking=True, memory_format=memory_format)
    y = y.to(device, dtype=torch.long, non_blocking=True)
    return x, y


def _count_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Number of rows of ``model(x)`` whose arg-max equals ``y``."""
    return int((model(x).argmax(dim=1) == y).sum())


def _split_name(loader: Any) -> str:
    train = getattr(getattr(loader, "dataset", None), "train", None)
    return {True: " on validation set", False: " on test set"}.get(train, "")


def check_accuracy(
    loader: Iterable, model: nn.Module, *, device: torch.device | str | None = None, verbose: bool = True
) -> float:
    """Accuracy of ``model`` on ``loader`` in percent, printed like the seeds' ``check_accuracy``.

    Batches ``(x, y)`` with ``x`` of shape ``(N, C, H, W)`` move to ``device`` (default: the model's).
    The model runs in eval mode and gets its previous mode back afterwards.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    if verbose:
        print(f"Checking accuracy{_split_name(loader)}")
    was_training = model.training
    model.eval()
    num_correct = num_samples = 0
    with torch.no_grad():
        for x, y in loader:
            x, y = _prepare_batch(x, y, device)
            num_correct += _count_correct(model, x, y)
            num_samples += y.shape[0]
    model.train(was_training)
    if num_samples == 0:
        raise ValueError("check_accuracy got an empty loader; check the data set and its batch size.")
    acc = 100.0 * num_correct / num_samples
    if verbose:
        print(f"Got {num_correct} / {num_samples} correct ({acc:.2f})")
    return acc


@dataclass
class History:
    """What ``train`` measured.

    ``loss[i]`` and ``lr[i]`` belong to optimizer step ``i + 1``. ``val_acc`` and ``train_acc`` hold
    ``(steps done, percent)`` per check; ``train_acc`` is the accuracy on the training batches seen since
    the previous check (in train mode, so with dropout and augmentation on).
    """

    loss: list[float] = field(default_factory=list)
    val_acc: list[tuple[int, float]] = field(default_factory=list)
    train_acc: list[tuple[int, float]] = field(default_factory=list)
    best_val_acc: float = math.nan
    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0
    lr: list[float] = field(default_factory=list)


def _fast_caps(epochs: int, max_iters: int | None, verbose: bool) -> tuple[int, int | None]:
    """Cap epochs and iterations per epoch in fast mode, saying so."""
    if not is_fast_mode():
        return epochs, max_iters
    epochs = min(epochs, FAST_CAPS.epochs)
    max_iters = min(max_iters or FAST_CAPS.iterations_per_epoch, FAST_CAPS.iterations_per_epoch)
    if verbose:
        print(
            f"Fast mode: training capped at {epochs} epoch(s) of at most {max_iters} iterations "
            "(set COURSE_FAST=0 for the full run)."
        )
    return epochs, max_iters


def _budget(batches: int, epochs: float, max_iters_per_epoch: int | None, verbose: bool = False) -> tuple[int, int]:
    """``(whole epochs, iterations per epoch)`` of a run of ``epochs`` on a loader of ``batches`` batches.

    ``epochs`` below 1 is that share of one epoch's batches (at least one); above 1 it must be whole.
    """
    if epochs <= 0 or (epochs > 1 and not float(epochs).is_integer()):
        raise ValueError(f"epochs={epochs}: use a fraction of one epoch (e.g. 0.1) or a whole number of epochs.")
    if epochs < 1:
        fraction = max(1, round(epochs * batches))
        max_iters_per_epoch = fraction if max_iters_per_epoch is None else min(fraction, max_iters_per_epoch)
    whole, max_iters = _fast_caps(max(int(epochs), 1), max_iters_per_epoch, verbose)
    return whole, batches if max_iters is None else min(batches, max_iters)


def planned_schedule(batches: int, epochs: float, max_iters_per_epoch: int | None = None) -> int:
    """The number of optimizer steps ``train`` will take on a loader of ``batches`` batches (fast mode
    included), so that a learning-rate schedule can span exactly the run."""
    whole, iters = _budget(batches, epochs, max_iters_per_epoch)
    return whole * iters


def _training_device(model: nn.Module, loader: Iterable, device: torch.device | str | None) -> torch.device:
    """``device`` if given, else the device the loader declares (``loader.device``), else the model's.

    A model on the CPU simply moves there, as in the seeds; a model that was put on another device
    than the loader's is an error, as is an explicit ``device`` the loader's batches are not on.
    """
    declared = getattr(loader, "device", None)
    declared = None if declared is None else torch.device(declared)
    here = _model_device(model)
    target = torch.device(device) if device is not None else declared or here
    if declared is not None and not _same_device(declared, target):
        raise ValueError(
            f"train(device={target}) but loader_train yields batches on {declared}. Move the data too: "
            f"loader_train.to('{target}'), or build the loaders with get_loaders(device='{target}')."
        )
    if device is None and here.type != "cpu" and not _same_device(here, target):
        raise ValueError(
            f"The model is on {here} but loader_train yields batches on {target}. Put both on one "
            f"device: model.to('{target}'), or loader_train.to('{here}') (and the other loaders)."
        )
    return target


def _update(
    model: nn.Module,
    optimizers: Sequence[torch.optim.Optimizer],
    scaler: torch.amp.GradScaler,
    loss: torch.Tensor,
    clip_grad_norm: float | None,
) -> None:
    """One step of every optimizer on ``loss``: backward (scaled for fp16), optional clipping, steps."""
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_grad_norm is not None:
        for optimizer in optimizers:
            scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    for optimizer in optimizers:
        scaler.step(optimizer)
    scaler.update()


def autocast_dtype(device: torch.device | str) -> torch.dtype:
    """The mixed-precision type for ``device``: bf16 on GPUs of compute capability 8.0 or newer (native
    bf16), fp16 (trained with a GradScaler) below, such as Colab's T4, where bf16 is only emulated and slow."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return torch.bfloat16
    return torch.float16


def _as_tuple(value: Any) -> tuple:
    """``value`` itself as a 1-tuple, a list or tuple of values as a tuple, ``None`` as ``()``."""
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
    loader_train: Iterable,
    loader_val: Iterable | None = None,
    *,
    epochs: float = 1,
    print_every: int | None = 100,
    device: torch.device | str | None = None,
    scheduler: Any | Sequence[Any] = None,
    clip_grad_norm: float | None = None,
    label_smoothing: float = 0.0,
    amp: bool = True,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    max_iters_per_epoch: int | None = None,
    verbose: bool = True,
    resume_from: str | os.PathLike | None = None,
    resume_other_budget: bool = True,
) -> History:
    """Train ``model`` with cross-entropy on batches ``(x (N, C, H, W), y (N,))`` of ``loader_train``.

    ``epochs`` below 1 trains on that share of one epoch's batches (e.g. 0.1: a tenth of the steps); above 1 it
    must be a whole number. Every ``print_every`` iterations (never with None) and after the last step, prints
    the loss and checks accuracy on ``loader_val``: the last entry of ``history.val_acc`` measures the final
    weights. ``optimizer`` may be a list (each owning some of the parameters, as Muon and AdamW do together);
    every one steps on every batch, then every ``scheduler`` (one, a list, or ``None``) steps; ``history.lr``
    follows the first optimizer's first group. ``device`` defaults to the one ``loader_train`` declares
    (``.device``), else the model's; the model moves there. On CUDA, ``amp`` trains under autocast
    (``amp_dtype``, default :func:`autocast_dtype`) and ``channels_last`` switches the memory format; on the CPU
    both are no-ops. ``label_smoothing`` goes to the cross-entropy (``F.cross_entropy(..., label_smoothing=...)``).

    With ``resume_from`` (a file path) the whole state of the run is saved there after every epoch, and a re-run
    of the same training continues from the last saved epoch; a finished run restores its final weights without
    training. A state saved with another budget (``epochs``, steps per epoch: e.g. on another device) keeps its
    epochs and goes on to this budget, unless ``resume_other_budget=False``; a state that cannot continue this
    run is kept beside it as ``<name>.previous.pt`` (see ``course_utils.resume``). Fast mode neither reads nor
    writes it.
    """
    device = _training_device(model, loader_train, device)
    epochs, iters = _budget(len(loader_train), epochs, max_iters_per_epoch, verbose)
    optimizers, schedulers = _as_tuple(optimizer), _as_tuple(scheduler)
    if not optimizers:
        raise ValueError("train needs an optimizer, e.g. torch.optim.Adam(model.parameters(), lr=1e-3).")
    if iters == 0:
        raise ValueError("loader_train is empty; check the data set and its batch size.")

    on_cuda = device.type == "cuda"
    use_amp = amp and on_cuda
    amp_dtype = amp_dtype or autocast_dtype(device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    memory_format = torch.channels_last if channels_last and on_cuda else torch.preserve_format
    model.to(device, memory_format=memory_format)

    history = History()
    resume_path = None if resume_from is None or is_fast_mode() else resume_from
    identity = resume.fingerprint(model, optimizers, epochs, iters)
    tally = {"correct": 0, "seen": 0}  # training batches since the last check: saved with the state
    run = resume.Run(model, optimizers, schedulers, scaler, history, loader_train, identity, tally)
    done = 0
    if resume_path is not None:
        done = resume.restore_state(resume_path, run, budget_may_change=resume_other_budget)
    if done and verbose:
        print(f"Resumed from {resume_from}: {done} epoch(s) were already done; this run trains {epochs}.")
    earlier_seconds = history.seconds
    start = time.perf_counter()

    def check(epoch: int, t: int | None = None, loss: float | None = None) -> None:
        if verbose and loss is not None:
            print(f"Epoch {epoch}, Iteration {t}, loss = {loss:.4f}")
        if tally["seen"]:
            history.train_acc.append((history.steps, 100.0 * tally["correct"] / tally["seen"]))
        tally.update(correct=0, seen=0)
        if loader_val is not None:
            history.val_acc.append((history.steps, check_accuracy(loader_val, model, verbose=verbose)))
        if verbose:
            print()

    def final_weights_unchecked() -> bool:
        """True when the last step trained here is unchecked, or the validation lacks the final weights."""
        measured = bool(history.val_acc) and history.val_acc[-1][0] == history.steps
        return tally["seen"] > 0 or (loader_val is not None and history.steps > 0 and not measured)

    def save() -> None:
        if resume_path is not None:
            history.seconds = earlier_seconds + time.perf_counter() - start
            resume.save_state(resume_path, run)

    model.train()
    with tqdm(total=epochs * iters, initial=min(done, epochs) * iters, desc="train", disable=not verbose) as bar:
        for epoch in range(done, epochs):
            for t, (x, y) in enumerate(itertools.islice(loader_train, iters)):
                x, y = _prepare_batch(x, y, device, memory_format)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    scores = model(x)
                    loss = F.cross_entropy(scores, y, label_smoothing=label_smoothing)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise FloatingPointError(
                        f"The loss became {loss_value} at epoch {epoch}, iteration {t}: training diverged. "
                        "Lower the learning rate (try 10x smaller) or pass clip_grad_norm=1.0."
                    )
                _update(model, optimizers, scaler, loss, clip_grad_norm)
                history.lr.append(optimizers[0].param_groups[0]["lr"])
                for schedule in schedulers:
                    schedule.step()
                history.loss.append(loss_value)
                history.steps += 1
                tally["correct"] += int((scores.argmax(dim=1) == y).sum())
                tally["seen"] += y.shape[0]
                bar.update()
                bar.set_postfix(loss=f"{loss_value:.4f}")
                if print_every is not None and t % print_every == 0:
                    check(epoch, t, loss_value)
            history.epochs += 1
            if history.epochs == epochs and final_weights_unchecked():
                check(epoch, t, loss_value)  # the final weights, measured before the state is saved
            save()
        if final_weights_unchecked():  # a restored state whose final weights were never measured
            check(history.epochs - 1)
            save()

    history.seconds = earlier_seconds + time.perf_counter() - start
    history.best_val_acc = max((acc for _, acc in history.val_acc), default=math.nan)
    if verbose and history.val_acc:
        print(f"Best validation accuracy: {history.best_val_acc:.2f}")
    return history


def overfit_batch(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    device: torch.device | str | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> float:
    """Train on one batch ``(x (N, C, H, W), y (N,))`` for ``steps`` steps (Adam unless ``optimizer``);
    return the final accuracy on that batch in percent, measured in eval mode."""
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    x, y = _prepare_batch(*batch, device)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for step in range(steps):
        loss = F.cross_entropy(model(x), y)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(
                f"The loss became {loss.item()} at step {step}: lower the learning rate (try 10x smaller)."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        acc = 100.0 * _count_correct(model, x, y) / y.shape[0]
    model.train()
    return acc


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` unless ``trainable_only=False``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
