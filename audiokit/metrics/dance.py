"""Dance metrics: beats of the music and of the motion, how they align, and how the motion moves.

Motion is world positions ``[T, J, 3]`` in centimetres, y up, the floor at y = 0, at ``fps`` frames per
second (the 23-joint skeleton of :mod:`audiokit.motion.skeleton` where joints are named; 25 fps in the
data). Times are in seconds, speeds in cm/s unless said otherwise. Pure numpy (scipy, librosa, mir_eval).

* **Motion beats** (:func:`motion_beats`): local minima of the mean joint speed (the body slows to change
  direction), as AIST++ and Bailando find them, with the velocities averaged over 200 ms (5 frames, as the
  training labels of :func:`audiokit.tasks.dance.motion_beats`), a minimum kept only if it is at least 10 % of
  the median speed below its surroundings (its prominence) and at least 160 ms from a deeper one (AIST++'s
  ``order=10`` at 60 fps): white jitter of 0.3 cm per joint and frame changes the count by under 3 % on the real
  test dances, 1 cm by under 15 %. A beat's time is the middle of its slowest step. 0.6-1.4 per second in the
  real test dances (1.7 in the tango), fewer than their music beats (1.4-2.7).
* **Music beats** (:func:`music_beats`): librosa's beat tracker.
* **Beat F-measure** (:func:`beat_f_measure`): mir_eval's, music beats the reference, motion beats the
  estimate, hits within 70 ms.
* **Beat alignment score** (:func:`beat_alignment_score`): AIST++'s (Li et al. 2021, the FACT code's
  ``alignment_score``): the mean over the *motion* beats of ``exp(-d^2 / (2 sigma^2))``, ``d`` the distance
  to the nearest music beat, ``sigma`` 3 frames at 60 fps = 50 ms. (Bailando's variant averages over the
  music beats instead; ``over="music"`` gives it.) 0 when there are no motion beats.
* **Speed per body size** (:func:`speed_per_body`): the mean joint speed divided by :func:`body_size`, the
  median over frames of the summed length of the skeleton's 22 bones (about 515-535 cm for the real dancer,
  whose height is about 155 cm), in body sizes per second.
* **Foot sliding** (:func:`foot_sliding`), **root drift** (:func:`root_drift`), **freeze** (:func:`freeze`).
"""
from __future__ import annotations

import numpy as np

from audiokit.motion.kinematics import mean_joint_speed, speed_minima
from audiokit.motion.skeleton import FEET, bone_lengths, check_positions

BEAT_SMOOTH_S = 0.2
"""Velocities are averaged over this long (5 frames at 25 fps) before motion beats are found."""
BEAT_SPACING_S = 0.16
"""Motion beats closer than this are thinned, the deeper kept."""
BEAT_PROMINENCE = 0.1
"""A motion beat must lie this fraction of the median speed below its surroundings."""
F_MEASURE_WINDOW_S = 0.07
ALIGNMENT_SIGMA_S = 3 / 60
CONTACT_HEIGHT_CM = 2.5
"""A foot joint below this height is on the floor (the real dancer's foot joints are below it 60 % of the time)."""
STILL_BODY_PER_S = 0.01
"""A second whose mean joint speed is below this many body sizes per second (about 5 cm/s) is still."""
ROOT_JOINTS = (7, 16)
"""The hips: their midpoint is the root."""
PER_MOTION = ("beat_f", "bas", "beats_per_s", "speed_per_body", "foot_sliding", "root_drift", "freeze")
"""The figures of :func:`score_motion`."""


def motion_beats(positions, fps: float, smooth_s: float = BEAT_SMOOTH_S, spacing_s: float = BEAT_SPACING_S,
                 prominence: float = BEAT_PROMINENCE) -> np.ndarray:
    """Times (s, ascending) of the motion beats of ``positions [T, J, 3]`` (see the module docstring);
    none for a motion that does not move."""
    speed = mean_joint_speed(positions, max(1, round(smooth_s * fps)))
    if not len(speed):
        return np.zeros(0)
    minima = speed_minima(speed, max(1, round(spacing_s * fps)), prominence * float(np.median(speed)))
    return (minima + 0.5) / fps


def music_beats(wav, sample_rate: int) -> np.ndarray:
    """Times (s) of the beats of the music ``wav [N]`` (mono) by librosa's beat tracker; none for silence or for
    music shorter than the tracker's 2048-sample analysis window."""
    import librosa

    wav = np.asarray(wav, dtype=np.float32)
    if len(wav) < 2048 or not np.any(wav):
        return np.zeros(0)
    return np.asarray(librosa.beat.beat_track(y=wav, sr=sample_rate, units="time")[1], dtype=np.float64)


def beat_f_measure(music, motion, window: float = F_MEASURE_WINDOW_S) -> float:
    """mir_eval's beat F-measure of the ``motion`` beat times against the ``music`` ones (s), hits within
    ``window`` s; 0 when either is empty."""
    import warnings

    import mir_eval

    music, motion = np.sort(np.asarray(music, float)), np.sort(np.asarray(motion, float))
    if not len(music) or not len(motion):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns about beats under 5 s, which we keep
        return float(mir_eval.beat.f_measure(music, motion, f_measure_threshold=window))


def beat_alignment_score(music, motion, sigma: float = ALIGNMENT_SIGMA_S, over: str = "motion") -> float:
    """AIST++'s beat alignment score (see the module docstring) of beat times (s) in ``[0, 1]``:
    ``over="motion"`` (AIST++) averages over the motion beats, ``"music"`` (Bailando) over the music beats."""
    music, motion = np.asarray(music, float), np.asarray(motion, float)
    if over not in ("motion", "music"):
        raise ValueError(f"over must be 'motion' or 'music', not {over!r}")
    averaged, other = (motion, music) if over == "motion" else (music, motion)
    if not len(averaged) or not len(other):
        return 0.0
    distance = np.abs(averaged[:, None] - other[None, :]).min(axis=1)
    return float(np.exp(-distance ** 2 / (2 * sigma ** 2)).mean())


def body_size(positions) -> float:
    """Median over frames of the summed length of the 22 bones (cm) of positions ``[T, 23, 3]``."""
    return float(np.median(bone_lengths(positions).sum(axis=-1)))


def _size(positions) -> float:
    """:func:`body_size`, at least 1e-6 cm (a body collapsed to a point still divides)."""
    return max(body_size(positions), 1e-6)


def joint_speed(positions, fps: float) -> np.ndarray:
    """Speed of every joint, ``[T - 1, J]`` cm/s, between consecutive frames."""
    positions = check_positions(positions, np.shape(positions)[-2])
    return np.linalg.norm(np.diff(positions.astype(np.float64), axis=0), axis=-1) * fps


def speed_per_body(positions, fps: float) -> float:
    """Mean joint speed over frames and joints divided by :func:`body_size`, body sizes per second."""
    return float(joint_speed(positions, fps).mean() / _size(positions)) if len(positions) > 1 else 0.0


def foot_sliding(positions, fps: float, contact_height: float = CONTACT_HEIGHT_CM, max_speed: float | None = None,
                 feet=FEET) -> float:
    """Mean horizontal speed (cm/s) of the foot joints (heels and toes) over the steps in which they touch the
    floor (height, the mean of the step's two frames, below ``contact_height``; with ``max_speed``, also slower
    than that), pooled over the joints; NaN if no foot touches the floor. A planted foot gives 0.

    There is no speed limit by default: ballroom dancers glide, so a foot on the floor may move fast, and a
    limit would bound the measure by itself. The real dancers give 40-50 cm/s (tango 130 cm/s), partly capture
    noise: compare with them, not with 0."""
    positions = check_positions(positions)[:, list(feet)].astype(np.float64)
    height = (positions[1:, :, 1] + positions[:-1, :, 1]) / 2
    speed = np.linalg.norm(np.diff(positions[..., [0, 2]], axis=0), axis=-1) * fps
    contact = height < contact_height
    if max_speed is not None:
        contact &= speed < max_speed
    return float(speed[contact].mean()) if contact.any() else float("nan")


def root_drift(positions, fps: float, span_s: float = 20.0) -> float:
    """Height of the root (the hips' midpoint) over its last ``span_s`` seconds minus over its first (medians,
    cm; each span at most a third of the motion): positive when the dancer floats up. The real dancers differ
    by up to +-10 cm (knees more or less bent)."""
    positions = check_positions(positions)
    root = positions[:, list(ROOT_JOINTS), 1].mean(axis=1)
    span = max(1, min(len(root) // 3, round(span_s * fps)))
    return float(np.median(root[-span:]) - np.median(root[:span]))


def freeze(positions, fps: float, last_s: float = 60.0, threshold: float = STILL_BODY_PER_S) -> float:
    """Fraction of the whole seconds of the last ``last_s`` seconds (the whole motion if shorter) whose mean
    joint speed is below ``threshold`` body sizes per second: 1 for a frozen pose, 0 for the real dancers."""
    positions = check_positions(positions)
    tail = positions[-max(2, round(last_s * fps) + 1):]
    speed = joint_speed(tail, fps).mean(axis=1) / _size(positions)
    second = max(1, round(fps))
    seconds = speed[:len(speed) // second * second].reshape(-1, second).mean(axis=1) if len(speed) >= second \
        else speed.mean(keepdims=True)
    return float((seconds < threshold).mean())


def beats_per_s(positions, fps: float, moves=None) -> float:
    """Motion beats (:func:`motion_beats`, or the given beat times ``moves``) per second of ``positions``."""
    moves = motion_beats(positions, fps) if moves is None else moves
    return len(moves) * fps / len(positions)


def score_motion(positions, fps: float, beats) -> dict[str, float]:
    """The per-motion figures (:data:`PER_MOTION`) of ``positions [T, 23, 3]`` against music ``beats`` (s)."""
    moves = motion_beats(positions, fps)
    return {"beat_f": beat_f_measure(beats, moves), "bas": beat_alignment_score(beats, moves),
            "beats_per_s": beats_per_s(positions, fps, moves), "speed_per_body": speed_per_body(positions, fps),
            "foot_sliding": foot_sliding(positions, fps), "root_drift": root_drift(positions, fps),
            "freeze": freeze(positions, fps)}
