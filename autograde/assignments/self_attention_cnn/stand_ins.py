"""The grader's stand-in for notebook 1's ``Attention``, with which the models are graded when the student's own
``Attention`` is wrong: a gated 1x1 convolution with the contract's three layers, not attention.

Shipped as text to the worker that runs the student's code (see :class:`autograde.checks.StandIns`): it imports
only torch.
"""

import torch
from torch import nn


class Attention(nn.Module):
    """(N, C, H, W) -> (N, C, H, W): x + value(x) * sigmoid(query(x) + key(x))."""

    def __init__(self, in_channels):
        super().__init__()
        self.conv_query = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.conv_key = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.conv_value = nn.Conv2d(in_channels, in_channels, kernel_size=1)

    def forward(self, x):
        return x + self.conv_value(x) * torch.sigmoid(self.conv_query(x) + self.conv_key(x))
