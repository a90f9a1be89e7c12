"""course_utils.cifar: root resolution, reading the pickle batches, the download path, clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from course_utils.cifar import (
    CIFAR10_CLASSES,
    DataUnavailableError,
    ImageSet,
    load_cifar10,
    resolve_data_root,
)
from tests.cifar_copies import BATCHES, write_copy


def read_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Independent reader: images uint8 (n, 32, 32, 3) as an image viewer shows them, labels (n,)."""
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    return entry["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.array(entry["labels"])


def test_resolve_data_root_prefers_argument_then_env_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "from_env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "from_env"
    monkeypatch.delenv("COURSE_DATA")
    assert resolve_data_root() == Path("data")


def test_subset_matches_the_pickles(cifar_subset_root):
    data = load_cifar10(cifar_subset_root)
    folder = cifar_subset_root / "cifar-10-batches-py"
    batches = [read_pickle(folder / name) for name in BATCHES]
    test_images, test_labels = read_pickle(folder / "test_batch")

    assert isinstance(data, ImageSet) and data.name == "cifar10" and data.classes == CIFAR10_CLASSES
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    num_train = sum(len(labels) for _, labels in batches)
    assert data.train_images.shape == (num_train, 3, 32, 32) and num_train == 5170
    first_images, first_labels = batches[0]
    np.testing.assert_array_equal(data.train_labels[: len(first_labels)].numpy(), first_labels)
    np.testing.assert_array_equal(data.train_images[:5].permute(0, 2, 3, 1).numpy(), first_images[:5])
    last_images, last_labels = batches[-1]
    np.testing.assert_array_equal(data.train_images[-1].permute(1, 2, 0).numpy(), last_images[-1])
    np.testing.assert_array_equal(data.train_labels[-len(last_labels) :].numpy(), last_labels)
    np.testing.assert_array_equal(data.test_images.permute(0, 2, 3, 1).numpy(), test_images)
    np.testing.assert_array_equal(data.test_labels.numpy(), test_labels)


def test_accepts_the_batch_folder_itself_and_course_data(monkeypatch, cifar_subset_root):
    direct = load_cifar10(cifar_subset_root / "cifar-10-batches-py")
    monkeypatch.setenv("COURSE_DATA", str(cifar_subset_root))
    from_env = load_cifar10()
    assert torch.equal(direct.test_labels, from_env.test_labels)
    assert torch.equal(direct.train_images[-3:], from_env.train_images[-3:])


def test_missing_data_says_where_it_looked_and_what_to_do(tmp_path):
    with pytest.raises(DataUnavailableError) as info:
        load_cifar10(tmp_path / "nowhere")
    message = str(info.value)
    assert str((tmp_path / "nowhere" / "cifar-10-batches-py").resolve()) in message
    for fix in ("COURSE_DATA", "download=True", "COURSE_DATASET=synthetic"):
        assert fix in message


def test_corrupt_pickle_is_named(tmp_path):
    write_copy(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(DataUnavailableError, match="data_batch_3"):
        load_cifar10(tmp_path)


def test_pickle_with_wrong_content_is_named(tmp_path):
    write_copy(tmp_path / "cifar-10-batches-py")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"labels": [1, 2], "data": np.zeros((2, 1024), dtype=np.uint8)}, f)
    with pytest.raises(DataUnavailableError, match=r"test_batch.*\(n, 3072\)"):
        load_cifar10(tmp_path)


def test_incomplete_copy_names_the_missing_file(tmp_path):
    write_copy(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataUnavailableError, match="test_batch is missing"):
        load_cifar10(tmp_path)


def test_download_goes_through_torchvision_then_reads_the_pickles(tmp_path, fake_torchvision):
    data = load_cifar10(tmp_path, download=True)
    assert fake_torchvision.calls == [{"root": str(tmp_path), "train": False, "download": True}]
    rows, labels = write_copy(tmp_path / "expected", seed=1)
    np.testing.assert_array_equal(data.train_images.reshape(-1, 3072).numpy(), rows)
    np.testing.assert_array_equal(data.train_labels.numpy(), labels)


def test_no_download_when_a_copy_exists_or_when_not_allowed(tmp_path, fake_torchvision):
    write_copy(tmp_path / "cifar-10-batches-py")
    # This copy's md5 differs from the official one: torchvision would refuse it and download again.
    load_cifar10(tmp_path, download=True)
    with pytest.raises(DataUnavailableError):
        load_cifar10(tmp_path / "empty", download=False)
    assert fake_torchvision.calls == []


def test_failed_download_gives_a_clear_message(tmp_path, fake_torchvision):
    fake_torchvision.error = URLError("no network")
    with pytest.raises(DataUnavailableError) as info:
        load_cifar10(tmp_path, download=True)
    assert fake_torchvision.calls[0]["download"] is True
    message = str(info.value)
    assert "download failed" in message and "no network" in message
    assert "COURSE_DATA" in message and "COURSE_DATASET=synthetic" in message
