"""Evaluating dances: motion made for a song beside the real dancer on the same song and beside controls.

For each evaluated dance (by default the test dances, :data:`audiokit.motion.dance_data.TEST_DANCES`) five motions
``[T, 23, 3]`` (cm, 25 fps) are scored against the music of that dance (:data:`ROWS`):

* ``generated``: made by the caller from the dance (its music), e.g. by a model or read from a BVH file;
* ``real``: the real dancer;
* ``another song``: the real dancer of another evaluated dance (the next one, in turn; a dance of another
  style from the data folder when only one is evaluated), played forward then backward until it is as long;
* ``random``: real poses of this dance in random order (:func:`random_motion`);
* ``frozen``: the dance's first pose, held.

Per motion (:func:`audiokit.metrics.dance.score_motion`): beat F-measure and AIST++'s beat alignment
score against the music beats (librosa's tracker, or ``beats.txt`` in the dance folder: one time in seconds a
line), motion beats per second, mean joint speed per body size, foot sliding, root drift and freeze; each row's
figure is the mean over the dances. Over all dances of a row, cut into windows of ``window_s`` seconds
(:mod:`audiokit.metrics.dance_features`): FID_k, FID_g and the diversity of kinetic and geometric features,
against a **reference** of real dancing: the windows of every other dance in the data folder (not evaluated, not
a partner; 191 windows of 10 s for the three test dances), so that the real dancers' own row is a measured
floor rather than 0 by construction. The evaluated dances hold 23 windows of 10 s in all: few, so FIDs move by
several units with the windows' placement; compare rows, not papers.

:func:`free_running_score` is the one figure that a training run chooses its checkpoints by (``free_score`` of
:class:`audiokit.tasks.dance.DanceBrain`): motion generated free-running over whole validation songs, scored
against the real dancers of those songs and a reference of real dancing (see there).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from audiokit.errors import AudiokitError, MotionFileError
from audiokit.metrics import dance as figures
from audiokit.metrics.dance import PER_MOTION, ROOT_JOINTS, music_beats, score_motion
from audiokit.metrics.dance_features import diversity, frechet_distance, geometric_features, kinetic_features, windows
from audiokit.motion.dance_data import TEST_DANCES, DanceClip, find_dances, read_dance, style_of

ROWS = ("generated", "real", "another song", "random", "frozen")
PER_SET = ("fid_k", "fid_g", "div_k", "div_g")
FREE_PARTS = ("score", "fid_k", "beats_ratio", "speed_ratio", "freeze")
"""The figures of :func:`free_running_score` (and ``bas``, ``beat_f`` when given the music)."""
RATE_FLOOR = 1e-3
"""Beat rates (1/s) and speeds (body sizes/s) are taken as at least this in :func:`free_running_score`'s ratios
(a frozen motion's ratio is then about 1e-3 / 0.9 or 1e-3 / 0.13 instead of 0)."""


def another_song(other, frames: int) -> np.ndarray:
    """``other [T, J, 3]`` cut to ``frames``, or played forward, backward, forward... until that long."""
    other = np.asarray(other)
    cycle = np.concatenate([np.arange(len(other)), np.arange(len(other) - 2, 0, -1)]) if len(other) > 1 else [0]
    return other[np.resize(cycle, frames)]


def random_motion(positions, fps: float, seed: int = 0, gap_s=(0.3, 0.9)) -> np.ndarray:
    """Real poses in random order, ``[T, J, 3]`` like ``positions``: keyframes ``gap_s`` seconds apart (drawn
    uniformly), each a random frame's pose (relative to the root's horizontal place; its height kept), eased
    between with a half cosine (so the body stops at each keyframe: motion beats at random times, at a
    dance-like rate), the root held at its mean horizontal place. Limbs shorten a little halfway between
    keyframes that face different ways."""
    rng = np.random.default_rng(seed)
    positions = np.asarray(positions, dtype=np.float64)
    count = len(positions)
    root = positions[:, list(ROOT_JOINTS)].mean(axis=1) * [1, 0, 1]
    poses = positions - root[:, None]
    keys = [0]
    while keys[-1] < count - 1:
        keys.append(keys[-1] + max(1, round(rng.uniform(*gap_s) * fps)))
    chosen = poses[rng.integers(0, count, len(keys))]
    frame = np.arange(count)
    segment = np.searchsorted(keys, frame, side="right") - 1
    start, end = np.array(keys)[segment], np.array(keys)[np.minimum(segment + 1, len(keys) - 1)]
    ease = (1 - np.cos(np.pi * (frame - start) / np.maximum(end - start, 1))) / 2
    moved = (1 - ease)[:, None, None] * chosen[segment] + ease[:, None, None] * chosen[np.minimum(segment + 1,
                                                                                                   len(keys) - 1)]
    return (moved + root.mean(axis=0)).astype(np.float32)


def frozen(positions) -> np.ndarray:
    """The first pose of ``positions [T, J, 3]`` held for ``T`` frames."""
    positions = np.asarray(positions)
    return np.repeat(positions[:1], len(positions), axis=0)


def kinetic_windows(positions, fps: float, window_s: float) -> np.ndarray:
    """Kinetic features ``[N, 69]`` of the ``window_s`` windows of ``positions [T, 23, 3]``."""
    return np.stack([kinetic_features(w, fps) for w in windows(positions, fps, window_s)])


def motion_features(positions, fps: float, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Kinetic ``[N, 69]`` and geometric ``[N, 32]`` features of the ``window_s`` windows of ``positions``."""
    geometric = np.stack([geometric_features(w, fps) for w in windows(positions, fps, window_s)])
    return kinetic_windows(positions, fps, window_s), geometric


def free_running_score(generated, real, reference=None, fps: float = 25.0, window_s: float = 10.0,
                       music=None) -> dict:
    """How far motion generated free-running over whole songs is from dancing; lower is better.

    ``generated`` and ``real``: one motion ``[T, 23, 3]`` (cm, ``fps``) per song, the model's and the real
    dancer's; ``reference``: motions of real dancing (None: ``real``). A training run gives its training dances:
    167 windows of 10 s, where the 3 validation dances hold 24, fewer than the 69 kinetic features; moving the
    windows by 2-8 s moved the shipped model's FID_k by at most 5 % against them, by up to 15-33 % against the
    validation dances (which would also score their own dancers 0). Figures (:data:`FREE_PARTS`):

    * ``fid_k``: FID_k of the ``window_s`` windows of ``generated`` against those of ``reference``;
    * ``beats_ratio``, ``speed_ratio``: the generated motion's beats per second and speed per body size (means
      over the songs) over the real dancers' on the same songs (each at least :data:`RATE_FLOOR`);
    * ``freeze``: the mean share of still seconds of the generated motions (whole songs);
    * ``score = fid_k * (1 + |ln beats_ratio| + |ln speed_ratio| + freeze)``: the distance to real dancing,
      inflated by the relative errors of the dance's pace (a motion twice or half as fast costs the same) and
      by freezing, whose windows FID_k may not yet see. 1 x FID_k for a motion at the real pace;
    * with ``music``, one ``(wav [N], sample_rate)`` per song (the song as read, as :func:`evaluate_dances`
      scores it: librosa's beats of the original file; at 16 kHz the tracker doubled a waltz's tempo), also
      ``bas`` and ``beat_f``: the means over the songs of the generated motion's
      :func:`~audiokit.metrics.dance.score_motion` beat alignment score and beat F-measure (higher is better;
      not part of ``score``).
    """
    reference = real if reference is None else reference
    fid = frechet_distance(np.concatenate([kinetic_windows(m, fps, window_s) for m in generated]),
                           np.concatenate([kinetic_windows(m, fps, window_s) for m in reference]))
    beats = _ratio([figures.beats_per_s(m, fps) for m in generated], [figures.beats_per_s(m, fps) for m in real])
    speed = _ratio([figures.speed_per_body(m, fps) for m in generated],
                   [figures.speed_per_body(m, fps) for m in real])
    still = float(np.mean([figures.freeze(m, fps, last_s=len(m) / fps) for m in generated]))
    score = fid * (1 + abs(math.log(beats)) + abs(math.log(speed)) + still)
    found = {"score": score, "fid_k": fid, "beats_ratio": beats, "speed_ratio": speed, "freeze": still}
    if music is not None:
        if len(music) != len(generated):
            raise ValueError(f"{len(music)} songs of music for {len(generated)} generated motions")
        aligned = [score_motion(m, fps, music_beats(wav, rate)) for m, (wav, rate) in zip(generated, music)]
        found.update(bas=float(np.mean([a["bas"] for a in aligned])),
                     beat_f=float(np.mean([a["beat_f"] for a in aligned])))
    return found


def _ratio(generated: list[float], real: list[float]) -> float:
    """Mean of ``generated`` over mean of ``real``, each at least :data:`RATE_FLOOR`."""
    return max(float(np.mean(generated)), RATE_FLOOR) / max(float(np.mean(real)), RATE_FLOOR)


def dance_beats(clip: DanceClip, folder: Path) -> np.ndarray:
    """Music beat times (s) of a dance: ``beats.txt`` in its folder if there is one, else librosa's."""
    given = folder / "beats.txt"
    if given.is_file():
        try:
            return np.sort(np.loadtxt(given, usecols=0, ndmin=1, dtype=np.float64))
        except ValueError as exc:
            raise MotionFileError(given, f"not a list of beat times in seconds ({exc})") from None
    return music_beats(clip.audio, clip.sample_rate)


def partners(evaluated: list[Path], folders: list[Path]) -> list[Path]:
    """The dance whose motion is each evaluated dance's "another song" (see the module docstring)."""
    if len(evaluated) > 1:
        return evaluated[1:] + evaluated[:1]
    others = [f for f in folders if f not in evaluated]
    if not others:
        raise MotionFileError(evaluated[0].parent, "holds no other dance for the 'another song' control")
    different = [f for f in others if style_of(f.name) != style_of(evaluated[0].name)]
    return [(different or others)[0]]


def evaluate_dances(root, dances=TEST_DANCES, generate: Callable[[DanceClip], np.ndarray] | None = None,
                    window_s: float = 10.0, seed: int = 0,
                    on_error: Callable[[AudiokitError], None] | None = None) -> dict:
    """Score the ``dances`` (folder names) under ``root`` (see the module docstring). ``generate(clip)`` gives
    the generated motion ``[T, 23, 3]`` (cm, at the clip's fps) for a dance; without it that row is left out.

    A dance that cannot be scored (its folder, its music, its partner's motion or its generated motion is bad:
    an AudiokitError) or a reference dance that cannot be read is handed to ``on_error`` and left out of every
    row (so that all rows still cover the same dances), or raised when ``on_error`` is None; MotionFileError when
    no dance is left to score.

    Returns ``{"rows": {row: {figure: value}}, "dances": {dance: {"music_beats_per_s", row: {...}}},
    "reference": {"dances": [...], "windows": N}, "windows": {row: N}}`` (figures: :data:`PER_MOTION`,
    :data:`PER_SET`)."""
    def failed(error: AudiokitError) -> None:
        if on_error is None:
            raise error
        on_error(error)

    folders = find_dances(root)
    by_name = {f.name: f for f in folders}
    missing = [d for d in dances if d not in by_name]
    if missing:
        raise MotionFileError(root, f"holds no dance {', '.join(missing)}")
    evaluated = [by_name[d] for d in dict.fromkeys(dances)]
    paired = partners(evaluated, folders)
    rows = [r for r in ROWS if generate is not None or r != "generated"]
    scores = {r: [] for r in rows}
    features = {r: ([], []) for r in rows}
    per_dance = {}
    for number, (folder, partner) in enumerate(zip(evaluated, paired)):
        try:
            clip = read_dance(folder)
            beats = dance_beats(clip, folder)
            real = clip.positions
            motions = {"real": real,
                       "another song": another_song(read_dance(partner, audio=False).positions, len(real)),
                       "random": random_motion(real, clip.fps, seed + number), "frozen": frozen(real)}
            if generate is not None:
                motions["generated"] = np.asarray(generate(clip))
            dance = {"music_beats_per_s": len(beats) / clip.duration, "another_song": partner.name}
            found = {row: (score_motion(motions[row], clip.fps, beats), motion_features(motions[row], clip.fps,
                                                                                         window_s)) for row in rows}
        except AudiokitError as exc:  # this dance is left out of every row
            failed(exc)
            continue
        per_dance[clip.name] = dance
        for row, (row_scores, (kinetic, geometric)) in found.items():
            per_dance[clip.name][row] = row_scores
            scores[row].append(row_scores)
            features[row][0].append(kinetic)
            features[row][1].append(geometric)
    if not per_dance:
        raise MotionFileError(root, "no dance could be scored")
    reference_folders = [f for f in folders if f not in evaluated and f not in paired]
    reference_folders, reference = _reference_features(reference_folders, window_s, failed)
    if not reference_folders:
        reference = (np.concatenate(features["real"][0]), np.concatenate(features["real"][1]))
    table = {}
    for row in rows:
        table[row] = {name: _mean([s[name] for s in scores[row]]) for name in PER_MOTION}
        kinetic, geometric = np.concatenate(features[row][0]), np.concatenate(features[row][1])
        table[row].update(fid_k=frechet_distance(kinetic, reference[0]), div_k=diversity(kinetic, reference[0]),
                          fid_g=frechet_distance(geometric, reference[1]), div_g=diversity(geometric, reference[1]))
    return {"rows": table, "dances": per_dance, "windows": {r: int(sum(len(k) for k in features[r][0])) for r in rows},
            "reference": {"dances": [f.name for f in reference_folders] or list(per_dance),
                          "windows": len(reference[0]), "window_s": window_s}}


def _reference_features(folders: list[Path], window_s: float, failed: Callable[[AudiokitError], None]) -> tuple:
    """``(the folders read, (kinetic, geometric) features of their windows, or None without any))``; a folder
    that cannot be read is handed to ``failed`` and left out."""
    kinetic, geometric, read = [], [], []
    for folder in folders:
        try:
            clip = read_dance(folder, audio=False)
            k, g = motion_features(clip.positions, clip.fps, window_s)
        except AudiokitError as exc:
            failed(exc)
            continue
        kinetic.append(k)
        geometric.append(g)
        read.append(folder)
    return read, ((np.concatenate(kinetic), np.concatenate(geometric)) if read else None)


def _mean(values: list[float]) -> float:
    """Mean of the finite values (NaN if none: e.g. no foot ever on the floor)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
