"""Device, seeding and fast mode: the run-time settings every notebook shares."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class FastCaps:
    """Limits applied in fast mode so a notebook runs end to end on a CPU in seconds."""

    epochs: int = 1
    iterations_per_epoch: int = 4
    batch_size: int = 16
    train_images: int = 512
    eval_images: int = 64
    seeds: int = 2


FAST_CAPS = FastCaps()


def is_fast_mode() -> bool:
    """True when ``COURSE_FAST`` is set to a true value, or when nbgrader executes the notebook.

    ``COURSE_FAST=0`` switches fast mode off even under nbgrader.
    """
    value = os.environ.get("COURSE_FAST")
    if value is not None and value.strip() != "":
        return value.strip().lower() in _TRUE
    return "NBGRADER_EXECUTION" in os.environ


def get_device(use_gpu: bool = True) -> torch.device:
    """The seeds' ``USE_GPU`` switch: CUDA when asked for and available, else the CPU."""
    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all CUDA devices included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
