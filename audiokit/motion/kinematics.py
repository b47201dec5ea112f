"""Joint speed and its minima: where a dancer slows to turn, the motion's beats.

Shared by the weak beat labels of training (:func:`audiokit.tasks.dance.motion_beats`) and the motion beats of
evaluation (:func:`audiokit.metrics.dance.motion_beats`), which differ only in the smoothing and in how deep and
far apart a minimum must be.
"""
from __future__ import annotations

import numpy as np
import torch

from audiokit.motion.skeleton import check_positions


def mean_joint_speed(positions, smooth: int = 1) -> np.ndarray:
    """Mean over the joints of the joint speed, ``[T - 1]`` from positions ``[T, J, 3]``: element ``k`` is
    the motion from frame ``k`` to ``k + 1`` (position units per frame). ``smooth`` > 1 first averages each
    velocity over that many frames (:func:`speed_of_velocities`)."""
    positions = check_positions(positions, np.shape(positions)[-2]).astype(np.float64, copy=False)
    if len(positions) < 2:
        return np.zeros(0)
    velocity = torch.from_numpy(np.diff(positions, axis=0))[None]  # [1, T - 1, J, 3]
    return speed_of_velocities(velocity, smooth)[0].numpy()


def speed_of_velocities(velocity: torch.Tensor, smooth: int = 1) -> torch.Tensor:
    """Mean joint speed ``[B, N]`` of joint velocities ``[B, N, J, 3]`` (units per frame): each velocity first
    box-averaged over ``smooth`` frames (at most ``N``; centred, zero beyond the ends, as
    ``np.convolve(mode="same")``), then its length, averaged over the joints. Differentiable (a zero velocity
    has a zero gradient): the same speed for the evaluation's numpy positions and the training loss's tensors."""
    smooth = min(smooth, velocity.shape[1])  # (np.convolve's "same" would lengthen a shorter velocity)
    if smooth > 1:
        flat = velocity.flatten(2).transpose(1, 2)  # [B, J * 3, N]
        kernel = flat.new_full((1, 1, smooth), 1.0 / smooth)
        # centred as np.convolve(mode="same"): smooth // 2 zeros on the left, (smooth - 1) // 2 on the right
        padded = torch.nn.functional.pad(flat, (smooth // 2, (smooth - 1) // 2))
        flat = torch.nn.functional.conv1d(padded.flatten(0, 1)[:, None], kernel)[:, 0].view_as(flat)
        velocity = flat.transpose(1, 2).unflatten(-1, velocity.shape[-2:])
    return torch.linalg.vector_norm(velocity, dim=-1).mean(-1)


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
