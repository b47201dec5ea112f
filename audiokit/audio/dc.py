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

DC_CUTOFF_HZ = 10.0


class DCBlocker:
    """DC removal of ``channels`` signals at ``rate`` Hz fed as ``[C, n]`` float blocks (see the module
    docstring); ``__call__`` returns the filtered block, same shape, dtype and device."""

    def __init__(self, rate: int, channels: int = 1, cutoff_hz: float = DC_CUTOFF_HZ):
        self.pole = math.exp(-2 * math.pi * cutoff_hz / rate)
        self.gain = (1 + self.pole) / 2
        self.channels = channels
        # the recursion runs in stretches short enough that pole^-k stays below e^10 (float64 keeps 1e-12)
        stretch = max(1, int(10 / -math.log(self.pole)))
        k = np.arange(stretch, dtype=np.float64)
        self._up, self._down = self.pole ** -k, self.pole ** k
        self._last_in: Optional[np.ndarray] = None  # [C]: the previous input sample
        self._last_out: Optional[np.ndarray] = None  # [C]: the previous output sample

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not x.shape[-1]:
            return x
        x64 = x.detach().to("cpu", torch.float64).numpy()
        if self._last_in is None:  # as if the signal had always been at its first sample: no step
            self._last_in, self._last_out = x64[:, 0].copy(), np.zeros(x64.shape[0])
        step = self.gain * np.diff(x64, axis=-1, prepend=self._last_in[:, None])
        y, last = np.empty_like(step), self._last_out
        stretch = len(self._up)
        for start in range(0, step.shape[-1], stretch):  # y[k] = p^k (p y[-1] + sum_{j<=k} step[j] p^-j)
            piece = step[:, start:start + stretch]
            m = piece.shape[-1]
            y[:, start:start + m] = self._down[:m] * (self.pole * last[:, None] + np.cumsum(piece * self._up[:m], -1))
            last = y[:, start + m - 1]
        self._last_in, self._last_out = x64[:, -1].copy(), last.copy()
        return torch.from_numpy(y).to(device=x.device, dtype=x.dtype)


def remove_dc(wav, rate: int, cutoff_hz: float = DC_CUTOFF_HZ):
    """``wav`` ``[..., T]`` (tensor or ndarray, at ``rate`` Hz) through a fresh :class:`DCBlocker`: same type and
    shape back."""
    x = torch.as_tensor(np.ascontiguousarray(wav) if isinstance(wav, np.ndarray) else wav)
    flat = x.reshape(-1, x.shape[-1])
    out = DCBlocker(rate, flat.shape[0], cutoff_hz)(flat).reshape(x.shape)
    return out.numpy() if isinstance(wav, np.ndarray) else out
