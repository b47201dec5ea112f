"""What ``audiokit stream`` does with the frames of a task emitting frames (classify, dance), from a device or a
file alike: the task's events printed on stdout as they happen, every frame sent over OSC as soon as it is out
(``--osc``), and poses (dance) collected and saved as BVH, MP4 (with the input as its music) or GIF when the
stream ends (``--save``; the ``.npz`` frame files are :class:`~audiokit.cli.live_files.Taps`' business)."""
from __future__ import annotations

import collections
import json
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from audiokit.audio.io import Placement
from audiokit.errors import AudiokitError
from audiokit.streaming.adapters import TaskAdapter
from audiokit.streaming.osc import FrameSender

#: files that poses can be saved to besides ``.npz``: a BVH animation, a stick-figure video
MOTION_SUFFIXES = (".bvh", ".mp4", ".gif")


class MotionSaves:
    """Poses ``[n, 23, 3]`` (cm) collected as they come (:meth:`put`), written to ``paths`` by :meth:`save` at the
    end: ``.bvh`` (:func:`~audiokit.motion.bvh.write_bvh`), ``.mp4`` or ``.gif``
    (:func:`~audiokit.motion.render.render`), each atomically (a failure leaves no file). An MP4 gets the input as
    its soundtrack: :meth:`hear` keeps the input blocks (in memory, float32) when one is asked for. Where a file
    cannot be written (:func:`~audiokit.motion.files.check_writable`) is said on construction (MotionFileError)."""

    def __init__(self, paths: List[Path], fps: float, force: bool = False):
        from audiokit.motion.files import check_writable

        check_writable(paths)  # written only when the stream ends: a folder that cannot take them is said now
        self.paths, self.fps, self.force = paths, fps, force
        self.parts: List[np.ndarray] = []
        self.music: Optional[List[np.ndarray]] = [] if any(p.suffix.lower() == ".mp4" for p in paths) else None

    def put(self, poses: np.ndarray) -> None:
        self.parts.append(np.array(poses, np.float32))

    def hear(self, samples: np.ndarray) -> None:
        """Input samples ``[n]`` or ``[n, channels]`` (kept only for an MP4)."""
        if self.music is not None:
            self.music.append(np.array(samples, np.float32))

    def save(self, rate: int, placement: Optional[Placement] = None) -> List[Path]:
        """Write every file (the music at ``rate`` Hz), all or none
        (:func:`~audiokit.motion.files.write_together`, through ``placement`` when given: the run's other
        outputs are put in place with it); the paths written. AudiokitError when no pose was made."""
        if not self.paths:
            return []
        positions = np.concatenate(self.parts) if self.parts else np.zeros((0, 23, 3), np.float32)
        if not len(positions):
            raise AudiokitError(f"{self.paths[0]}: not written, no pose was generated (the stream ended before its "
                                "first motion frame)")
        from audiokit.motion.bvh import bvh_writer
        from audiokit.motion.files import write_together
        from audiokit.motion.render import video_writer

        music = np.concatenate(self.music) if self.music else None
        writes = []
        for path in self.paths:
            mp4 = path.suffix.lower() == ".mp4"
            writes.append((path, bvh_writer(positions, self.fps) if path.suffix.lower() == ".bvh" else
                           video_writer(path, positions, self.fps, music if mp4 else None, rate if mp4 else None)))
        return write_together(writes, self.force, placement=placement)


class FrameOutputs:
    """The frame blocks ``[1, n, *shape]`` of a stream, handed in order to :meth:`put` (from one thread at a time:
    the audio callback, then the tail): at most ``limit`` frames in all once it is set (the tail fed after the input
    ends goes beyond it), sent over OSC (``osc``) and to the motion files (``motion``) at once, and queued for the
    task's events, printed by :meth:`drain` on the main thread."""

    def __init__(self, adapter: TaskAdapter, as_json: bool, interactive: bool, osc: Optional[FrameSender] = None,
                 motion: Optional[MotionSaves] = None):
        self.adapter, self.as_json, self.interactive = adapter, as_json, interactive
        self.osc, self.motion = osc, motion
        self.active = adapter.reports_events
        self.limit: Optional[int] = None
        self.frames = 0
        self._queue: collections.deque = collections.deque()

    @property
    def wanted(self) -> bool:
        """Whether anything takes the frames (events, OSC, motion files)."""
        return self.active or self.osc is not None or self.motion is not None

    def put(self, out: np.ndarray) -> None:
        if self.limit is not None:
            out = out[:, :max(0, self.limit - self.frames)]
        if not out.shape[1]:
            return
        self.frames += out.shape[1]
        if self.osc is not None:
            self.osc.send(out[0])
        if self.motion is not None:
            self.motion.put(out[0])
        if self.active:
            self._queue.append(out)

    def drain(self, end: bool = False) -> None:
        """Print the events of the frames queued so far (with ``end``, then those still open)."""
        while self._queue:
            self._print(self.adapter.events(self._queue.popleft()))
        if end and self.active:
            self._print(self.adapter.end_events())

    def _print(self, events: list) -> None:
        for event in events:
            if self.interactive:
                print("\r\x1b[2K", end="", file=sys.stderr, flush=True)  # off the live report's line
            print(json.dumps(event.as_dict()) if self.as_json else str(event), flush=True)

    def close(self) -> None:
        if self.osc is not None:
            self.osc.close()

    def summary(self) -> str:
        """`` | frames N`` and what OSC sent, for the last report line."""
        text = f" | frames {self.frames}"
        if self.osc is not None:
            text += f" | OSC sent {self.osc.sent}" + (f" dropped {self.osc.dropped}" if self.osc.dropped else "")
        return text
