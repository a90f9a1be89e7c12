"""The reference Vision Transformer: training speed against torchvision's, and the recipe's 2-epoch accuracy.

Speed (default): optimizer steps per second of the reference ``VisionTransformer`` and of torchvision's
``VisionTransformer`` of the same size (patch 4, width 128, 6 layers, 4 heads, MLP 256, dropout 0.1
everywhere; the same parameters but for torchvision's learned class token and position embedding), on
random batches: the median of ``--repeats`` timed windows that alternate between the models, and the ratio
(goal: the reference at most 1.1x slower).

Accuracy (``--accuracy``): notebook 4's final run with the reference recipe
(``reference_recipe.reference_recipe``) at the budget of the device (``--budget cpu``: 3 epochs; ``gpu``: 10) on the
full-size copy in ``../shared/data/cifar10-approx``, then the test accuracy and the wall time per epoch;
``--save`` writes the checkpoint. Experiments (``--experiments``): the notebook's two experiments at that
budget, as tables. Run from the repository root:

    python -m bench.vit [--device cpu|cuda] [--batch-size 128] [--steps 10] [--repeats 3]
    python -m bench.vit --accuracy [--budget cpu|gpu] [--root DIR] [--epochs N] [--save vit_checkpoint.pt]
    python -m bench.vit --experiments [--budget cpu|gpu] [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from autograde.assignments.vision_transformer import reference as ref
from autograde.assignments.vision_transformer import reference_recipe as part5
from course_utils.loaders import get_loaders
from course_utils.model_checkpoint import save_checkpoint
from course_utils.recipes import Recipe, compare_recipes, train_with_recipe
from course_utils.runtime import get_device, set_seed
from course_utils.training import check_accuracy, count_parameters

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-approx"
SIZE = dict(patch_size=4, embed_dim=128, num_layers=6, num_heads=4, dim_feedforward=256, dropout=0.1)
SPEED_BATCH_SIZE = 128


def torchvision_vit() -> nn.Module:
    """torchvision's ViT with the reference's size (class token, learned positions; LayerNorm eps 1e-6)."""
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        image_size=32,
        patch_size=SIZE["patch_size"],
        num_layers=SIZE["num_layers"],
        num_heads=SIZE["num_heads"],
        hidden_dim=SIZE["embed_dim"],
        mlp_dim=SIZE["dim_feedforward"],
        dropout=SIZE["dropout"],
        attention_dropout=SIZE["dropout"],
        num_classes=10,
    )


class Stepper:
    """AdamW steps of one model on a fixed random batch."""

    def __init__(self, model: nn.Module, batch_size: int, device: torch.device):
        self.model = model.to(device).train()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.x = torch.randn(batch_size, 3, 32, 32, device=device)
        self.y = torch.randint(0, 10, (batch_size,), device=device)
        self.device = device

    def step(self) -> None:
        loss = F.cross_entropy(self.model(self.x), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def rate(self, steps: int) -> float:
        """Steps per second over ``steps`` steps."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return steps / (time.perf_counter() - start)


def bench_speed(args: argparse.Namespace, device: torch.device) -> None:
    """Windows alternate between the models, so a change in machine load affects both alike."""
    set_seed(0)
    batch_size = args.batch_size or SPEED_BATCH_SIZE
    models = {"reference ViT": ref.VisionTransformer(**SIZE), "torchvision ViT": torchvision_vit()}
    steppers = {name: Stepper(model, batch_size, device) for name, model in models.items()}
    for stepper in steppers.values():
        stepper.rate(2)  # warm-up
    windows: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, stepper in steppers.items():
            windows[name].append(stepper.rate(args.steps))
    print(
        f"device {device}, {torch.get_num_threads()} threads, batch {batch_size}, {args.steps} steps x "
        f"{args.repeats} alternating windows (median)"
    )
    rates = {name: statistics.median(values) for name, values in windows.items()}
    for name, model in models.items():
        print(
            f"{name:<16} {count_parameters(model):>9,} parameters {rates[name]:>8.2f} steps/s "
            f"{rates[name] * batch_size:>9.0f} images/s"
        )
    ratio = rates["torchvision ViT"] / rates["reference ViT"]
    print(f"time per step, reference / torchvision: {ratio:.2f}x (goal: at most 1.10x)")


def _budget(args: argparse.Namespace, device: torch.device) -> str:
    """The notebook's budget key: the one its device gets, unless ``--budget`` names another."""
    return args.budget or ("gpu" if device.type == "cuda" else "cpu")


def bench_accuracy(args: argparse.Namespace, device: torch.device) -> None:
    """Notebook 4's final run with the reference recipe at one budget, then the test accuracy."""
    budget = _budget(args, device)
    epochs = args.epochs or part5.FINAL_EPOCHS[budget]
    config = {**part5.FINAL_CONFIG, "pos_encoding": part5.RECIPE_POS_ENCODING}
    recipe = part5.reference_recipe(epochs)
    loaders = get_loaders(64, dataset="cifar10", root=args.root, device=device)
    set_seed(0)
    model = ref.VisionTransformer(**config)
    print(
        f"final run ({budget} budget): VisionTransformer({config}), {count_parameters(model):,} parameters; "
        f"{recipe}; {epochs} epochs on {args.root}, device {device}, {torch.get_num_threads()} threads"
    )
    history = train_with_recipe(model, recipe, loaders, epochs=epochs, print_every=400)
    test_acc = check_accuracy(loaders.test, model)
    print(
        f"final run ({budget}): test accuracy {test_acc:.2f}%, validation {history.val_acc[-1][1]:.2f}% after "
        f"{epochs} epochs; training {history.seconds:.0f} s ({history.seconds / epochs:.0f} s per epoch)"
    )
    if args.save:
        path = save_checkpoint(model, args.save, **config)
        print(f"saved {path}")


def bench_experiments(args: argparse.Namespace, device: torch.device) -> None:
    """Notebook 4's two experiments (positional encodings, training ingredients) at one budget."""
    budget = _budget(args, device)
    epochs = part5.EXPERIMENT_EPOCHS[budget]
    loaders = get_loaders(64, dataset="cifar10", root=args.root, device=device)
    baseline = Recipe()

    def small(kind: str = "sin1d"):
        return lambda: ref.VisionTransformer(**part5.SMALL_VIT, pos_encoding=kind)

    print(f"experiments ({budget} budget): {epochs} epoch(s) per run on {args.root}, device {device}")
    pe = compare_recipes(
        {kind: (small(kind), baseline) for kind in ref.POSITIONAL_ENCODINGS}, loaders, seeds=(0, 1), epochs=epochs
    )
    print(pe.to_markdown())
    ingredients = {
        "baseline": baseline,
        "warm-up + cosine": baseline.but(schedule="warmup_cosine"),
        "weight decay 0.05": baseline.but(weight_decay=0.05),
        "crops and flips": baseline.but(augment=True),
        "label smoothing 0.1": baseline.but(label_smoothing=0.1),
        "Muon": baseline.but(optimizer="muon"),
    }
    seeds = (0, 1) if budget == "gpu" else (0,)
    runs = {name: (small(), recipe) for name, recipe in ingredients.items()}
    print(compare_recipes(runs, loaders, seeds=seeds, epochs=epochs).to_markdown())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accuracy", action="store_true", help="train the recipe and report test accuracy")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: speed on cpu, accuracy on the best)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"speed only; default {SPEED_BATCH_SIZE}",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per window (speed)")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows (speed)")
    parser.add_argument("--root", default=os.environ.get("COURSE_DATA") or str(DEFAULT_ROOT), help="CIFAR-10 copy")
    parser.add_argument(
        "--budget", choices=("cpu", "gpu"), default=None, help="the notebook's budget (default: the device's)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the final run (default: the budget's)")
    parser.add_argument("--experiments", action="store_true", help="run the notebook's two experiments")
    parser.add_argument("--save", default=None, help="write the trained checkpoint here (accuracy)")
    args = parser.parse_args()
    if args.experiments:
        bench_experiments(args, torch.device(args.device) if args.device else get_device())
    elif args.accuracy:
        bench_accuracy(args, torch.device(args.device) if args.device else get_device())
    else:
        bench_speed(args, torch.device(args.device or "cpu"))


if __name__ == "__main__":
    main()
