"""CIFAR-10 read straight from its python-pickle batches into uint8 tensors.

The batches are read with an unpickler that only rebuilds numpy arrays, never calls anything else, so a
damaged or tampered file raises an error instead of running code.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
NUM_TRAIN = 49_000
NUM_VAL = 1_000
BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"


# What a CIFAR-10 batch pickle may reference: numpy's array reconstruction and nothing else. Any other global
# (a function to call while loading) is refused, so a tampered or hostile file cannot run code.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR-10 batch holds only arrays")
        return super().find_class(module, name)


class DataUnavailableError(RuntimeError):
    """CIFAR-10 is missing, unreadable or could not be downloaded; the message says what to do."""


@dataclass
class ImageSet:
    """A labelled image data set in memory: images uint8 ``(N, 3, 32, 32)``, labels int64 ``(N,)``."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    name: str


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` when given, else ``$COURSE_DATA``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    from_env = os.environ.get("COURSE_DATA", "").strip()
    return Path(from_env).expanduser() if from_env else Path("data")


def load_cifar10(root: str | os.PathLike | None = None, download: bool = False) -> ImageSet:
    """Load CIFAR-10 (50,000 train and 10,000 test images in the official order) as uint8 tensors.

    ``root`` (see ``resolve_data_root``) may be the folder that holds ``cifar-10-batches-py`` or that folder
    itself. The pickles are read directly, without an md5 check, so partial or re-encoded copies load too.
    With ``download=True`` and no copy found, torchvision downloads the official archive into ``root`` first.
    Raises ``DataUnavailableError``, saying what to do, when the data is missing, unreadable or cannot be
    downloaded.
    """
    base = resolve_data_root(root)
    folder = _find_batches(base)
    if folder is None and download:
        _download(base)
        folder = _find_batches(base)
    if folder is None:
        raise DataUnavailableError(_missing_message(base, download))
    train = [_read_batch(folder / name) for name in TRAIN_FILES]
    test_images, test_labels = _read_batch(folder / TEST_FILE)
    return ImageSet(
        train_images=torch.cat([images for images, _ in train]),
        train_labels=torch.cat([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        classes=CIFAR10_CLASSES,
        name="cifar10",
    )


def _candidates(base: Path) -> tuple[Path, Path]:
    return base / BATCH_FOLDER, base


def _find_batches(base: Path) -> Path | None:
    return next((folder for folder in _candidates(base) if (folder / TRAIN_FILES[0]).is_file()), None)


def _download(base: Path) -> None:
    import torchvision  # only needed here; importing it costs more than a second

    try:
        # The archive holds every batch; train=False only keeps torchvision from decoding the train batches.
        torchvision.datasets.CIFAR10(str(base), train=False, download=True)
    except (OSError, RuntimeError) as err:
        raise DataUnavailableError(f"{_missing_message(base, True)}\nThe download failed: {err}") from err


def _missing_message(base: Path, download: bool) -> str:
    tried = " and ".join(str(folder.resolve()) for folder in _candidates(base))
    fixes = [
        "connect to a network and run again (CIFAR-10 is then downloaded there, about 170 MB)"
        if download
        else "pass download=True to download it there (needs a network, about 170 MB)",
        f"or set the environment variable COURSE_DATA to a folder that contains {BATCH_FOLDER}/ (or pass root=)",
        "or set COURSE_DATASET=synthetic to use the offline synthetic data set (accuracies not comparable)",
    ]
    return (
        f"CIFAR-10 not found: looked for {TRAIN_FILES[0]} in {tried} "
        "(root comes from the argument, then $COURSE_DATA, then ./data).\nTo fix: " + "; ".join(fixes) + "."
    )


def _read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickle batch as images uint8 ``(n, 3, 32, 32)`` and labels int64 ``(n,)``."""
    fix = f"Replace it with a good copy (or delete {path.parent} and load with download=True)."
    try:
        with path.open("rb") as f:
            entry = _BatchUnpickler(f, encoding="latin1").load()
        data, labels = entry["data"], np.asarray(entry["labels"], dtype=np.int64)
    except FileNotFoundError as err:
        message = f"The CIFAR-10 copy in {path.parent} is incomplete: {path.name} is missing. {fix}"
        raise DataUnavailableError(message) from err
    except Exception as err:  # unpickling a damaged file can raise almost any error
        raise DataUnavailableError(f"Could not read the CIFAR-10 batch {path} ({err!r}). {fix}") from err
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataUnavailableError(f"{path}: 'data' should be a uint8 array (n, 3072), got {got}. {fix}")
    if labels.shape != (len(data),):
        raise DataUnavailableError(f"{path}: {len(data)} images but {labels.size} labels. {fix}")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels)  # (n, 3, 32, 32), (n,)
