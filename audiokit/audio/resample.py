"""Sample-rate conversion with soxr (libsoxr, high quality): whole signals and streams, any ratio.

* :func:`resample`: a whole signal ``[..., T]``, tensor or ndarray.
* :class:`StreamResampler`: a signal fed as ``[C, n]`` blocks of any size; the concatenated outputs equal
  :func:`resample` of the whole signal exactly (it is the same soxr stream).

Any ratio, 16001/16000 or 44101/16000 included, runs in constant memory and linear time. Both give
``ceil(T * new_sr / orig_sr)`` samples aligned with the input: soxr holds back its filter delay, so output
sample ``i`` is the signal at time ``i / new_sr`` (soxr gives ``round``; one zero completes a shorter end).
Rates below :data:`MIN_SAMPLE_RATE` Hz are refused (ValueError).
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import Optional

import numpy as np
import soxr
import torch

MIN_SAMPLE_RATE = 1000  # Hz; the lowest rate audiokit reads, resamples or runs a model at
QUALITY = "HQ"  # soxr's default: 20-bit precision, 95 % passband


def rate_problem(rate) -> Optional[str]:
    """Why ``rate`` cannot be used as a sample rate (None when it can): it must be a whole number of Hz,
    at least :data:`MIN_SAMPLE_RATE`. The callers raise their own error type with this text."""
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (numbers.Real, np.number)) \
            or not math.isfinite(rate) or not float(rate).is_integer() or rate < MIN_SAMPLE_RATE:
        return f"{rate!r}: want a whole number of Hz, at least {MIN_SAMPLE_RATE}"
    return None


def _checked(orig_sr, new_sr) -> tuple[int, int]:
    for rate in (orig_sr, new_sr):
        if (problem := rate_problem(rate)) is not None:
            raise ValueError(f"sample rate {problem}")
    return int(orig_sr), int(new_sr)


class StreamResampler:
    """``orig_sr -> new_sr`` for ``channels`` signals fed as ``[C, n]`` float blocks (see the module docstring).

    ``feed`` returns the ``[C, m]`` output samples ready so far, ``flush`` the rest at the end of the signal.
    ``held`` bounds the input samples (at ``orig_sr``) whose output is still held back at any time: the
    resampler's share of a live stream's latency.
    """

    def __init__(self, orig_sr: int, new_sr: int, channels: int = 1):
        self.orig_sr, self.new_sr = _checked(orig_sr, new_sr)
        self.channels = channels
        self._soxr = soxr.ResampleStream(self.orig_sr, self.new_sr, channels, dtype="float32", quality=QUALITY)
        self._samples_in = self._samples_out = 0
        self._device = torch.device("cpu")  # where the input came from, and the output goes

    @property
    def held(self) -> int:
        """Input samples (at ``orig_sr``) held back at most; 0 when the rates are equal."""
        return held_samples(self.orig_sr, self.new_sr) if self.orig_sr != self.new_sr else 0

    def _run(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        if self.orig_sr == self.new_sr:
            out = x
        else:
            data = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy().T)  # soxr: [n, C]
            out = torch.from_numpy(np.ascontiguousarray(self._soxr.resample_chunk(data, last=last).T))
        self._samples_out += out.shape[-1]
        return out.to(self._device)

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        """``[C, n]`` input samples in, the ``[C, m]`` output samples ready so far out."""
        self._samples_in += x.shape[-1]
        self._device = x.device
        return self._run(x, last=False)

    def flush(self) -> torch.Tensor:
        """The remaining ``[C, m]`` output samples, for ``ceil(T * new_sr / orig_sr)`` in all."""
        out = self._run(torch.zeros(self.channels, 0), last=True)
        missing = math.ceil(self._samples_in * self.new_sr / self.orig_sr) - self._samples_out
        self._samples_out += missing
        return torch.nn.functional.pad(out, (0, missing))  # a negative pad trims


@functools.lru_cache(maxsize=None)
def held_samples(orig_sr: int, new_sr: int) -> int:
    """An upper bound of the input samples soxr holds back (filter delay plus its block buffering), measured
    once per ratio on silence fed one sample at a time: the most ever held over a probe of several times the
    initial delay, plus 5 % and one output sample's worth of input as margin (the hold drifts by a few
    samples over long streams for some ratios)."""
    stream = soxr.ResampleStream(orig_sr, new_sr, 1, dtype="float32", quality=QUALITY)
    zero, produced, fed, worst, first = np.zeros(1, np.float32), 0, 0, 0.0, None
    while first is None or fed < max(8 * first, 16384):
        fed += 1
        produced += len(stream.resample_chunk(zero))
        if produced and first is None:
            first = fed
        worst = max(worst, fed - produced * orig_sr / new_sr)
    return math.ceil(1.05 * worst) + math.ceil(orig_sr / new_sr)


def resample(wav: torch.Tensor | np.ndarray, orig_sr: int, new_sr: int) -> torch.Tensor | np.ndarray:
    """Resample ``wav`` [..., T] from ``orig_sr`` to ``new_sr`` Hz along the last axis.

    Returns the same type (tensor, on its device and of its float dtype; or float ndarray) with
    ``ceil(T * new_sr / orig_sr)`` samples; the input itself when the rates are equal.
    """
    orig_sr, new_sr = _checked(orig_sr, new_sr)
    if orig_sr == new_sr:
        return wav
    x = torch.from_numpy(np.ascontiguousarray(wav)) if isinstance(wav, np.ndarray) else wav
    flat = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
    if flat.shape[0]:
        stream = StreamResampler(orig_sr, new_sr, flat.shape[0])
        out = torch.cat([stream.feed(flat), stream.flush()], dim=-1)
    else:  # no signal at all: soxr needs a channel
        out = flat.new_zeros(0, math.ceil(x.shape[-1] * new_sr / orig_sr))
    out = out.reshape(*x.shape[:-1], out.shape[-1])
    if isinstance(wav, np.ndarray):
        return out.numpy().astype(wav.dtype if wav.dtype.kind == "f" else np.float32, copy=False)
    return out.to(x.dtype if x.is_floating_point() else torch.float32)
