"""Images per second, one augmented pass over the training split: tensor-resident loader vs seeds' pipeline.

Both pipelines normalize, randomly crop (padding 4) and flip every image. The seeds' pipeline is a torchvision
DataLoader with per-image PIL transforms, timed with 0 and 2 worker processes (started afresh every pass, as
the seeds' loaders do). Each pipeline makes one untimed warm-up pass, then ``--repeats`` timed passes; the
table shows the first timed pass and the best one. Also times the generation of the 12,000-image synthetic
data set. Run from the repository root:

    python -m bench.loader [--root DIR] [--limit N] [--repeats 3] [--device cpu|cuda] [--threads T]

On a busy machine use --threads 1: the per-batch tensor operations are small, and extra intra-op threads
then wait for each other (the per-image PIL pipeline is single-threaded either way).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from course_utils.loaders import get_loaders, torchvision_loaders
from course_utils.runtime import get_device
from course_utils.synthetic import make_synthetic_cifar

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-approx"
BATCH_SIZE = 64


def time_pass(loader: Iterable, limit: int | None, device: torch.device) -> tuple[int, float]:
    """(images seen, seconds) for one pass over ``loader``, stopping once ``limit`` images are seen."""
    seen = 0
    start = time.perf_counter()
    for x, _ in loader:
        seen += len(x)
        if limit is not None and seen >= limit:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen, time.perf_counter() - start


def time_passes(loader: Iterable, limit: int | None, device: torch.device, repeats: int) -> tuple[int, float, float]:
    """(images per pass, seconds of the first timed pass, seconds of the best) after one warm-up pass."""
    time_pass(loader, limit, device)
    passes = [time_pass(loader, limit, device) for _ in range(repeats)]
    return passes[0][0], passes[0][1], min(seconds for _, seconds in passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("COURSE_DATA") or str(DEFAULT_ROOT))
    parser.add_argument("--limit", type=int, default=None, help="images per pass (default: the whole split)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per pipeline, after a warm-up pass")
    parser.add_argument("--device", default=None, help="device of the tensor-resident loader (default: best)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else get_device()

    tensor_loaders = get_loaders(BATCH_SIZE, dataset="cifar10", root=args.root, device=device, augment=True)
    tensor_train = tensor_loaders.train
    rows = [(f"tensor-resident loader ({device.type})", *time_passes(tensor_train, args.limit, device, args.repeats))]
    for workers in (0, 2):
        loader = torchvision_loaders(BATCH_SIZE, root=args.root, num_workers=workers, augment=True).train
        name = f"torchvision DataLoader, num_workers={workers}"
        rows.append((name, *time_passes(loader, args.limit, torch.device("cpu"), args.repeats)))

    print(f"root: {args.root}; batch size {BATCH_SIZE}; torch threads {torch.get_num_threads()}")
    print("every image: normalize + random crop (padding 4) + horizontal flip")
    print(f"after a warm-up pass, {args.repeats} timed passes each: the first and the best")
    print(f"{'pipeline':<42} {'images':>8} {'first s':>8} {'best s':>8} {'images/s':>10}")
    for name, images, first, best in rows:
        print(f"{name:<42} {images:>8d} {first:>8.2f} {best:>8.2f} {images / best:>10.0f}")
    _, _, tensor_first, tensor_best = rows[0]
    for name, _, first, best in rows[1:]:
        print(f"speed-up over {name}: {best / tensor_best:.1f}x (best), {first / tensor_first:.1f}x (first)")

    times = []
    for _ in range(3):
        start = time.perf_counter()
        make_synthetic_cifar(num_train=10_000, num_test=2_000, seed=0)
        times.append(time.perf_counter() - start)
    print(f"synthetic data set, 12,000 images: first call {times[0]:.2f} s, best of 3 {min(times):.2f} s")


if __name__ == "__main__":
    main()
