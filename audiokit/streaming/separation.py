"""Separation of arbitrarily long signals in overlapping windows, speakers kept on their outputs.

A separation model only decides the order of its outputs within one window, so consecutive
windows may swap speakers. :class:`WindowedSeparation` runs the model on windows of ``window``
samples that overlap by ``overlap`` samples; before joining a window to the output it reorders the
window's sources so that, on the overlap, they best match the sources already given out (the
permutation with the largest total inner product, found by speechbrain's ``PitWrapper``), then
cross-fades the two over the overlap. When the overlap is (nearly) silent, so that it cannot tell the
talkers apart, the window's sources are matched instead by their spectra to the spectra of all that
each output has given out so far (:func:`voice_profile`). Only the current window and one overlap of output are held,
so memory does not grow with the length of the signal.

:class:`WindowedSeparator` is the processor factory for ``audiokit.cli.batch.process_files`` and
``audiokit.streaming.pipeline`` (``open(channels)`` -> ``feed(x [C, n]) -> [S, C, m]``, ``flush()``).
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from audiokit.errors import ModelError, ModelKindError
from audiokit.streaming.crossfade import crossfade
from audiokit.streaming.outputs import OutputSpec

SeparateFn = Callable[[torch.Tensor], torch.Tensor]  # [B, T] -> [B, S, T]


def _negative_inner_product(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Element-wise ``-estimate * reference`` (PitWrapper averages it over time)."""
    return -(estimate * reference)


def best_order(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Index [B, S] such that ``estimate[b, index[b]]`` best matches ``reference`` (both [B, S, L],
    any features along L): the permutation with the largest summed inner product."""
    from speechbrain.nnet.losses import PitWrapper  # imported here: speechbrain takes a second to import
    _, perms = PitWrapper(_negative_inner_product)(estimate.transpose(1, 2), reference.transpose(1, 2))
    return torch.tensor(perms, device=estimate.device)


def reorder(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x`` [B, S, T] with the sources of item b in the order ``index[b]`` [B, S]."""
    return torch.gather(x, 1, index[:, :, None].expand_as(x))


def align_sources(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """``estimate`` [B, S, T] with its sources reordered, item by item, so that its first
    ``t`` samples best match ``reference`` [B, S, t] (largest summed inner product: loud,
    correlated sources decide; a source silent in both does not)."""
    return reorder(estimate, best_order(reference, estimate[..., :reference.shape[-1]]))


def voice_profile(x: torch.Tensor, n_fft: int = 256) -> torch.Tensor:
    """Power spectrum summed over frames [B, S, n_fft // 2 + 1] of sources ``x`` [B, S, T]
    (T >= n_fft): what each output sounds like, to recognise its talker after a pause."""
    b, s, t = x.shape
    spec = torch.stft(x.reshape(b * s, t).float(), n_fft, n_fft // 2, window=torch.hann_window(n_fft, device=x.device),
                      return_complex=True)
    return spec.abs().pow(2).sum(-1).view(b, s, -1)


def _unit_magnitude(profile: torch.Tensor) -> torch.Tensor:
    """Magnitude profile scaled to unit norm (comparing profiles by cosine similarity)."""
    magnitude = profile.sqrt()
    return magnitude / (magnitude.norm(dim=-1, keepdim=True) + 1e-12)


def averaged_over_shifts(separate: SeparateFn, shifts: int, hop: int) -> SeparateFn:
    """``separate`` (``[B, T] -> [B, S, T]``) made to run on ``shifts`` copies of its input, delayed by
    ``i * hop // shifts`` samples (``i = 0 .. shifts - 1``); each output is moved back, put in the
    speaker order of the first, and the mean is returned.

    A frame-based model (encoder hop ``hop`` samples) sees each copy on another frame grid, and the
    mean of its estimates is usually better than any one (test-time augmentation, as Demucs'
    ``--shifts``); it costs ``shifts`` model calls.  ``shifts=1`` returns ``separate`` itself; more
    than ``hop`` would repeat delays and is refused (``ModelError``).
    """
    if isinstance(shifts, bool) or not isinstance(shifts, numbers.Integral) or not 1 <= shifts <= max(1, hop):
        raise ModelError(f"shifts must be from 1 to the model's hop ({hop} samples), got {shifts}")
    if shifts == 1:
        return separate

    def run(wav: torch.Tensor) -> torch.Tensor:
        first = separate(wav)
        total = first.clone()
        for i in range(1, shifts):
            delay = i * hop // shifts
            out = separate(F.pad(wav, (delay, 0)))[..., delay:]
            total += reorder(out, best_order(first, out))
        return total / shifts

    return run


class WindowedSeparation:
    """Streams ``[B, n]`` chunks of B independent signals through ``separate`` in windows.

    Args:
        separate: the model, ``[B, T] -> [B, S, T]`` for any ``T`` (e.g. ``model.separate``).
        window: samples per model call (fewer only for signals shorter than one window).
        overlap: samples shared by consecutive windows (``0 < overlap < window``).
        num_spks: S, for the empty outputs before the first window (default: learnt from it, 1 before).

    ``feed(chunk [B, n]) -> [B, S, m]`` and ``flush() -> [B, S, m']``: the outputs, in order,
    add up to the input length.
    """

    #: an overlap this far (power ratio) below the output's mean power so far counts as silent
    quiet = 1e-3

    def __init__(self, separate: SeparateFn, window: int, overlap: int, num_spks: Optional[int] = None):
        if not 0 < overlap < window:
            raise ValueError(f"need 0 < overlap < window, got overlap {overlap}, window {window}")
        self.separate, self.window, self.overlap = separate, int(window), int(overlap)
        self.num_spks = num_spks
        self.pending: Optional[torch.Tensor] = None  # input not yet given out [B, t], starting with the overlap
        self.tail: Optional[torch.Tensor] = None  # last window's output on the overlap [B, S, overlap]
        self.last_window: Optional[torch.Tensor] = None  # the input of the last model call [B, window]
        self.profile: Optional[torch.Tensor] = None  # voice_profile of each output so far [B, S, F]
        self.energy, self.samples = 0.0, 0  # [B] summed power of the outputs so far, and its length

    def _order(self, out: torch.Tensor) -> torch.Tensor:
        """Index [B, S] putting ``out``'s sources in the order of the outputs so far."""
        index = best_order(self.tail, out[..., :self.overlap])
        if self.profile is None or out.shape[-1] < 256:
            return index
        mean_power = self.energy / self.samples
        silent = self.tail.pow(2).sum(1).mean(-1) < self.quiet * mean_power  # [B]
        if silent.any():
            by_voice = best_order(_unit_magnitude(self.profile), _unit_magnitude(voice_profile(out)))
            index = torch.where(silent[:, None], by_voice, index)
        return index

    def _join(self, out: torch.Tensor, final: bool) -> torch.Tensor:
        """Align ``out`` (one window's sources) to the tail, cross-fade, keep its new tail."""
        self.num_spks = out.shape[1]
        if self.tail is not None:
            out = reorder(out, self._order(out))
            out = torch.cat((crossfade(self.tail, out[..., :self.overlap]), out[..., self.overlap:]), -1)
        if out.shape[-1] >= 256:
            self.profile = voice_profile(out) + (0 if self.profile is None else self.profile)
        self.energy = self.energy + out.pow(2).sum((1, 2))
        self.samples += out.shape[-1]
        keep = 0 if final else self.overlap
        self.tail = out[..., out.shape[-1] - keep:] if keep else None
        return out[..., :out.shape[-1] - keep]

    def feed(self, chunk: torch.Tensor) -> torch.Tensor:
        self.pending = chunk if self.pending is None else torch.cat((self.pending, chunk), -1)
        outputs = []
        while self.pending.shape[-1] >= self.window:
            self.last_window = self.pending[:, :self.window]
            outputs.append(self._join(self.separate(self.last_window), final=False))
            self.pending = self.pending[:, self.window - self.overlap:]
        return self._cat(outputs, chunk)

    def flush(self) -> torch.Tensor:
        if self.pending is None:
            raise RuntimeError("flush() before any feed()")
        started = self.tail is not None
        if self.pending.shape[-1] > (self.overlap if started else 0):
            # the last call still sees a whole window: the one before, continued by the rest
            rest = self.pending.shape[-1]
            context = self.last_window[:, :self.window - self.overlap] if started else self.pending[:, :0]
            full = torch.cat((context, self.pending), -1)[:, -self.window:]
            out = self._join(self.separate(full)[..., -rest:], final=True)
        else:  # nothing new since the last window: give out its tail
            out, self.tail = self.tail, None
        self.pending = None
        return out

    def _cat(self, outputs: list, like: torch.Tensor) -> torch.Tensor:
        if outputs:
            return torch.cat(outputs, -1)
        return like.new_zeros(like.shape[0], self.num_spks or 1, 0)


def refuse_separator(model) -> None:
    """ModelKindError when ``model`` separates (has ``separate``) and does not enhance: the enhancers' check."""
    if hasattr(model, "separate") and not hasattr(model, "enhance"):
        raise ModelKindError(f"{type(model).__name__} is a separation model, not an enhancer (use separate)")


class WindowedSeparator:
    """Processor factory for ``audiokit.streaming.pipeline``/``process_files``: every channel of a file is
    separated on its own by :class:`WindowedSeparation` (channels as the batch).

    Args:
        model: has ``separate(wav [B, T]) -> [B, S, T]`` (or is a callable, not a module, called so),
            ``sample_rate``; ModelKindError for a module without ``separate``.
        window_seconds, overlap_seconds: window and overlap lengths (``ModelError`` unless
            ``0 < overlap < window`` in whole samples).
        device: where the model runs; results come back on the CPU.
        shifts: each window is separated this many times on shifted frame grids and the results
            averaged (:func:`averaged_over_shifts` over the model's ``hop_length``; a model without
            one gets delays of 0, 1, 2, ... samples); 1: once.

    ``output``: its speakers as audio outputs (their number None unless the model has ``num_spks``; the first
    window tells). Signals shorter than ``min_samples`` are zero-padded to it for the model (whose encoder
    needs a few frames) and its outputs trimmed back.
    """

    min_samples = 512

    def __init__(self, model, window_seconds: float = 4.0, overlap_seconds: float = 1.0, device="cpu",
                 shifts: int = 1):
        if isinstance(model, torch.nn.Module) and not hasattr(model, "separate"):
            raise ModelKindError(f"{type(model).__name__} is not a separation model (use enhance)")
        self.device = device
        self.run = averaged_over_shifts(getattr(model, "separate", model), shifts,
                                        int(getattr(model, "hop_length", shifts)))
        self.sample_rate = int(model.sample_rate)
        if not (math.isfinite(window_seconds) and math.isfinite(overlap_seconds)):
            raise ModelError(f"window {window_seconds} s, overlap {overlap_seconds} s: need finite lengths")
        self.window = int(round(window_seconds * self.sample_rate))
        self.overlap = int(round(overlap_seconds * self.sample_rate))
        if not 0 < self.overlap < self.window:
            raise ModelError(f"overlap {overlap_seconds:g} s, window {window_seconds:g} s: need 0 < overlap < window "
                             f"(here {self.overlap} and {self.window} samples at {self.sample_rate} Hz)")
        self.output = OutputSpec.audio(getattr(model, "num_spks", None))  # speakers, when the model says

    def _separate(self, wav: torch.Tensor) -> torch.Tensor:
        length = wav.shape[-1]
        with torch.inference_mode():
            out = self.run(F.pad(wav, (0, max(0, self.min_samples - length))).to(self.device)).float().cpu()
        return out[..., :length]

    def open(self, channels: int) -> "_ChannelsAsBatch":
        return _ChannelsAsBatch(WindowedSeparation(self._separate, self.window, self.overlap, self.output.count))


class _ChannelsAsBatch:
    """``[C, n] -> [S, C, m]`` around a :class:`WindowedSeparation` working on ``[C, n] -> [C, S, m]``
    (latency: one window)."""

    def __init__(self, stream: WindowedSeparation):
        self.stream = stream
        self.latency_samples = stream.window

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        return self.stream.feed(x).transpose(0, 1)

    def flush(self) -> torch.Tensor:
        return self.stream.flush().transpose(0, 1)
