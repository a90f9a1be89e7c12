"""course_utils.recipes: each ingredient of a Recipe reaches the training it describes, and nothing else changes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autograde.assignments.vision_transformer import reference as ref
from course_utils.loaders import Loaders, TensorLoader
from course_utils.recipes import Recipe, compare_recipes, make_optimizers, recipe_loader, train_with_recipe

TINY = dict(img_size=8, patch_size=4, embed_dim=8, num_layers=2, num_heads=2, dim_feedforward=12, dropout=0.0)


def tiny_vit(**kwargs) -> ref.VisionTransformer:
    return ref.VisionTransformer(**{**TINY, **kwargs})


@pytest.fixture
def loaders(monkeypatch) -> Loaders:
    """40 training images in batches of 8, 16 validation and 16 test images, 10 classes; fast mode off."""
    monkeypatch.setenv("COURSE_FAST", "0")
    gen = torch.Generator().manual_seed(0)

    def split(n: int, train: bool, shuffle: bool = False) -> TensorLoader:
        images = torch.randint(0, 256, (n, 3, 8, 8), generator=gen, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=gen)
        return TensorLoader(images, labels, 8, train=train, shuffle=shuffle, device="cpu")

    return Loaders(split(40, True, True), split(16, True), split(16, False), tuple("abcdefghij"))


def learning_rates(optimizers, schedulers, steps: int) -> list[list[float]]:
    lrs = []
    for _ in range(steps):
        lrs.append([o.param_groups[0]["lr"] for o in optimizers])
        for optimizer in optimizers:
            optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    return lrs


def ids(params) -> set[int]:
    return {id(p) for p in params}


def test_muon_takes_the_encoder_matrices_and_adamw_the_rest_without_decay_on_tokens():
    model = tiny_vit(pool="cls", pos_encoding="learned")
    (muon, adamw), schedulers = make_optimizers(model, Recipe(optimizer="muon", weight_decay=0.05), 10)
    assert schedulers == []  # the baseline schedule is constant
    assert isinstance(muon, torch.optim.Muon) and type(adamw) is torch.optim.AdamW
    encoder_matrices = {id(m.weight) for m in model.layers.modules() if isinstance(m, nn.Linear)}
    assert ids(muon.param_groups[0]["params"]) == encoder_matrices
    assert muon.defaults["adjust_lr_fn"] == "match_rms_adamw" and muon.defaults["weight_decay"] == 0.05
    decay, no_decay = adamw.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert ids(decay["params"]) == ids([model.patch_embed.proj.weight, model.head.weight])
    assert {id(model.cls_token), id(model.positional_encoding.pos_embed)} <= ids(no_decay["params"])
    groups = [muon.param_groups[0]["params"], decay["params"], no_decay["params"]]
    assert sorted(id(p) for group in groups for p in group) == sorted(id(p) for p in model.parameters())


def test_adamw_alone_decays_every_weight_matrix():
    model = tiny_vit()
    (adamw,), _ = make_optimizers(model, Recipe(weight_decay=0.1, lr=3e-3), 10)
    decay, no_decay = adamw.param_groups
    matrices = [p for p in model.parameters() if p.ndim == 2]
    assert ids(decay["params"]) == ids(matrices) and decay["weight_decay"] == 0.1
    assert all(p.ndim == 1 for p in no_decay["params"]) and adamw.defaults["lr"] == 3e-3


def test_muon_needs_encoder_layers():
    with pytest.raises(ValueError, match="model.layers"):
        make_optimizers(nn.Sequential(nn.Linear(4, 4)), Recipe(optimizer="muon"), 10)


@pytest.mark.parametrize("total", [1, 2, 10])
def test_warmup_cosine_schedules_even_a_handful_of_steps(total):
    lrs = learning_rates(*make_optimizers(tiny_vit(), Recipe(schedule="warmup_cosine"), total), total)
    assert all(0 < lr <= 1e-3 for step in lrs for lr in step)


def test_warmup_then_cosine_decay_the_same_for_both_optimizers():
    total = 60
    recipe = Recipe(optimizer="muon", schedule="warmup_cosine", lr=2e-3, warmup=0.25)
    both = learning_rates(*make_optimizers(tiny_vit(), recipe, total), total)
    assert all(muon == adamw for muon, adamw in both)
    lrs = [muon for muon, _ in both]
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(2e-3) and abs(peak - 0.25 * total) <= 1
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1 : peak + 1], strict=True))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :], strict=False))
    assert lrs[0] < 0.1 * max(lrs) and lrs[-1] < 0.01 * max(lrs)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "sgd"}, "optimizer='sgd'"),
        ({"schedule": "step"}, "schedule='step'"),
        ({"lr": 0}, "lr must be positive"),
        ({"label_smoothing": 1.0}, "fractions"),
        ({"batch_size": 0}, "batch_size=0"),
    ],
)
def test_a_wrong_ingredient_is_named(changes, message):
    with pytest.raises(ValueError, match=message):
        Recipe().but(**changes)


def test_but_changes_one_field_and_differences_names_it():
    baseline = Recipe()
    smoothed = baseline.but(label_smoothing=0.1)
    assert smoothed.differences(baseline) == "label_smoothing=0.1"
    assert baseline.differences(baseline) == "the same" and baseline.label_smoothing == 0.0


def test_recipe_loader_rebatches_the_same_images_with_augmentation(loaders):
    loader = recipe_loader(loaders.train, Recipe(batch_size=16, augment=True), seed=3)
    assert loader.batch_size == 16 and loader.augment and loader.shuffle and len(loader) == 3
    assert loader.dataset.images.data_ptr() == loaders.train.dataset.images.data_ptr()  # no copy
    first = [y for _, y in recipe_loader(loaders.train, Recipe(), seed=3)]
    again = [y for _, y in recipe_loader(loaders.train, Recipe(), seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_a_fraction_of_an_epoch_trains_that_share_of_the_steps(loaders):
    history = train_with_recipe(tiny_vit(), Recipe(batch_size=4), loaders, epochs=0.3, verbose=False)
    assert history.steps == 3  # 0.3 of the 10 batches of 4
    history = train_with_recipe(tiny_vit(), Recipe(batch_size=8), loaders, epochs=2, verbose=False)
    assert history.steps == 10 and history.epochs == 2
    with pytest.raises(ValueError, match="whole number"):
        train_with_recipe(tiny_vit(), Recipe(), loaders, epochs=1.5, verbose=False)


def test_the_schedule_spans_exactly_the_steps_trained(loaders):
    recipe = Recipe(schedule="warmup_cosine", warmup=0.2, batch_size=8)
    history = train_with_recipe(tiny_vit(), recipe, loaders, epochs=2, verbose=False)
    assert len(history.lr) == 10
    assert history.lr.index(max(history.lr)) == 1 and history.lr[-1] < 0.1 * max(history.lr)


def test_label_smoothing_reaches_the_loss(loaders):
    losses = {}
    for smoothing in (0.0, 0.5):
        torch.manual_seed(0)
        history = train_with_recipe(
            tiny_vit(), Recipe(label_smoothing=smoothing), loaders, epochs=0.1, seed=0, verbose=False
        )
        losses[smoothing] = history.loss[0]
    torch.manual_seed(0)
    model = tiny_vit().eval()
    x, y = next(iter(recipe_loader(loaders.train, Recipe(), seed=0)))
    with torch.no_grad():
        scores = model(x)
    assert losses[0.0] == pytest.approx(nn.functional.cross_entropy(scores, y).item(), rel=1e-5)
    assert losses[0.5] == pytest.approx(nn.functional.cross_entropy(scores, y, label_smoothing=0.5).item(), rel=1e-5)


def test_compare_recipes_measures_the_final_weights_on_validation_only(loaders):
    runs = {
        "baseline": (tiny_vit, Recipe()),
        "smoothed": (tiny_vit, Recipe(label_smoothing=0.1)),
    }
    results = compare_recipes(runs, loaders, seeds=(0, 1), epochs=1)
    assert [(r["model"], r["seed"]) for r in results.rows] == [
        ("baseline", 0),
        ("baseline", 1),
        ("smoothed", 0),
        ("smoothed", 1),
    ]
    assert all(math.isnan(r["test_acc"]) for r in results.rows)
    again = compare_recipes({"baseline": runs["baseline"]}, loaders, seeds=(1,), epochs=1)
    assert again.rows[0]["val_acc"] == results.rows[1]["val_acc"]  # a seed fixes weights and batch order
    torch.manual_seed(0)
    model = tiny_vit()
    history = train_with_recipe(model, Recipe(), loaders, epochs=1, seed=0, verbose=False)
    correct = sum(int((model.eval()(x).argmax(1) == y).sum()) for x, y in loaders.val)
    assert history.val_acc[-1][1] == pytest.approx(100 * correct / 16)


def test_fast_mode_keeps_the_first_seeds(loaders, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    results = compare_recipes({"baseline": (tiny_vit, Recipe())}, loaders, seeds=(0, 1, 2), epochs=1)
    assert [r["seed"] for r in results.rows] == [0, 1]
