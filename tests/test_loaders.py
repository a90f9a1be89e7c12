"""course_utils.loaders: the tensor-resident loader, get_loaders, the seeds' pipeline and denormalize."""

from __future__ import annotations

import pickle
from urllib.error import URLError

import numpy as np
import pytest
import torch

from course_utils import loaders
from course_utils.cifar import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, DataUnavailableError, load_cifar10
from course_utils.loaders import Loaders, TensorLoader, denormalize, get_loaders, torchvision_loaders
from course_utils.runtime import FAST_CAPS
from course_utils.synthetic import SYNTHETIC_CLASSES, make_synthetic_cifar

MEAN = np.array(CIFAR10_MEAN).reshape(3, 1, 1)
STD = np.array(CIFAR10_STD).reshape(3, 1, 1)


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch):
    """Full mode, no dataset or data folder chosen through the environment, notices not yet printed."""
    monkeypatch.setenv("COURSE_FAST", "0")
    monkeypatch.delenv("COURSE_DATASET", raising=False)
    monkeypatch.delenv("COURSE_DATA", raising=False)
    loaders._notice_once.cache_clear()


@pytest.fixture
def small_synthetic(monkeypatch):
    """get_loaders draws a small synthetic set, so routing tests stay fast."""
    monkeypatch.setattr(loaders, "make_synthetic_cifar", lambda: make_synthetic_cifar(300, 60, seed=0))


@pytest.fixture(scope="module")
def subset(cifar_subset_root):
    return load_cifar10(cifar_subset_root)


def pickle_batch(root, name):
    with open(root / "cifar-10-batches-py" / name, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    return entry["data"], np.array(entry["labels"])


def cpu_loaders(root, **kwargs) -> Loaders:
    return get_loaders(root=root, device="cpu", **kwargs)


def test_split_sizes_flags_and_classes(cifar_subset_root):
    train, val, test, classes = cpu_loaders(cifar_subset_root)
    n = 5170  # train images in the subset; validation is the last min(1000, n // 10)
    assert (len(train.dataset), len(val.dataset), len(test.dataset)) == (n - 517, 517, 1017)
    assert (train.dataset.train, val.dataset.train, test.dataset.train) == (True, True, False)
    assert len(train) == -(-(n - 517) // 64) and len(test) == -(-1017 // 64)
    assert classes == CIFAR10_CLASSES and train.device == torch.device("cpu") and train.to("cpu") is train


def test_label_order_and_pixels_match_the_pickles(cifar_subset_root):
    data, labels = pickle_batch(cifar_subset_root, "data_batch_1")
    test_data, test_labels = pickle_batch(cifar_subset_root, "test_batch")
    train, val, test, _ = cpu_loaders(cifar_subset_root)
    np.testing.assert_array_equal(train.dataset.labels[: len(labels)].numpy(), labels)

    x, y = next(iter(test))  # unshuffled
    np.testing.assert_array_equal(y.numpy(), test_labels[:64])
    expected = (test_data[0].reshape(3, 32, 32) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(x[0].numpy(), expected, atol=1e-5)
    assert x.dtype == torch.float32 and x.shape == (64, 3, 32, 32)

    _, last_labels = pickle_batch(cifar_subset_root, "data_batch_5")
    val_labels = torch.cat([y for _, y in val])
    np.testing.assert_array_equal(val_labels.numpy(), last_labels[-len(val_labels) :])


def test_normalization_uses_mean_and_std(subset):
    images = subset.train_images[:256]
    loader = TensorLoader(images, subset.train_labels[:256], 256, train=True, device="cpu")
    x, _ = next(iter(loader))
    raw = images.double() / 255.0
    torch.testing.assert_close(x.double() * torch.tensor(STD) + torch.tensor(MEAN), raw, atol=1e-6, rtol=0)
    identity = TensorLoader(images, subset.train_labels[:256], 256, train=True, mean=(0,) * 3, std=(1,) * 3)
    torch.testing.assert_close(next(iter(identity))[0].cpu() * 255.0, images.float(), atol=1e-4, rtol=0)


def test_augmentation_crops_the_zero_padded_image_or_its_mirror(subset):
    images, labels = subset.train_images[:128], subset.train_labels[:128]
    x, _ = next(iter(TensorLoader(images, labels, 128, train=True, augment=True, seed=5, device="cpu")))
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32

    # Every candidate crop of the normalized, zero-padded image (black padding, as torchvision's RandomCrop).
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)))
    normalized = torch.from_numpy((padded / 255.0 - MEAN) / STD).float()  # (N, 3, 40, 40)
    crops = normalized.unfold(2, 32, 1).unfold(3, 32, 1).permute(0, 2, 3, 1, 4, 5)  # (N, 9, 9, 3, 32, 32)
    error = (crops - x[:, None, None]).abs().amax(dim=(3, 4, 5))  # (N, 9, 9)
    error_flipped = (crops.flip(-1) - x[:, None, None]).abs().amax(dim=(3, 4, 5))
    best = torch.minimum(error.amin(dim=(1, 2)), error_flipped.amin(dim=(1, 2)))
    assert float(best.max()) < 1e-4, "some augmented image is no crop of the padded original or its mirror"

    # The transformation varies: flips happen about half the time and most images are shifted.
    flipped = error_flipped.amin(dim=(1, 2)) < error.amin(dim=(1, 2))
    assert 0.25 < flipped.float().mean() < 0.75
    untouched = error[:, 4, 4] < 1e-4
    assert untouched.float().mean() < 0.2
    offsets = torch.where(flipped[:, None, None], error_flipped, error).flatten(1).argmin(1)  # (N,) of 81
    assert len(set(offsets.tolist())) > 20


def test_get_loaders_augments_only_the_training_split(cifar_subset_root):
    plain = cpu_loaders(cifar_subset_root)
    augmented = cpu_loaders(cifar_subset_root, augment=True)
    assert torch.equal(next(iter(plain.val))[0], next(iter(augmented.val))[0])
    assert torch.equal(next(iter(plain.test))[0], next(iter(augmented.test))[0])
    x_plain, y_plain = next(iter(plain.train))
    x_aug, y_aug = next(iter(augmented.train))
    assert torch.equal(y_plain, y_aug) and not torch.equal(x_plain, x_aug)  # same seed, same order


def test_shuffle_is_seeded_and_new_each_epoch(subset):
    images, ids = subset.train_images[:300], torch.arange(300)  # labels that name the image: y is the order

    def two_epochs(seed):
        loader = TensorLoader(images, ids, train=True, shuffle=True, augment=True, seed=seed, device="cpu")
        return [[torch.cat(parts) for parts in zip(*loader, strict=True)] for _ in range(2)]  # [[x, y]] * 2

    (x1, order1), (x2, order2) = two_epochs(seed=1)
    (x1_again, order1_again), (x2_again, order2_again) = two_epochs(seed=1)
    assert torch.equal(order1, order1_again) and torch.equal(order2, order2_again)
    assert torch.equal(x1, x1_again) and torch.equal(x2, x2_again)  # the same crops and flips too
    assert not torch.equal(order1, order2), "each epoch must draw a new order"
    assert not torch.equal(order1, two_epochs(seed=2)[0][1]), "the order must depend on the seed"


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_image_once_per_epoch_and_len(drop_last):
    n, batch = 150, 64
    ids = torch.arange(n)  # labels that name the image
    images = ids.view(n, 1, 1, 1).expand(n, 3, 2, 2).to(torch.uint8).contiguous()
    loader = TensorLoader(images, ids, batch, train=True, shuffle=True, drop_last=drop_last, device="cpu")
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == len(loader) == (n // batch if drop_last else -(-n // batch))
        sizes = [len(y) for _, y in batches]
        assert sizes == ([batch, batch] if drop_last else [batch, batch, n - 2 * batch])
        seen = torch.cat([y for _, y in batches])
        assert len(set(seen.tolist())) == len(seen)  # no image twice
        if not drop_last:
            assert torch.equal(seen.sort().values, ids)
        x, y = batches[0]
        torch.testing.assert_close(denormalize(x)[:, 0, 0, 0] * 255.0, y.float(), atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.zeros(4, 3, 8, 8), "uint8"),
        (torch.zeros(4, 8, 8, dtype=torch.uint8), r"\(N, C, H, W\)"),
        (torch.zeros(4, 8, 8, 3, dtype=torch.uint8), r"permute\(0, 3, 1, 2\)"),
    ],
)
def test_bad_images_get_a_clear_message(images, match):
    with pytest.raises(ValueError, match=match):
        TensorLoader(images, torch.zeros(4, dtype=torch.int64), train=True)


def test_bad_labels_or_batch_size_get_a_clear_message():
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"labels should have shape \(4,\)"):
        TensorLoader(images, torch.zeros(5, dtype=torch.int64), train=True)
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(images, torch.zeros(4, dtype=torch.int64), 0, train=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_loader_matches_the_cpu_loader(subset):
    images, labels = subset.train_images[:200], subset.train_labels[:200]
    kwargs = dict(train=True, shuffle=True, augment=True, seed=3)
    cpu = TensorLoader(images, labels, 64, device="cpu", **kwargs)
    cuda = TensorLoader(images, labels, 64, device="cuda", **kwargs)
    assert cuda.dataset.images.is_cuda and cuda.device.type == "cuda"
    for (x_cpu, y_cpu), (x_cuda, y_cuda) in zip(cpu, cuda, strict=True):
        assert x_cuda.is_cuda and y_cuda.is_cuda
        torch.testing.assert_close(x_cuda.cpu(), x_cpu)
        assert torch.equal(y_cuda.cpu(), y_cpu)
    assert cuda.to("cpu").dataset.images.device.type == "cpu"


def test_denormalize_inverts_the_normalization_and_checks_shape(subset):
    raw = subset.test_images[:8]
    x, _ = next(iter(TensorLoader(raw, subset.test_labels[:8], 8, train=False, device="cpu")))
    torch.testing.assert_close(denormalize(x), raw.float() / 255.0, atol=1e-6, rtol=0)
    torch.testing.assert_close(denormalize(x[0]), raw[0].float() / 255.0, atol=1e-6, rtol=0)
    assert float(denormalize(torch.full((3, 2, 2), 10.0)).max()) == 1.0
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        denormalize(torch.zeros(2, 1, 4, 4))


def test_torchvision_pipeline_gives_the_same_batches(cifar_subset_root):
    ours = cpu_loaders(cifar_subset_root)
    seeds = torchvision_loaders(root=cifar_subset_root, augment=True)
    for mine, theirs in zip(ours[:3], seeds[:3], strict=True):
        assert len(mine.dataset) == len(theirs.dataset) and mine.dataset.train == theirs.dataset.train
    for mine, theirs in ((ours.val, seeds.val), (ours.test, seeds.test)):
        (x, y), (x_tv, y_tv) = next(iter(mine)), next(iter(theirs))
        torch.testing.assert_close(x_tv, x, atol=1e-5, rtol=0)
        assert torch.equal(y_tv, y)
    x_tv, y_tv = next(iter(seeds.train))
    assert x_tv.shape == (64, 3, 32, 32) and y_tv.shape == (64,)
    assert seeds.classes == CIFAR10_CLASSES


def test_fast_mode_caps_the_splits_and_says_so_once(monkeypatch, capsys, cifar_subset_root):
    monkeypatch.setenv("COURSE_FAST", "1")
    for _ in range(2):
        train, val, test, _ = cpu_loaders(cifar_subset_root)
        assert len(train.dataset) == FAST_CAPS.train_images
        assert len(val.dataset) == min(FAST_CAPS.eval_images, 517)
        assert len(test.dataset) == FAST_CAPS.eval_images
        assert next(iter(train))[0].shape[0] == FAST_CAPS.batch_size < 64
    out = capsys.readouterr().out
    assert out.count("fast mode keeps") == 1 and out.count(f"fast mode uses batches of {FAST_CAPS.batch_size}") == 1


def test_synthetic_by_argument_or_environment(monkeypatch, small_synthetic):
    assert get_loaders(dataset="synthetic", device="cpu").classes == SYNTHETIC_CLASSES
    monkeypatch.setenv("COURSE_DATASET", "synthetic")
    train, val, test, classes = get_loaders(device="cpu")
    assert classes == SYNTHETIC_CLASSES
    assert (len(train.dataset), len(val.dataset), len(test.dataset)) == (270, 30, 60)


def test_fallback_to_synthetic_in_fast_mode_only(monkeypatch, capsys, tmp_path, small_synthetic, fake_torchvision):
    fake_torchvision.error = URLError("no network")
    with pytest.raises(DataUnavailableError):
        get_loaders(root=tmp_path, device="cpu")
    monkeypatch.setenv("COURSE_FAST", "1")
    fake_torchvision.calls.clear()
    assert get_loaders(root=tmp_path, device="cpu").classes == SYNTHETIC_CLASSES
    assert "synthetic" in capsys.readouterr().out
    with pytest.raises(DataUnavailableError):
        get_loaders(dataset="cifar10", root=tmp_path, device="cpu")
    assert fake_torchvision.calls == []  # fast mode never downloads unless asked to


def test_a_student_with_a_network_gets_cifar10_downloaded_into_data(monkeypatch, tmp_path, fake_torchvision):
    """The README's laptop path: no COURSE_DATA, no copy; the first get_loaders() downloads into ./data."""
    monkeypatch.chdir(tmp_path)
    train, val, test, classes = get_loaders(device="cpu")
    assert fake_torchvision.calls == [{"root": "data", "train": False, "download": True}]
    assert (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1").is_file() and classes == CIFAR10_CLASSES
    get_loaders(device="cpu")  # the copy is found the second time
    assert len(fake_torchvision.calls) == 1


def test_without_a_network_the_message_names_the_three_ways_out(monkeypatch, tmp_path, fake_torchvision):
    monkeypatch.chdir(tmp_path)
    fake_torchvision.error = URLError("Temporary failure in name resolution")
    with pytest.raises(DataUnavailableError) as info:
        get_loaders(device="cpu")
    message = str(info.value)
    for way in ("connect to a network", "COURSE_DATA", "COURSE_DATASET=synthetic"):
        assert way in message


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="synthetic"):
        get_loaders(dataset="imagenet", device="cpu")
