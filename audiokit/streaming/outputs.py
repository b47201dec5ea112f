"""What a processor or task adapter emits: audio signals, or frames at a frame rate.

* ``OutputSpec.audio(count)``: ``count`` signals per input (1 enhanced signal, S speakers), sample by sample
  at the model rate; pipelines resample them back to the input's rate and keep them as long as the input,
  and writers write them as audio files.
* ``OutputSpec.frames(frame_rate, shape, labels)``: one frame of features every ``1 / frame_rate`` seconds,
  e.g. label posteriors ``[N, C]`` (``shape=(C,)``, ``labels`` naming the classes) or motion ``[N, J, 3]``
  (``shape=(J, 3)``); never resampled, collected as they come and written as ``.npz`` files.

Layouts: a runtime stream gives ``[B, t]`` or ``[B, S, t]`` samples (time last) or ``[B, n, *shape]`` frames
(time second); a block processor gives ``[S, C, n, *shape]`` (outputs, channels, time, features; ``shape`` is
empty for audio).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..errors import ModelError

AUDIO, FRAMES = "audio", "frames"


@dataclass(frozen=True)
class OutputSpec:
    """See the module docstring.

    kind: ``"audio"`` or ``"frames"``.
    count: audio signals per input (None: known from the model's first output); 1 for frames.
    frame_rate: frames per second (frames only).
    shape: one frame's feature shape (frames only; ``()`` for audio).
    labels: class names of posteriors, one per entry of the last feature axis (frames only, optional).
    """

    kind: str = AUDIO
    count: Optional[int] = 1
    frame_rate: Optional[float] = None
    shape: tuple[int, ...] = ()
    labels: Optional[tuple[str, ...]] = None

    def __post_init__(self):
        if self.kind not in (AUDIO, FRAMES):
            raise ValueError(f"output kind must be {AUDIO!r} or {FRAMES!r}, got {self.kind!r}")
        if self.kind == AUDIO and (self.frame_rate is not None or self.shape or self.labels is not None):
            raise ValueError("audio outputs have no frame rate, feature shape or labels")
        if self.kind == FRAMES and not (self.count == 1 and self.frame_rate and math.isfinite(self.frame_rate)
                                        and self.frame_rate > 0):
            raise ValueError(f"frame outputs need one output and a positive frame rate, got {self}")
        if self.labels is not None and (not self.shape or len(self.labels) != self.shape[-1]):
            raise ValueError(f"{len(self.labels)} labels for frames of shape {self.shape}")

    @classmethod
    def audio(cls, count: Optional[int] = 1) -> "OutputSpec":
        return cls(AUDIO, count)

    @classmethod
    def frames(cls, frame_rate: float, shape: Sequence[int], labels: Optional[Sequence[str]] = None) -> "OutputSpec":
        return cls(FRAMES, 1, float(frame_rate), tuple(int(n) for n in shape),
                   None if labels is None else tuple(labels))

    @property
    def is_audio(self) -> bool:
        return self.kind == AUDIO

    def samples_per_step(self, sample_rate: int) -> int:
        """Input samples per output step at ``sample_rate``: 1 for audio, one frame's hop for frames
        (ModelError unless the frame rate divides the rate)."""
        if self.is_audio:
            return 1
        hop = sample_rate / self.frame_rate
        if not hop.is_integer():
            raise ModelError(f"{self.frame_rate:g} frames/s do not divide the model rate of {sample_rate} Hz")
        return int(hop)

    def check_block(self, out) -> torch.Tensor:
        """``out`` if it is a processor block ``[S, C, n, *shape]`` of this kind, else ModelError."""
        if not isinstance(out, torch.Tensor) or out.ndim != 3 + len(self.shape) \
                or tuple(out.shape[3:]) != self.shape or (not self.is_audio and out.shape[0] != 1):
            want = "[S, C, T]" if self.is_audio else f"[1, C, N, {', '.join(map(str, self.shape))}]"
            raise ModelError(f"the processor returned {getattr(out, 'shape', type(out).__name__)}, want {want}")
        return out
