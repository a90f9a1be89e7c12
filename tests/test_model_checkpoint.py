"""Tests for course_utils.model_checkpoint: a saved model comes back with its weights, or with a clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils.model_checkpoint import load_checkpoint, save_checkpoint


class TinyNet(nn.Module):
    def __init__(self, in_features: int, hidden: int, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class OtherNet(TinyNet):
    pass


class RenamedLayers(nn.Module):
    def __init__(self, in_features: int, hidden: int, num_classes: int = 10):
        super().__init__()
        self.first = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)


def test_round_trip_rebuilds_the_model_with_its_arguments_and_weights(tmp_path):
    torch.manual_seed(0)
    model = TinyNet(6, 5, num_classes=3)
    model.steps.fill_(7)
    path = save_checkpoint(model, tmp_path / "runs" / "tiny.pt", in_features=6, hidden=5, num_classes=3)
    assert path.is_file()

    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"state_dict", "init_kwargs", "class_name"}
    assert saved["class_name"] == "TinyNet"

    loaded = load_checkpoint(path, TinyNet)
    assert isinstance(loaded, TinyNet) and loaded.fc2.out_features == 3
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    x = torch.randn(4, 6)
    assert torch.equal(loaded(x), model(x))


def test_loading_into_another_class_names_both_classes(tmp_path):
    path = save_checkpoint(TinyNet(4, 3), tmp_path / "a.pt", in_features=4, hidden=3)
    with pytest.raises(ValueError, match="holds a TinyNet, not a OtherNet"):
        load_checkpoint(path, OtherNet)


def test_mismatched_keys_are_listed(tmp_path):
    path = tmp_path / "renamed.pt"
    torch.save(
        {
            "state_dict": RenamedLayers(4, 3).state_dict(),
            "init_kwargs": {"in_features": 4, "hidden": 3},
            "class_name": "TinyNet",
        },
        path,
    )
    with pytest.raises(ValueError, match=r"missing keys \['fc1.bias', 'fc1.weight', 'steps'\]") as info:
        load_checkpoint(path, TinyNet)
    assert "unexpected keys ['first.bias', 'first.weight']" in str(info.value)


def test_mismatched_shapes_are_listed(tmp_path):
    path = tmp_path / "shapes.pt"
    state = {"state_dict": TinyNet(4, 8).state_dict(), "init_kwargs": {"in_features": 4, "hidden": 3}}
    torch.save({**state, "class_name": "TinyNet"}, path)
    with pytest.raises(ValueError, match=r"fc1.weight: saved \(8, 4\), built \(3, 4\)"):
        load_checkpoint(path, TinyNet)


def test_init_kwargs_that_weights_only_cannot_load_are_refused_when_saving(tmp_path):
    with pytest.raises(TypeError, match="init_kwargs\\['act'\\] holds a ReLU"):
        save_checkpoint(TinyNet(4, 3), tmp_path / "bad.pt", in_features=4, hidden=3, act=nn.ReLU())
    assert not (tmp_path / "bad.pt").exists()


class ConfiguredNet(nn.Module):
    def __init__(self, sizes: tuple[int, ...], config: dict):
        super().__init__()
        self.config = config
        self.layers = nn.Sequential(*(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False)))


def test_nested_plain_init_kwargs_survive_a_weights_only_load(tmp_path):
    kwargs = {"sizes": (4, 3, 2), "config": {"act": "relu", "dropout": 0.1, "heads": [1, 2]}}
    path = save_checkpoint(ConfiguredNet(**kwargs), tmp_path / "nested.pt", **kwargs)
    loaded = load_checkpoint(path, ConfiguredNet)
    assert loaded.config == kwargs["config"] and [m.out_features for m in loaded.layers] == [3, 2]
