"""Dropout rate of a whole model, set after it is built."""
from __future__ import annotations

from torch import nn


def set_dropout(model: nn.Module, rate: float) -> int:
    """Set ``p`` of every :class:`torch.nn.Dropout` inside ``model`` to ``rate``; returns how many.

    Dropout holds no weights, so this works before training or between two resumed phases; it
    changes nothing at inference.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    layers = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for layer in layers:
        layer.p = rate
    return len(layers)
