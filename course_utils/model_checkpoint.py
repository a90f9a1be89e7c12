"""A trained model saved with the arguments that rebuild it (``save_checkpoint``), and loaded back safely
(``load_checkpoint``, ``weights_only``). The whole state of a training run, to resume it, is ``course_utils.resume``."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

_PLAIN = (bool, int, float, str, type(None))


def _check_plain(name: str, value: object) -> None:
    """Raise unless ``value`` is made of numbers, strings, None, lists, tuples and str-keyed dicts."""
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(name, item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"init_kwargs[{name!r}] has a non-string key {key!r}; use string keys.")
            _check_plain(name, item)
    elif not isinstance(value, _PLAIN):
        raise TypeError(
            f"init_kwargs[{name!r}] holds a {type(value).__name__}; save plain Python values only "
            "(numbers, strings, None, lists, dicts) so the checkpoint loads with weights_only=True."
        )


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **init_kwargs: object) -> Path:
    """Save ``{'state_dict', 'init_kwargs', 'class_name'}`` to ``path`` (folders created); return the path.

    ``init_kwargs`` are the constructor arguments: ``load_checkpoint`` calls ``cls(**init_kwargs)``.
    """
    for name, value in init_kwargs.items():
        _check_plain(name, value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"state_dict": model.state_dict(), "init_kwargs": init_kwargs, "class_name": type(model).__name__}
    torch.save(state, path)
    return path


def load_checkpoint(
    path: str | os.PathLike, model_cls: type[nn.Module], *, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild ``model_cls(**init_kwargs)`` from a ``save_checkpoint`` file and load its weights."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    saved_name, init_kwargs = checkpoint["class_name"], checkpoint["init_kwargs"]
    if saved_name != model_cls.__name__:
        raise ValueError(
            f"{path} holds a {saved_name}, not a {model_cls.__name__}; "
            f"load it with load_checkpoint(path, {saved_name})."
        )
    model = model_cls(**init_kwargs)
    saved, expected = checkpoint["state_dict"], model.state_dict()
    missing = sorted(expected.keys() - saved.keys())
    unexpected = sorted(saved.keys() - expected.keys())
    resized = sorted(
        f"{k}: saved {tuple(saved[k].shape)}, built {tuple(expected[k].shape)}"
        for k in expected.keys() & saved.keys()
        if saved[k].shape != expected[k].shape
    )
    if missing or unexpected or resized:
        raise ValueError(
            f"The weights in {path} do not fit {saved_name}(**{init_kwargs}): missing keys {missing}, "
            f"unexpected keys {unexpected}, shape mismatches {resized}. The class changed since the "
            "checkpoint was saved: restore the old definition or train and save the model again."
        )
    model.load_state_dict(saved)
    return model
