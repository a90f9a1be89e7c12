"""Models compared over seeds: each trained once per seed, ranked by mean validation accuracy ± standard error.

:class:`SeedResults` is the table; :func:`run_over_seeds` runs one training per model and seed;
:func:`compare_over_seeds` trains models with Adam, as notebook 1 does (notebook 4's ``compare_recipes`` trains
with a ``Recipe``). With ``keep_in`` (a folder) each run keeps its training state in
``keep_in/<epochs>-epochs/<model>-seed<seed>.pt``: run again, the comparison repeats no finished run and
continues an interrupted one from its last finished epoch, exactly as if it had never stopped. The budget names
the folder, so the states of a run on another device (another budget) stay where they are.
"""

from __future__ import annotations

import html
import math
import os
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .loaders import TensorLoader
from .runtime import FAST_CAPS, get_device, is_fast_mode, set_seed
from .training import check_accuracy, train

_TABLE_HEADER = ("rank", "model", "validation accuracy per seed (%)", "mean ± standard error (%)")


def _html_row(tag: str, values: Iterable[object]) -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in values) + "</tr>"


def _mean_and_standard_error(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, s / sqrt(n))`` with ``s`` the sample standard deviation; the error is NaN for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, statistics.stdev(values) / math.sqrt(len(values))


def format_mean_and_error(mean: float, error: float) -> str:
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
                format_mean_and_error(*summary[name]),
            )
            for rank, name in enumerate(self.ranking(), start=1)
        ]

    def to_markdown(self) -> str:
        """A markdown table of the models ranked by mean validation accuracy."""
        lines = ["| " + " | ".join(_TABLE_HEADER) + " |", "|---" * len(_TABLE_HEADER) + "|"]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in self._ranked()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = "".join(_html_row("td", row) for row in self._ranked())
        return f"<table><thead>{_html_row('th', _TABLE_HEADER)}</thead><tbody>{body}</tbody></table>"


def state_files(
    keep_in: str | os.PathLike, names: Sequence[str], seeds: Sequence[int], epochs: float
) -> dict[tuple[str, int], Path]:
    """``(model, seed) -> path`` of each run's training state: ``keep_in/<epochs>-epochs/<model>-seed<seed>.pt``,
    the model's name reduced to letters, digits and dashes (names that reduce to the same file are refused)."""
    folder = Path(keep_in) / f"{epochs:g}-epochs"
    stems = {name: re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model" for name in names}
    if len(set(stems.values())) < len(stems):
        raise ValueError(
            f"The model names {list(names)} give the same file name once reduced to letters and digits "
            f"({', '.join(stems.values())}): rename one of them."
        )
    return {(name, seed): folder / f"{stems[name]}-seed{seed}.pt" for name in names for seed in seeds}


def run_over_seeds(
    names: Sequence[str],
    seeds: Sequence[int],
    run: Callable[[str, int, Path | None], tuple[float, float, float]],
    *,
    keep_in: str | os.PathLike | None = None,
    epochs: float = 1,
) -> SeedResults:
    """``run(name, seed, state_file) -> (val_acc, test_acc, seconds)`` for every name and seed, each after
    ``set_seed(seed)``, with a progress bar and one printed line per run. ``state_file`` is where the run keeps
    its training state (see :func:`state_files`; None without ``keep_in``, and in fast mode). Fast mode keeps
    the first ``FAST_CAPS.seeds`` seeds, and says so."""
    if is_fast_mode():
        seeds = tuple(seeds)[: FAST_CAPS.seeds]
        print(
            f"Fast mode: {len(seeds)} seed{'s' if len(seeds) != 1 else ''} per model, each run capped at "
            f"{FAST_CAPS.epochs} epoch(s) of {FAST_CAPS.iterations_per_epoch} iterations (set COURSE_FAST=0 for the "
            "full comparison)."
        )
    files = state_files(keep_in, names, seeds, epochs) if keep_in is not None and not is_fast_mode() else {}
    if files:
        folder = next(iter(files.values())).parent
        print(
            f"Each run keeps its training state in {folder}: run this cell again after an interruption, and "
            "finished runs are not repeated."
        )
        others = sorted(p.name for p in folder.parent.glob("*-epochs") if p != folder and any(p.glob("*.pt")))
        if others:
            print(
                f"{folder.parent} also holds the states of runs with another budget ({', '.join(others)}; another "
                "device chose it): they are kept as they are, and not mixed into this comparison."
            )
    results = SeedResults()
    with tqdm(total=len(names) * len(seeds), desc="runs") as bar:
        for name in names:
            for seed in seeds:
                state = files.get((name, seed))
                saved = " (continued from its saved state)" if state is not None and state.is_file() else ""
                set_seed(seed)
                val_acc, test_acc, seconds = run(name, seed, state)
                results.rows.append(dict(model=name, seed=seed, val_acc=val_acc, test_acc=test_acc, seconds=seconds))
                test = "" if math.isnan(test_acc) else f", test {test_acc:.2f}%"
                tqdm.write(f"{name}, seed {seed}: validation {val_acc:.2f}%{test} ({seconds:.1f} s){saved}")
                bar.update()
    return results


def compare_over_seeds(
    builders: dict[str, Callable[[], nn.Module]],
    loaders: Any,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    epochs: float = 1,
    lr: float = 1e-3,
    device: torch.device | str | None = None,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
    measure_test: bool = False,
    keep_in: str | os.PathLike | None = None,
) -> SeedResults:
    """Train every model of ``builders`` once per seed on ``loaders.train`` for ``epochs`` (a fraction below 1:
    that share of one epoch) and measure the final weights on ``loaders.val``; on ``loaders.test`` only with
    ``measure_test=True`` (else ``test_acc`` is NaN).

    Each run calls ``set_seed(seed)`` before building its model, and a ``TensorLoader`` is reshuffled with the
    seed (``reseeded``), so a run depends on its model and seed only. Optimizer: ``make_optimizer(model)``, else
    Adam with ``lr``. ``device`` defaults to the training loader's device, else ``get_device()``. ``seconds`` is
    the time to train and validate one run. ``keep_in``: a folder for the runs' training states (see
    :func:`run_over_seeds`). Fast mode keeps the first ``FAST_CAPS.seeds`` seeds.
    """
    if device is None:
        device = getattr(loaders.train, "device", None)
        device = get_device() if device is None else device

    def run(name: str, seed: int, state: Path | None) -> tuple[float, float, float]:
        model = builders[name]().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr) if make_optimizer is None else make_optimizer(model)
        loader = loaders.train.reseeded(seed) if isinstance(loaders.train, TensorLoader) else loaders.train
        history = train(
            model,
            optimizer,
            loader,
            loaders.val,
            epochs=epochs,
            print_every=None,
            device=device,
            verbose=False,
            resume_from=state,
            resume_other_budget=False,
        )
        test_acc = check_accuracy(loaders.test, model, verbose=False) if measure_test else math.nan
        return history.val_acc[-1][1], test_acc, history.seconds

    return run_over_seeds(list(builders), seeds, run, keep_in=keep_in, epochs=epochs)
