"""The grader's stand-in for notebook 2's ``scaled_dot_product_attention``, with which ``MultiHeadAttention`` is
graded when the student's own function is wrong: sigmoid weights with the mask and dropout applied, no softmax.

Shipped as text to the worker that runs the student's code (see :class:`autograde.checks.StandIns`): it imports
only torch.
"""

import torch


def scaled_dot_product_attention(q, k, v, mask=None, dropout=None):
    """q (..., S, D), k and v (..., T, D) -> (output (..., S, D), weights (..., S, T))."""
    weights = torch.sigmoid(q @ k.transpose(-2, -1))
    if mask is not None:
        weights = weights * mask.bool().to(weights.dtype)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ v, weights
