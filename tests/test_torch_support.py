"""course_utils.torch_support: on a torch without torch.optim.Muon, what falls back is said, and Muon's recipe
trains with AdamW alone; on a recent torch nothing is said."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils import torch_support
from course_utils.recipes import Recipe, make_optimizers


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        self.head = nn.Linear(4, 2)


@pytest.fixture
def old_torch(monkeypatch):
    """torch as 2.8 was: no torch.optim.Muon."""
    monkeypatch.delattr(torch.optim, "Muon")
    monkeypatch.setattr(torch, "__version__", "2.8.0+cu126")
    torch_support.say_muon_falls_back.cache_clear()


def test_a_recent_torch_has_muon_and_nothing_falls_back(capsys):
    assert torch_support.version() >= torch_support.MINIMUM and torch_support.has_muon()
    assert torch_support.fallbacks() == []
    torch_support.report()
    assert capsys.readouterr().out == ""


def test_without_muon_the_report_says_what_falls_back(old_torch, capsys):
    assert torch_support.version() == (2, 8)
    torch_support.report()
    out = capsys.readouterr().out
    assert "torch 2.8.0+cu126" in out and "not upgraded" in out and "AdamW alone" in out


def test_without_muon_a_muon_recipe_trains_with_adamw_alone_and_says_so_once(old_torch, capsys):
    model = Encoder()
    optimizers, _ = make_optimizers(model, Recipe(optimizer="muon", weight_decay=0.05), 10)
    (adamw,) = optimizers
    assert type(adamw) is torch.optim.AdamW
    assert sum(len(g["params"]) for g in adamw.param_groups) == len(list(model.parameters()))
    make_optimizers(model, Recipe(optimizer="muon"), 10)
    assert capsys.readouterr().out.count("has no torch.optim.Muon") == 1


def test_the_wheel_requires_the_torch_the_course_is_written_for():
    from autograde.bundle import DEPENDENCIES

    major, minor = torch_support.MINIMUM
    assert f"torch>={major}.{minor}" in DEPENDENCIES
