"""Resumable training: the whole state of a run, saved after every epoch, so a lost runtime costs one epoch.

``train(..., resume_from=path)`` calls :func:`save_state` after each epoch and :func:`restore_state` before
the first. The file holds the model, the optimizers, the schedules, the gradient scaler, the epochs done, the
history so far and every random generator (Python, NumPy, torch, CUDA, the training loader's shuffling), so a
resumed run continues exactly where the interrupted one stopped. A file from a different run (another model,
optimizer settings or number of epochs) is not used: training starts afresh and says why.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = 1


def _optimizer_settings(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Each parameter group's hyperparameters and sizes: what identifies the run, not its progress."""
    settings = []
    for group in optimizer.param_groups:
        plain = {k: v for k, v in group.items() if k != "params" and isinstance(v, (bool, int, float, str))}
        settings.append({**plain, "sizes": [tuple(p.shape) for p in group["params"]], "type": type(optimizer).__name__})
    return settings


def fingerprint(
    model: nn.Module, optimizers: Sequence[torch.optim.Optimizer], epochs: int, iterations_per_epoch: int
) -> dict[str, Any]:
    """What must match for a saved state to continue this run."""
    return {
        "model": [(name, tuple(t.shape)) for name, t in model.state_dict().items()],
        "optimizers": [_optimizer_settings(o) for o in optimizers],
        "epochs": epochs,
        "iterations_per_epoch": iterations_per_epoch,
    }


def _random_state(loader: Any) -> dict[str, Any]:
    mt, keys, position, has_gauss, cached = np.random.get_state()
    generator = getattr(loader, "_generator", None)
    return {
        "python": random.getstate(),
        "numpy": (mt, torch.from_numpy(keys.copy()), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": generator.get_state() if isinstance(generator, torch.Generator) else None,
    }


def _set_random_state(state: dict[str, Any], loader: Any) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    mt, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((mt, keys.numpy(), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator = getattr(loader, "_generator", None)
    if state["loader"] is not None and isinstance(generator, torch.Generator):
        generator.set_state(state["loader"])


@dataclasses.dataclass
class Run:
    """What a training run's state is made of: saved by :func:`save_state`, restored by :func:`restore_state`.

    identity: what must not change between the saving run and the resuming one (see :func:`fingerprint`).
    """

    model: nn.Module
    optimizers: Sequence[torch.optim.Optimizer]
    schedulers: Sequence[Any]
    scaler: torch.amp.GradScaler
    history: Any
    loader: Any
    identity: dict[str, Any]


def save_state(path: str | os.PathLike, run: Run) -> None:
    """Write the run's state to ``path`` atomically (a crash while writing leaves the previous file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "identity": run.identity,
        "model": run.model.state_dict(),
        "optimizers": [o.state_dict() for o in run.optimizers],
        "schedulers": [s.state_dict() for s in run.schedulers],
        "scaler": run.scaler.state_dict(),
        "history": dataclasses.asdict(run.history),
        "random": _random_state(run.loader),
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def restore_state(path: str | os.PathLike, run: Run) -> int:
    """Load a state saved by :func:`save_state` for the same run into the given objects; return the number of
    epochs it had completed (0, with a message, when there is no usable file)."""
    path = Path(path)
    if not path.is_file():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: start afresh rather than fail the notebook
        print(f"Could not read the saved training state {path} ({err}); training from the start.")
        return 0
    if state.get("format") != FORMAT or _plain(state.get("identity")) != _plain(run.identity):
        print(
            f"{path} belongs to a different run (model, optimizer settings or epochs changed); training from "
            "the start and overwriting it."
        )
        return 0
    run.model.load_state_dict(state["model"])
    for optimizer, saved in zip(run.optimizers, state["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    for scheduler, saved in zip(run.schedulers, state["schedulers"], strict=True):
        scheduler.load_state_dict(saved)
    run.scaler.load_state_dict(state["scaler"])
    for name, value in state["history"].items():
        setattr(run.history, name, value)
    _set_random_state(state["random"], run.loader)
    return int(run.history.epochs)


def _plain(value: Any) -> Any:
    """``value`` as it reads back from ``torch.load`` (tuples become lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
