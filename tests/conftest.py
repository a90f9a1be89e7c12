"""Shared fixtures: the CIFAR-10 copies used by tests (found through $COURSE_TEST_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cifar_copies import FakeCIFAR10

DEFAULT_TEST_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _cifar_copy(name: str) -> Path:
    """The folder ``$COURSE_TEST_DATA/name`` holding ``cifar-10-batches-py``; skips the test when absent."""
    root = Path(os.environ.get("COURSE_TEST_DATA") or DEFAULT_TEST_DATA) / name
    if not (root / "cifar-10-batches-py" / "data_batch_1").is_file():
        pytest.skip(
            f"CIFAR-10 test copy not found at {root}/cifar-10-batches-py: set COURSE_TEST_DATA to the folder "
            f"that holds {name}/ (default {DEFAULT_TEST_DATA})"
        )
    return root


@pytest.fixture(scope="session")
def cifar_subset_root() -> Path:
    """Exact CIFAR-10 subset: 5,170 train images (batch 1: 1,102; batches 2-5: 1,017 each), 1,017 test."""
    return _cifar_copy("cifar10-subset")


@pytest.fixture(scope="session")
def cifar_approx_root() -> Path:
    """Full-size CIFAR-10 (50,000 / 10,000 images) with approximate pixels, for benchmarks and long tests."""
    return _cifar_copy("cifar10-approx")


@pytest.fixture
def fake_torchvision(monkeypatch):
    """torchvision.datasets.CIFAR10 replaced by a stand-in that records its calls and 'downloads' a tiny copy."""
    import torchvision  # costs a second or two: only the tests that use the fixture pay it

    FakeCIFAR10.calls, FakeCIFAR10.error = [], None
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    return FakeCIFAR10
