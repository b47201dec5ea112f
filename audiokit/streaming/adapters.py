"""Task adapters: how one task (enhance, separate, later classify, dance) plugs into the real-time engine.

An adapter wraps a loaded model and offers

* ``sample_rate`` (Hz) and ``output`` (an :class:`~audiokit.streaming.outputs.OutputSpec`: S audio signals per
  input block, 1 for enhancement and the speakers for separation, or frames at a frame rate);
* ``open()`` -> a fresh processor (see :mod:`audiokit.streaming.pipeline`) for one channel at ``sample_rate``:
  ``feed(x [1, n]) -> [S, 1, m, *shape]``, ``flush()``, ``latency_samples`` (and ``hop`` for hop-based streams);
  by default the model through the streaming runtime (:class:`~audiokit.streaming.pipeline.ChannelStreams`):
  exact for a causal model, else windows of the model's method named after the task (``model.enhance``,
  ``model.classify``, ...);
* ``bypass(block [B])``: what to play for a block the model could not process in time (``[S, B]``; no frames);
* ``describe(out)`` -> a short text for the live report from the latest output (``[S, B]`` audio or
  ``[1, n, *shape]`` frames; a classifier will print its running top class).

A new task is one small subclass registered in :data:`ADAPTERS`.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .outputs import OutputSpec
from .pipeline import ChannelStreams
from .separation import WindowedSeparator, refuse_separator


class TaskAdapter:
    """Base adapter (see the module docstring); ``model`` has a ``sample_rate`` attribute (default 16 kHz).
    ``window``/``overlap``: samples of a windowed stream (the runtime's defaults when None)."""

    name = ""
    output = OutputSpec.audio(1)

    def __init__(self, model: nn.Module, window: Optional[int] = None, overlap: Optional[int] = None):
        self.model = model
        self.sample_rate = int(getattr(model, "sample_rate", 16000))
        self.window, self.overlap = window, overlap

    def open(self):
        return ChannelStreams(self.model, 1, window=self.window, overlap=self.overlap, output=self.output,
                              offline=getattr(self.model, self.name, None))

    def bypass(self, block: np.ndarray) -> np.ndarray:
        """The unprocessed block on every audio output, ``[B] -> [S, B]``; no frames ``[1, 0, *shape]``."""
        if self.output.is_audio:
            return np.repeat(block[None], self.output.count, axis=0)
        return np.zeros((1, 0, *self.output.shape), np.float32)

    def describe(self, out: np.ndarray) -> str:
        """Extra live-report text for the latest output (none by default)."""
        return ""


class EnhanceAdapter(TaskAdapter):
    """Speech enhancement: exact causal streaming for causal models, windowed for the rest (one output)."""

    name = "enhance"

    def __init__(self, model: nn.Module, window: Optional[int] = None, overlap: Optional[int] = None):
        super().__init__(model, window, overlap)
        refuse_separator(model)
        if not hasattr(model, "enhance"):
            raise ModelError(f"{type(model).__name__} has no enhance(), which live enhancement needs")


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
        self.output = self.separator.output = OutputSpec.audio(probe.shape[1])  # empty blocks have S outputs too

    def open(self):
        return self.separator.open(1)


ADAPTERS: Dict[str, type] = {"enhance": EnhanceAdapter, "separate": SeparateAdapter}
