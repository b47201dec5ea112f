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
* ``dc_free``: whether the model is given the input without its DC offset (``BlockPipeline(dc_free=...)``):
  audio tasks and dance yes, the classifier no (trained on the input as it is);
* ``describe(out)`` -> a short text for the live report from the latest output (``[S, B]`` audio or
  ``[1, n, *shape]`` frames; the classifier prints its running top class);
* ``events(frames)`` -> what happened in the next output frames, in order (``[1, n, *shape]``; the classifier's
  detections), and ``end_events()`` at the end of the stream; each event has ``as_dict()`` and a ``str`` form.
  ``reports_events`` says whether a task has any.

``options`` names the ``audiokit stream`` options a task takes, passed to its constructor as keyword arguments
(``atten_lim_db`` for ``enhance``, ``threshold`` for ``classify``, ``style`` for ``dance``); ``osc_address`` is
the OSC address its frames are sent to by default (``audiokit stream --osc``); ``motion`` says that its frames
are joint positions ``[23, 3]`` (cm), which can also be saved as BVH or a stick-figure video. A new task is one
small subclass registered in :data:`ADAPTERS`.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .classification import Classifier, PosteriorStream, Spotter
from .dance import NUM_JOINTS, DanceStream, check_dancer
from .outputs import OutputSpec
from .pipeline import ChannelStreams, kept_input_share
from .separation import WindowedSeparator, refuse_separator


class TaskAdapter:
    """Base adapter (see the module docstring); ``model`` has a ``sample_rate`` attribute (default 16 kHz).
    ``window``/``overlap``: samples of a windowed stream (the runtime's defaults when None)."""

    name = ""
    output = OutputSpec.audio(1)
    options: tuple = ()
    reports_events = False
    motion = False
    input_share = 0.0  # of the input mixed back into the output (enhance --atten-lim)

    @property
    def dc_free(self) -> bool:
        return self.output.is_audio

    @property
    def osc_address(self) -> str:
        return f"/audiokit/{self.name}"

    def __init__(self, model: nn.Module, window: Optional[int] = None, overlap: Optional[int] = None):
        self.model = model
        self.sample_rate = int(getattr(model, "sample_rate", 16000))
        self.window, self.overlap = window, overlap

    def open(self):
        return ChannelStreams(self.model, 1, window=self.window, overlap=self.overlap, output=self.output,
                              offline=getattr(self.model, self.name, None), input_share=self.input_share)

    def bypass(self, block: np.ndarray) -> np.ndarray:
        """The unprocessed block on every audio output, ``[B] -> [S, B]``; no frames ``[1, 0, *shape]``."""
        if self.output.is_audio:
            return np.repeat(block[None], self.output.count, axis=0)
        return np.zeros((1, 0, *self.output.shape), np.float32)

    def describe(self, out: np.ndarray) -> str:
        """Extra live-report text for the latest output (none by default)."""
        return ""

    def events(self, frames: np.ndarray) -> list:
        """The events in the next output frames ``[1, n, *shape]`` of the stream (none by default)."""
        return []

    def end_events(self) -> list:
        """The events still open at the end of the stream (none by default)."""
        return []


class EnhanceAdapter(TaskAdapter):
    """Speech enhancement: exact causal streaming for causal models, windowed for the rest (one output)."""

    name = "enhance"
    options = ("atten_lim_db",)

    def __init__(self, model: nn.Module, window: Optional[int] = None, overlap: Optional[int] = None,
                 atten_lim_db: Optional[float] = None):
        super().__init__(model, window, overlap)
        refuse_separator(model)
        if not hasattr(model, "enhance"):
            raise ModelError(f"{type(model).__name__} has no enhance(), which live enhancement needs")
        self.input_share = kept_input_share(atten_lim_db)


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


class ClassifyAdapter(TaskAdapter):
    """Keyword spotting: a streaming classifier's running class posteriors (frames at its frame rate, exact step
    mode: :class:`~audiokit.streaming.classification.PosteriorStream`), and the words detected in them
    (:class:`~audiokit.streaming.classification.Spotter`, ``threshold``) as events. ``window``/``overlap`` are not
    used (the classifier is causal)."""

    name = "classify"
    options = ("threshold",)
    reports_events = True

    def __init__(self, model: nn.Module, window: Optional[int] = None, overlap: Optional[int] = None,
                 threshold: Optional[float] = None):
        super().__init__(model)
        self.classifier = Classifier(model)  # ModelKindError for anything else
        self.output = self.classifier.output
        self.spotter = Spotter(self.classifier.labels, self.classifier.frame_rate,
                               0.8 if threshold is None else threshold)

    def open(self) -> PosteriorStream:
        return self.classifier.open(1)

    def describe(self, out: np.ndarray) -> str:
        """The top class of the latest posterior frame and its probability, e.g. ``go 0.93``."""
        if not out.shape[1]:
            return ""
        posterior = out[0, -1]
        k = int(posterior.argmax())
        return f"{self.classifier.labels[k]} {posterior[k]:.2f}"

    def events(self, frames: np.ndarray) -> list:
        """The detections that ended in these frames (times from the start of the stream)."""
        return self.spotter.push(frames[0]) if frames.shape[1] else []

    def end_events(self) -> list:
        return self.spotter.finish()


class DanceAdapter(TaskAdapter):
    """Dance from music: the poses of a dance generator, world positions ``[23, 3]`` (cm) at its frame rate (25 fps),
    generated frame by frame as the music arrives, exactly as offline
    (:class:`~audiokit.streaming.dance.DanceStream`); ``style``: a dance style name, ``"any"`` (or None) or
    ``"auto"`` (picked from the music). ``window``/``overlap`` are not used (the generator is causal).
    ``latency_samples``: one motion frame plus the spectrum window a pose reads."""

    name = "dance"
    options = ("style",)
    motion = True
    dc_free = True  # an offset would be heard as another song (as audiokit dance removes it)
    osc_address = "/audiokit/pose"

    def __init__(self, model: nn.Module, window: Optional[int] = None, overlap: Optional[int] = None,
                 style: Optional[str] = None):
        super().__init__(model)
        check_dancer(model)  # ModelKindError for anything else
        self.model = model.eval()
        self.style = None if style == "any" else style
        self.output = OutputSpec.frames(model.fps, (NUM_JOINTS, 3))
        self.latency_samples = int(model.latency_samples)

    def open(self) -> DanceStream:
        return DanceStream(self.model, self.style)

    def describe(self, out: np.ndarray) -> str:
        """Where the dancer (the mean of the joints) is on the floor in the latest frame: ``dancer x 12 z -40 cm``."""
        if not out.shape[1]:
            return ""
        x, _, z = out[0, -1].mean(0)
        return f"dancer x {x:.0f} z {z:.0f} cm"


ADAPTERS: Dict[str, type] = {"enhance": EnhanceAdapter, "separate": SeparateAdapter, "classify": ClassifyAdapter,
                             "dance": DanceAdapter}
