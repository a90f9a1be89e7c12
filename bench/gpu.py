"""The course's trainings on one GPU, as one prepared check: accuracy, seconds per epoch, mixed precision.

Prints one table:

* notebook 1: the vanilla CNN trained for its 10 epochs (Adam, learning rate 1e-3, batches of 64), with its test
  accuracy (the seeds expect at least 55% on CIFAR-10), and the seconds per epoch of the early, late and
  double attention CNNs (timed over ``--attention-steps`` steps, scaled to a full epoch);
* notebook 4: the reference recipe on the larger ViT for ``--vit-epochs`` epochs, once under bf16 and once
  under fp16 with a GradScaler (Colab's T4 path), with test accuracy and seconds per epoch;
* the tensor-resident loader: augmented training images per second on the device.

Run from the repository root (about 6 minutes on an H200; it refuses to run without CUDA unless ``--device cpu``,
which only makes sense with ``--quick``):

    python -m bench.gpu [--root DIR] [--vit-epochs 2] [--quick]

``--quick`` trains on 2,048 images for one epoch each: a smoke test of the script, not a measurement.
``--epoch-times`` only times every training the notebooks run, over ``--attention-steps`` steps each, scaled to a
full epoch; it works on the CPU too (``--device cpu``), which is where the notebooks' CPU times come from:

    python -m bench.gpu --epoch-times --device cpu [--attention-steps 20]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from autograde.assignments.self_attention_cnn import reference as cnn_ref
from autograde.assignments.vision_transformer import reference as vit_ref
from autograde.assignments.vision_transformer import reference_recipe as part5
from course_utils.loaders import Loaders, TensorLoader, get_loaders
from course_utils.recipes import make_optimizers, recipe_loader
from course_utils.runtime import set_seed
from course_utils.training import check_accuracy, planned_schedule, train

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-approx"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _subset(loaders: Loaders, images: int) -> Loaders:
    """The first ``images`` training images (``--quick``)."""
    split = loaders.train.dataset
    small = TensorLoader(
        split.images[:images],
        split.labels[:images],
        loaders.train.batch_size,
        train=True,
        shuffle=True,
        device=loaders.train.device,
    )
    return Loaders(small, loaders.val, loaders.test, loaders.classes)


def vanilla_cnn(loaders: Loaders, epochs: int, device: torch.device) -> tuple[str, str, str]:
    set_seed(0)
    model = cnn_ref.vanilla_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = train(model, optimizer, loaders.train, loaders.val, epochs=epochs, print_every=10**9, verbose=False)
    acc = check_accuracy(loaders.test, model, verbose=False)
    return (
        f"nb1 vanilla CNN, {epochs} epoch{'s' if epochs != 1 else ''}",
        f"test {acc:.2f}% (seeds: >= 55%)",
        f"{history.seconds / epochs:.1f} s/epoch",
    )


def attention_epoch_seconds(name: str, build, loaders: Loaders, steps: int, device: torch.device) -> tuple:
    set_seed(0)
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train(model, optimizer, loaders.train, epochs=1, max_iters_per_epoch=2, verbose=False)  # warm-up
    _sync(device)
    start = time.perf_counter()
    train(model, optimizer, loaders.train, epochs=1, max_iters_per_epoch=steps, verbose=False)
    _sync(device)
    per_step = (time.perf_counter() - start) / steps
    label = name if name.startswith("nb4") else f"nb1 {name} CNN"
    return (label, f"timed over {steps} steps", f"{per_step * len(loaders.train):.1f} s/epoch")


def epoch_times(loaders: Loaders, steps: int, device: torch.device) -> list[tuple[str, str, str]]:
    """Seconds per epoch of every training the notebooks run, timed over ``steps`` steps each."""
    rows = []
    for label, build in [
        ("vanilla", cnn_ref.vanilla_cnn),
        ("early attention", cnn_ref.early_attention_cnn),
        ("late attention", cnn_ref.late_attention_cnn),
        ("double attention", cnn_ref.double_attention_cnn),
    ]:
        rows.append(attention_epoch_seconds(label, build, loaders, steps, device))
    for label, config, batch in [
        ("nb4 small ViT (experiments), batches of 64", part5.SMALL_VIT, 64),
        ("nb4 larger ViT (final run), batches of 32", part5.LARGE_VIT, 32),
    ]:
        split = loaders.train.dataset
        rebatched = TensorLoader(split.images, split.labels, batch, train=True, shuffle=True, device=device)
        rows.append(
            attention_epoch_seconds(
                label,
                lambda config=config: vit_ref.VisionTransformer(**config),
                Loaders(rebatched, loaders.val, loaders.test, loaders.classes),
                steps,
                device,
            )
        )
    return rows


def vit_recipe(loaders: Loaders, epochs: int, dtype: torch.dtype, device: torch.device) -> tuple[str, str, str]:
    set_seed(0)
    recipe = part5.reference_recipe(epochs)
    model = vit_ref.VisionTransformer(**part5.FINAL_CONFIG, pos_encoding=part5.RECIPE_POS_ENCODING)
    loader = recipe_loader(loaders.train, recipe)
    optimizers, schedulers = make_optimizers(model, recipe, planned_schedule(len(loader), epochs))
    history = train(
        model,
        optimizers,
        loader,
        loaders.val,
        epochs=epochs,
        scheduler=schedulers,
        clip_grad_norm=recipe.clip_grad_norm,
        amp_dtype=dtype,
        print_every=10**9,
        verbose=False,
    )
    acc = check_accuracy(loaders.test, model, verbose=False)
    label = "bf16" if dtype == torch.bfloat16 else "fp16 + GradScaler"
    return (
        f"nb4 recipe, larger ViT, {epochs} epoch{'s' if epochs != 1 else ''}, {label}",
        f"test {acc:.2f}%",
        f"{history.seconds / epochs:.1f} s/epoch",
    )


def loader_rate(loaders: Loaders, device: torch.device) -> tuple[str, str, str]:
    augmented = TensorLoader(
        loaders.train.dataset.images,
        loaders.train.dataset.labels,
        64,
        train=True,
        shuffle=True,
        augment=True,
        device=device,
    )
    for _ in augmented:  # warm-up pass
        pass
    _sync(device)
    start = time.perf_counter()
    seen = sum(len(x) for x, _ in augmented)
    _sync(device)
    return (
        "tensor-resident loader, crop + flip",
        f"{seen:,} images",
        f"{seen / (time.perf_counter() - start):,.0f} images/s",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("COURSE_DATA") or str(DEFAULT_ROOT))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--vit-epochs", type=int, default=2)
    parser.add_argument("--attention-steps", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="a smoke test on 2,048 images, one epoch each")
    parser.add_argument("--epoch-times", action="store_true", help="only the seconds per epoch of every training")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.gpu needs a CUDA device (or --device cpu --quick for a smoke test).")
    os.environ.setdefault("COURSE_FAST", "0")
    loaders = get_loaders(64, dataset="cifar10", root=args.root, device=device, download=False)
    cnn_epochs, vit_epochs, steps = 10, args.vit_epochs, args.attention_steps
    if args.quick:
        loaders, cnn_epochs, vit_epochs, steps = _subset(loaders, 2048), 1, 1, 3
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    print(f"device: {name}" + (f" (compute capability {capability[0]}.{capability[1]})" if capability else ""))
    print(f"data: {args.root}; {len(loaders.train.dataset):,} training images; torch {torch.__version__}")
    start = time.perf_counter()
    if args.epoch_times:
        _print(epoch_times(loaders, steps, device), start)
        return
    rows = [vanilla_cnn(loaders, cnn_epochs, device)]
    for label, build in [
        ("early attention", cnn_ref.early_attention_cnn),
        ("late attention", cnn_ref.late_attention_cnn),
        ("double attention", cnn_ref.double_attention_cnn),
    ]:
        rows.append(attention_epoch_seconds(label, build, loaders, steps, device))
    for dtype in (torch.bfloat16, torch.float16):
        rows.append(vit_recipe(loaders, vit_epochs, dtype, device))
    rows.append(loader_rate(loaders, device))
    _print(rows, start)


def _print(rows: list[tuple[str, str, str]], start: float) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'run':<{width}}  {'result':<26}  time")
    for run, result, seconds in rows:
        print(f"{run:<{width}}  {result:<26}  {seconds}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
