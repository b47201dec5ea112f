"""DC removal that streams: a causal one-pole high-pass (a DC blocker), the same whatever the block sizes.

``y[n] = g (x[n] - x[n-1]) + p y[n-1]`` with the pole ``p = exp(-2 pi fc / rate)`` and ``g = (1 + p) / 2`` (unit
gain at Nyquist), cut-off :data:`DC_CUTOFF_HZ`: -3 dB there, 0.1 dB down at 100 Hz. The filter starts as if the
signal had always been at its first sample, so an offset present from the start is removed from the first
sample on (no decaying step), and one that appears later decays within ``1 / (2 pi fc)`` seconds (16 ms).
Being causal and stateful, :class:`DCBlocker` fed in blocks gives exactly what :func:`remove_dc` gives for the
whole signal (float64 inside), so live, chunked and whole-file processing agree.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torchaudio.functional as AF

DC_CUTOFF_HZ = 10.0


class DCBlocker:
    """DC removal of ``channels`` signals at ``rate`` Hz fed as ``[C, n]`` float blocks (see the module
    docstring); ``__call__`` returns the filtered block, same shape, dtype and device."""

    def __init__(self, rate: int, channels: int = 1, cutoff_hz: float = DC_CUTOFF_HZ):
        self.pole = math.exp(-2 * math.pi * cutoff_hz / rate)
        self.gain = (1 + self.pole) / 2
        self.channels = channels
        self._last_in: Optional[torch.Tensor] = None  # [C] float64: the previous input sample
        self._last_out: Optional[torch.Tensor] = None  # [C] float64: the previous output sample

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not x.shape[-1]:
            return x
        x64 = x.detach().to("cpu", torch.float64)
        if self._last_in is None:  # as if the signal had always been at its first sample: no step
            self._last_in, self._last_out = x64[:, 0].clone(), torch.zeros(x64.shape[0], dtype=torch.float64)
        step = self.gain * torch.diff(x64, dim=-1, prepend=self._last_in[:, None])
        # the recursion from rest, plus what the previous output still contributes (p^k y[-1])
        y = AF.lfilter(step, torch.tensor([1.0, -self.pole], dtype=torch.float64),
                       torch.tensor([1.0, 0.0], dtype=torch.float64), clamp=False)
        decay = self.pole ** torch.arange(1, x64.shape[-1] + 1, dtype=torch.float64)
        y = y + self._last_out[:, None] * decay
        self._last_in, self._last_out = x64[:, -1].clone(), y[:, -1].clone()
        return y.to(device=x.device, dtype=x.dtype)


def remove_dc(wav, rate: int, cutoff_hz: float = DC_CUTOFF_HZ):
    """``wav`` ``[..., T]`` (tensor or ndarray, at ``rate`` Hz) through a fresh :class:`DCBlocker`: same type and
    shape back."""
    x = torch.as_tensor(np.ascontiguousarray(wav) if isinstance(wav, np.ndarray) else wav)
    flat = x.reshape(-1, x.shape[-1])
    out = DCBlocker(rate, flat.shape[0], cutoff_hz)(flat).reshape(x.shape)
    return out.numpy() if isinstance(wav, np.ndarray) else out
