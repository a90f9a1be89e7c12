"""An offline, CIFAR-shaped data set drawn by code: ten classes of shapes and textures."""

from __future__ import annotations

import math

import numpy as np
import torch

from course_utils.cifar import ImageSet

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "disk",
    "square",
    "triangle",
    "cross",
    "ring",
    "frame",
    "stripes",
    "checker",
    "dots",
    "target",
)
_SIZE = 32
_NOISE_STD = 0.08


def make_synthetic_cifar(num_train: int = 10_000, num_test: int = 2_000, seed: int = 0) -> ImageSet:
    """A CIFAR-10 stand-in: uint8 images ``(N, 3, 32, 32)``, int64 labels ``(N,)``, ten balanced classes.

    Each image shows one shape or texture of its class at a random position, size and angle, in a colour
    whose hue leans towards the class but overlaps its neighbours', on a random background, plus noise.
    The same ``seed`` gives the same images; the test split does not depend on ``num_train``.
    """
    train_seed, test_seed = np.random.SeedSequence(seed).generate_state(2)
    train_images, train_labels = _generate(num_train, torch.Generator().manual_seed(int(train_seed)))
    test_images, test_labels = _generate(num_test, torch.Generator().manual_seed(int(test_seed)))
    return ImageSet(train_images, train_labels, test_images, test_labels, SYNTHETIC_CLASSES, "synthetic")


def _generate(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images uint8 ``(n, 3, 32, 32)`` and labels int64 ``(n,)``; class counts differ by at most one."""
    num_classes = len(SYNTHETIC_CLASSES)
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, *shape, generator=gen)

    # Shape frame: coordinates relative to a random centre, rotated, in units of the radius.
    radius = uniform(6.0, 11.0)[:, None, None]
    angle = uniform(0.0, math.pi)[:, None, None]
    grid = torch.arange(_SIZE, dtype=torch.float32)
    dx = grid[None, None, :] - uniform(10.0, 22.0)[:, None, None]  # (n, 1, 32)
    dy = grid[None, :, None] - uniform(10.0, 22.0)[:, None, None]  # (n, 32, 1)
    u = (dx * angle.cos() + dy * angle.sin()) / radius  # (n, 32, 32)
    v = (dy * angle.cos() - dx * angle.sin()) / radius  # (n, 32, 32)
    period = uniform(3.0, 5.0)[:, None, None] / radius  # texture period, radius units

    mask = torch.empty(n, _SIZE, _SIZE)
    for k, draw in enumerate(_MASKS):
        idx = (labels == k).nonzero().squeeze(1)
        # Soft edges: about one pixel wide, whatever the radius.
        inside = 1.0 - draw(u[idx], v[idx], period[idx])
        mask[idx] = (0.5 + inside * radius[idx]).clamp(0.0, 1.0)

    hue = (labels / num_classes + uniform(-0.15, 0.15)) % 1.0
    foreground = 255.0 * _hsv_to_rgb(hue, uniform(0.5, 1.0), uniform(0.4, 1.0))  # (n, 3)
    background = 255.0 * _hsv_to_rgb(uniform(0.0, 1.0), uniform(0.0, 0.5), uniform(0.0, 1.0))  # (n, 3)
    # (n, 3, 32, 32): background where the mask is 0, foreground where it is 1
    images = torch.lerp(background[:, :, None, None], foreground[:, :, None, None], mask[:, None])
    images += torch.empty_like(images).normal_(0.0, 255.0 * _NOISE_STD, generator=gen)
    return images.round_().clamp_(0.0, 255.0).to(torch.uint8), labels


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(n,)`` hue, saturation and value in [0, 1] to RGB ``(n, 3)``."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + 6.0 * h[:, None]) % 6.0  # (n, 3)
    return v[:, None] - (v * s)[:, None] * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


# Each mask function maps rotated coordinates (u, v) in radius units, and the texture period, to a
# "distance" that is below 1 inside the figure and grows by about 1 / radius per pixel outside.
def _disk(u, v, p):
    return torch.sqrt(u**2 + v**2)


def _square(u, v, p):
    return torch.maximum(u.abs(), v.abs()) / 0.8


def _triangle(u, v, p):
    return 2.0 * torch.maximum(-v, torch.maximum(0.866 * u + 0.5 * v, -0.866 * u + 0.5 * v))


def _cross(u, v, p):
    return torch.minimum(torch.maximum(u.abs() / 0.3, v.abs()), torch.maximum(v.abs() / 0.3, u.abs()))


def _ring(u, v, p):
    return ((u**2 + v**2).sqrt() - 0.7).abs() / 0.25


def _frame(u, v, p):
    return (torch.maximum(u.abs(), v.abs()) - 0.6).abs() / 0.2


def _textured(pattern):
    """A texture inside a disk of 1.2 radii: ``pattern(u, v, p)`` is below 1 on the texture's ink."""

    def draw(u, v, p):
        return torch.maximum(pattern(u, v, p), torch.sqrt(u**2 + v**2) / 1.2)

    return draw


def _stripes(u, v, p):
    return 1.0 + torch.sin(2 * math.pi * u / p)


def _checker(u, v, p):
    return 1.0 + torch.sin(2 * math.pi * u / p) * torch.sin(2 * math.pi * v / p)


def _dots(u, v, p):
    return (((u / p) % 1.0 - 0.5) ** 2 + ((v / p) % 1.0 - 0.5) ** 2).sqrt() / 0.3


def _target(u, v, p):
    return 1.0 + torch.sin(2 * math.pi * (u**2 + v**2).sqrt() / p)


_MASKS = (
    _disk,
    _square,
    _triangle,
    _cross,
    _ring,
    _frame,
    _textured(_stripes),
    _textured(_checker),
    _textured(_dots),
    _textured(_target),
)
