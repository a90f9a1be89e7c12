"""Tiny CIFAR-10 copies in the official layout, and a stand-in for torchvision's download."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def write_copy(folder: Path, per_batch: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A tiny copy in the official layout under ``folder``; returns all train rows (n, 3072) and labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    for name in [*BATCHES, "test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batch_labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": batch_labels, "data": data}, f, protocol=2)
        if name != "test_batch":
            rows.append(data)
            labels += batch_labels
    return np.concatenate(rows), np.array(labels)


class FakeCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10: records its calls and 'downloads' a tiny copy."""

    calls: list[dict] = []
    error: Exception | None = None

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        FakeCIFAR10.calls.append({"root": root, "train": train, "download": download})
        if self.error is not None:
            raise self.error
        if download:
            write_copy(Path(root) / "cifar-10-batches-py", seed=1)
