"""The grader's stand-in for notebook 5's ``LocalSelfAttention2d``, with which the fully attentional network is
graded when the student's own layer is wrong: a gated 1x1 convolution with the contract's parameters, not
attention.

Shipped as text to the worker that runs the student's code (see :class:`autograde.checks.StandIns`): it imports
only torch.
"""

import torch
from torch import nn


class LocalSelfAttention2d(nn.Module):
    """(N, C_in, H, W) -> (N, C, H, W): value(x) gated by query(x) and the mean key, plus a per-channel shift."""

    def __init__(self, in_channels, out_channels, kernel_size, num_heads=1):
        super().__init__()
        self.conv_query = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.conv_key = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.conv_value = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.rel_rows = nn.Parameter(torch.zeros(out_channels // 2, kernel_size))
        self.rel_cols = nn.Parameter(torch.zeros(out_channels // 2, kernel_size))

    def forward(self, x):
        gate = torch.sigmoid(self.conv_query(x) * self.conv_key(x).mean((2, 3), keepdim=True))
        shift = torch.cat([self.rel_rows.mean(1), self.rel_cols.mean(1)])
        return gate * self.conv_value(x) + shift[None, :, None, None]
