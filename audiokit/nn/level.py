"""Causal input-level normalisation: a running level of the frames so far and the gain that brings it to a
target, offline and step by step.

A model trained on mixtures at some levels (e.g. -35 to -12 dBFS) does worse on input far quieter or louder.
:class:`LevelGain` estimates the level of frames ``0..t`` as an exponentially weighted mean of their power (time
constant ``seconds``; bias-corrected, so the first frame's estimate is its own power) and returns the gain that
brings that level to ``target_dbfs``, within +-``max_gain_db``. Only past and present frames count, so a stream
gets the gains of the whole signal, frame for frame.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from .state import State

_BLOCK = 256  # frames per exact block update of the weighted sums (a [256, 256] decay matrix)


class LevelGain(nn.Module):
    """Gain per frame from the power of frames so far, ``[B, N] -> [B, N]``.

    Args:
        target_dbfs: level the gains aim at, ``20 log10(RMS)`` (a signal of RMS 0.05 is at -26 dBFS), as the
            training mixers measure it.
        seconds: time constant of the running level.
        frame_rate: frames per second of the powers given.
        max_gain_db: bound of the gains, up and down (digital silence gets ``+max_gain_db``).

    ``forward(power)``: ``power`` ``[B, N]`` is the mean square of each frame's samples (linear); the result
    is the linear amplitude gain ``[B, N]``. :meth:`step` carries the weighted power sum and weight (float64)
    in a state its model keeps.
    """

    def __init__(self, target_dbfs: float, seconds: float, frame_rate: float, max_gain_db: float = 30.0):
        super().__init__()
        if seconds <= 0 or frame_rate <= 0 or max_gain_db < 0:
            raise ValueError(f"seconds and frame_rate must be positive and max_gain_db not negative, got "
                             f"{seconds}, {frame_rate}, {max_gain_db}")
        self.target_dbfs, self.seconds, self.max_gain_db = target_dbfs, seconds, max_gain_db
        self.decay = math.exp(-1.0 / (seconds * frame_rate))
        self._blocks: dict = {}  # device -> the block update's decay matrix, row sums and carry (built once)

    def extra_repr(self) -> str:
        return f"target_dbfs={self.target_dbfs}, seconds={self.seconds}, max_gain_db={self.max_gain_db}"

    def gain(self, level: torch.Tensor) -> torch.Tensor:
        """Linear amplitude gain for running levels (mean squares) ``level``, any shape."""
        target = 10.0 ** (self.target_dbfs / 10.0)
        bound = 10.0 ** (self.max_gain_db / 20.0)
        return (target / level.clamp_min(1e-30)).sqrt().clamp(1.0 / bound, bound)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return self.step(power, None)[0]

    def _block(self, device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For a block of ``_BLOCK`` frames (float64): the decay matrix ``[k, k]`` (``decay ** (t - j)`` for
        ``j <= t``, else 0), its row sums ``[k]`` and the carry ``decay ** (t + 1)`` ``[k]`` of what came before;
        a shorter block uses the leading rows and columns."""
        if device not in self._blocks:
            t = torch.arange(_BLOCK, device=device, dtype=torch.float64)
            lag = t[:, None] - t[None, :]
            matrix = torch.where(lag >= 0, self.decay ** lag.clamp_min(0), torch.zeros_like(lag))
            self._blocks[device] = (matrix, matrix.sum(1), self.decay ** (t + 1))
        return self._blocks[device]

    def step(self, power: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        b, n = power.shape
        total = state["sum"] if state else power.new_zeros(b, 1, dtype=torch.float64)
        weight = state["weight"] if state else power.new_zeros((), dtype=torch.float64)
        if n == 0:
            return power, {"sum": total, "weight": weight}
        levels = []
        matrix, row_sums, carry = self._block(power.device)
        for start in range(0, n, _BLOCK):
            p = power[:, start:start + _BLOCK].double()
            k = p.shape[1]
            sums = p @ matrix[:k, :k].t() + total * carry[:k]  # [B, k]
            weights = row_sums[:k] + weight * carry[:k]  # [k]
            levels.append(sums / weights)
            total, weight = sums[:, -1:], weights[-1]
        return self.gain(torch.cat(levels, 1)).to(power.dtype), {"sum": total, "weight": weight}

    def frame(self, power: torch.Tensor, total: torch.Tensor, frames: torch.Tensor
              ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One frame, for exported frame steppers: ``power`` ``[B, 1]``, the weighted sum so far ``[B, 1]``
        (zeros at the start) and the number of frames including this one (a scalar tensor) -> the gain
        ``[B, 1]`` and the new sum. Float32 throughout (agrees with :meth:`step` to float rounding)."""
        total = total * self.decay + power
        weight = (1.0 - torch.pow(torch.full_like(frames, self.decay), frames)) / (1.0 - self.decay)
        return self.gain(total / weight), total
