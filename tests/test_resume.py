"""Resumable training: an interrupted run re-run with the same ``resume_from`` ends exactly where an
uninterrupted run ends; a file from another run is not used; mixed precision picks fp16 below compute 8.0."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils import resume
from course_utils.loaders import TensorLoader
from course_utils.runtime import set_seed
from course_utils.training import autocast_dtype, train

EPOCHS = 3


@pytest.fixture(autouse=True)
def full_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")


def data(seed: int = 0) -> tuple[TensorLoader, TensorLoader]:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (48, 3, 8, 8), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 4, (48,), generator=gen)
    train_loader = TensorLoader(images[:40], labels[:40], 8, train=True, shuffle=True, augment=True, device="cpu")
    return train_loader, TensorLoader(images[40:], labels[40:], 8, train=True, device="cpu")


def run(resume_from=None, lr: float = 1e-2, stop_after_epochs: int | None = None):
    """A small model with dropout, Adam and a step schedule; optionally interrupted after some epochs."""
    set_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)
    loader_train, loader_val = data()
    if stop_after_epochs is not None:
        loader_train = Interrupting(loader_train, after_batches=stop_after_epochs * len(loader_train) + 2)
    history = train(
        model,
        optimizer,
        loader_train,
        loader_val,
        epochs=EPOCHS,
        scheduler=schedule,
        print_every=3,
        verbose=False,
        resume_from=resume_from,
    )
    return model, history


class Interrupting:
    """Wraps a loader and raises KeyboardInterrupt (a lost runtime) after ``after_batches`` batches in all."""

    def __init__(self, loader: TensorLoader, after_batches: int):
        self.loader, self.left = loader, after_batches
        self._generator, self.device = loader._generator, loader.device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.left == 0:
                raise KeyboardInterrupt
            self.left -= 1
            yield batch


def test_an_interrupted_run_resumes_to_the_same_weights_and_history(tmp_path):
    reference_model, reference = run()
    path = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        run(path, stop_after_epochs=1)
    assert path.is_file()
    model, history = run(path)
    for mine, theirs in zip(model.state_dict().values(), reference_model.state_dict().values(), strict=True):
        assert torch.equal(mine, theirs)
    assert history.loss == reference.loss and history.val_acc == reference.val_acc
    assert history.lr == reference.lr and history.epochs == EPOCHS and history.steps == reference.steps


def test_a_finished_run_restores_its_weights_without_training_again(tmp_path):
    path = tmp_path / "state.pt"
    first_model, first = run(path)
    model, history = run(path)
    assert history.steps == first.steps and history.loss == first.loss
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), first_model.state_dict().values(), strict=True)
    )


def test_a_state_from_another_run_is_not_used(tmp_path, capsys):
    path = tmp_path / "state.pt"
    run(path, lr=1e-2)
    model, history = run(path, lr=3e-3)
    assert "belongs to a different run" in capsys.readouterr().out
    _, fresh = run(None, lr=3e-3)
    assert history.loss == fresh.loss


def test_an_unreadable_state_starts_afresh(tmp_path, capsys):
    path = tmp_path / "state.pt"
    path.write_bytes(b"not a checkpoint")
    _, history = run(path)
    assert "training from the start" in capsys.readouterr().out and history.epochs == EPOCHS


def test_fast_mode_neither_reads_nor_writes_the_state(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    path = tmp_path / "state.pt"
    run(path)
    assert not path.exists()


def test_the_state_loads_with_weights_only(tmp_path):
    path = tmp_path / "state.pt"
    run(path)
    state = torch.load(path, weights_only=True)
    assert state["format"] == resume.FORMAT and state["history"]["epochs"] == EPOCHS


@pytest.mark.parametrize(
    ("capability", "dtype"), [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)]
)
def test_mixed_precision_is_fp16_below_compute_capability_8(monkeypatch, capability, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert autocast_dtype("cuda") == dtype
    assert autocast_dtype("cpu") == torch.float16  # unused there: autocast is off on the CPU
