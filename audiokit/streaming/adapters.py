"""Task adapters: how one task (enhance, separate, later classify, dance) plugs into the real-time engine.

An adapter wraps a loaded model and offers

* ``sample_rate`` (Hz) and ``outputs`` (S signals per input block: 1 for enhancement, speakers for separation);
* ``open()`` -> a fresh runtime stream: ``feed(x [T])`` -> ready output ``[S, t]``, ``flush()``,
  ``latency_samples`` (and ``hop`` for hop-based streams), see :mod:`audiokit.streaming.runtime`;
* ``bypass(block [B])`` -> ``[S, B]``, what to play for a block the model could not process in time;
* ``describe(out [S, B])`` -> a short text for the live report (classification will print its running top class).

A new task is one small subclass registered in :data:`ADAPTERS`.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .runtime import Stream, open_stream
from .separation import WindowedSeparator, refuse_separator


class ShapedStream:
    """A runtime stream fed ``[T]`` whose output is always ``[S, t]``."""

    def __init__(self, stream: Stream, outputs: int):
        self.stream, self.outputs = stream, outputs
        self.latency_samples = stream.latency_samples
        if hasattr(stream, "hop"):
            self.hop = stream.hop

    def feed(self, chunk: torch.Tensor) -> torch.Tensor:
        return self.stream.feed(chunk).reshape(self.outputs, -1)

    def flush(self) -> torch.Tensor:
        return self.stream.flush().reshape(self.outputs, -1)


class TaskAdapter:
    """Base adapter (see the module docstring); ``model`` has a ``sample_rate`` attribute (default 16 kHz)."""

    name = ""
    outputs = 1

    def __init__(self, model: nn.Module):
        self.model = model
        self.sample_rate = int(getattr(model, "sample_rate", 16000))

    def open(self) -> ShapedStream:
        raise NotImplementedError

    def bypass(self, block: np.ndarray) -> np.ndarray:
        """The unprocessed block on every output: ``[B] -> [S, B]``."""
        return np.repeat(block[None], self.outputs, axis=0)

    def describe(self, out: np.ndarray) -> str:
        """Extra live-report text for the latest output block ``[S, B]`` (none by default)."""
        return ""


class EnhanceAdapter(TaskAdapter):
    """Speech enhancement: exact causal streaming for causal models, windowed for the rest (``[T] -> [1, t]``)."""

    name = "enhance"

    def __init__(self, model: nn.Module, window: Optional[int] = None, overlap: Optional[int] = None):
        super().__init__(model)
        refuse_separator(model)
        if not hasattr(model, "enhance"):
            raise ModelError(f"{type(model).__name__} has no enhance(), which live enhancement needs")
        self.window, self.overlap = window, overlap

    def open(self) -> ShapedStream:
        return ShapedStream(open_stream(self.model, 1, self.window, self.overlap), 1)


class SeparateAdapter(TaskAdapter):
    """Speech separation with any model offering ``separate(wav [B, T]) -> [B, S, T]`` (MossFormer2), run in
    cross-faded windows of ``window`` samples overlapping by ``overlap`` (latency: one window), each
    window's speakers reordered to match the previous window's (as ``audiokit separate`` does)."""

    name = "separate"

    def __init__(self, model: nn.Module, window: Optional[int] = None, overlap: Optional[int] = None):
        super().__init__(model)
        self.window = window or self.sample_rate
        self.overlap = self.window // 4 if overlap is None else overlap
        self.separator = WindowedSeparator(model, self.window / self.sample_rate, self.overlap / self.sample_rate)
        with torch.no_grad():
            probe = model.separate(torch.zeros(1, self.window))
        if probe.dim() != 3 or probe.shape[0] != 1 or probe.shape[-1] != self.window:
            raise ModelError(f"{type(model).__name__}.separate must map [B, T] to [B, S, T], "
                             f"got {tuple(probe.shape)} for [1, {self.window}]")
        self.outputs = probe.shape[1]

    def open(self) -> ShapedStream:
        return ShapedStream(_SeparationStream(self.separator), self.outputs)


class _SeparationStream:
    """One signal through a :class:`WindowedSeparator`: ``feed(x [T]) -> [S, 1, t]``, each speaker kept on
    its output across windows (permutations aligned on the overlaps); latency one window."""

    def __init__(self, separator: WindowedSeparator):
        self.inner = separator.open(1)
        self.latency_samples = separator.window

    def feed(self, chunk: torch.Tensor) -> torch.Tensor:
        return self.inner.feed(chunk.reshape(1, -1))  # [T] (or [1, T]) as a batch of one

    def flush(self) -> torch.Tensor:
        return self.inner.flush()


ADAPTERS: Dict[str, type] = {"enhance": EnhanceAdapter, "separate": SeparateAdapter}
