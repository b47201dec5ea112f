"""Classification and keyword spotting with a streaming classifier (an
:class:`~audiokit.models.lssl_classifier.LSSLClassifier`).

The model gives a running class posterior at every frame as audio arrives (its step mode, exactly its offline
``frame_logits``); everything here is built on that stream of posteriors, fed block by block through the one
:class:`~audiokit.streaming.pipeline.BlockPipeline` (input resampled to the model's rate in chunks, several
channels mixed down to one), so memory stays bounded whatever the length.

* :class:`PosteriorStream`: the processor (``feed`` / ``flush``) turning samples at the model rate into
  posteriors ``[1, C, n, K]`` (softmax of the model's frame logits).
* :class:`Classifier`: one label per clip. A clip no longer than the model's pooling window (``pool_seconds``,
  1 s for Speech Commands) is right-padded with zeros to the window, as in training, and classified at the
  window's end; a longer one by its most confident full window (a window whose top class is a word beats one
  whose top class is ``_silence_`` or ``_unknown_``; among those of the same kind, the higher probability wins).
  A model without a pooling window (a running mean since the start) classifies the clip at its end.
* :class:`Spotter`: keyword spotting. A detection starts at the first frame where a word's posterior (not
  ``_silence_`` or ``_unknown_``) reaches ``threshold``, and ends at the first frame where it falls below half
  the threshold or another word becomes the top class; its ``prob`` is its highest posterior meanwhile. Times
  are those of the posterior frames, in seconds from the start of the input: the pooled posterior rises while
  a word is heard and falls about one pooling window after it, so a detection lags the word it reports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import ModelKindError
from .outputs import OutputSpec
from .pipeline import BlockPipeline

#: labels that are not words: never detected, and a window they win counts less than one a word wins
BACKGROUND_LABELS = ("_silence_", "_unknown_")


@dataclass(frozen=True)
class Detection:
    """A spotted word: ``label``, its highest posterior ``prob``, and the frame times (s) it started and ended."""

    label: str
    prob: float
    start_s: float
    end_s: float

    def as_dict(self) -> dict:
        """``{"label", "prob", "start", "end"}`` (times in seconds)."""
        return {"label": self.label, "prob": self.prob, "start": self.start_s, "end": self.end_s}

    def __str__(self) -> str:
        return f"{self.label} ({self.prob:.2f}) {self.start_s:.2f}-{self.end_s:.2f} s"


@dataclass(frozen=True)
class Classification:
    """One clip's class: ``label`` and ``prob`` (its posterior), ``top`` the ``top_k`` best ``(label, prob)``
    pairs, best first, and ``end_s`` the time (s) at which the window classified ends."""

    label: str
    prob: float
    top: Tuple[Tuple[str, float], ...]
    end_s: float

    def as_dict(self) -> dict:
        """``{"label", "prob", "top": [{"label", "prob"}, ...], "end"}`` (time in seconds)."""
        return {"label": self.label, "prob": self.prob,
                "top": [{"label": label, "prob": prob} for label, prob in self.top], "end": self.end_s}

    def __str__(self) -> str:
        return ", ".join(f"{label} ({prob:.2f})" for label, prob in self.top)


def check_classifier(model: nn.Module) -> None:
    """ModelKindError unless ``model`` is a streaming classifier (``step``, ``frame_samples``, ``num_classes``)."""
    missing = [name for name in ("step", "frame_samples", "num_classes") if not hasattr(model, name)]
    if missing:
        raise ModelKindError(f"{type(model).__name__} is not a streaming classifier (it has no "
                             f"{', '.join(missing)}), which classify needs")


def class_labels(model: nn.Module) -> Tuple[str, ...]:
    """The model's class names (its ``labels``, else ``"0"``, ``"1"``, ...)."""
    labels = getattr(model, "labels", None)
    return tuple(labels) if labels else tuple(str(i) for i in range(model.num_classes))


class PosteriorStream:
    """A processor (:mod:`audiokit.streaming.pipeline`) running a classifier's step mode on ``channels`` signals at
    its rate: ``feed(x [C, n]) -> [1, C, m, K]`` posteriors (float32, CPU) of the frames completed so far.

    ``flush()`` first pads the input with zeros to ``pad_to`` samples (if it is shorter) and, with
    ``complete_last``, completes a last partial frame with zeros (one frame per ``frame_samples`` begun, as the
    streaming runtime counts frames); without, that partial frame is dropped (as the model's ``forward`` does).
    The frames equal ``softmax(model.frame_logits(x))`` of the whole (padded) input.
    """

    latency_samples = 0

    def __init__(self, model: nn.Module, channels: int = 1, pad_to: int = 0, complete_last: bool = True):
        check_classifier(model)
        self.model, self.channels, self.pad_to, self.complete_last = model, channels, pad_to, complete_last
        self.hop = int(model.frame_samples)
        self.num_classes = int(model.num_classes)
        self.device = next(model.parameters(), torch.zeros(0)).device
        self.samples = 0  # fed so far (padding included)
        self._state = None

    def _none(self) -> torch.Tensor:
        return torch.zeros(1, self.channels, 0, self.num_classes)

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        if not x.shape[-1]:
            return self._none()
        self.samples += x.shape[-1]
        with torch.inference_mode():
            logits, self._state = self.model.step(x.to(self.device, torch.float32), self._state)
            return logits.softmax(-1).to("cpu", torch.float32)[None]

    def flush(self) -> torch.Tensor:
        missing = max(0, self.pad_to - self.samples)
        if self.complete_last:
            missing += (-(self.samples + missing)) % self.hop
        return self.feed(torch.zeros(self.channels, missing)) if missing else self._none()


class Classifier:
    """A streaming classifier ready to classify clips (see the module docstring); ``model`` is put in eval mode.

    ``sample_rate`` (Hz), ``labels``, ``frame_rate`` (posterior frames per second), ``window_frames`` (frames the
    posterior pools over; None: all since the start) and ``output`` (frames of ``K`` posteriors) describe it.
    """

    def __init__(self, model: nn.Module):
        check_classifier(model)
        self.model = model.eval()
        self.sample_rate = int(getattr(model, "sample_rate", 16000))
        self.labels = class_labels(model)
        self.frame_samples = int(model.frame_samples)
        self.frame_rate = self.sample_rate / self.frame_samples
        window = getattr(getattr(model, "running_mean", None), "window", None)
        if window is None and getattr(model, "pool_seconds", None):
            window = max(1, round(model.pool_seconds * self.frame_rate))
        self.window_frames: Optional[int] = window
        self.output = OutputSpec.frames(self.frame_rate, (len(self.labels),), self.labels)
        self.words = np.array([label not in BACKGROUND_LABELS for label in self.labels])

    def open(self, channels: int = 1, pad_to: int = 0, complete_last: bool = True) -> PosteriorStream:
        """A fresh posterior stream (a processor for :class:`~audiokit.streaming.pipeline.BlockPipeline`)."""
        return PosteriorStream(self.model, channels, pad_to, complete_last)

    def posteriors(self, blocks: Iterable[torch.Tensor], rate: int, pad_to: int = 0,
                   complete_last: bool = True) -> Iterator[np.ndarray]:
        """Posterior frames ``[n, K]`` (float32) of the input given as ``[C, n]`` (or ``[n]``) blocks at ``rate``
        (channels mixed down to one), in order, block by block. ``pad_to``: pad the input with zeros to that many
        samples at the model rate."""
        pipeline = BlockPipeline(lambda: self.open(1, pad_to, complete_last), rate, self.sample_rate, self.output)
        for block in blocks:
            block = block.reshape(-1, block.shape[-1]).float()
            frames = pipeline.feed(block.mean(0, keepdim=True))
            if frames.shape[2]:
                yield frames[0, 0].numpy()
        frames = pipeline.flush()
        if frames.shape[2]:
            yield frames[0, 0].numpy()

    def classify(self, blocks: Iterable[torch.Tensor], rate: int, top_k: int = 1) -> Classification:
        """The class of the clip given as ``[C, n]`` blocks at ``rate`` (see the module docstring)."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        window = self.window_frames
        pad_to = (window or 1) * self.frame_samples  # at least one frame, or the whole window
        best_score, best_index, best = -1.0, 0, None  # score: 2 for a word, plus the probability
        first = 0
        for frames in self.posteriors(blocks, rate, pad_to, complete_last=False):
            if window is None:  # the last frame is the one
                best_index, best = first + len(frames) - 1, frames[-1]
            elif (start := max(0, window - 1 - first)) < len(frames):  # full windows only
                full = frames[start:]
                score = 2.0 * self.words[full.argmax(-1)] + full.max(-1)
                i = int(score.argmax())
                if score[i] > best_score:
                    best_score, best_index, best = float(score[i]), first + start + i, full[i]
            first += len(frames)
        posterior, index = best, best_index
        order = np.argsort(-posterior, kind="stable")[:top_k]
        top = tuple((self.labels[k], float(posterior[k])) for k in order)
        return Classification(top[0][0], top[0][1], top, (index + 1) / self.frame_rate)


class Spotter:
    """Keyword spotting on posterior frames (see the module docstring for the rule).

    Feed it frames ``[n, K]`` in order with :meth:`push` (each returns the detections that ended), then call
    :meth:`finish` at the end of the input (a detection still open ends at the last frame).
    :meth:`spot` does all of it for a classifier and input blocks. ``labels``: the classes of the posteriors;
    ``frame_rate``: frames per second.
    """

    def __init__(self, labels: Sequence[str], frame_rate: float, threshold: float = 0.8,
                 background: Sequence[str] = BACKGROUND_LABELS):
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be a probability in (0, 1], got {threshold}")
        self.labels, self.frame_rate, self.threshold = tuple(labels), float(frame_rate), float(threshold)
        self.words = np.array([label not in background for label in self.labels])
        if not self.words.any():
            raise ValueError("every class is background: nothing to spot")
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far (frame times start at 0 again)."""
        self.frames = 0
        self.active: Optional[Tuple[int, float, float]] = None  # (class, peak posterior, start time)

    def _close(self, end: float) -> Detection:
        k, peak, start = self.active
        self.active = None
        return Detection(self.labels[k], peak, start, end)

    def push(self, frames: np.ndarray) -> List[Detection]:
        """The next posterior frames ``[n, K]``; returns the detections that ended in them."""
        frames = np.asarray(frames, dtype=np.float32).reshape(-1, len(self.labels))
        ended: List[Detection] = []
        word_posteriors = np.where(self.words, frames, -1.0)
        for posterior, word_posterior in zip(frames, word_posteriors):
            self.frames += 1
            time = self.frames / self.frame_rate
            if self.active is not None:
                k = self.active[0]
                top = int(posterior.argmax())
                if posterior[k] < self.threshold / 2 or (top != k and self.words[top]):
                    ended.append(self._close(time))
                else:
                    self.active = (k, max(self.active[1], float(posterior[k])), self.active[2])
            if self.active is None:
                word = int(word_posterior.argmax())
                if posterior[word] >= self.threshold:
                    self.active = (word, float(posterior[word]), time)
        return ended

    def finish(self) -> List[Detection]:
        """End of the input: the detection still open, ended at the last frame (if any)."""
        return [self._close(self.frames / self.frame_rate)] if self.active is not None else []

    @classmethod
    def spot(cls, classifier: Classifier, blocks: Iterable[torch.Tensor], rate: int,
             threshold: float = 0.8) -> Iterator[Detection]:
        """The detections in the input given as ``[C, n]`` blocks at ``rate``, each as soon as it ends."""
        spotter = cls(classifier.labels, classifier.frame_rate, threshold)
        for frames in classifier.posteriors(blocks, rate):
            yield from spotter.push(frames)
        yield from spotter.finish()
