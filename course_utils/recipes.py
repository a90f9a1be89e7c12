"""Training recipes: one object that holds every training choice, so experiments can switch them one at a time.

Notebook 4 builds a baseline :class:`Recipe`, changes one ingredient per run (the schedule, weight decay,
augmentation, label smoothing, the optimizer) with :meth:`Recipe.but`, and trains each with
:func:`train_with_recipe`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from course_utils import torch_support
from course_utils.loaders import Loaders, TensorLoader
from course_utils.seed_comparison import SeedResults, run_over_seeds
from course_utils.training import History, planned_schedule, train

OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("constant", "warmup_cosine")


@dataclass(frozen=True)
class Recipe:
    """How to train a Vision Transformer.

    optimizer: "adamw" for every parameter, or "muon" for the weight matrices of ``model.layers`` (the encoder
        layers) and AdamW for the rest. Muon's steps are rescaled to AdamW's size, so ``lr`` and
        ``weight_decay`` mean the same for both. On a torch older than 2.9 (no ``torch.optim.Muon``), "muon"
        trains with AdamW alone, and says so.
    lr: the peak learning rate.  weight_decay: decoupled weight decay of the weight matrices; biases, LayerNorm
        weights, the class token and position embeddings never decay.
    schedule: "constant", or "warmup_cosine": a linear warm-up over the first ``warmup`` of the steps, then a
        cosine decay to zero at the last step.
    label_smoothing: the cross-entropy target puts ``1 - label_smoothing`` on the true class and spreads the
        rest evenly over all classes.
    augment: random crops (of the image zero-padded by 4 pixels) and horizontal flips of the training images.
    batch_size: training batch size.  clip_grad_norm: the gradient norm is clipped to this (None: never).
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: float = 0.1
    label_smoothing: float = 0.0
    augment: bool = False
    batch_size: int = 64
    clip_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}: choose one of {', '.join(map(repr, OPTIMIZERS))}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}: choose one of {', '.join(map(repr, SCHEDULES))}.")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be positive and weight_decay non-negative; got {self.lr}, {self.weight_decay}.")
        if not 0 <= self.warmup < 1 or not 0 <= self.label_smoothing < 1:
            raise ValueError("warmup and label_smoothing are fractions in [0, 1).")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be at least 1.")

    def but(self, **changes: Any) -> Recipe:
        """A copy of this recipe with ``changes``, e.g. ``baseline.but(label_smoothing=0.1)``."""
        return dataclasses.replace(self, **changes)

    def differences(self, other: Recipe) -> str:
        """The fields where this recipe differs from ``other``, as ``name=value`` text ("the same" if none)."""
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]
        return ", ".join(changed) or "the same"


def _decays(name: str, parameter: nn.Parameter) -> bool:
    """Weight decay applies to weight matrices and convolution kernels, never to biases, norms or tokens."""
    return parameter.ndim >= 2 and not name.endswith(("cls_token", "pos_embed"))


def make_optimizers(
    model: nn.Module, recipe: Recipe, total_steps: int
) -> tuple[list[torch.optim.Optimizer], list[torch.optim.lr_scheduler.LRScheduler]]:
    """The optimizers of ``recipe`` for ``model``, and one schedule each spanning ``total_steps``.

    With ``optimizer="muon"`` the model needs ``layers`` (its encoder layers): Muon takes their 2D weights.
    Returns lists to pass to ``train`` as ``optimizer`` and ``scheduler`` (no schedules when constant).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizers: list[torch.optim.Optimizer] = []
    muon = recipe.optimizer == "muon"
    if muon and not torch_support.has_muon():
        torch_support.say_muon_falls_back()
        muon = False
    if muon:
        layers = getattr(model, "layers", None)
        if not isinstance(layers, nn.Module):
            raise ValueError("optimizer='muon' needs a model with encoder layers in `model.layers`.")
        hidden = {id(p) for p in layers.parameters() if p.requires_grad and p.ndim == 2}
        optimizers.append(
            torch.optim.Muon(
                [p for _, p in named if id(p) in hidden],
                lr=recipe.lr,
                weight_decay=recipe.weight_decay,
                adjust_lr_fn="match_rms_adamw",
            )
        )
        named = [(n, p) for n, p in named if id(p) not in hidden]
    groups = [
        {"params": [p for n, p in named if _decays(n, p)], "weight_decay": recipe.weight_decay},
        {"params": [p for n, p in named if not _decays(n, p)], "weight_decay": 0.0},
    ]
    optimizers.append(torch.optim.AdamW([g for g in groups if g["params"]], lr=recipe.lr))
    if recipe.schedule == "constant":
        return optimizers, []
    total = max(total_steps, 1)
    warm = max(round(recipe.warmup * total), 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min((step - warm) / max(total - warm, 1), 1.0)))

    return optimizers, [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in optimizers]


def recipe_loader(loader: TensorLoader, recipe: Recipe, seed: int = 0) -> TensorLoader:
    """A shuffling training loader over ``loader``'s images (no copy) with the recipe's batch size and
    augmentation, its order seeded by ``seed``."""
    return loader.reseeded(seed, batch_size=recipe.batch_size, augment=recipe.augment)


def train_with_recipe(
    model: nn.Module,
    recipe: Recipe,
    loaders: Loaders,
    *,
    epochs: float = 1,
    seed: int = 0,
    verbose: bool = True,
    print_every: int | None = None,
    resume_from: str | os.PathLike | None = None,
    resume_other_budget: bool = True,
) -> History:
    """Train ``model`` on ``loaders.train`` with ``recipe`` for ``epochs`` epochs, checking ``loaders.val``.

    ``epochs`` below 1 trains on that fraction of one epoch (e.g. 0.25: a quarter of the steps); above 1 it
    must be a whole number. The last entry of ``history.val_acc`` is the validation accuracy of the final
    weights. The test set is never touched. ``resume_from`` and ``resume_other_budget``: see ``train`` (the run
    continues from its last saved epoch when re-run, and the schedule spans this run's budget).
    """
    loader = recipe_loader(loaders.train, recipe, seed)
    optimizers, schedulers = make_optimizers(model, recipe, planned_schedule(len(loader), epochs))
    return train(
        model,
        optimizers,
        loader,
        loaders.val,
        epochs=epochs,
        scheduler=schedulers,
        clip_grad_norm=recipe.clip_grad_norm,
        label_smoothing=recipe.label_smoothing,
        print_every=print_every or max(len(loader), 1),
        verbose=verbose,
        resume_from=resume_from,
        resume_other_budget=resume_other_budget,
    )


def compare_recipes(
    runs: Mapping[str, tuple[Callable[[], nn.Module], Recipe]],
    loaders: Loaders,
    *,
    seeds: Sequence[int] = (0,),
    epochs: float = 1,
    keep_in: str | os.PathLike | None = None,
) -> SeedResults:
    """Train every named ``(build, recipe)`` of ``runs`` once per seed for ``epochs`` and measure the final
    weights on ``loaders.val``; the test set is never touched (``test_acc`` is NaN).

    Each run calls ``set_seed(seed)`` before ``build()``, so runs with the same seed start from the same
    weights and see the batches in the same order. ``keep_in``: a folder for the runs' training states, so that
    a re-run repeats no finished run and continues an interrupted one (see ``course_utils.seed_comparison``).
    Fast mode keeps the first ``FAST_CAPS.seeds`` seeds.
    """

    def run(name: str, seed: int, state: Path | None) -> tuple[float, float, float]:
        build, recipe = runs[name]
        history = train_with_recipe(
            build(),
            recipe,
            loaders,
            epochs=epochs,
            seed=seed,
            verbose=False,
            resume_from=state,
            resume_other_budget=False,
        )
        return history.val_acc[-1][1], math.nan, history.seconds

    return run_over_seeds(list(runs), seeds, run, keep_in=keep_in, epochs=epochs)
