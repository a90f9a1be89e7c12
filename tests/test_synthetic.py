"""course_utils.synthetic: shapes, determinism, balance and a cheap learnability check."""

from __future__ import annotations

import torch

from course_utils.synthetic import SYNTHETIC_CLASSES, make_synthetic_cifar


def test_shapes_dtypes_and_names():
    data = make_synthetic_cifar(num_train=120, num_test=30, seed=0)
    assert data.train_images.shape == (120, 3, 32, 32) and data.test_images.shape == (30, 3, 32, 32)
    assert data.train_images.dtype == data.test_images.dtype == torch.uint8
    assert data.train_labels.dtype == torch.int64 and data.train_labels.shape == (120,)
    assert data.classes == SYNTHETIC_CLASSES and len(set(data.classes)) == 10
    assert data.name == "synthetic"
    assert 0 <= int(data.train_labels.min()) and int(data.train_labels.max()) <= 9
    # Real pictures, not constants: the pixels span most of the range and images differ from each other.
    assert int(data.train_images.min()) < 30 and int(data.train_images.max()) > 225
    assert not torch.equal(data.train_images[0], data.train_images[1])


def test_same_seed_same_images_other_seed_other_images():
    a = make_synthetic_cifar(num_train=50, num_test=20, seed=3)
    b = make_synthetic_cifar(num_train=50, num_test=20, seed=3)
    c = make_synthetic_cifar(num_train=50, num_test=20, seed=4)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.train_labels, b.train_labels)
    assert torch.equal(a.test_images, b.test_images)
    assert not torch.equal(a.train_images, c.train_images)
    assert not torch.equal(a.train_images, a.test_images[: len(a.train_images)])


def test_test_split_does_not_depend_on_the_train_size():
    small = make_synthetic_cifar(num_train=40, num_test=25, seed=1)
    large = make_synthetic_cifar(num_train=90, num_test=25, seed=1)
    assert torch.equal(small.test_images, large.test_images)
    assert torch.equal(small.test_labels, large.test_labels)


def test_classes_are_balanced():
    data = make_synthetic_cifar(num_train=1005, num_test=37, seed=2)
    for labels in (data.train_labels, data.test_labels):
        counts = torch.bincount(labels, minlength=10)
        assert int(counts.max() - counts.min()) <= 1, counts


def test_nearest_class_mean_on_raw_pixels_beats_chance_clearly():
    data = make_synthetic_cifar(num_train=2000, num_test=500, seed=0)
    train = data.train_images.flatten(1).float()
    means = torch.stack([train[data.train_labels == k].mean(0) for k in range(10)])  # (10, 3072)
    predicted = torch.cdist(data.test_images.flatten(1).float(), means).argmin(1)
    accuracy = (predicted == data.test_labels).float().mean().item()
    # Chance is 0.10 (binomial std 0.013 on 500 images); a linear template alone must not solve the task.
    assert 0.16 < accuracy < 0.6, accuracy
