"""The reference Vision Transformer: training speed against torchvision's, and the recipe's 2-epoch accuracy.

Speed (default): optimizer steps per second of the reference ``VisionTransformer`` and of torchvision's
``VisionTransformer`` of the same size (patch 4, width 128, 6 layers, 4 heads, MLP 256, dropout 0.1
everywhere; the same parameters but for torchvision's learned class token and position embedding), on
random batches: the median of ``--repeats`` timed windows that alternate between the models, and the ratio
(goal: the reference at most 1.1x slower).

Accuracy (``--accuracy``): the notebook's recipe (``recipe_optimizers``, ``RECIPE_CONFIG``, its batch size,
augmentation from ``RECIPE_AUGMENT_FROM_EPOCHS`` epochs on, gradient clipping) for ``--epochs`` epochs on the
full-size copy in ``../shared/data/cifar10-approx``, then the test accuracy and the wall time per epoch;
``--save`` writes the checkpoint. Run from the repository root:

    python -m bench.vit [--device cpu|cuda] [--batch-size 128] [--steps 10] [--repeats 3]
    python -m bench.vit --accuracy [--root DIR] [--epochs 2] [--batch-size 32] [--save vit_checkpoint.pt]
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
from course_utils.checkpoint import save_checkpoint
from course_utils.loaders import get_loaders
from course_utils.runtime import get_device, set_seed
from course_utils.training import check_accuracy, count_parameters, train

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


def bench_accuracy(args: argparse.Namespace, device: torch.device) -> None:
    set_seed(0)
    batch_size = args.batch_size or ref.RECIPE_BATCH_SIZE
    augment = args.epochs >= ref.RECIPE_AUGMENT_FROM_EPOCHS
    loaders = get_loaders(batch_size, dataset="cifar10", root=args.root, device=device, augment=augment)
    model = ref.VisionTransformer(**ref.RECIPE_CONFIG)
    optimizers, schedulers = ref.recipe_optimizers(model, args.epochs, len(loaders.train))
    print(
        f"recipe: VisionTransformer({ref.RECIPE_CONFIG}), {count_parameters(model):,} parameters; "
        f"Muon (encoder matrices) + AdamW, lr {ref.RECIPE_LR:g}, wd {ref.RECIPE_WEIGHT_DECAY:g}, "
        f"warm-up {ref.RECIPE_WARMUP:g} then cosine, clip {ref.RECIPE_CLIP_GRAD_NORM:g}, "
        f"{'crop + flip' if augment else 'no augmentation'}; "
        f"{args.epochs} epochs of {len(loaders.train)} steps (batch {batch_size}) on {args.root}, device {device}"
    )
    history = train(
        model,
        optimizers,
        loaders.train,
        loaders.val,
        epochs=args.epochs,
        scheduler=schedulers,
        clip_grad_norm=ref.RECIPE_CLIP_GRAD_NORM,
        print_every=len(loaders.train) // 2,
        verbose=True,
    )
    test_acc = check_accuracy(loaders.test, model)
    print(
        f"test accuracy after {args.epochs} epochs: {test_acc:.2f}%; training {history.seconds:.0f} s "
        f"({history.seconds / args.epochs:.0f} s per epoch); best validation {history.best_val_acc:.2f}%"
    )
    if args.save:
        path = save_checkpoint(model, args.save, **ref.RECIPE_CONFIG)
        print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accuracy", action="store_true", help="train the recipe and report test accuracy")
    parser.add_argument(
        "--device", default=None, help="cpu or cuda (default: speed on cpu, accuracy on the best)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"default: {SPEED_BATCH_SIZE} (speed), the recipe's {ref.RECIPE_BATCH_SIZE} (accuracy)",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per window (speed)")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows (speed)")
    parser.add_argument(
        "--root", default=os.environ.get("COURSE_DATA") or str(DEFAULT_ROOT), help="CIFAR-10 copy"
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the recipe (accuracy)")
    parser.add_argument("--save", default=None, help="write the trained checkpoint here (accuracy)")
    args = parser.parse_args()
    if args.accuracy:
        bench_accuracy(args, torch.device(args.device) if args.device else get_device())
    else:
        bench_speed(args, torch.device(args.device or "cpu"))


if __name__ == "__main__":
    main()
