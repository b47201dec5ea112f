"""Short-time Fourier transform as fixed convolutions, offline and streaming.

The analysis frames are not centred: frame ``n`` covers samples
``[n * hop, n * hop + win_len)``, windowed by the square root of a periodic
window.  Spectra use the layout ``[B, 2F, N]`` (``F = fft_len // 2 + 1``
real rows, then ``F`` imaginary rows; ``N`` frames).  The inverse overlap-adds
the synthesis frames and divides by the overlap-added squared window, which
makes analysis followed by synthesis the identity wherever frames overlap.
This is the convolutional STFT of DCCRN/FRCRN, so kernels stored in their
checkpoints can be compared with ours.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

State = dict

_WINDOW_ALIASES = {"hanning": "hann", "hamming": "hamming", "hann": "hann"}


def sqrt_window(win_type: Optional[str], win_len: int) -> np.ndarray:
    """Square root of a periodic window (float64, ``[win_len]``); ``None`` is rectangular."""
    if win_type in (None, "None", "none"):
        return np.ones(win_len)
    from scipy.signal import get_window  # imported here: scipy.signal alone takes most of a second to import
    return get_window(_WINDOW_ALIASES.get(win_type, win_type), win_len, fftbins=True) ** 0.5


def stft_kernels(win_len: int, fft_len: int,
                 win_type: Optional[str]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Analysis kernel ``[2F, 1, win_len]``, synthesis kernel ``[2F, 1, win_len]`` and window ``[win_len]``."""
    window = sqrt_window(win_type, win_len)
    basis = np.fft.rfft(np.eye(fft_len))[:win_len]  # [win_len, F]
    kernel = np.concatenate([basis.real, basis.imag], 1).T  # [2F, win_len]
    inverse = np.linalg.pinv(kernel).T
    as_tensor = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    return as_tensor(kernel * window)[:, None], as_tensor(inverse * window)[:, None], as_tensor(window)


class _FixedTransform(nn.Module):
    """Frame sizes in samples and the fixed kernels of one direction (buffers, not saved)."""

    inverse = False

    def __init__(self, win_len: int, hop: int, fft_len: int, win_type: Optional[str] = "hann"):
        super().__init__()
        self.win_len, self.hop, self.fft_len = win_len, hop, fft_len
        analysis, synthesis, window = stft_kernels(win_len, fft_len, win_type)
        self.register_buffer("weight", synthesis if self.inverse else analysis, persistent=False)
        self.register_buffer("window_sq", (window ** 2)[None, :, None], persistent=False)


class ConvSTFT(_FixedTransform):
    """Analysis: ``wav [B, T] -> spec [B, 2F, N]``, ``N = (T - win_len) // hop + 1``."""

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return F.conv1d(wav.unsqueeze(1), self.weight, stride=self.hop)

    def step(self, wav: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """Streaming analysis of a chunk ``[B, k * hop]``: ``k`` new frames.

        The state keeps the last ``win_len - hop`` samples (zeros at the start).
        """
        context = self.win_len - self.hop
        history = wav.new_zeros(wav.shape[0], context) if state is None else state["history"]
        full = torch.cat([history, wav], dim=-1)
        return self.forward(full), {"history": full[:, full.shape[-1] - context:]}


class ConvISTFT(_FixedTransform):
    """Synthesis: ``spec [B, 2F, N] -> wav [B, (N - 1) * hop + win_len]``."""

    inverse = True

    def _overlap_add(self, spec: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised synthesis ``[B, L]`` and overlap-added squared window ``[1, L]``."""
        frames = spec.shape[-1]
        wav = F.conv_transpose1d(spec, self.weight, stride=self.hop)[:, 0]
        norm = F.fold(self.window_sq.expand(1, -1, frames), (1, wav.shape[-1]),
                      kernel_size=(1, self.win_len), stride=(1, self.hop))
        return wav, norm.view(1, -1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        wav, norm = self._overlap_add(spec)
        return wav / (norm + 1e-8)

    def step(self, spec: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """Streaming synthesis of ``k`` frames: ``k * hop`` finished samples ``[B, k * hop]``.

        The state keeps the partial overlap-add of the last ``win_len - hop``
        samples; :meth:`flush` returns them at the end of the stream.
        """
        wav, norm = self._overlap_add(spec)
        if state is not None:
            tail = state["wav"].shape[-1]
            wav = torch.cat([wav[:, :tail] + state["wav"], wav[:, tail:]], dim=-1)
            norm = torch.cat([norm[:, :tail] + state["norm"], norm[:, tail:]], dim=-1)
        done = spec.shape[-1] * self.hop
        out = wav[:, :done] / (norm[:, :done] + 1e-8)
        return out, {"wav": wav[:, done:], "norm": norm[:, done:]}

    @staticmethod
    def flush(state: Optional[State]) -> torch.Tensor:
        """The samples still held by the streaming state, ``[B, win_len - hop]``."""
        return state["wav"] / (state["norm"] + 1e-8)
