"""Tests for course_utils.layers: flatten keeps the (C, H, W) order, whatever the memory format."""

from __future__ import annotations

import torch

from course_utils.layers import Flatten, flatten


def test_flatten_keeps_channel_height_width_order_for_channels_last():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    expected = torch.stack([x[i].reshape(-1) for i in range(2)])
    assert torch.equal(flatten(x), expected)
    assert torch.equal(Flatten()(x_cl), expected)
