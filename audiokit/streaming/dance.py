"""Dance generated as the music arrives: a :class:`~audiokit.models.dance.DanceGenerator` in step mode.

:class:`DanceStream` is the processor (see :mod:`audiokit.streaming.pipeline`) of ``audiokit stream dance``:
samples at the model rate in, in chunks of any size, and out the world positions ``[1, 1, n, 23, 3]`` (cm, y up)
of the motion frames they complete, one every ``frame_samples`` (25 fps). Its state is the last
``window_samples`` of audio (zeros before the start, as offline), the model's step state (encoder and decoder
LSTMs, the last pose, the style) and the dancer's place on the floor, so the frames equal
:meth:`~audiokit.models.dance.DanceGenerator.dance` of the whole signal, whatever the chunks.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import ModelKindError
from ..motion.poses import POSE_DIM, positions_from_poses
from ..motion.skeleton import NUM_JOINTS


def check_dancer(model: nn.Module) -> None:
    """ModelKindError unless ``model`` generates dance step by step (``start``, ``step``, ``features``, ``fps``)."""
    missing = [name for name in ("start", "step", "features", "denormalise", "fps") if not hasattr(model, name)]
    if missing:
        raise ModelKindError(f"{type(model).__name__} is not a dance generator (it has no {', '.join(missing)}), "
                             "which dance needs")


class DanceStream:
    """A processor turning one channel of samples at the model rate into poses:
    ``feed(x [1, n]) -> [1, 1, m, 23, 3]`` world positions (cm, float32, CPU) of the frames completed so far.

    ``style``: a name of :data:`~audiokit.models.dance.STYLES`, an index, None (any style) or ``"auto"`` (picked
    from the music as it plays). ``flush()`` completes a begun frame with silence (offline ``dance`` drops a
    last partial frame). ``latency_samples``: the model's (one motion frame plus the spectrum window).
    """

    def __init__(self, model: nn.Module, style=None):
        check_dancer(model)
        self.model, self.style = model, style
        self.frame_samples, self.window = int(model.frame_samples), int(model.window_samples)
        self.latency_samples = int(model.latency_samples)
        self.device = next(model.parameters(), torch.zeros(0)).device
        self.samples = 0  # fed so far
        self._audio = torch.zeros(1, self.window, device=self.device)  # the window before the next frame, and more
        self._state = model.start(style=style)
        self._root = np.zeros(2)  # where the dancer's root is on the floor (x, z cm), float64 as offline

    def _none(self) -> torch.Tensor:
        return torch.zeros(1, 1, 0, NUM_JOINTS, 3)

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        self.samples += x.shape[-1]
        audio = torch.cat([self._audio, x.to(self.device, torch.float32).reshape(1, -1)], dim=-1)
        frames = (audio.shape[-1] - self.window) // self.frame_samples
        if frames == 0:
            self._audio = audio
            return self._none()
        used = self.window + frames * self.frame_samples
        self._audio = audio[:, used - self.window:]
        with torch.inference_mode():
            spec = self.model.features(audio[:, :used], lead=self.window)  # [1, frames, F]
            poses, self._state = self.model.step(spec, self._state)
            poses = self.model.denormalise(poses)[0].to("cpu", torch.float32).numpy()
        positions = positions_from_poses(poses, self._root)
        self._root = self._root + poses[:, POSE_DIM - 2:].astype(np.float64).sum(0)  # the velocities walked
        return torch.from_numpy(positions)[None, None]

    def flush(self) -> torch.Tensor:
        missing = (-self.samples) % self.frame_samples
        return self.feed(torch.zeros(1, missing)) if missing else self._none()
