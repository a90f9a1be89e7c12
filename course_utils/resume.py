"""Resumable training: the whole state of a run, saved after every epoch, so a lost runtime costs one epoch.

``train(..., resume_from=path)`` calls :func:`save_state` after each epoch and :func:`restore_state` before
the first. The file holds the model, the optimizers, the schedules, the gradient scaler, the epochs done, the
history so far (with the training-accuracy counts since its last check) and every random generator (Python,
NumPy, torch, CUDA, the training loader's shuffling), so a resumed run continues exactly where the interrupted
one stopped, its history included.

A state saved with another **budget** (number of epochs or steps per epoch), as after a switch from a GPU to a
CPU runtime, keeps its epochs: training goes on to the budget of the run that resumes it, or stops at once if
that budget is already spent. Where a run must keep its budget (each run of a seed comparison), and for a state
of a **different run** (another model, other optimizer settings, an unreadable file), the state cannot be used:
it is renamed to ``<name>.previous.pt`` (never overwritten), training starts afresh, and a message says why.
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

FORMAT = 2
RUN_KEYS = ("model", "optimizers")  # what identifies a run
BUDGET_KEYS = ("epochs", "iterations_per_epoch")  # what a change of device may change


def _optimizer_settings(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Each parameter group's hyperparameters and sizes: what identifies the run, not its progress.

    A schedule moves ``lr`` and keeps the base rate in ``initial_lr``: only the base rate counts.
    """
    settings = []
    for group in optimizer.param_groups:
        plain = {k: v for k, v in group.items() if k != "params" and isinstance(v, (bool, int, float, str))}
        if "initial_lr" in plain:
            del plain["lr"]
        settings.append({**plain, "sizes": [tuple(p.shape) for p in group["params"]], "type": type(optimizer).__name__})
    return settings


def fingerprint(
    model: nn.Module, optimizers: Sequence[torch.optim.Optimizer], epochs: int, iterations_per_epoch: int
) -> dict[str, Any]:
    """What identifies the run (``RUN_KEYS``) and its budget (``BUDGET_KEYS``)."""
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

    identity: the run and its budget (see :func:`fingerprint`). tally: the training batches' ``correct`` and
    ``seen`` counts since the history's last check, which the next check turns into a training accuracy.
    """

    model: nn.Module
    optimizers: Sequence[torch.optim.Optimizer]
    schedulers: Sequence[Any]
    scaler: torch.amp.GradScaler
    history: Any
    loader: Any
    identity: dict[str, Any]
    tally: dict[str, int] = dataclasses.field(default_factory=lambda: {"correct": 0, "seen": 0})


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
        "tally": dict(run.tally),
        "random": _random_state(run.loader),
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def set_aside(path: Path) -> Path:
    """Rename ``path`` to the first free ``<stem>.previous.pt``, ``<stem>.previous-2.pt``, ...; return it."""
    for n in range(1, 10_000):
        kept = path.with_name(f"{path.stem}.previous{'' if n == 1 else f'-{n}'}{path.suffix}")
        if not kept.exists():
            os.replace(path, kept)
            return kept
    raise FileExistsError(f"Too many earlier states beside {path}; delete the .previous files you do not need.")


def _budget(identity: dict[str, Any]) -> str:
    return f"{identity['epochs']} epoch(s) of {identity['iterations_per_epoch']} steps"


def _unusable(state: Any, run: Run, budget_may_change: bool) -> str | None:
    """Why ``state`` cannot continue ``run`` (None when it can)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return "it was saved by another version of course_utils"
    saved = _plain(state["identity"])
    mine = _plain(run.identity)
    if saved["model"] != mine["model"]:
        return "the model's layers or their shapes differ"
    if saved["optimizers"] != mine["optimizers"]:
        return "the optimizer or its settings differ"
    if not budget_may_change and any(saved[k] != mine[k] for k in BUDGET_KEYS):
        return f"it was saved for {_budget(saved)} and this run trains {_budget(mine)}"
    return None


def restore_state(path: str | os.PathLike, run: Run, *, budget_may_change: bool = True) -> int:
    """Load a state saved by :func:`save_state` into the given objects; return the number of epochs it had
    completed (0 when there is no file, or when it cannot continue this run: it is then set aside, saying why).

    ``budget_may_change``: a state saved with another number of epochs or steps per epoch continues (the epochs
    done are kept, the budget is this run's); False sets it aside instead.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: keep it, start afresh rather than fail the notebook
        state, reason = None, f"it could not be read ({type(err).__name__})"
    else:
        reason = _unusable(state, run, budget_may_change)
    if reason is not None:
        kept = set_aside(path)
        print(
            f"The saved training state {path} cannot continue this run: {reason}. It is kept as {kept.name}, "
            "and this run trains from the start."
        )
        return 0
    run.model.load_state_dict(state["model"])
    for optimizer, saved in zip(run.optimizers, state["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    for scheduler, saved in zip(run.schedulers, state["schedulers"], strict=True):
        scheduler.load_state_dict(saved)
    if state["scaler"]:  # empty when saved without mixed precision (on a CPU): a GPU run starts a fresh scale
        run.scaler.load_state_dict(state["scaler"])
    for name, value in state["history"].items():
        setattr(run.history, name, value)
    run.tally.update(state["tally"])
    _set_random_state(state["random"], run.loader)
    done = int(run.history.epochs)
    saved = _plain(state["identity"])
    if any(saved[k] != run.identity[k] for k in BUDGET_KEYS):
        then = (
            "no further training: the weights after those epochs are kept"
            if done >= run.identity["epochs"]
            else f"training continues to epoch {run.identity['epochs']}"
        )
        print(
            f"{path} was saved by a run of {_budget(saved)} (another device or budget) and holds {done} finished "
            f"epoch(s). This run's budget is {_budget(run.identity)}: {then}."
        )
    return done


def _plain(value: Any) -> Any:
    """``value`` as it reads back from ``torch.load`` (tuples become lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
