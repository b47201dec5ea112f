"""The pose vector of a frame, the representation dance models learn: 72 numbers from the 23 joint positions.

From world positions ``[T, 23, 3]`` (cm, y up, the skeleton of :mod:`audiokit.motion.skeleton`):

* 0-68: the 23 joints relative to the root, the midpoint of the hips (joints 7 and 16), in world axes (so
  the dancer's turning is in these numbers), joint-major ``x, y, z``;
* 69: the root's height above the floor;
* 70, 71: the root's horizontal velocity, x and z, cm per frame (frame 0: 0).

:func:`positions_from_poses` inverts :func:`poses_from_positions`, integrating the velocity from a start point.
"""
from __future__ import annotations

import numpy as np

from audiokit.motion.skeleton import NUM_JOINTS

ROOT_JOINTS = (7, 16)
POSE_DIM = NUM_JOINTS * 3 + 3


def poses_from_positions(positions) -> np.ndarray:
    """World positions ``[T, 23, 3]`` -> pose vectors ``[T, 72]`` (see the module docstring), float32."""
    positions = np.asarray(positions, dtype=np.float64)
    root = positions[:, list(ROOT_JOINTS)].mean(axis=1)  # [T, 3]
    relative = (positions - root[:, None]).reshape(len(positions), -1)
    velocity = np.zeros((len(positions), 2))
    velocity[1:] = np.diff(root[:, [0, 2]], axis=0)
    return np.concatenate([relative, root[:, 1:2], velocity], axis=1).astype(np.float32)


def positions_from_poses(poses, start_xz=(0.0, 0.0)) -> np.ndarray:
    """Pose vectors ``[T, 72]`` -> world positions ``[T, 23, 3]``, the root starting at ``start_xz``."""
    poses = np.asarray(poses, dtype=np.float64)
    root = np.zeros((len(poses), 3))
    root[:, 1] = poses[:, NUM_JOINTS * 3]
    root[:, [0, 2]] = np.asarray(start_xz, dtype=np.float64) + np.cumsum(poses[:, NUM_JOINTS * 3 + 1:], axis=0)
    return (poses[:, :NUM_JOINTS * 3].reshape(-1, NUM_JOINTS, 3) + root[:, None]).astype(np.float32)
