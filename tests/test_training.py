"""Tests for course_utils.training: accuracy, the training loop, its budget in epochs, overfitting one batch."""

from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from course_utils.layers import Flatten
from course_utils.runtime import FAST_CAPS
from course_utils.training import check_accuracy, count_parameters, overfit_batch, planned_schedule, train

NUM_CLASSES = 3


@pytest.fixture(autouse=True)
def full_mode(monkeypatch):
    """Run in full mode unless a test switches fast mode on itself."""
    monkeypatch.setenv("COURSE_FAST", "0")


class BatchList(list):
    """Batches ``(x, y)`` in a list, with the ``.dataset.train`` flag that ``check_accuracy`` reads."""

    def __init__(self, batches, train=True, device=None):
        super().__init__(batches)
        self.dataset = SimpleNamespace(train=train)
        if device is not None:
            self.device = torch.device(device)


def blobs(n: int, seed: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, 3, size, size)`` whose class is the channel that is brighter than the others."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    x = 0.5 * torch.randn(n, 3, size, size, generator=gen)
    x[torch.arange(n), y] += 1.0
    return x, y


def batches(x, y, batch_size, **kwargs) -> BatchList:
    return BatchList([(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)], **kwargs)


def linear_model(size: int = 8) -> nn.Module:
    return nn.Sequential(Flatten(), nn.Linear(3 * size * size, NUM_CLASSES))


class Oracle(nn.Module):
    """Predicts the class written in pixel (0, 0) of channel 0."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0, 0, 0].long(), NUM_CLASSES).float()


def test_check_accuracy_counts_and_prints_like_the_seeds(capsys):
    gen = torch.Generator().manual_seed(0)
    preds = torch.randint(0, NUM_CLASSES, (10,), generator=gen)
    y = torch.randint(0, NUM_CLASSES, (10,), generator=gen)
    x = torch.zeros(10, 3, 2, 2)
    x[:, 0, 0, 0] = preds.float()
    correct = sum(int(p == t) for p, t in zip(preds.tolist(), y.tolist(), strict=True))
    model = Oracle().train()

    acc = check_accuracy(batches(x, y, 4, train=True), model)
    assert acc == pytest.approx(100 * correct / 10)
    assert capsys.readouterr().out == (
        f"Checking accuracy on validation set\nGot {correct} / 10 correct ({100 * correct / 10:.2f})\n"
    )
    assert model.training, "check_accuracy must give the model its training mode back"

    check_accuracy(batches(x, y, 4, train=False), model.eval())
    assert capsys.readouterr().out.startswith("Checking accuracy on test set\n")
    assert not model.training


def test_check_accuracy_rejects_batches_that_are_not_images():
    loader = BatchList([(torch.zeros(4, 12), torch.zeros(4, dtype=torch.long))])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(4, 12\)"):
        check_accuracy(loader, linear_model())


def test_train_records_history_and_validates_every_print_every(capsys):
    torch.manual_seed(0)
    x, y = blobs(50, seed=1)
    xv, yv = blobs(30, seed=2)
    loader, loader_val = batches(x, y, 10), batches(xv, yv, 10, train=True)
    model = linear_model()
    history = train(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, loader_val, epochs=2, print_every=3)
    steps = 2 * 5
    assert (history.steps, history.epochs, len(history.loss), history.lr) == (steps, 2, steps, [0.1] * steps)
    expected_checks = [e * 5 + t + 1 for e in range(2) for t in range(5) if t % 3 == 0] + [steps]
    assert [s for s, _ in history.val_acc] == expected_checks
    assert [s for s, _ in history.train_acc] == expected_checks
    assert history.best_val_acc == max(acc for _, acc in history.val_acc)
    assert history.val_acc[-1][1] == pytest.approx(check_accuracy(loader_val, model, verbose=False))
    assert history.seconds > 0

    out = capsys.readouterr().out
    assert f"Epoch 0, Iteration 0, loss = {history.loss[0]:.4f}\nChecking accuracy on validation set\n" in out
    assert f"Epoch 1, Iteration 3, loss = {history.loss[8]:.4f}\n" in out
    assert out.count("Checking accuracy on validation set") == len(expected_checks)
    assert f"Best validation accuracy: {history.best_val_acc:.2f}" in out


def test_train_accuracy_covers_the_batches_since_the_previous_check():
    class FixedPredictions(Oracle):
        def __init__(self):
            super().__init__()
            self.unused = nn.Parameter(torch.zeros(NUM_CLASSES))

        def forward(self, x):
            return super().forward(x) + 0 * self.unused

    gen = torch.Generator().manual_seed(3)
    preds = torch.randint(0, NUM_CLASSES, (30,), generator=gen)
    y = torch.randint(0, NUM_CLASSES, (30,), generator=gen)
    x = torch.zeros(30, 3, 2, 2)
    x[:, 0, 0, 0] = preds.float()
    model = FixedPredictions()
    history = train(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(x, y, 5), print_every=2, verbose=False)

    hits = (preds == y).float()
    windows = [(1, slice(0, 5)), (3, slice(5, 15)), (5, slice(15, 25)), (6, slice(25, 30))]
    assert history.train_acc == [(step, pytest.approx(100 * hits[rows].mean().item())) for step, rows in windows]


def test_train_learns_a_separable_problem():
    torch.manual_seed(0)
    x, y = blobs(400, seed=3)
    xv, yv = blobs(200, seed=4)
    model = linear_model()
    history = train(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-2),
        batches(x, y, 20),
        batches(xv, yv, 50),
        verbose=False,
    )
    assert statistics.fmean(history.loss[-5:]) < 0.5 * statistics.fmean(history.loss[:5])
    assert history.val_acc[-1][1] >= 90.0


def test_train_steps_the_scheduler_after_every_optimizer_step():
    x, y = blobs(40, seed=5)
    model = linear_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    history = train(model, optimizer, batches(x, y, 10), scheduler=scheduler, epochs=2, verbose=False)
    assert history.lr == pytest.approx([0.1 * 0.5**k for k in range(8)])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**8)


def test_train_steps_every_optimizer_and_every_scheduler_of_a_list():
    x, y = blobs(40, seed=5)
    model = linear_model()
    weight, bias = model[1].weight, model[1].bias
    before = weight.detach().clone(), bias.detach().clone()
    first = torch.optim.SGD([weight], lr=0.1)
    second = torch.optim.SGD([bias], lr=0.2)
    schedulers = [torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=g) for o, g in ((first, 0.5), (second, 0.1))]
    history = train(model, [first, second], batches(x, y, 10), scheduler=schedulers, epochs=2, verbose=False)
    assert not torch.equal(weight, before[0]) and not torch.equal(bias, before[1])
    assert history.lr == pytest.approx([0.1 * 0.5**k for k in range(8)])
    assert second.param_groups[0]["lr"] == pytest.approx(0.2 * 0.1**8)


def test_train_without_an_optimizer_says_what_to_pass():
    x, y = blobs(10, seed=5)
    with pytest.raises(ValueError, match="needs an optimizer"):
        train(linear_model(), [], batches(x, y, 10), verbose=False)


class NormRecordingSGD(torch.optim.SGD):
    """SGD that records the total gradient norm it is asked to apply."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.norms: list[float] = []

    def step(self, closure=None):
        grads = [p.grad.flatten() for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.norms.append(torch.cat(grads).norm().item())
        return super().step(closure)


@pytest.mark.parametrize("clip", [None, 0.5])
def test_train_clips_the_gradient_norm(clip):
    x, y = blobs(40, seed=6)
    torch.manual_seed(0)
    model = linear_model()
    optimizer = NormRecordingSGD(model.parameters(), lr=1e-3)
    train(model, optimizer, batches(20 * x, y, 10), clip_grad_norm=clip, verbose=False)
    if clip is None:
        assert max(optimizer.norms) > 0.5, "the test data must produce large gradients"
    else:
        assert max(optimizer.norms) <= clip * (1 + 1e-5)


def test_train_clips_the_norm_over_all_the_optimizers_parameters():
    x, y = blobs(40, seed=6)
    torch.manual_seed(0)
    model = linear_model()
    optimizers = [NormRecordingSGD([model[1].weight], lr=1e-3), NormRecordingSGD([model[1].bias], lr=1e-3)]
    train(model, optimizers, batches(20 * x, y, 10), clip_grad_norm=0.5, verbose=False)
    totals = [math.hypot(a, b) for a, b in zip(*(o.norms for o in optimizers), strict=True)]
    assert len(totals) == 4 and max(totals) <= 0.5 * (1 + 1e-5)
    assert min(optimizers[1].norms) > 0, "both optimizers must see a gradient"


def test_amp_and_channels_last_are_no_ops_on_the_cpu():
    x, y = blobs(20, seed=7)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Flatten(), nn.Linear(4 * 8 * 8, NUM_CLASSES))
    seen = []
    model[0].register_forward_hook(lambda m, inp, out: seen.append((inp[0].is_contiguous(), out.dtype)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, optimizer, batches(x, y, 10), amp=True, channels_last=True, verbose=False)
    assert seen == [(True, torch.float32)] * 2
    assert model[0].weight.is_contiguous()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cpu_model_moves_to_the_cuda_loader_and_trains_with_amp_and_channels_last():
    x, y = blobs(40, seed=8)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Flatten(), nn.Linear(4 * 8 * 8, NUM_CLASSES))
    dtypes = []
    model[0].register_forward_hook(lambda m, inp, out: dtypes.append(out.dtype))
    optimizer = torch.optim.Adam(model.parameters())
    loader = batches(x.cuda(), y.cuda(), 10, device="cuda")
    history = train(model, optimizer, loader, channels_last=True, verbose=False)
    assert model[0].weight.is_cuda and model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert set(dtypes) <= {torch.bfloat16, torch.float16} and dtypes
    assert all(math.isfinite(v) for v in history.loss)


def test_fast_mode_caps_epochs_and_iterations_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_FAST", "1")
    n_batches = FAST_CAPS.iterations_per_epoch + 5
    x, y = blobs(2 * n_batches, seed=9)
    model = linear_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    history = train(model, optimizer, batches(x, y, 2), epochs=3, print_every=1000)
    assert history.epochs == min(3, FAST_CAPS.epochs)
    assert history.steps == FAST_CAPS.epochs * FAST_CAPS.iterations_per_epoch
    assert "Fast mode" in capsys.readouterr().out


def test_train_rejects_batches_of_the_wrong_rank():
    x, y = blobs(20, seed=10)
    model = linear_model()
    loader = BatchList([(x.flatten(1), y)])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(20, 192\)"):
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, verbose=False)


def test_train_rejects_a_model_put_on_another_device_than_the_loader():
    x, y = blobs(20, seed=11)
    model = linear_model().to("meta")
    with pytest.raises(ValueError, match=r"model is on meta but loader_train yields batches on cpu"):
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), batches(x, y, 10, device="cpu"), verbose=False)


def test_train_rejects_a_device_the_loader_is_not_on():
    x, y = blobs(20, seed=11)
    model = linear_model()
    with pytest.raises(ValueError, match=r"device=meta\) but loader_train yields batches on cpu"):
        train(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            batches(x, y, 10, device="cpu"),
            device="meta",
            verbose=False,
        )


def test_train_stops_on_a_nan_loss_and_suggests_a_lower_learning_rate():
    torch.manual_seed(0)
    x, y = blobs(200, seed=12)
    model = nn.Sequential(Flatten(), nn.Linear(192, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=100.0, momentum=0.9)
    with pytest.raises(FloatingPointError, match="loss became nan .* Lower the learning rate"):
        train(model, optimizer, batches(x, y, 10), verbose=False)


def test_overfit_batch_reaches_full_accuracy_on_a_small_batch():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(13)
    x, y = torch.randn(16, 3, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), Flatten(), nn.Linear(8 * 8 * 8, 10))
    assert overfit_batch(model, (x, y), steps=100, lr=1e-2) == 100.0
    assert model.training


def test_count_parameters_counts_trainable_ones_unless_told_otherwise():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    assert count_parameters(model) == 4 + 4 * 2 + 2
    assert count_parameters(model, trainable_only=False) == 3 * 4 + 4 + 4 * 2 + 2


def test_train_learns_the_offline_synthetic_data_set():
    from course_utils.loaders import TensorLoader
    from course_utils.synthetic import make_synthetic_cifar

    data = make_synthetic_cifar(num_train=2000, num_test=500, seed=0)
    loader_train = TensorLoader(data.train_images, data.train_labels, 64, train=True, shuffle=True, device="cpu")
    loader_test = TensorLoader(data.test_images, data.test_labels, 250, train=False, device="cpu")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 8, 16, 16)
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 16, 8, 8)
        Flatten(),
        nn.Linear(16 * 8 * 8, len(data.classes)),
    )
    train(model, torch.optim.Adam(model.parameters(), lr=3e-3), loader_train, epochs=3, verbose=False)
    chance = 100 / len(data.classes)
    assert check_accuracy(loader_test, model, verbose=False) >= 3 * chance


def test_a_fraction_of_an_epoch_trains_that_share_of_the_steps_and_the_schedule_knows_it():
    x, y = blobs(100, seed=3)
    loader = batches(x, y, 10)
    history = train(linear_model(), torch.optim.Adam(linear_model().parameters()), loader, epochs=0.3, verbose=False)
    assert history.steps == 3 == planned_schedule(len(loader), 0.3) and history.epochs == 1
    assert planned_schedule(len(loader), 2) == 20 and planned_schedule(len(loader), 0.01) == 1
    for wrong in (1.5, 0, -1):
        with pytest.raises(ValueError, match="fraction of one epoch"):
            train(linear_model(), torch.optim.Adam(linear_model().parameters()), loader, epochs=wrong, verbose=False)


def test_without_print_every_only_the_final_weights_are_checked():
    x, y = blobs(60, seed=4)
    xv, yv = blobs(20, seed=5)
    model = linear_model()
    history = train(model, torch.optim.Adam(model.parameters(), lr=1e-2), batches(x, y, 10), batches(xv, yv, 10),
                    epochs=2, print_every=None, verbose=False)  # fmt: skip
    assert [steps for steps, _ in history.val_acc] == [12] and [s for s, _ in history.train_acc] == [12]
    assert history.val_acc[-1][1] == check_accuracy(batches(xv, yv, 10), model, verbose=False)
