"""Rotation matrices for the BVH writer and reader: Euler angles, minimal rotations, frames from two vectors.

All functions take and return numpy arrays with any leading batch shape. Matrices act on column vectors
(``v' = R @ v``); angles are in radians.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-9


def axis_rotation(axis: str, angle) -> np.ndarray:
    """Rotation matrices [..., 3, 3] about the x, y or z axis by ``angle`` [...] (right-hand rule)."""
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    rows = {"x": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
            "y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
            "z": ((c, -s, zero), (s, c, zero), (zero, zero, one))}[axis.lower()]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def euler_to_matrix(angles, order: str = "zyx") -> np.ndarray:
    """Matrices [..., 3, 3] from Euler angles [..., 3] given in ``order``: ``R = R_a(angles[0]) @ R_b(...)
    @ R_c(...)`` for order "abc" (BVH's meaning of a channel list such as ``Zrotation Yrotation Xrotation``)."""
    angles = np.asarray(angles, dtype=np.float64)
    out = axis_rotation(order[0], angles[..., 0])
    for k in (1, 2):
        out = out @ axis_rotation(order[k], angles[..., k])
    return out


def matrix_to_euler_zyx(matrix) -> np.ndarray:
    """Angles [..., 3] (z, y, x) with ``R = Rz(z) @ Ry(y) @ Rx(x)``; y in [-pi/2, pi/2]. In gimbal lock
    (|y| = pi/2) x is set to 0."""
    m = np.asarray(matrix, dtype=np.float64)
    cos_y = np.hypot(m[..., 0, 0], m[..., 1, 0])
    y = np.arctan2(-m[..., 2, 0], cos_y)
    locked = cos_y < 1e-7
    z = np.where(locked, np.arctan2(-m[..., 0, 1], m[..., 1, 1]), np.arctan2(m[..., 1, 0], m[..., 0, 0]))
    x = np.where(locked, 0.0, np.arctan2(m[..., 2, 1], m[..., 2, 2]))
    return np.stack([z, y, x], axis=-1)


def normalize(v, eps: float = _EPS) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)


def swing(a, b) -> np.ndarray:
    """The minimal rotation [..., 3, 3] taking direction ``a`` [..., 3] to direction ``b`` (about their common
    normal; for opposite directions, half a turn about an axis normal to ``a``)."""
    a, b = normalize(a), normalize(b)
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis, axis=-1), np.sum(a * b, axis=-1)
    # for (nearly) opposite vectors, any axis normal to a: cross with the coordinate axis least along a
    helper = np.eye(3)[np.argmin(np.abs(a), axis=-1)]
    opposite = (sin < 1e-9) & (cos < 0)
    axis = np.where(opposite[..., None], np.cross(a, helper), axis)
    axis = normalize(axis)
    sin = np.where(opposite, 0.0, sin)
    k = _skew(axis)
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + sin[..., None, None] * k + (1 - cos)[..., None, None] * (k @ k)


def frame(first, second) -> tuple[np.ndarray, np.ndarray]:
    """Right-handed orthonormal frames [..., 3, 3] (columns e1, e2, e3) with e1 along ``first`` and
    ``second`` in the e1-e2 half-plane (e2 towards it), and a bool [...] mask, True where ``second`` is
    (nearly) parallel to ``first`` so that the frame is not defined by them (e2, e3 arbitrary there)."""
    e1 = normalize(first)
    s = np.asarray(second, dtype=np.float64)
    normal = s - np.sum(s * e1, axis=-1, keepdims=True) * e1
    size = np.linalg.norm(normal, axis=-1)
    degenerate = size <= 1e-6 * np.maximum(np.linalg.norm(s, axis=-1), _EPS)
    helper = np.eye(3)[np.argmin(np.abs(e1), axis=-1)]
    normal = np.where(degenerate[..., None], helper - np.sum(helper * e1, axis=-1, keepdims=True) * e1, normal)
    e2 = normalize(normal)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=-1), degenerate


def _skew(v) -> np.ndarray:
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = np.zeros_like(x)
    return np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], -2)
