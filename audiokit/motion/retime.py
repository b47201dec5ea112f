"""Beat-synchronous retiming: a motion's own beats moved onto the music's beats by a gentle time warp.

A choreographer's edit (as in ChoreoMaster-style systems): the motion goes through the same poses in the same
order, only its clock runs a little faster or slower between beats (the poses between two frames linearly
interpolated), so that each motion beat (a moment the body slows to change direction) that lies near a music beat
lands on it. Pure numpy; times in seconds, positions ``[T, J, 3]``.

* :func:`beat_anchors`: which motion beat goes to which music beat, as ``(source, target)`` time pairs;
* :func:`retime`: the motion resampled along the piecewise-linear time map through those pairs;
* :func:`frames_at`: a motion sampled at fractional frame positions (also the training data's tempo change).

Frame ``k`` of a motion at ``fps`` stands for the time ``k / fps`` (the convention of
``audiokit.metrics.dance.motion_beats``, whose beat ``(m + 0.5) / fps`` is the middle of the step from frame ``m``
to ``m + 1``). The time map is fixed at the first frame (0) and the last (``(T - 1) / fps``), so the length and
the first and last poses do not change.
"""
from __future__ import annotations

import numpy as np

MAX_SHIFT_S = 0.25
"""A motion beat moves by at most this much to meet a music beat. Chosen on the validation dances of
``pretrained/dance_lstm`` (BAS 0.235 unsynced; 0.1 s: 0.262, 0.15: 0.338, 0.2: 0.385, 0.25: 0.421, 0.3: 0.425):
the gain flattens past a quarter second, about half the period of the fastest ballroom beat."""
RATE_RANGE = (0.75, 1.33)
"""Between two anchors the motion plays at least this slow and at most this fast (its own speed = 1)."""


def _rate_ok(src0, dst0, src1, dst1, rates) -> bool:
    return src1 > src0 and dst1 > dst0 and rates[0] <= (src1 - src0) / (dst1 - dst0) <= rates[1]


def beat_anchors(motion_beats, music_beats, duration: float, max_shift: float = MAX_SHIFT_S,
                 rates=RATE_RANGE) -> np.ndarray:
    """``[K, 2]`` (source time, target time) pairs, both strictly ascending, from ``(0, 0)`` to
    ``(duration, duration)`` (s; ``duration``: the time of the last frame). In time order, each motion beat (s) is
    paired with the nearest music beat (s) that lies after the previous pair's and within ``max_shift`` of it, when
    the motion between the previous pair and this one then plays at a rate within ``rates`` (source seconds per
    target second); pairs that would break that rate before the end are dropped."""
    motion, music = np.sort(np.asarray(motion_beats, float)), np.sort(np.asarray(music_beats, float))
    anchors = [(0.0, 0.0)]
    for beat in motion:
        if not 0.0 < beat < duration:
            continue
        near = music[(music > anchors[-1][1]) & (music < duration) & (np.abs(music - beat) <= max_shift)]
        if len(near):
            nearest = float(near[np.argmin(np.abs(near - beat))])
            if _rate_ok(*anchors[-1], beat, nearest, rates):
                anchors.append((float(beat), nearest))
    while len(anchors) > 1 and not _rate_ok(*anchors[-1], duration, duration, rates):
        anchors.pop()
    anchors.append((float(duration), float(duration)))
    return np.asarray(anchors)


def frames_at(positions, at) -> np.ndarray:
    """``positions [T, J, 3]`` at the fractional frame positions ``at [K]`` (clamped to ``[0, T - 1]``), linearly
    interpolated between the two frames around each: ``[K, J, 3]``, the dtype of ``positions``."""
    positions = np.asarray(positions)
    frames = len(positions)
    if frames < 2:
        return np.repeat(positions[:1], len(at), axis=0)
    at = np.clip(np.asarray(at, float), 0.0, frames - 1.0)
    low = np.minimum(np.floor(at).astype(int), frames - 2)
    weight = (at - low)[:, None, None]
    out = (1.0 - weight) * positions[low].astype(np.float64) + weight * positions[low + 1].astype(np.float64)
    return out.astype(positions.dtype)


def retime(positions, fps: float, anchors) -> np.ndarray:
    """``positions [T, J, 3]`` played along the time map through ``anchors`` (``[K, 2]`` source, target seconds;
    :func:`beat_anchors`): output frame ``k`` shows the source motion at the time that maps to ``k / fps``,
    linearly interpolated between frames (:func:`frames_at`). Same shape and dtype."""
    positions = np.asarray(positions)
    anchors = np.asarray(anchors, float)
    return frames_at(positions, np.interp(np.arange(len(positions)) / fps, anchors[:, 1], anchors[:, 0]) * fps)
