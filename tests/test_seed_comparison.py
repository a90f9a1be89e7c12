"""Tests for course_utils.seed_comparison: the ranked table, and comparisons that survive an interruption.

An interrupted comparison, run again with the same ``keep_in``, repeats no finished run, continues the
interrupted one from its last epoch and ends with exactly the rows and weights of an uninterrupted comparison.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from course_utils.layers import Flatten
from course_utils.loaders import Loaders, TensorLoader
from course_utils.runtime import FAST_CAPS, set_seed
from course_utils.seed_comparison import SeedResults, compare_over_seeds, state_files
from course_utils.training import check_accuracy, train
from tests.test_training import NUM_CLASSES, BatchList, batches, blobs, linear_model


@pytest.fixture(autouse=True)
def full_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")


def tiny_loaders():
    x, y = blobs(60, seed=14)
    xv, yv = blobs(30, seed=15)
    xt, yt = blobs(30, seed=16)
    return SimpleNamespace(train=batches(x, y, 10), val=batches(xv, yv, 10), test=batches(xt, yt, 10, train=False))


class CountingLoader(BatchList):
    """A ``BatchList`` that counts how often it is iterated."""

    def __init__(self, batches, **kwargs):
        super().__init__(batches, **kwargs)
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        return super().__iter__()


def test_compare_over_seeds_ranks_on_validation_and_leaves_the_test_set_alone(capsys):
    def mlp() -> nn.Module:
        return nn.Sequential(Flatten(), nn.Linear(192, 16), nn.ReLU(), nn.Linear(16, NUM_CLASSES))

    builders = {"linear": linear_model, "<mlp>": mlp}
    loaders = tiny_loaders()
    xt, yt = blobs(30, seed=16)
    loaders.test = CountingLoader(batches(xt, yt, 10, train=False), train=False)
    results = compare_over_seeds(builders, loaders, seeds=(0, 1, 2), lr=1e-2)
    assert loaders.test.passes == 0, "the test set must not be touched unless measure_test=True"
    assert [(r["model"], r["seed"]) for r in results.rows] == [(m, s) for m in builders for s in (0, 1, 2)]
    assert all(math.isnan(r["test_acc"]) for r in results.rows)
    out = capsys.readouterr().out
    assert out.count("seed") == 6 and "validation" in out and "test" not in out

    summary = results.summary()
    for name in builders:
        accs = torch.tensor([r["val_acc"] for r in results.rows if r["model"] == name], dtype=torch.float64)
        assert summary[name] == pytest.approx((accs.mean().item(), accs.std().item() / math.sqrt(3)))
    assert results.ranking() == sorted(builders, key=lambda name: -summary[name][0])
    again = compare_over_seeds({"linear": linear_model}, loaders, seeds=(1,), lr=1e-2)
    assert again.rows[0]["val_acc"] == results.rows[1]["val_acc"], "a seed must reproduce its run"

    table = results.to_markdown().splitlines()
    assert "validation accuracy per seed" in table[0] and "standard error" in table[0] and "test" not in table[0]
    assert len(table) == 2 + len(builders)
    best = results.ranking()[0]
    assert table[2].startswith(f"| 1 | {best} |")
    mean, error = summary[best]
    assert f"{mean:.2f} ± {error:.2f}" in table[2]
    assert ", ".join(f"{r['val_acc']:.2f}" for r in results.rows if r["model"] == best) in table[2]
    page = results._repr_html_()
    assert page.startswith("<table>") and "&lt;mlp&gt;" in page and "<mlp>" not in page


def _retrained_linear(loaders) -> nn.Module:
    """Seed 0's run of ``compare_over_seeds({"linear": linear_model}, loaders, lr=1e-2)``, done again."""
    set_seed(0)
    model = linear_model()
    train(model, torch.optim.Adam(model.parameters(), lr=1e-2), loaders.train, verbose=False)
    return model


def test_compare_over_seeds_measures_the_test_set_only_when_asked(capsys):
    loaders = tiny_loaders()
    results = compare_over_seeds({"linear": linear_model}, loaders, seeds=(0,), lr=1e-2, measure_test=True)
    (row,) = results.rows
    assert row["test_acc"] == pytest.approx(check_accuracy(loaders.test, _retrained_linear(loaders), verbose=False))
    assert f"test {row['test_acc']:.2f}%" in capsys.readouterr().out


def test_compare_over_seeds_keeps_fewer_seeds_in_fast_mode_and_writes_no_state(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_FAST", "1")
    results = compare_over_seeds({"linear": linear_model}, tiny_loaders(), seeds=(0, 1, 2, 3), keep_in=tmp_path)
    assert [r["seed"] for r in results.rows] == [0, 1, 2, 3][: FAST_CAPS.seeds]
    assert list(tmp_path.iterdir()) == []


def test_seed_results_summarise_validation_accuracy_and_a_single_run_has_no_error_estimate():
    results = SeedResults([dict(model="m", seed=0, val_acc=50.0, test_acc=40.0, seconds=1.0)])
    ((mean, error),) = results.summary().values()
    assert mean == 50.0 and math.isnan(error)
    assert "50.00 (one run)" in results.to_markdown()


# ------------------------------------------------------------------------------ interrupted comparisons
def tensor_loaders() -> Loaders:
    """Images whose class is the brighter channel, as uint8 TensorLoaders: 60 training images in batches of 8."""
    gen = torch.Generator().manual_seed(0)

    def split(n: int, train: bool) -> TensorLoader:
        labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
        images = torch.randint(0, 150, (n, 3, 8, 8), generator=gen, dtype=torch.uint8)
        images[torch.arange(n), labels] += 100
        return TensorLoader(images, labels, 8, train=train, shuffle=train, device="cpu")

    return Loaders(split(60, True), split(24, True), split(24, False), ("r", "g", "b"))


class Tripwire(nn.Module):
    """A small network that counts its forward passes in training mode, and raises KeyboardInterrupt (a lost
    runtime) at the pass ``Tripwire.stop_at`` counts down to."""

    stop_at: int | None = None
    passes = 0

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(Flatten(), nn.Linear(192, hidden), nn.ReLU(), nn.Linear(hidden, NUM_CLASSES))

    def forward(self, x):
        if self.training:
            Tripwire.passes += 1
            if Tripwire.stop_at is not None and Tripwire.passes == Tripwire.stop_at:
                raise KeyboardInterrupt
        return self.net(x)


BUILDERS = {"small net": Tripwire, "wide net": lambda: Tripwire(32)}


def compare(keep_in, epochs=2, stop_at=None, builders=BUILDERS):
    Tripwire.stop_at, Tripwire.passes = stop_at, 0
    try:
        return compare_over_seeds(builders, tensor_loaders(), seeds=(0, 1), epochs=epochs, lr=1e-2, keep_in=keep_in)
    finally:
        Tripwire.stop_at = None


def weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_an_interrupted_comparison_repeats_no_finished_run_and_ends_exactly_as_an_uninterrupted_one(tmp_path):
    uninterrupted = compare(tmp_path / "whole")
    per_run = Tripwire.passes // 4  # 8 batches per epoch, 2 epochs
    assert per_run == 16

    with pytest.raises(KeyboardInterrupt):  # lost during the third run's second epoch
        compare(tmp_path / "cut", stop_at=2 * per_run + 12)
    resumed = compare(tmp_path / "cut")
    assert Tripwire.passes == per_run - 8 + per_run  # the third run's last epoch and the fourth run
    assert resumed.rows == [{**row, "seconds": resumed.rows[i]["seconds"]} for i, row in enumerate(uninterrupted.rows)]
    names = state_files(tmp_path / "whole", list(BUILDERS), (0, 1), 2)
    for (name, seed), whole in names.items():
        cut = state_files(tmp_path / "cut", list(BUILDERS), (0, 1), 2)[name, seed]
        for key, tensor in weights(whole).items():
            assert torch.equal(tensor, weights(cut)[key]), (name, seed, key)

    again = compare(tmp_path / "cut")  # everything finished: nothing trains, the table is the same
    assert Tripwire.passes == 0 and [r["val_acc"] for r in again.rows] == [r["val_acc"] for r in resumed.rows]


def test_another_budget_keeps_its_own_states_and_a_changed_model_sets_the_old_state_aside(tmp_path, capsys):
    compare(tmp_path, epochs=2)
    two = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.pt"))
    assert two == ["2-epochs/small-net-seed0.pt", "2-epochs/small-net-seed1.pt", "2-epochs/wide-net-seed0.pt",
                   "2-epochs/wide-net-seed1.pt"]  # fmt: skip
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.pt")}
    capsys.readouterr()
    compare(tmp_path, epochs=0.5)  # another device's budget: its own folder, the other left as it was
    assert "also holds the states of runs with another budget (2-epochs" in capsys.readouterr().out
    assert all(p.read_bytes() == data for p, data in before.items())
    assert sorted(p.name for p in (tmp_path / "0.5-epochs").iterdir())[:1] == ["small-net-seed0.pt"]

    capsys.readouterr()
    compare(tmp_path, epochs=2, builders={"small net": lambda: Tripwire(8), "wide net": BUILDERS["wide net"]})
    out = capsys.readouterr().out
    assert "cannot continue this run: the model's layers or their shapes differ" in out
    kept = tmp_path / "2-epochs" / "small-net-seed0.previous.pt"
    assert kept.read_bytes() == before[tmp_path / "2-epochs" / "small-net-seed0.pt"]


def test_state_files_are_plain_names_and_names_that_collide_are_refused(tmp_path):
    files = state_files(tmp_path, ["../CNN with attention", "x/y"], (0,), 0.1)
    assert [p.relative_to(tmp_path).as_posix() for p in files.values()] == [
        "0.1-epochs/cnn-with-attention-seed0.pt",
        "0.1-epochs/x-y-seed0.pt",
    ]
    with pytest.raises(ValueError, match="rename one"):
        state_files(tmp_path, ["a b", "a+b"], (0,), 1)
