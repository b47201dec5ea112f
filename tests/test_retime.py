"""Beat-synchronous retiming (``audiokit.motion.retime``): motion beats near a music beat land on it, far ones stay,
the clock never runs outside the allowed rates, and the poses' order, the length and the first and last poses are
kept."""
from __future__ import annotations

import numpy as np
from test_dance_metrics import FPS, swaying

from audiokit.metrics.dance import beat_f_measure, motion_beats
from audiokit.motion.retime import MAX_SHIFT_S, RATE_RANGE, beat_anchors, retime


def synced(motion, music):
    anchors = beat_anchors(motion_beats(motion, FPS), music, (len(motion) - 1) / FPS)
    return retime(motion, FPS, anchors), anchors


def test_motion_beats_near_music_beats_land_on_them():
    motion = swaying(10.0).astype(np.float32)  # stops every 0.5 s from 0.25 s
    stops = motion_beats(motion, FPS)
    music = (stops + np.where(np.arange(len(stops)) % 2, 0.12, 0.08))[:-1]  # beats 0.08-0.12 s later, none for the last
    assert beat_f_measure(music, stops) == 0.0
    out, anchors = synced(motion, music)
    assert out.shape == motion.shape and out.dtype == motion.dtype
    assert len(anchors) == len(stops) + 1  # every stop with a music beat, and the two ends
    moved = motion_beats(out, FPS)
    assert len(moved) == len(stops) and np.abs(moved[:-1] - music).max() <= 1 / FPS + 1e-9
    assert abs(moved[-1] - stops[-1]) <= 2 / FPS  # the last stop had no beat near it: it stays about where it was
    assert beat_f_measure(music, moved) > 0.95
    np.testing.assert_array_equal(out[[0, -1]], motion[[0, -1]])  # the first and last poses stay


def test_far_beats_and_no_beats_leave_the_motion_as_it_is():
    motion = swaying(6.0, hz=0.5)  # stops every second
    stops = motion_beats(motion, FPS)
    for music in (stops + 0.5, np.zeros(0)):  # music beats half a second from every stop
        out, anchors = synced(motion, music)
        assert anchors.tolist() == [[0.0, 0.0], [5.96, 5.96]]
        np.testing.assert_allclose(out, motion, atol=1e-9)
    assert retime(motion[:1], FPS, [[0.0, 0.0], [0.04, 0.04]]).shape == (1, 23, 3)


def test_the_clock_stays_within_the_allowed_rates_and_in_order():
    # 1.0 -> 0.8 plays 1.25x (allowed); 1.2 -> 1.4 would play 0.33x: dropped; 1.9 -> 2.0 is fine from (1.0, 0.8)
    anchors = beat_anchors([1.0, 1.2, 1.9], [0.8, 1.4, 2.0], 4.0)
    assert anchors.tolist() == [[0.0, 0.0], [1.0, 0.8], [1.9, 2.0], [4.0, 4.0]]
    # the nearest music beat of both 0.5 and 0.55 is 0.5: the second has no later one, dropped
    assert beat_anchors([0.5, 0.55], [0.5], 2.0).tolist() == [[0.0, 0.0], [0.5, 0.5], [2.0, 2.0]]
    # 1.3's nearest music beat (1.15) is taken by 1.0: it goes to the next one within reach (1.5)
    assert beat_anchors([1.0, 1.3], [1.15, 1.5], 4.0).tolist() == [[0.0, 0.0], [1.0, 1.15], [1.3, 1.5], [4.0, 4.0]]
    end = beat_anchors([3.9], [3.75], 4.0)  # 0.1 s of motion into 0.25 s at the end: 0.4x, too slow
    assert end.tolist() == [[0.0, 0.0], [4.0, 4.0]]
    rng = np.random.default_rng(0)
    for _ in range(20):
        motion, music = np.sort(rng.uniform(0, 30, 40)), np.sort(rng.uniform(0, 30, 60))
        anchors = beat_anchors(motion, music, 30.0)
        rates = np.diff(anchors[:, 0]) / np.diff(anchors[:, 1])
        assert (np.diff(anchors, axis=0) > 0).all()
        assert RATE_RANGE[0] - 1e-9 <= rates.min() and rates.max() <= RATE_RANGE[1] + 1e-9
        assert np.abs(anchors[1:-1, 0] - anchors[1:-1, 1]).max() <= MAX_SHIFT_S


def test_retime_plays_the_poses_in_order_along_the_map():
    frames = np.arange(100, dtype=np.float64)[:, None, None] * np.ones((1, 23, 3))  # pose k holds the value k
    out = retime(frames, FPS, [[0.0, 0.0], [2.0, 1.6], [4.0, 4.0]])  # 2 s of motion in 1.6 s, then slower
    values = out[:, 0, 0]
    assert (np.diff(values) > 0).all() and values[0] == 0.0 and values[-1] > 98.5
    expected = np.interp(np.arange(100) / FPS, [0.0, 1.6, 4.0], [0.0, 2.0, 4.0]) * FPS
    np.testing.assert_allclose(values, np.clip(expected, 0, 99), atol=1e-9)
