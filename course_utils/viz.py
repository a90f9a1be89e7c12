"""Plots the notebooks share; each function returns its matplotlib ``Figure`` (no ``plt.show()``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .loaders import denormalize
from .seed_comparison import SeedResults, format_mean_and_error
from .training import History


def plot_history(history: History) -> Figure:
    """Loss per step (left) and running-train and validation accuracy per check (right)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(range(1, len(history.loss) + 1), history.loss, linewidth=0.8)
    ax_loss.set(title="Training loss", xlabel="iteration", ylabel="cross-entropy loss")
    for label, points in (("train (running)", history.train_acc), ("validation", history.val_acc)):
        if points:
            steps, accs = zip(*points, strict=True)
            ax_acc.plot(steps, accs, marker="o", label=label)
    ax_acc.set(title="Accuracy", xlabel="iteration", ylabel="accuracy (%)")
    ax_acc.legend()
    fig.tight_layout()
    return fig


def _to_hwc(image: torch.Tensor, normalized: bool) -> np.ndarray:
    """``(3, H, W)`` image (normalized, uint8 or in [0, 1]) -> ``(H, W, 3)`` floats in [0, 1]."""
    image = image.detach().cpu()
    if normalized:
        image = denormalize(image.float())
    elif not image.is_floating_point():
        image = image.float() / 255
    return image.clamp(0, 1).permute(1, 2, 0).numpy()  # (H, W, 3)


def show_images(
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    classes: Sequence[str],
    *,
    nrow: int = 8,
    normalized: bool = True,
) -> Figure:
    """A grid of images ``(N, 3, H, W)``, ``nrow`` per row, each titled with its class name.

    ``normalized=True`` undoes the loaders' mean/std normalization; otherwise images are uint8 or in [0, 1].
    """
    if images.dim() != 4:
        raise ValueError(f"Expected images of shape (N, 3, H, W), got {tuple(images.shape)}.")
    n = images.shape[0]
    cols = min(n, nrow)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.7 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            fig.delaxes(ax)
            continue
        ax.imshow(_to_hwc(images[i], normalized))
        ax.set_title(classes[int(labels[i])], fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_attention_map(
    image: torch.Tensor, weights: torch.Tensor, query: tuple[int, int], *, normalized: bool = True
) -> Figure:
    """Where one query position attends: the image ``(3, H, W)`` with the query marked (left), and the
    attention weights ``(h, w)`` of that query stretched over the image (right). ``query`` is ``(row, col)``
    on the ``h x w`` grid of the weights (a feature map or patch grid)."""
    weights = weights.detach().cpu().float()
    if weights.dim() != 2:
        raise ValueError(
            f"Expected weights of shape (h, w) for one query, got {tuple(weights.shape)}; "
            "pick one image, head and query first, e.g. attn[0, head, q].reshape(h, w)."
        )
    h, w = weights.shape
    row, col = query
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"query {query} lies outside the {h} x {w} grid of the weights.")
    picture = _to_hwc(image, normalized)
    height, width = picture.shape[:2]
    # Centre of the query's cell, in image pixels (imshow puts pixel centres at integers).
    qx, qy = (col + 0.5) * width / w - 0.5, (row + 0.5) * height / h - 0.5
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)

    fig, (ax_img, ax_map) = plt.subplots(1, 2, figsize=(8, 4))
    ax_img.imshow(picture)
    ax_img.set_title(f"query at (row {row}, col {col})")
    ax_map.imshow(picture)
    overlay = ax_map.imshow(weights.numpy(), cmap="inferno", alpha=0.6, extent=extent, interpolation="nearest")
    ax_map.set_title("attention weights")
    fig.colorbar(overlay, ax=ax_map, fraction=0.046, pad=0.04)
    for ax in (ax_img, ax_map):
        ax.plot([qx], [qy], marker="*", markersize=14, color="cyan", markeredgecolor="black")
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_heatmap(
    matrix: torch.Tensor | np.ndarray,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    ax: Axes | None = None,
    cmap: str = "viridis",
) -> Figure:
    """A 2-D matrix as a heatmap with a colour bar (positional encodings, attention matrices).

    Draws into ``ax`` when given (for panels of heads), else into a new figure.
    """
    matrix = matrix.detach().cpu().float().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"Expected a 2-D matrix, got shape {matrix.shape}; select one head or one image first.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    mesh = ax.imshow(matrix, cmap=cmap, aspect="auto", interpolation="nearest")
    ax.figure.colorbar(mesh, ax=ax)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return ax.figure


def plot_seed_comparison(results: SeedResults) -> Figure:
    """Mean validation accuracy per model as bars with ±1 standard-error bars, each seed's run as a dot.

    A model with a single run has no error bar. The test accuracy is not drawn: it is not for choosing models.
    """
    summary = results.summary()
    if not summary:
        raise ValueError("No runs to plot: results.rows is empty; run compare_over_seeds first.")
    names = list(summary)
    means = [summary[name][0] for name in names]
    errors = [summary[name][1] for name in names]
    bar_errors = [0.0 if math.isnan(e) else e for e in errors]
    fig, ax = plt.subplots(figsize=(1.8 * len(names) + 2, 4))
    bars = ax.bar(names, means, yerr=bar_errors, capsize=6, color="tab:blue", alpha=0.7)
    ax.bar_label(bars, labels=[format_mean_and_error(m, e) for m, e in zip(means, errors, strict=True)], padding=4)
    top = max(m + e for m, e in zip(means, bar_errors, strict=True))
    for x, name in enumerate(names):
        accs = [row["val_acc"] for row in results.rows if row["model"] == name]
        ax.plot([x] * len(accs), accs, "o", color="black", markersize=4)
        top = max(top, *accs)
    seeds = len({row["seed"] for row in results.rows})
    ax.set(
        title=f"Validation accuracy over {seeds} seed{'s' if seeds != 1 else ''} (mean ± standard error)",
        ylabel="validation accuracy (%)",
    )
    ax.set_ylim(0, min(100, top * 1.15) or 100)  # every run at 0%: the whole scale
    fig.tight_layout()
    return fig
