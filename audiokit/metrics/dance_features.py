"""AIST++'s motion features and distances between sets of motions (FID_k, FID_g, diversity).

Motion is world positions ``[T, 23, 3]`` (cm, y up, :mod:`audiokit.motion.skeleton`) at ``fps``; a feature set
is ``[N, D]``, one row per motion (per window of motion: :func:`windows`).

* **Kinetic features** (:func:`kinetic_features`, 69 = 3 per joint): AIST++'s ``extract_kinetic_features``
  (from fairmotion): per joint, the mean over frames of the squared horizontal and of the squared vertical
  velocity (kinetic energy per unit mass, (cm/s)^2) and the mean magnitude of the acceleration (its "energy
  expenditure", cm/s^2); each velocity and acceleration averaged over a window of +-1 frame at 25 fps (AIST++'s
  +-2 frames at 60 fps: the same 40 ms). World coordinates: the travel of the whole body counts.
* **Geometric features** (:func:`geometric_features`, 32): AIST++'s boolean Müller-style features
  (``extract_manual_features``, 32 in its code: hands and feet in front of, above, apart from the body,
  elbows and knees bent, limbs moving fast, ...), each the fraction of frames in which it holds, on this
  skeleton: SMPL's root is the hips' midpoint, belly the spine point (2), neck the shoulders' midpoint, chest
  the middle of spine and neck, wrists the hand points (6, 15: 24-25 cm from the elbow), the other joints by
  name. Lengths are in units of the real dancer's humerus (29.6 cm), shoulder width (28.6 cm) and hip width
  (21.2 cm) instead of SMPL's. As in AIST++'s code, ``move`` features take the velocity of their third point
  relative to the first (the fourth is unused), and speed thresholds are met as there: that code times its
  60 fps data at 1/120 s per frame, so here, with true speeds, the thresholds are halved.
* **Distances** (:func:`frechet_distance`, :func:`diversity`): as AIST++'s ``calculate_fid_scores``, both
  sets normalised by the mean and standard deviation of the real (reference) set, then the Fréchet distance
  between Gaussians of their means and covariances; diversity is the mean Euclidean distance between all
  pairs of a set, normalised the same way. A feature constant over the reference (a geometric feature that
  never fires in ballroom dance) is not divided by its zero deviation but left in its own units (a fraction of
  frames). With few motions the covariances are poor, hence windows of a few seconds.
"""
from __future__ import annotations

import numpy as np

from audiokit.motion.skeleton import JOINT, check_positions

HUMERUS_CM, SHOULDER_WIDTH_CM, HIP_WIDTH_CM = 29.6, 28.6, 21.2
"""The real dancer's mean shoulder-elbow, shoulder-shoulder and hip-hip distances (all 36 dances)."""
KINETIC_WINDOW_S = 2 / 60
"""Velocities and accelerations are averaged over +- this long (rounded to frames, at least 1)."""
AIST_SPEED_FACTOR = 0.5
"""AIST++'s speed thresholds are met at this times their value in true speed (60 fps data timed at 1/120 s)."""


def windows(positions, fps: float, seconds: float = 10.0) -> list[np.ndarray]:
    """Consecutive non-overlapping windows ``[round(seconds * fps), J, 3]`` of ``positions [T, J, 3]`` (a
    shorter tail is dropped); the whole motion as one window when it is shorter than a window."""
    size = max(3, round(seconds * fps))
    if len(positions) <= size:
        return [np.asarray(positions)]
    return [np.asarray(positions[s:s + size]) for s in range(0, len(positions) - size + 1, size)]


def _centred_mean(values: np.ndarray, width: int, centres: int) -> np.ndarray:
    """``[centres, ...]``: for ``c`` in ``0..centres - 1``, the mean of ``values[c - width:c + width + 1]`` (the
    part inside the array; ``centres`` may exceed ``len(values)`` by less than ``width``)."""
    cumulative = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
    centre = np.arange(centres)
    low, high = np.maximum(centre - width, 0), np.minimum(centre + width, len(values) - 1)
    count = (high - low + 1).reshape((-1,) + (1,) * (values.ndim - 1))
    return (cumulative[high + 1] - cumulative[low]) / count


def kinetic_features(positions, fps: float, window_s: float = KINETIC_WINDOW_S) -> np.ndarray:
    """AIST++'s kinetic features ``[3 * J]`` (see the module docstring): per joint, horizontal and vertical
    kinetic energy ((cm/s)^2) and energy expenditure (cm/s^2), joint by joint. Needs 3 frames or more."""
    positions = check_positions(positions, np.shape(positions)[-2]).astype(np.float64)
    if len(positions) < 3:
        raise ValueError(f"kinetic features need 3 frames or more, not {len(positions)}")
    width = max(1, round(window_s * fps))
    frames = len(positions) - 1  # AIST++ averages over frames 1..T-1
    # frame i: the steps into frames i + j, |j| <= width (step k ends at frame k + 1: centre i - 1)
    velocity = _centred_mean(np.diff(positions, axis=0), width, frames) * fps
    # frame i: the second differences at frames i + j inside 1..T-2 (array index i + j - 1: centre i - 1)
    second = (positions[2:] - 2 * positions[1:-1] + positions[:-2]) * fps ** 2
    acceleration = _centred_mean(second, width, frames)
    horizontal = (velocity[..., [0, 2]] ** 2).sum(-1).mean(0)
    vertical = (velocity[..., 1] ** 2).mean(0)
    expenditure = np.linalg.norm(acceleration, axis=-1).mean(0)
    return np.stack([horizontal, vertical, expenditure], axis=-1).reshape(-1)


# SMPL names of AIST++'s features -> this skeleton: a data joint or the mean of several
_POINTS = {
    "root": ("right_hip", "left_hip"), "lhip": "left_hip", "rhip": "right_hip", "belly": "spine",
    "neck": ("right_shoulder", "left_shoulder"), "lknee": "left_knee", "rknee": "right_knee",
    "lankle": "left_ankle", "rankle": "right_ankle", "ltoes": "left_toe", "rtoes": "right_toe",
    "lshoulder": "left_shoulder", "rshoulder": "right_shoulder", "lelbow": "left_elbow", "relbow": "right_elbow",
    "lwrist": "left_hand", "rwrist": "right_hand",
}
HL, SW, HW = "hl", "sw", "hw"
# (kind, points, threshold multiple, unit | angle range), in AIST++'s order
GEOMETRIC = (
    ("nmove", ("neck", "rhip", "lhip", "rwrist"), 1.8, HL), ("nmove", ("neck", "lhip", "rhip", "lwrist"), 1.8, HL),
    ("nplane", ("chest", "neck", "neck", "rwrist"), 0.2, HL), ("nplane", ("chest", "neck", "neck", "lwrist"), 0.2, HL),
    ("move", ("belly", "chest", "chest", "rwrist"), 1.8, HL), ("move", ("belly", "chest", "chest", "lwrist"), 1.8, HL),
    ("angle", ("relbow", "rshoulder", "relbow", "rwrist"), (0, 110), None),
    ("angle", ("lelbow", "lshoulder", "lelbow", "lwrist"), (0, 110), None),
    ("nplane", ("lshoulder", "rshoulder", "lwrist", "rwrist"), 2.5, SW),
    ("move", ("lwrist", "rwrist", "rwrist", "lwrist"), 1.4, HL),
    ("move", ("rwrist", "root", "lwrist", "root"), 1.4, HL), ("move", ("lwrist", "root", "rwrist", "root"), 1.4, HL),
    ("fast", ("rwrist",), 2.5, HL), ("fast", ("lwrist",), 2.5, HL),
    ("plane", ("root", "lhip", "ltoes", "rankle"), 0.38, HL), ("plane", ("root", "rhip", "rtoes", "lankle"), 0.38, HL),
    ("nplane", ("zero", "y_unit", "y_min", "rankle"), 1.2, HL),
    ("nplane", ("zero", "y_unit", "y_min", "lankle"), 1.2, HL),
    ("nplane", ("lhip", "rhip", "lankle", "rankle"), 2.1, HW),
    ("angle", ("rknee", "rhip", "rknee", "rankle"), (0, 110), None),
    ("angle", ("lknee", "lhip", "lknee", "lankle"), (0, 110), None),
    ("fast", ("rankle",), 2.5, HL), ("fast", ("lankle",), 2.5, HL),
    ("angle", ("neck", "root", "rshoulder", "relbow"), (25, 180), None),
    ("angle", ("neck", "root", "lshoulder", "lelbow"), (25, 180), None),
    ("angle", ("neck", "root", "rhip", "rknee"), (50, 180), None),
    ("angle", ("neck", "root", "lhip", "lknee"), (50, 180), None),
    ("plane", ("rankle", "neck", "lankle", "root"), 0.5, HL),
    ("angle", ("neck", "root", "zero", "y_unit"), (70, 110), None),
    ("nplane", ("zero", "minus_y_unit", "y_min", "rwrist"), -1.2, HL),
    ("nplane", ("zero", "minus_y_unit", "y_min", "lwrist"), -1.2, HL),
    ("fast", ("root",), 2.3, HL),
)


def _points(positions: np.ndarray) -> dict[str, np.ndarray]:
    """AIST++'s named points ``[T, 3]`` on this skeleton (see the module docstring)."""
    def at(name):
        names = (name,) if isinstance(name, str) else name
        return positions[:, [JOINT[n] for n in names]].mean(axis=1)

    points = {smpl: at(ours) for smpl, ours in _POINTS.items()}
    points["chest"] = (points["belly"] + points["neck"]) / 2
    zeros = np.zeros((len(positions), 3))
    points["zero"], points["y_unit"], points["minus_y_unit"] = zeros, zeros + [0, 1, 0], zeros - [0, 1, 0]
    points["y_min"] = zeros + positions[..., 1].min(axis=1)[:, None] * [0, 1, 0]
    return points


def _along(vector: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Component of ``vector [T, 3]`` along ``direction [T, 3]`` (NaN where the direction is zero)."""
    return (vector * direction).sum(-1) / np.linalg.norm(direction, axis=-1)


def geometric_features(positions, fps: float) -> np.ndarray:
    """AIST++'s 32 geometric features ``[32]`` (see the module docstring): for each, the fraction of frames
    1..T-1 in which it holds. Needs 2 frames or more."""
    positions = check_positions(positions).astype(np.float64)
    if len(positions) < 2:
        raise ValueError(f"geometric features need 2 frames or more, not {len(positions)}")
    points = _points(positions)
    now = {k: v[1:] for k, v in points.items()}
    before = {k: v[:-1] for k, v in points.items()}
    units = {HL: HUMERUS_CM, SW: SHOULDER_WIDTH_CM, HW: HIP_WIDTH_CM}
    features = []
    with np.errstate(invalid="ignore", divide="ignore"):  # degenerate directions give NaN: the feature is off
        for kind, names, limit, unit in GEOMETRIC:
            p = [now[n] for n in names]
            threshold = limit * units[unit] if unit else None
            if kind == "plane":
                value = _along(p[3] - p[0], np.cross(p[2] - p[0], p[1] - p[0])) > threshold
            elif kind == "nplane":
                value = _along(p[3] - p[2], p[1] - p[0]) > threshold
            elif kind == "angle":
                cosine = _along(p[1] - p[0], p[3] - p[2]) / np.linalg.norm(p[1] - p[0], axis=-1)
                angle = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
                value = (angle > limit[0]) & (angle < limit[1])
            else:
                # fast: the point's own speed; move: the third point's velocity relative to the first (so
                # AIST++'s code has it, the fourth unused); nmove: the fourth point's relative to the first
                mover = {"fast": 0, "move": 2, "nmove": 3}[kind]
                moved = p[mover] - before[names[mover]]
                if kind != "fast":
                    moved = moved - (p[0] - before[names[0]])
                speed = np.linalg.norm(moved, axis=-1) if kind == "fast" else _along(
                    moved, p[1] - p[0] if kind == "move" else np.cross(p[2] - p[0], p[1] - p[0]))
                value = speed * fps > threshold * AIST_SPEED_FACTOR
            features.append(value.mean())
    return np.array(features)


def _normalised(features, reference) -> tuple[np.ndarray, np.ndarray]:
    features, reference = np.atleast_2d(np.asarray(features, float)), np.atleast_2d(np.asarray(reference, float))
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return (features - mean) / std, (reference - mean) / std


def _covariance(features: np.ndarray) -> np.ndarray:
    return np.cov(features, rowvar=False) if len(features) > 1 else np.zeros((features.shape[1],) * 2)


def frechet_distance(features, reference) -> float:
    """Fréchet distance between Gaussians fitted to ``features [N, D]`` and ``reference [M, D]`` after both are
    normalised by the reference's mean and deviation (AIST++'s FID_k / FID_g; see the module docstring).
    ``|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^1/2)``, the trace of the root taken from the eigenvalues of
    ``C1^1/2 C2 C1^1/2`` (exact for singular covariances, which few motions give)."""
    features, reference = _normalised(features, reference)
    mean_gap = features.mean(0) - reference.mean(0)
    c1, c2 = _covariance(features), _covariance(reference)
    values, vectors = np.linalg.eigh(c1)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ c2 @ root), 0, None)).sum()
    return float(mean_gap @ mean_gap + np.trace(c1) + np.trace(c2) - 2 * cross)


def diversity(features, reference) -> float:
    """Mean Euclidean distance between all pairs of ``features [N, D]`` normalised by the ``reference [M, D]``
    mean and deviation (AIST++'s Dist_k / Dist_g); NaN for fewer than 2."""
    from scipy.spatial.distance import pdist

    features, _ = _normalised(features, reference)
    return float(pdist(features).mean()) if len(features) > 1 else float("nan")
