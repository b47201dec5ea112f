"""Separation of arbitrarily long signals in overlapping windows, speakers kept on their outputs.

A separation model only decides the order of its outputs within one window, so consecutive
windows may swap speakers. :class:`WindowedSeparation` runs the model on windows of ``window``
samples that overlap by ``overlap`` samples; before joining a window to the output it reorders the
window's sources so that, on the overlap, they best match the sources already given out (the
permutation with the largest total inner product, found by speechbrain's ``PitWrapper``), then
cross-fades the two over the overlap. Only the current window and one overlap of output are held,
so memory does not grow with the length of the signal.

:class:`WindowedSeparator` is the processor factory for ``audiokit.cli.batch.process_files`` and
``audiokit.blocks`` (``open(channels)`` -> ``feed(x [C, n]) -> [S, C, m]``, ``flush()``).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from speechbrain.nnet.losses import PitWrapper

SeparateFn = Callable[[torch.Tensor], torch.Tensor]  # [B, T] -> [B, S, T]


def _negative_inner_product(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Element-wise ``-estimate * reference`` (PitWrapper averages it over time)."""
    return -(estimate * reference)


_ALIGN = PitWrapper(_negative_inner_product)


def align_sources(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """``estimate`` [B, S, T] with its sources reordered, item by item, so that its first
    ``t`` samples best match ``reference`` [B, S, t] (largest summed inner product: loud,
    correlated sources decide; a source silent in both does not)."""
    head = estimate[..., :reference.shape[-1]]
    _, perms = _ALIGN(head.transpose(1, 2), reference.transpose(1, 2))
    index = torch.tensor(perms, device=estimate.device)  # [B, S]
    return torch.gather(estimate, 1, index[:, :, None].expand_as(estimate))


def _fades(length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Complementary raised-cosine fade-out and fade-in [length] that sum to 1."""
    fade_in = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(length, device=device) + 0.5) / length)
    return 1.0 - fade_in, fade_in


class WindowedSeparation:
    """Streams ``[B, n]`` chunks of B independent signals through ``separate`` in windows.

    Args:
        separate: the model, ``[B, T] -> [B, S, T]`` for any ``T`` (e.g. ``model.separate``).
        window: samples per model call (the last call may be shorter).
        overlap: samples shared by consecutive windows (``0 < overlap < window``).
        num_spks: S, for the empty outputs before the first window (default: learnt from it, 1 before).

    ``feed(chunk [B, n]) -> [B, S, m]`` and ``flush() -> [B, S, m']``: the outputs, in order,
    add up to the input length.
    """

    def __init__(self, separate: SeparateFn, window: int, overlap: int, num_spks: Optional[int] = None):
        if not 0 < overlap < window:
            raise ValueError(f"need 0 < overlap < window, got overlap {overlap}, window {window}")
        self.separate, self.window, self.overlap = separate, int(window), int(overlap)
        self.num_spks = num_spks
        self.pending: Optional[torch.Tensor] = None  # input not yet given out [B, t], starting with the overlap
        self.tail: Optional[torch.Tensor] = None  # last window's output on the overlap [B, S, overlap]

    def _join(self, out: torch.Tensor, final: bool) -> torch.Tensor:
        """Align ``out`` (one window's sources) to the tail, cross-fade, keep its new tail."""
        self.num_spks = out.shape[1]
        if self.tail is not None:
            out = align_sources(self.tail, out)
            fade_out, fade_in = _fades(self.overlap, out.device)
            out = torch.cat((self.tail * fade_out + out[..., :self.overlap] * fade_in, out[..., self.overlap:]), -1)
        keep = 0 if final else self.overlap
        self.tail = out[..., out.shape[-1] - keep:] if keep else None
        return out[..., :out.shape[-1] - keep]

    def feed(self, chunk: torch.Tensor) -> torch.Tensor:
        self.pending = chunk if self.pending is None else torch.cat((self.pending, chunk), -1)
        outputs = []
        while self.pending.shape[-1] >= self.window:
            outputs.append(self._join(self.separate(self.pending[:, :self.window]), final=False))
            self.pending = self.pending[:, self.window - self.overlap:]
        return self._cat(outputs, chunk)

    def flush(self) -> torch.Tensor:
        if self.pending is None:
            raise RuntimeError("flush() before any feed()")
        started = self.tail is not None
        if self.pending.shape[-1] > (self.overlap if started else 0):
            out = self._join(self.separate(self.pending), final=True)
        else:  # nothing new since the last window: give out its tail
            out, self.tail = self.tail, None
        self.pending = None
        return out

    def _cat(self, outputs: list, like: torch.Tensor) -> torch.Tensor:
        if outputs:
            return torch.cat(outputs, -1)
        return like.new_zeros(like.shape[0], self.num_spks or 1, 0)


class WindowedSeparator:
    """Processor factory for ``audiokit.blocks``/``process_files``: every channel of a file is
    separated on its own by :class:`WindowedSeparation` (channels as the batch).

    Args:
        model: has ``separate(wav [B, T]) -> [B, S, T]`` (or is called so), ``sample_rate``.
        window_seconds, overlap_seconds: window and overlap lengths.
        device: where the model runs; results come back on the CPU.
    """

    def __init__(self, model, window_seconds: float = 4.0, overlap_seconds: float = 1.0, device="cpu"):
        self.model, self.device = model, device
        self.sample_rate = int(model.sample_rate)
        self.window = int(round(window_seconds * self.sample_rate))
        self.overlap = int(round(overlap_seconds * self.sample_rate))
        self.num_spks = getattr(model, "num_spks", None)

    def _separate(self, wav: torch.Tensor) -> torch.Tensor:
        run = getattr(self.model, "separate", self.model)
        with torch.inference_mode():
            return run(wav.to(self.device)).float().cpu()

    def open(self, channels: int) -> "_ChannelsAsBatch":
        return _ChannelsAsBatch(WindowedSeparation(self._separate, self.window, self.overlap, self.num_spks))


class _ChannelsAsBatch:
    """``[C, n] -> [S, C, m]`` around a :class:`WindowedSeparation` working on ``[C, n] -> [C, S, m]``."""

    def __init__(self, stream: WindowedSeparation):
        self.stream = stream

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        return self.stream.feed(x).transpose(0, 1)

    def flush(self) -> torch.Tensor:
        return self.stream.flush().transpose(0, 1)
