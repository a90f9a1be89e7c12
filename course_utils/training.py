"""Training and evaluation loops: the seeds' ``check_accuracy`` and ``train``, with checks for students."""

from __future__ import annotations

import html
import itertools
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import resume
from .runtime import FAST_CAPS, get_device, is_fast_mode, set_seed


def flatten(x: torch.Tensor) -> torch.Tensor:
    """Collapse all dimensions but the first: ``(N, C, H, W)`` -> ``(N, C*H*W)``, channels_last too."""
    return x.flatten(1)  # (N, C*H*W)


class Flatten(nn.Module):
    """``flatten`` as a module, to stack inside ``nn.Sequential``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return flatten(x)


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


def planned_schedule(batches: int, epochs: int, max_iters_per_epoch: int | None = None) -> int:
    """The number of optimizer steps ``train`` will take on a loader of ``batches`` batches (fast mode
    included), so that a learning-rate schedule can span exactly the run."""
    epochs, max_iters = _fast_caps(epochs, max_iters_per_epoch, verbose=False)
    return epochs * (batches if max_iters is None else min(batches, max_iters))


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
    epochs: int = 1,
    print_every: int = 100,
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
) -> History:
    """Train ``model`` with cross-entropy on batches ``(x (N, C, H, W), y (N,))`` of ``loader_train``.

    Every ``print_every`` iterations (and after the last step) prints the loss and checks accuracy on
    ``loader_val``. ``optimizer`` may be a list (each owning some of the parameters, as Muon and AdamW
    do together); every one steps on every batch, then every ``scheduler`` (one, a list, or ``None``)
    steps; ``history.lr`` follows the first optimizer's first group. ``device`` defaults to the one
    ``loader_train`` declares (``.device``), else the model's; the model moves there. On CUDA, ``amp``
    trains under autocast (``amp_dtype``, default :func:`autocast_dtype`) and ``channels_last`` switches the
    memory format; on the CPU both are no-ops. ``label_smoothing`` goes to the cross-entropy
    (``F.cross_entropy(..., label_smoothing=...)``). With ``resume_from`` (a file path) the whole state of
    the run is saved there after every epoch, and a re-run of the same training continues from the last saved
    epoch (see ``course_utils.resume``); fast mode neither reads nor writes it.
    """
    device = _training_device(model, loader_train, device)
    epochs, max_iters_per_epoch = _fast_caps(epochs, max_iters_per_epoch, verbose)
    optimizers, schedulers = _as_tuple(optimizer), _as_tuple(scheduler)
    if not optimizers:
        raise ValueError("train needs an optimizer, e.g. torch.optim.Adam(model.parameters(), lr=1e-3).")
    iters = len(loader_train) if max_iters_per_epoch is None else min(len(loader_train), max_iters_per_epoch)
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
    run = resume.Run(
        model=model,
        optimizers=optimizers,
        schedulers=schedulers,
        scaler=scaler,
        history=history,
        loader=loader_train,
        identity=resume.fingerprint(model, optimizers, epochs, iters),
    )
    done = resume.restore_state(resume_path, run) if resume_path is not None else 0
    if done and verbose:
        print(f"Resumed from {resume_from}: {done} of {epochs} epochs were already done.")
    earlier_seconds = history.seconds
    start = time.perf_counter()
    correct = seen = 0

    def check(epoch: int, t: int, loss: float) -> None:
        nonlocal correct, seen
        if verbose:
            print(f"Epoch {epoch}, Iteration {t}, loss = {loss:.4f}")
        history.train_acc.append((history.steps, 100.0 * correct / seen))
        correct = seen = 0
        if loader_val is not None:
            history.val_acc.append((history.steps, check_accuracy(loader_val, model, verbose=verbose)))
        if verbose:
            print()

    model.train()
    with tqdm(total=epochs * iters, initial=done * iters, desc="train", disable=not verbose) as bar:
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
                correct += int((scores.argmax(dim=1) == y).sum())
                seen += y.shape[0]
                bar.update()
                bar.set_postfix(loss=f"{loss_value:.4f}")
                if t % print_every == 0:
                    check(epoch, t, loss_value)
            history.epochs += 1
            if resume_path is not None:
                history.seconds = earlier_seconds + time.perf_counter() - start
                resume.save_state(resume_path, run)
        if seen:
            check(history.epochs - 1, t, loss_value)

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


_SEED_TABLE_HEADER = ("rank", "model", "validation accuracy per seed (%)", "mean ± standard error (%)")


def _html_row(tag: str, values: Iterable[object]) -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in values) + "</tr>"


def _mean_and_standard_error(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, s / sqrt(n))`` with ``s`` the sample standard deviation; the error is NaN for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, statistics.stdev(values) / math.sqrt(len(values))


def _format_mean_and_error(mean: float, error: float) -> str:
    """``"61.20 ± 0.35"``, or ``"61.20 (one run)"`` when there is no error estimate."""
    return f"{mean:.2f} (one run)" if math.isnan(error) else f"{mean:.2f} ± {error:.2f}"


@dataclass
class SeedResults:
    """One row per training run: ``dict(model, seed, val_acc, test_acc, seconds)``, accuracies in percent.

    ``test_acc`` is NaN unless ``compare_over_seeds(..., measure_test=True)`` measured it. Summaries and the
    ranking use the validation accuracy only: the test set is not for choosing between models.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, tuple[float, float]]:
        """Validation accuracy per model as ``(mean, standard error of the mean)`` over its runs.

        The standard error is ``s / sqrt(n)``, with ``s`` the sample standard deviation of the ``n`` runs;
        it is NaN for a single run, which gives no estimate of the spread.
        """
        by_model: dict[str, list[float]] = {}
        for row in self.rows:
            by_model.setdefault(row["model"], []).append(row["val_acc"])
        return {name: _mean_and_standard_error(accs) for name, accs in by_model.items()}

    def ranking(self) -> list[str]:
        """The model names, highest mean validation accuracy first (ties keep the order of the runs)."""
        summary = self.summary()
        return sorted(summary, key=lambda name: -summary[name][0])

    def _ranked(self) -> list[tuple[int, str, str, str]]:
        """``(rank, model, per-seed validation accuracies, mean ± standard error)`` rows, best mean first."""
        summary = self.summary()
        return [
            (
                rank,
                name,
                ", ".join(f"{r['val_acc']:.2f}" for r in self.rows if r["model"] == name),
                _format_mean_and_error(*summary[name]),
            )
            for rank, name in enumerate(self.ranking(), start=1)
        ]

    def to_markdown(self) -> str:
        """A markdown table of the models ranked by mean validation accuracy."""
        lines = ["| " + " | ".join(_SEED_TABLE_HEADER) + " |", "|---" * len(_SEED_TABLE_HEADER) + "|"]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in self._ranked()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = "".join(_html_row("td", row) for row in self._ranked())
        return f"<table><thead>{_html_row('th', _SEED_TABLE_HEADER)}</thead><tbody>{body}</tbody></table>"


def run_over_seeds(
    names: Sequence[str], seeds: Sequence[int], run: Callable[[str, int], tuple[float, float, float]]
) -> SeedResults:
    """``run(name, seed) -> (val_acc, test_acc, seconds)`` for every name and seed, each after
    ``set_seed(seed)``, with a progress bar and one printed line per run. Fast mode keeps the first
    ``FAST_CAPS.seeds`` seeds, and says so."""
    if is_fast_mode():
        seeds = tuple(seeds)[: FAST_CAPS.seeds]
        print(
            f"Fast mode: {len(seeds)} seed{'s' if len(seeds) != 1 else ''} per model, each run capped at "
            f"{FAST_CAPS.epochs} epoch(s) of {FAST_CAPS.iterations_per_epoch} iterations (set COURSE_FAST=0 for the "
            "full comparison)."
        )
    results = SeedResults()
    with tqdm(total=len(names) * len(seeds), desc="runs") as bar:
        for name in names:
            for seed in seeds:
                set_seed(seed)
                val_acc, test_acc, seconds = run(name, seed)
                results.rows.append(dict(model=name, seed=seed, val_acc=val_acc, test_acc=test_acc, seconds=seconds))
                test = "" if math.isnan(test_acc) else f", test {test_acc:.2f}%"
                tqdm.write(f"{name}, seed {seed}: validation {val_acc:.2f}%{test} ({seconds:.1f} s)")
                bar.update()
    return results


def compare_over_seeds(
    builders: dict[str, Callable[[], nn.Module]],
    loaders: Any,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 1,
    lr: float = 1e-3,
    device: torch.device | str | None = None,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
    measure_test: bool = False,
) -> SeedResults:
    """Train every model of ``builders`` once per seed on ``loaders.train`` and measure its accuracy on
    ``loaders.val``; on ``loaders.test`` only with ``measure_test=True`` (else ``test_acc`` is NaN).

    Optimizer: ``make_optimizer(model)``, else Adam with ``lr``. ``device`` defaults to the training
    loader's device, else ``get_device()``. ``seconds`` is the time to train and validate one run. Fast mode
    keeps the first ``FAST_CAPS.seeds`` seeds.
    """
    if device is None:
        device = getattr(loaders.train, "device", None)
        device = get_device() if device is None else device

    def run(name: str, seed: int) -> tuple[float, float, float]:
        model = builders[name]().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr) if make_optimizer is None else make_optimizer(model)
        start = time.perf_counter()
        train(model, optimizer, loaders.train, epochs=epochs, device=device, verbose=False)
        val_acc = check_accuracy(loaders.val, model, verbose=False)
        seconds = time.perf_counter() - start
        test_acc = check_accuracy(loaders.test, model, verbose=False) if measure_test else math.nan
        return val_acc, test_acc, seconds

    return run_over_seeds(list(builders), seeds, run)
