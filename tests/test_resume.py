"""Resumable training: an interrupted run re-run with the same ``resume_from`` ends exactly where an
uninterrupted run ends; a state saved with another budget (another device) keeps its epochs; a state that
cannot continue a run is kept beside it, never overwritten; mixed precision picks fp16 below compute 8.0."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils import resume
from course_utils.loaders import TensorLoader
from course_utils.runtime import set_seed
from course_utils.training import History, autocast_dtype, check_accuracy, train

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


def run(resume_from=None, lr: float = 1e-2, stop_after_epochs: int | None = None, epochs: int = EPOCHS, **kwargs):
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
        epochs=epochs,
        scheduler=schedule,
        print_every=3,
        verbose=False,
        resume_from=resume_from,
        **kwargs,
    )
    return model, history


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


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
    assert history.train_acc == reference.train_acc  # the running count since the last check is kept too
    assert history.lr == reference.lr and history.epochs == EPOCHS and history.steps == reference.steps


def test_a_finished_run_restores_its_weights_without_training_again(tmp_path):
    path = tmp_path / "state.pt"
    first_model, first = run(path)
    model, history = run(path)
    assert history.steps == first.steps and history.loss == first.loss
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), first_model.state_dict().values(), strict=True)
    )


def test_a_state_from_another_run_is_kept_beside_it_and_not_used(tmp_path, capsys):
    path = tmp_path / "state.pt"
    run(path, lr=1e-2)
    saved = path.read_bytes()
    model, history = run(path, lr=3e-3)
    out = capsys.readouterr().out
    assert "cannot continue this run: the optimizer or its settings differ" in out and "state.previous.pt" in out
    assert (tmp_path / "state.previous.pt").read_bytes() == saved  # kept as it was, beside the new state
    _, fresh = run(None, lr=3e-3)
    assert history.loss == fresh.loss
    run(path, lr=1e-3)  # a third run sets the second one aside too, under the next free name
    assert (tmp_path / "state.previous-2.pt").is_file() and (tmp_path / "state.previous.pt").read_bytes() == saved


def test_an_unreadable_state_is_kept_and_training_starts_afresh(tmp_path, capsys):
    path = tmp_path / "state.pt"
    path.write_bytes(b"not a checkpoint")
    _, history = run(path)
    assert "could not be read" in capsys.readouterr().out and history.epochs == EPOCHS
    assert (tmp_path / "state.previous.pt").read_bytes() == b"not a checkpoint"


def test_a_smaller_budget_keeps_the_epochs_done_and_continues_exactly_to_its_own_end(tmp_path, capsys):
    """As after a switch from a GPU to a CPU runtime: 1 of 3 epochs done, the new budget is 2."""
    path = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        run(path, stop_after_epochs=1)
    model, history = run(path, epochs=2)
    assert "holds 1 finished epoch(s)" in capsys.readouterr().out
    reference_model, reference = run(epochs=2)  # two epochs from the start, never interrupted
    assert history.loss == reference.loss and history.epochs == 2
    assert same_weights(model, reference_model)


def test_a_budget_already_spent_keeps_the_weights_and_measures_them(tmp_path, capsys):
    path = tmp_path / "state.pt"
    first_model, first = run(path)  # 3 epochs
    model, history = run(path, epochs=2)
    assert "no further training" in capsys.readouterr().out
    assert history.epochs == EPOCHS and history.steps == first.steps and history.val_acc == first.val_acc
    assert same_weights(model, first_model)


def test_a_run_that_must_keep_its_budget_sets_another_budget_aside(tmp_path, capsys):
    path = tmp_path / "state.pt"
    run(path)
    _, history = run(path, epochs=2, resume_other_budget=False)
    assert "it was saved for 3 epoch(s) of 5 steps and this run trains 2 epoch(s) of 5 steps" in capsys.readouterr().out
    assert history.epochs == 2 and (tmp_path / "state.previous.pt").is_file()


def test_a_finished_run_restored_reports_the_validation_of_its_final_weights(tmp_path):
    path = tmp_path / "state.pt"
    model, first = run(path)
    _, loader_val = data()
    final = check_accuracy(loader_val, model, verbose=False)
    assert first.val_acc[-1] == (first.steps, final)
    _, again = run(path)
    assert again.val_acc[-1] == (first.steps, final)


def test_a_state_saved_without_mixed_precision_loads_into_a_run_with_a_gradient_scaler(tmp_path):
    """A CPU run's state (its scaler disabled, saved empty) continues on a GPU with fp16 and a GradScaler."""
    path = tmp_path / "state.pt"
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def state(enabled: bool) -> resume.Run:
        identity = resume.fingerprint(model, [optimizer], 2, 1)
        scaler = torch.amp.GradScaler("cpu", enabled=enabled)
        return resume.Run(model, [optimizer], [], scaler, History(epochs=1), None, identity)

    resume.save_state(path, state(enabled=False))
    on_gpu = state(enabled=True)
    assert resume.restore_state(path, on_gpu) == 1 and on_gpu.scaler.is_enabled()


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
