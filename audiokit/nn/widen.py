"""Widen a trained network: every channel repeated ``k`` times, the same function (Net2WiderNet).

A wide model of the same family (every width-derived size ``k`` times the trained one's) starts
from a narrow model's state dict:

* along each axis that grew ``k``-fold, channel ``c`` becomes channels ``k c .. k c + k - 1``
  (``repeat_interleave``, so contiguous halves, chunks and per-speaker blocks stay contiguous);
* where that axis is the *input* of a linear map (axis 1 of a ``Linear`` or ``Conv`` weight,
  axis 0 of a ``ConvTranspose`` one) the weights are divided by ``k``: the copies' sum is the
  trained weight, so each output sees the same value;
* per-frame norms (LayerNorm, GroupNorm, ScaleNorm with its ``dim ** -0.5``) see the same mean,
  variance and RMS over the repeated channels, so they give repeated outputs too.

Copies with identical weights would stay identical under training (their gradients are equal
up to a factor, and Adam cancels the factor), so the *output* rows of every linear map get
antithetic noise, of about ``noise`` times the weight's standard deviation, whose mean over the
``k`` copies of a row is zero (``+e`` and ``-e`` for ``k = 2``).  Consumers average the copies, so the noise
cancels to first order; ``noise=0`` reproduces the narrow model's output exactly.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd


def _input_axes(model: nn.Module) -> Dict[str, int]:
    """Weight name -> its input axis, for every linear map of ``model``."""
    axes = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, _ConvTransposeNd):
            axes[prefix + "weight"] = 0
        elif isinstance(module, (nn.Linear, _ConvNd)):
            axes[prefix + "weight"] = 1
    return axes


def _antithetic(shape: torch.Size, axis: int, factor: int, generator: torch.Generator) -> torch.Tensor:
    """Noise of ``shape`` whose ``factor`` consecutive entries along ``axis`` sum to zero."""
    noise = torch.randn(shape, generator=generator)
    grouped = noise.unflatten(axis, (-1, factor))
    return (grouped - grouped.mean(dim=axis + 1, keepdim=True)).flatten(axis, axis + 1)


def widen_state_dict(wide: nn.Module, narrow: Dict[str, torch.Tensor], noise: float = 0.0,
                     seed: int = 0) -> Dict[str, torch.Tensor]:
    """State dict for ``wide`` from the ``narrow`` one of a model with the same keys.

    Every axis of every tensor must keep its size or grow by a whole factor; otherwise (or on
    different keys) ``ValueError``.  ``noise``: antithetic noise on the output rows of linear
    maps, as a share of each weight's standard deviation (see the module docstring).
    """
    target = wide.state_dict()
    if set(target) != set(narrow):
        missing = sorted(set(target) ^ set(narrow))
        raise ValueError(f"the wide and narrow models differ in keys, e.g. {missing[:3]}")
    inputs = _input_axes(wide)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in ((k, v.shape) for k, v in target.items()):
        value = narrow[key].detach().float() if narrow[key].is_floating_point() else narrow[key]
        if value.dim() != len(shape) or any(new < old or not old or new % old
                                            for new, old in zip(shape, value.shape) if new != old):
            raise ValueError(f"{key}: {tuple(value.shape)} does not widen to {tuple(shape)}")
        grown = {axis: new // old for axis, (new, old) in enumerate(zip(shape, value.shape)) if new != old}
        for axis, factor in grown.items():
            value = value.repeat_interleave(factor, dim=axis)
            if inputs.get(key) == axis:
                value = value / factor
        output_axis: Optional[int] = {0: 1, 1: 0}.get(inputs.get(key, -1))
        if noise and output_axis in grown and value.dim() >= 2:
            scale = noise * float(narrow[key].float().std())
            value = value + scale * _antithetic(value.shape, output_axis, grown[output_axis], generator)
        state[key] = value.to(target[key].dtype)
    return state
