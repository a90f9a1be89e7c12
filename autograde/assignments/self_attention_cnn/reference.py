"""Reference solution of notebook 1: a self-attention (non-local) block inside a small CNN.

Attention(X) = X + softmax(X W_Q (X W_K)^T / sqrt(C)) X W_V, with X the (H*W, C) matrix of one feature map.
:data:`SOLUTION` holds what the solved notebook defines for the graders, the multiple-choice answer included.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.layers import Flatten

CHANNEL_1 = 64
CHANNEL_2 = 32
NUM_CLASSES = 10
IMAGE_SIZE = 32


class Attention(nn.Module):
    """Self-attention over the H*W positions of a feature map, with a residual connection.

    forward: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv_query = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.conv_key = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.conv_value = nn.Conv2d(in_channels, in_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        q = self.conv_query(x).flatten(2).transpose(1, 2)  # (N, H*W, C)
        k = self.conv_key(x).flatten(2).transpose(1, 2)  # (N, H*W, C)
        v = self.conv_value(x).flatten(2).transpose(1, 2)  # (N, H*W, C)
        weights = F.softmax(q @ k.transpose(1, 2) / math.sqrt(C), dim=-1)  # (N, H*W, H*W)
        out = (weights @ v).transpose(1, 2).reshape(N, C, H, W)  # (N, C, H, W)
        return x + out


def _cnn(attention_after_conv1: bool, attention_after_conv2: bool) -> nn.Sequential:
    """Conv(3->64)-ReLU-[Attention-ReLU]-Conv(64->32)-ReLU-[Attention-ReLU]-Flatten-Linear(32*32*32 -> 10)."""
    layers: list[nn.Module] = [nn.Conv2d(3, CHANNEL_1, 3, padding=1), nn.ReLU()]
    if attention_after_conv1:
        layers += [Attention(CHANNEL_1), nn.ReLU()]
    layers += [nn.Conv2d(CHANNEL_1, CHANNEL_2, 3, padding=1), nn.ReLU()]
    if attention_after_conv2:
        layers += [Attention(CHANNEL_2), nn.ReLU()]
    layers += [Flatten(), nn.Linear(CHANNEL_2 * IMAGE_SIZE * IMAGE_SIZE, NUM_CLASSES)]
    return nn.Sequential(*layers)


def vanilla_cnn() -> nn.Sequential:
    """The seeds' CNN: Conv(3->64)-ReLU-Conv(64->32)-ReLU-Flatten-Linear(32*32*32 -> 10)."""
    return _cnn(False, False)


def early_attention_cnn() -> nn.Sequential:
    """Conv-ReLU-Attention-ReLU-Conv-ReLU-Flatten-Linear."""
    return _cnn(True, False)


def late_attention_cnn() -> nn.Sequential:
    """Conv-ReLU-Conv-ReLU-Attention-ReLU-Flatten-Linear."""
    return _cnn(False, True)


def double_attention_cnn() -> nn.Sequential:
    """Conv-ReLU-Attention-ReLU-Conv-ReLU-Attention-ReLU-Flatten-Linear."""
    return _cnn(True, True)


class SAGANAttention(nn.Module):
    """The self-attention block of SAGAN (Zhang et al., 2019) with a learnable gate.

    Query, key and value are 1x1 convolutions to C // k channels; key and value are max-pooled 2x2 (so H and W
    must be even); the attended values go back to C channels through a 1x1 ``conv_out``; the result is
    ``x + gamma * out`` with ``gamma`` a scalar parameter initialised to 0, so the block starts as the identity.
    forward: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, in_channels: int, k: int = 8):
        super().__init__()
        inner = max(in_channels // k, 1)
        self.conv_query = nn.Conv2d(in_channels, inner, kernel_size=1)
        self.conv_key = nn.Conv2d(in_channels, inner, kernel_size=1)
        self.conv_value = nn.Conv2d(in_channels, inner, kernel_size=1)
        self.conv_out = nn.Conv2d(inner, in_channels, kernel_size=1)
        self.pool = nn.MaxPool2d(2)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        q = self.conv_query(x).flatten(2).transpose(1, 2)  # (N, H*W, C/k)
        k = self.pool(self.conv_key(x)).flatten(2)  # (N, C/k, H*W/4)
        v = self.pool(self.conv_value(x)).flatten(2).transpose(1, 2)  # (N, H*W/4, C/k)
        weights = F.softmax(q @ k, dim=-1)  # (N, H*W, H*W/4)
        out = (weights @ v).transpose(1, 2).reshape(N, -1, H, W)  # (N, C/k, H, W)
        return x + self.gamma * self.conv_out(out)


ANSWER_Q1 = 2  # Inline Question 1: the block is the non-local means operation

# The names the solved notebook defines for the graders.
SOLUTION: dict[str, object] = {
    "Attention": Attention,
    "early_attention_cnn": early_attention_cnn,
    "late_attention_cnn": late_attention_cnn,
    "double_attention_cnn": double_attention_cnn,
    "SAGANAttention": SAGANAttention,
    "answer_q1": ANSWER_Q1,
}
