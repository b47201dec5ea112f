"""Normalisation layers, with causal variants for streaming.

* :class:`ScaleNorm` normalises each frame on its own, so it is causal as it
  is and keeps no state.
* :class:`CumulativeLayerNorm` and :class:`CumulativeInstanceNorm` are the
  causal stand-ins for the whole-utterance norms (``GroupNorm(1, C)`` and
  ``InstanceNorm1d``): frame ``t`` is normalised with the mean and variance
  of frames ``0..t`` only.  Their parameters have the same names and shapes
  (``weight``, ``bias``: ``[C]``) as the norms they replace, so checkpoints
  load unchanged.  They step with a state of running sums (float64).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .inference import overwritable
from .state import State, StreamingModule


class ScaleNorm(nn.Module):
    """``x / (||x||_2 / sqrt(D)) * g`` over the last axis; ``[..., D] -> [..., D]``.

    The single gain ``g`` (shape ``[1]``) matches MossFormer2's ScaleNorm.
    ``inplace``: normalise the input itself when no autograd graph records it.
    """

    def __init__(self, dim: int, eps: float = 1e-5, inplace: bool = False):
        super().__init__()
        self.scale, self.eps, self.inplace = dim ** -0.5, eps, inplace
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = (torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale).clamp(min=self.eps)
        normed = x.div_(norm) if self.inplace and overwritable(x) else x / norm
        return normed.mul_(self.g) if overwritable(normed) else normed * self.g


class _CumulativeNorm(StreamingModule):
    """Normalises frame ``t`` of ``[B, C, T]`` by statistics of frames ``<= t``.

    ``pool_channels`` pools the statistics over all channels (a layer norm);
    otherwise each channel has its own (an instance norm).
    """

    pool_channels: bool

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x, None)[0]

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        x64 = x.double()
        frame_sum, frame_sq = x64, x64 * x64
        per_frame = 1
        if self.pool_channels:
            frame_sum, frame_sq = frame_sum.sum(1, keepdim=True), frame_sq.sum(1, keepdim=True)
            per_frame = x.shape[1]
        total = frame_sum.cumsum(-1)
        total_sq = frame_sq.cumsum(-1)
        count = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=torch.float64) * per_frame
        if state is not None:
            total, total_sq = total + state["sum"], total_sq + state["sq"]
            count = count + state["count"]
        mean = total / count
        var = (total_sq / count - mean * mean).clamp(min=0)
        normed = ((x64 - mean) / torch.sqrt(var + self.eps)).to(x.dtype)
        y = normed * self.weight[:, None] + self.bias[:, None]
        return y, {"sum": total[..., -1:], "sq": total_sq[..., -1:], "count": count[-1:]}


class CumulativeLayerNorm(_CumulativeNorm):
    """Causal layer norm (cLN), ``[B, C, T] -> [B, C, T]``: statistics over all
    channels of frames ``0..t``.  Causal stand-in for ``GroupNorm(1, C)``."""

    pool_channels = True

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__(channels, eps)


class CumulativeInstanceNorm(_CumulativeNorm):
    """Causal instance norm, ``[B, C, T] -> [B, C, T]``: per-channel statistics
    of frames ``0..t``.  Causal stand-in for ``InstanceNorm1d(C, affine=True)``."""

    pool_channels = False

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, eps)
