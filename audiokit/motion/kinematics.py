"""Joint speed and its minima: where a dancer slows to turn, the motion's beats.

Shared by the weak beat labels of training (:func:`audiokit.tasks.dance.motion_beats`) and the motion beats of
evaluation (:func:`audiokit.metrics.dance.motion_beats`), which differ only in the smoothing and in how deep and
far apart a minimum must be.
"""
from __future__ import annotations

import numpy as np

from audiokit.motion.skeleton import check_positions


def mean_joint_speed(positions, smooth: int = 1) -> np.ndarray:
    """Mean over the joints of the joint speed, ``[T - 1]`` from positions ``[T, J, 3]``: element ``k`` is
    the motion from frame ``k`` to ``k + 1`` (position units per frame). ``smooth`` > 1 first averages each
    velocity over that many frames (at most ``T - 1``; a centred box, zero beyond the ends, as
    ``np.convolve(mode="same")``)."""
    positions = check_positions(positions, np.shape(positions)[-2]).astype(np.float64, copy=False)
    if len(positions) < 2:
        return np.zeros(0)
    velocity = np.diff(positions, axis=0)
    smooth = min(smooth, len(velocity))  # (np.convolve's "same" would lengthen a shorter velocity)
    if smooth > 1:
        kernel = np.ones(smooth) / smooth
        velocity = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), 0, velocity)
    return np.linalg.norm(velocity, axis=-1).mean(axis=-1)


def speed_minima(speed, spacing: int = 1, prominence: float = 0.0) -> np.ndarray:
    """Indices (ascending) of the local minima of ``speed [N]``: ``speed[k] < speed[k - 1]`` and
    ``speed[k] <= speed[k + 1]`` (interior points; a flat bottom counts once, at its start).

    ``prominence``: keep only minima at least this much below the lower of the highest points between them and
    a lower point on either side (scipy's peak prominence of ``-speed``), so that jitter on a slow stretch
    does not count. ``spacing``: minima closer than this many samples are thinned, the lowest kept first.
    With the defaults every local minimum is kept."""
    speed = np.asarray(speed, dtype=np.float64)
    if len(speed) < 3:
        return np.zeros(0, dtype=int)
    inner = speed[1:-1]
    minima = np.flatnonzero((inner < speed[:-2]) & (inner <= speed[2:])) + 1
    if prominence > 0 and len(minima):
        from scipy.signal import peak_prominences

        minima = minima[peak_prominences(-speed, minima)[0] >= prominence]
    if spacing > 1 and len(minima) > 1:
        kept: list[int] = []
        for k in minima[np.argsort(speed[minima], kind="stable")]:
            if all(abs(k - j) >= spacing for j in kept):
                kept.append(int(k))
        minima = np.array(sorted(kept), dtype=int)
    return minima
