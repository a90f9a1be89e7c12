"""Tests for course_utils.viz: each plot shows the data it was given."""

from __future__ import annotations

import math
import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.container import BarContainer

from course_utils.cifar import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from course_utils.seed_comparison import SeedResults
from course_utils.training import History
from course_utils.viz import (
    plot_attention_map,
    plot_heatmap,
    plot_history,
    plot_seed_comparison,
    show_images,
)

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def normalize(images01: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (images01 - mean) / std


def test_plot_history_draws_the_loss_and_both_accuracies():
    history = History(
        loss=[2.3, 2.0, 1.7, 1.5, 1.4],
        val_acc=[(1, 12.0), (5, 41.0)],
        train_acc=[(1, 10.0), (5, 45.0)],
        best_val_acc=41.0,
        epochs=1,
        steps=5,
        lr=[1e-3] * 5,
    )
    fig = plot_history(history)
    ax_loss, ax_acc = fig.axes
    assert (ax_loss.get_title(), ax_acc.get_title()) == ("Training loss", "Accuracy")
    (loss_line,) = ax_loss.get_lines()
    assert list(loss_line.get_xdata()) == [1, 2, 3, 4, 5] and list(loss_line.get_ydata()) == history.loss
    curves = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax_acc.get_lines()}
    assert curves == {"train (running)": ([1, 5], [10.0, 45.0]), "validation": ([1, 5], [12.0, 41.0])}


def test_show_images_titles_each_image_with_its_class_and_undoes_normalization():
    gen = torch.Generator().manual_seed(0)
    images01 = torch.rand(10, 3, 32, 32, generator=gen)
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    fig = show_images(normalize(images01), labels, CIFAR10_CLASSES, nrow=4)
    assert len(fig.axes) == 10, "empty cells of the 4 x 3 grid must be removed"
    assert [ax.get_title() for ax in fig.axes] == [CIFAR10_CLASSES[i] for i in labels]
    shown = fig.axes[2].get_images()[0].get_array()
    assert shown.shape == (32, 32, 3)
    np.testing.assert_allclose(shown, images01[2].permute(1, 2, 0).numpy(), atol=1e-5)


def test_show_images_accepts_uint8_images():
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    fig = show_images(images, [0, 1, 2], ("a", "b", "c"), normalized=False)
    shown = fig.axes[1].get_images()[0].get_array()
    np.testing.assert_allclose(shown, images[1].permute(1, 2, 0).numpy() / 255, atol=1e-6)


def test_attention_map_overlays_the_weights_and_marks_the_query():
    image01 = torch.rand(3, 32, 32)
    weights = torch.softmax(torch.randn(64), dim=0).reshape(8, 8)
    fig = plot_attention_map(normalize(image01[None])[0], weights, query=(2, 5))
    ax_img, ax_map = fig.axes[:2]
    assert len(fig.axes) == 3, "image, overlay and colour bar"
    overlay = ax_map.get_images()[1]
    np.testing.assert_allclose(overlay.get_array(), weights.numpy(), rtol=1e-6)
    assert overlay.get_extent() == [-0.5, 31.5, 31.5, -0.5], "the weights must cover the whole image"
    # Cell (2, 5) of an 8 x 8 grid over 32 pixels spans rows 8..11, columns 20..23: centre (21.5, 9.5).
    for ax in (ax_img, ax_map):
        (marker,) = ax.get_lines()
        assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (21.5, 9.5)
    assert "row 2, col 5" in ax_img.get_title()


def test_attention_map_rejects_a_query_outside_the_grid_and_weights_of_the_wrong_rank():
    with pytest.raises(ValueError, match="outside the 4 x 4 grid"):
        plot_attention_map(torch.rand(3, 8, 8), torch.rand(4, 4), query=(4, 0))
    with pytest.raises(ValueError, match=r"\(h, w\)"):
        plot_attention_map(torch.rand(3, 8, 8), torch.rand(2, 4, 4), query=(0, 0))


def test_plot_heatmap_shows_the_matrix_with_labels_and_can_draw_into_an_axis():
    matrix = torch.randn(6, 9)
    fig = plot_heatmap(matrix, title="Positional encoding", xlabel="dimension", ylabel="position")
    ax = fig.axes[0]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
        "Positional encoding",
        "dimension",
        "position",
    )
    np.testing.assert_allclose(ax.get_images()[0].get_array(), matrix.numpy())
    assert len(fig.axes) == 2, "heatmap and colour bar"

    panel, axes = plt.subplots(1, 2)
    assert plot_heatmap(np.eye(3), title="head 1", ax=axes[1]) is panel
    assert axes[1].get_title() == "head 1" and not axes[0].get_images()
    with pytest.raises(ValueError, match="2-D"):
        plot_heatmap(torch.zeros(2, 3, 4))


def test_seed_comparison_bars_are_validation_means_and_error_bars_standard_errors():
    accs = {"vanilla": [59.8, 60.8, 57.7], "early attention": [59.4, 61.1, 60.8]}
    rows = [
        dict(model=name, seed=seed, val_acc=acc, test_acc=float("nan"), seconds=1.0)
        for name, values in accs.items()
        for seed, acc in enumerate(values)
    ]
    fig = plot_seed_comparison(SeedResults(rows))
    (ax,) = fig.axes
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    np.testing.assert_allclose([bar.get_height() for bar in bars], [np.mean(v) for v in accs.values()])
    assert [t.get_text() for t in ax.get_xticklabels()] == list(accs)
    segments = bars.errorbar.lines[2][0].get_segments()
    half_lengths = [abs(seg[1][1] - seg[0][1]) / 2 for seg in segments]
    np.testing.assert_allclose(half_lengths, [np.std(v, ddof=1) / np.sqrt(3) for v in accs.values()])
    dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert sorted(y for line in dots for y in line.get_ydata()) == sorted(sum(accs.values(), []))
    assert "3 seeds" in ax.get_title() and "standard error" in ax.get_title()
    assert ax.get_ylabel() == "validation accuracy (%)"


def test_seed_comparison_of_single_runs_draws_no_error_bars():
    rows = [
        dict(model=name, seed=0, val_acc=acc, test_acc=float("nan"), seconds=1.0)
        for name, acc in (("a", 40.0), ("b", 45.0))
    ]
    fig = plot_seed_comparison(SeedResults(rows))
    (ax,) = fig.axes
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    segments = bars.errorbar.lines[2][0].get_segments()
    assert all(seg[0][1] == seg[1][1] for seg in segments)
    assert [t.get_text() for t in ax.texts] == ["40.00 (one run)", "45.00 (one run)"]
    assert "1 seed " in ax.get_title()


def test_seed_comparison_of_runs_all_at_zero_percent_draws_the_whole_scale_without_a_warning():
    rows = [dict(model=m, seed=s, val_acc=0.0, test_acc=math.nan, seconds=1.0) for m in "ab" for s in (0, 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_seed_comparison(SeedResults(rows))
    assert fig.axes[0].get_ylim() == (0.0, 100.0)
