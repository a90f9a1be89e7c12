"""Loaders that keep a whole split on the device and augment per batch; the seeds' pipeline to compare."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from course_utils.cifar import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    NUM_VAL,
    DataUnavailableError,
    ImageSet,
    load_cifar10,
)
from course_utils.runtime import FAST_CAPS, get_device, is_fast_mode
from course_utils.synthetic import make_synthetic_cifar

DATASETS = ("cifar10", "synthetic")
PADDING = 4
SHIFTS = 2 * PADDING + 1  # crop offsets per axis

Split = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TensorSplit:
    """One split held as tensors: images uint8 ``(N, C, H, W)``, labels int64 ``(N,)``.

    ``train`` is True for the train and validation splits (both come from the training set), as in the seeds.
    """

    images: torch.Tensor
    labels: torch.Tensor
    train: bool

    def __len__(self) -> int:
        return len(self.labels)


class TensorLoader:
    """Iterates over ``(x, y)`` batches like a DataLoader, with the whole split resident on ``device``.

    ``images`` are uint8 ``(N, C, H, W)``, ``labels`` int64 ``(N,)``. Each batch is normalized with
    ``mean`` and ``std`` on the device; with ``augment`` it is first randomly cropped from a copy zero-padded
    by 4 pixels and flipped horizontally with probability 1/2, all in a few tensor operations. With
    ``shuffle`` every epoch (every ``iter``) draws a new order from a generator seeded by ``seed``, so runs
    are reproducible. Yields ``x`` float32 ``(B, C, H, W)`` and ``y`` int64 ``(B,)``, both on ``device``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 64,
        *,
        train: bool,
        shuffle: bool = False,
        augment: bool = False,
        device: torch.device | str | None = None,
        seed: int = 0,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        drop_last: bool = False,
    ) -> None:
        images, labels = torch.as_tensor(images), torch.as_tensor(labels)
        _check_inputs(images, labels, batch_size, mean, std)
        self.dataset = TensorSplit(images, labels.long(), train)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.mean, self.std = tuple(mean), tuple(std)
        self._generator = torch.Generator().manual_seed(seed)
        self.to(get_device() if device is None else device)

    def to(self, device: torch.device | str) -> TensorLoader:
        """Move the split to ``device``; returns the loader."""
        self.device = torch.device(device)
        self.dataset.images = self.dataset.images.to(self.device)
        self.dataset.labels = self.dataset.labels.to(self.device)
        std = torch.tensor(self.std, device=self.device).view(1, -1, 1, 1)
        mean = torch.tensor(self.mean, device=self.device).view(1, -1, 1, 1)
        # (x / 255 - mean) / std == x * scale + shift
        self._scale, self._shift = 1.0 / (255.0 * std), -mean / std
        return self

    def reseeded(self, seed: int, *, batch_size: int | None = None, augment: bool | None = None) -> TensorLoader:
        """A shuffling loader over the same images (no copy) whose order is seeded by ``seed``, so that a run's
        batches depend on its seed only; ``batch_size`` and ``augment`` default to this loader's."""
        split = self.dataset
        return TensorLoader(
            split.images,
            split.labels,
            self.batch_size if batch_size is None else batch_size,
            train=split.train,
            shuffle=True,
            augment=self.augment if augment is None else augment,
            device=self.device,
            seed=seed,
            mean=self.mean,
            std=self.std,
            drop_last=self.drop_last,
        )

    def __len__(self) -> int:
        batches = len(self.dataset) / self.batch_size
        return math.floor(batches) if self.drop_last else math.ceil(batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self._generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        if self.augment:  # drawn on the CPU for the whole epoch: the same numbers on every device
            top, left = torch.randint(0, SHIFTS, (2, n), generator=self._generator)
            flip = torch.rand(n, generator=self._generator) < 0.5
            crops = ((top * SHIFTS + left) * 2 + flip).to(self.device)  # (n,) rows of _crop_table
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = slice(start, start + self.batch_size)
            index = order[batch]
            images = self.dataset.images.index_select(0, index)  # much faster than images[index] for uint8
            if self.augment:
                images = _crop_and_flip(images, crops[batch])
            x = images.float().mul_(self._scale).add_(self._shift)
            yield x, self.dataset.labels.index_select(0, index)


def _check_inputs(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, mean: Sequence[float], std: Sequence[float]
) -> None:
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(
            "TensorLoader expects uint8 images of shape (N, C, H, W), "
            f"got {images.dtype} {tuple(images.shape)}. Pass the raw pixels 0..255 "
            "(e.g. ImageSet.train_images); normalization happens per batch."
        )
    if images.shape[1] != len(mean) or len(mean) != len(std):
        raise ValueError(
            f"images have {images.shape[1]} channels (shape {tuple(images.shape)}) but mean and std have "
            f"{len(mean)} and {len(std)} values. Channels come first: "
            "use images.permute(0, 3, 1, 2) for (N, H, W, C) images."
        )
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels should have shape ({len(images)},), got {tuple(labels.shape)}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")


def _crop_and_flip(images: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """Crop ``(B, C, H, W)`` images from their zero-padded copies, each as its row of ``_crop_table`` says
    (``crops`` is ``(B,)``)."""
    b, c, h, w = images.shape
    padded = F.pad(images, (PADDING,) * 4).flatten(2)  # (B, C, (H + 2p) * (W + 2p))
    index = _crop_table(h, w, images.device).index_select(0, crops)  # (B, H * W)
    return padded.gather(2, index.view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)


@functools.cache
def _crop_table(height: int, width: int, device: torch.device) -> torch.Tensor:
    """Pixel indices into a flattened zero-padded ``(H + 2p, W + 2p)`` image of every crop, ``(SHIFTS * SHIFTS
    * 2, H * W)``: row ``(top * SHIFTS + left) * 2 + flip`` is the crop at ``(top, left)``, mirrored if ``flip``.

    One lookup per batch instead of building the indices each time (a fifth of the loader's time on CPU).
    """
    rows = torch.arange(height).view(1, 1, 1, height, 1)
    top = torch.arange(SHIFTS).view(SHIFTS, 1, 1, 1, 1)
    left = torch.arange(SHIFTS).view(1, SHIFTS, 1, 1, 1)
    cols = torch.arange(width)
    cols = torch.stack([cols, cols.flip(0)]).view(1, 1, 2, 1, width)
    table = (rows + top) * (width + 2 * PADDING) + cols + left  # (SHIFTS, SHIFTS, 2, H, W)
    return table.view(-1, height * width).to(device)


class Loaders(NamedTuple):
    """The three loaders of a data set and its class names."""

    train: TensorLoader | DataLoader
    val: TensorLoader | DataLoader
    test: TensorLoader | DataLoader
    classes: tuple[str, ...]


def get_loaders(
    batch_size: int = 64,
    *,
    dataset: str | None = None,
    root: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    augment: bool = False,
    seed: int = 0,
    download: bool | None = None,
) -> Loaders:
    """Train, validation and test ``TensorLoader``s, the data resident on ``device``.

    ``dataset`` is 'cifar10' or 'synthetic'; None reads ``$COURSE_DATASET`` and defaults to CIFAR-10,
    which in fast mode falls back to the synthetic set (with a notice) when it is unavailable. ``root`` and
    ``download`` go to ``load_cifar10``. Validation is the last ``min(1000, N // 10)`` of the N training
    images (the seeds' 49,000 / 1,000 split for CIFAR-10, a tenth for smaller copies); the training loader
    shuffles with ``seed`` and, with ``augment``, crops and flips. Fast mode keeps the first
    ``FAST_CAPS.train_images`` / ``FAST_CAPS.eval_images`` images of each split and caps the batch size at
    ``FAST_CAPS.batch_size``.
    """
    data = _load(dataset, root, download)
    train, val, test = _split(data)
    batch_size = _batch_size(batch_size)
    device = get_device() if device is None else device
    return Loaders(
        TensorLoader(*train, batch_size, train=True, shuffle=True, augment=augment, device=device, seed=seed),
        TensorLoader(*val, batch_size, train=True, device=device),
        TensorLoader(*test, batch_size, train=False, device=device),
        data.classes,
    )


class PILImageDataset(Dataset):
    """uint8 images ``(N, 3, H, W)`` served one by one as PIL images through a torchvision ``transform``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform, *, train: bool) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, C), as PIL wants
        self.labels = labels.tolist()
        self.transform = transform
        self.train = train

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def torchvision_loaders(
    batch_size: int = 64,
    *,
    root: str | os.PathLike | None = None,
    num_workers: int = 0,
    augment: bool = False,
    dataset: str | None = None,
) -> Loaders:
    """The seeds' pipeline for comparison: PIL images, per-image torchvision transforms, a ``DataLoader``.

    Same data and split as ``get_loaders``; batches are built on the CPU by ``num_workers`` worker processes.
    """
    import torchvision.transforms as T  # only needed here; importing torchvision costs more than a second

    data = _load(dataset, root, download=None)
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = _split(data)
    batch_size = _batch_size(batch_size)
    plain = T.Compose([T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    augmented = T.Compose([T.RandomCrop(32, padding=PADDING), T.RandomHorizontalFlip(), plain])

    def loader(dataset: PILImageDataset, shuffle: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size, shuffle=shuffle, num_workers=num_workers)

    return Loaders(
        loader(PILImageDataset(train_x, train_y, augmented if augment else plain, train=True), shuffle=True),
        loader(PILImageDataset(val_x, val_y, plain, train=True)),
        loader(PILImageDataset(test_x, test_y, plain, train=False)),
        data.classes,
    )


def denormalize(
    x: torch.Tensor, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
) -> torch.Tensor:
    """Undo the normalization of ``(C, H, W)`` or ``(N, C, H, W)`` images, clamped to [0, 1] for plotting."""
    if x.dim() not in (3, 4) or x.shape[-3] != len(mean):
        raise ValueError(f"denormalize expects (C, H, W) or (N, C, H, W) with C = {len(mean)}, got {tuple(x.shape)}.")
    mean_ = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std_ = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x * std_ + mean_).clamp(0.0, 1.0)


def _load(dataset: str | None, root: str | os.PathLike | None, download: bool | None) -> ImageSet:
    """The data set by name; CIFAR-10 is downloaded when missing if ``download`` is True, or when it is None
    (the default) outside fast mode: fast mode falls back to the synthetic set instead."""
    name = dataset or os.environ.get("COURSE_DATASET", "").strip().lower() or None
    if download is None:
        download = not is_fast_mode()
    if name not in (None, *DATASETS):
        raise ValueError(f"Unknown dataset {name!r}: choose one of {DATASETS} (argument or $COURSE_DATASET).")
    if name == "synthetic":
        return make_synthetic_cifar()
    try:
        return load_cifar10(root, download=download)
    except DataUnavailableError as err:
        if name == "cifar10" or not is_fast_mode():
            raise
        _notice_once(
            "Notice: CIFAR-10 is unavailable, so fast mode uses the offline synthetic data set instead "
            f"(set COURSE_DATA to use CIFAR-10). Reason: {str(err).splitlines()[0]}"
        )
        return make_synthetic_cifar()


def _split(data: ImageSet) -> tuple[Split, Split, Split]:
    """(train, val, test); val is the last ``min(NUM_VAL, N // 10)`` train images; capped in fast mode."""
    n = len(data.train_labels)
    cut = n - min(NUM_VAL, n // 10)
    splits = (
        (data.train_images[:cut], data.train_labels[:cut]),
        (data.train_images[cut:], data.train_labels[cut:]),
        (data.test_images, data.test_labels),
    )
    if not is_fast_mode():
        return splits
    _notice_once(
        f"Notice: fast mode keeps at most {FAST_CAPS.train_images} training and {FAST_CAPS.eval_images} "
        "validation / test images (set COURSE_FAST=0 for the full data)."
    )
    caps = (FAST_CAPS.train_images, FAST_CAPS.eval_images, FAST_CAPS.eval_images)
    return tuple((images[:cap], labels[:cap]) for (images, labels), cap in zip(splits, caps, strict=True))


def _batch_size(batch_size: int) -> int:
    """``batch_size``, capped at ``FAST_CAPS.batch_size`` in fast mode."""
    if not is_fast_mode() or batch_size <= FAST_CAPS.batch_size:
        return batch_size
    _notice_once(
        f"Notice: fast mode uses batches of {FAST_CAPS.batch_size} (set COURSE_FAST=0 for batches of {batch_size})."
    )
    return FAST_CAPS.batch_size


@functools.cache
def _notice_once(message: str) -> None:
    print(message)
