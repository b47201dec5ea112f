"""Dance evaluation: motion and music beats, their alignment, AIST++ features and distances, foot sliding, drift,
freeze, the controls, and ``audiokit evaluate --dance`` (synthetic motion; one real dance when ../shared is there)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiokit.metrics import dance, dance_eval
from audiokit.metrics import dance_features as feat

FPS = 25.0
DANCES = Path(__file__).resolve().parents[2] / "shared" / "data" / "dance_with_melody"


def body(frames: int, seed: int = 0) -> np.ndarray:
    """A still body ``[frames, 23, 3]`` (cm): joints spread about 90 cm up, the feet (10, 11, 19, 20) on the floor."""
    rng = np.random.default_rng(seed)
    rest = rng.normal(size=(23, 3)) * 15 + [0.0, 90.0, 0.0]
    rest[[10, 11, 19, 20], 1] = 0.0
    return np.repeat(rest[None], frames, axis=0)


def swaying(seconds: float = 8.0, hz: float = 1.0, amplitude: float = 20.0) -> np.ndarray:
    """The body swaying along x, ``amplitude * sin(2 pi hz t)``: it stops at ``t = (k + 1/2) / (2 hz)``."""
    t = np.arange(int(seconds * FPS)) / FPS
    motion = body(len(t))
    motion[..., 0] += amplitude * np.sin(2 * np.pi * hz * t)[:, None]
    return motion


def test_motion_beats_are_the_stops_and_ignore_jitter():
    beats = dance.motion_beats(swaying(), FPS)
    stops = (np.arange(16) + 0.5) / 2
    inner = stops[(stops > 0.2) & (stops < 7.8)]
    assert len(beats) == len(inner) and np.abs(beats - inner).max() <= 1 / FPS
    jittered = swaying() + np.random.default_rng(0).normal(size=swaying().shape)  # 1 cm of capture noise
    assert len(dance.motion_beats(jittered, FPS)) == len(inner)
    # every minimum of the plain speed counts the jitter too
    from audiokit.motion.kinematics import mean_joint_speed, speed_minima
    assert len(speed_minima(mean_joint_speed(jittered))) > 1.5 * len(inner)
    assert len(dance.motion_beats(body(50), FPS)) == 0


def test_beat_alignment_and_f_measure():
    music = np.arange(1, 20) * 0.5
    assert dance.beat_alignment_score(music, music) == pytest.approx(1.0)
    assert dance.beat_alignment_score(music, music + 0.05) == pytest.approx(np.exp(-0.5))
    assert dance.beat_alignment_score(music, music + 0.2) < 0.01
    # AIST++ averages over the motion beats: one beat on a music beat scores 1; Bailando's over the music beats
    assert dance.beat_alignment_score(music, music[:1]) == pytest.approx(1.0)
    assert dance.beat_alignment_score(music, music[:1], over="music") == pytest.approx(1 / len(music))
    assert dance.beat_alignment_score(music, []) == 0.0
    assert dance.beat_f_measure(music, music + 0.06) == pytest.approx(1.0)
    assert dance.beat_f_measure(music, music + 0.1) == 0.0
    assert dance.beat_f_measure(music, music[::2]) == pytest.approx(20 / 29)  # precision 1, recall 10/19
    assert dance.beat_f_measure([], music) == 0.0


def test_speed_freeze_and_drift():
    still, moving = body(400), swaying(16.0)
    assert dance.speed_per_body(still, FPS) == 0.0 and dance.freeze(still, FPS) == 1.0
    assert dance.speed_per_body(moving, FPS) > 0 and dance.freeze(moving, FPS) == 0.0
    size = dance.body_size(moving)
    assert dance.speed_per_body(moving, FPS) == pytest.approx(dance.joint_speed(moving, FPS).mean() / size)
    stops = moving.copy()
    stops[-5 * 25:] = stops[-5 * 25]  # the last 5 of 16 s still
    assert dance.freeze(stops, FPS) == pytest.approx(5 / 15, abs=0.07)
    rising = moving + np.linspace(0, 30, len(moving))[:, None, None] * [0, 1, 0]
    assert dance.root_drift(moving, FPS) == pytest.approx(0.0) and dance.root_drift(rising, FPS) > 15
    assert dance.root_drift(rising, FPS, span_s=2.0) == pytest.approx(30 * (1 - 50 / 399), abs=0.1)


def test_foot_sliding():
    planted = swaying()
    planted[:, [10, 11, 19, 20], 0] = 0.0  # the body sways above feet that stay put
    assert dance.foot_sliding(planted, FPS) == 0.0
    sliding = planted.copy()
    sliding[:, [10, 11], 2] += np.arange(len(sliding))[:, None] * 2.0  # the right foot glides at 50 cm/s
    assert dance.foot_sliding(sliding, FPS) == pytest.approx(25.0)  # pooled with the left foot's 0
    lifted = sliding.copy()
    lifted[:, [10, 11], 1] = 10.0
    assert dance.foot_sliding(lifted, FPS) == 0.0
    lifted[:, [19, 20], 1] = 10.0
    assert np.isnan(dance.foot_sliding(lifted, FPS))


def _kinetic_by_frames(positions, fps, width=1):
    """AIST++'s kinetic features computed frame by frame, as its definition reads."""
    out = []
    for j in range(positions.shape[1]):
        p, total = positions[:, j], np.zeros(3)
        for i in range(1, len(p)):
            steps = [p[i + k] - p[i + k - 1] for k in range(-width, width + 1) if 0 <= i + k - 1 and i + k < len(p)]
            v = np.mean(steps, axis=0) * fps
            bends = [p[i + k + 1] - 2 * p[i + k] + p[i + k - 1] for k in range(-width, width + 1)
                     if 0 <= i + k - 1 and i + k + 1 < len(p)]
            total += [v[0] ** 2 + v[2] ** 2, v[1] ** 2, np.linalg.norm(np.mean(bends, axis=0)) * fps ** 2]
        out += list(total / (len(p) - 1))
    return np.array(out)


def test_kinetic_and_geometric_features():
    motion = swaying(4.0) + np.random.default_rng(1).normal(size=(100, 23, 3))
    kinetic = feat.kinetic_features(motion, FPS)
    assert kinetic.shape == (69,)
    np.testing.assert_allclose(kinetic, _kinetic_by_frames(motion, FPS), rtol=1e-9)
    assert (feat.kinetic_features(motion * 2, FPS) > kinetic).all()  # twice as large a motion: 4x the energy
    assert not feat.kinetic_features(body(10), FPS).any()
    geometric = feat.geometric_features(motion, FPS)
    assert geometric.shape == (32,) and ((geometric >= 0) & (geometric <= 1)).all()
    fast = [i for i, (kind, *_) in enumerate(feat.GEOMETRIC) if kind == "fast"]
    assert not feat.geometric_features(body(10), FPS)[fast].any()
    assert feat.geometric_features(motion * 3, FPS)[fast].any()
    assert [len(w) for w in feat.windows(motion, FPS, 1.0)] == [25] * 4
    assert len(feat.windows(motion, FPS, 10.0)[0]) == 100


def test_frechet_distance_and_diversity():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 5)) * [1, 2, 3, 4, 5]
    assert feat.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-9)
    assert feat.frechet_distance(real[:20], real) < 1.5
    shifted = feat.frechet_distance(real + [0, 0, 0, 0, 10], real)  # two deviations apart, the covariances alike
    assert shifted == pytest.approx((10 / real[:, 4].std()) ** 2, rel=1e-6) and 3.5 < shifted < 4.5
    assert feat.frechet_distance(real * 3, real) > 10
    assert feat.diversity(np.ones((4, 5)), real) == 0.0
    assert feat.diversity(real, real) == pytest.approx(np.sqrt(10), rel=0.1)  # E|x - y| of 5-d unit normals
    constant = np.c_[real, np.zeros(200)]  # a feature the reference never varies: left in its own units
    assert feat.frechet_distance(np.c_[real, np.ones(200)], constant) == pytest.approx(1.0, abs=1e-6)


def test_controls():
    t = np.arange(100)[:, None, None] / FPS
    phases = np.random.default_rng(2).uniform(0, 2 * np.pi, size=(1, 23, 3))
    real = body(100) + 10 * np.sin(2 * np.pi * t + phases)  # the body's shape changes
    other = swaying(1.0, hz=2.0)
    looped = dance_eval.another_song(other, 100)
    assert looped.shape == real.shape and (looped[:25] == other).all() and (looped[25:48] == other[-2:0:-1]).all()
    assert (dance_eval.another_song(real, 30) == real[:30]).all()
    assert (dance_eval.frozen(real) == real[0]).all()
    shuffled = dance_eval.random_motion(real, FPS, seed=3)
    assert shuffled.shape == real.shape and np.isfinite(shuffled).all()
    assert 1.0 <= len(dance.motion_beats(shuffled, FPS)) / 4.0 <= 3.5  # a stop at each keyframe, 0.3-0.9 s apart
    assert not np.allclose(shuffled, dance_eval.random_motion(real, FPS, seed=4))


def dancing(seconds: float, hz: float, seed: int) -> np.ndarray:
    """The body swaying 20 cm along x at ``hz`` (it stops twice a cycle), every joint also swinging 5 cm on each
    axis with its own phase (the body's shape changes)."""
    t = np.arange(int(seconds * FPS))[:, None, None] / FPS
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, size=(1, 23, 3))
    return body(len(t), seed) + 5 * np.sin(2 * np.pi * hz * t + phases) + [20, 0, 0] * np.sin(2 * np.pi * hz * t)


def test_free_running_score_prefers_real_dancing_to_a_frozen_or_hurried_one():
    reference = [dancing(20.0, hz, seed) for seed, hz in enumerate((0.8, 1.0, 1.2, 0.9))]
    real = [dancing(16.0, 1.0, 7), dancing(12.0, 1.1, 8)]

    def score(generated):
        return dance_eval.free_running_score(generated, real, reference, FPS, window_s=2.0)

    itself, later = score(real), score([m[12:] for m in real])  # the real dancers, and half a second later
    assert set(itself) == set(dance_eval.FREE_PARTS)
    assert itself["beats_ratio"] == itself["speed_ratio"] == 1.0 and itself["freeze"] == 0.0
    assert itself["score"] == itself["fid_k"] > 0  # a reference of other dances: the real dancers are not 0
    assert later["score"] < 1.2 * itself["score"]
    still = score([dance_eval.frozen(m) for m in real])
    assert still["freeze"] == 1.0 and still["beats_ratio"] < 0.01 and still["speed_ratio"] < 0.02
    assert still["score"] > 10 * later["score"]
    hurried = score([dancing(16.0, 2.0, 7), dancing(12.0, 2.2, 8)])  # twice the pace
    assert hurried["beats_ratio"] == pytest.approx(2, rel=0.2) and hurried["speed_ratio"] == pytest.approx(2, rel=0.1)
    assert hurried["score"] > 1.5 * later["score"]
    assert dance_eval.free_running_score(real, real, None, FPS, 2.0)["score"] == pytest.approx(0, abs=1e-3)


@pytest.fixture(scope="module")
def dance_folder(tmp_path_factory):
    from test_dance import write_dance
    root = tmp_path_factory.mktemp("dances")
    for i, name in enumerate(["DANCE_C_1", "DANCE_R_2", "DANCE_W_3", "DANCE_T_4"]):
        write_dance(root / name, frames=150, seed=i)
    for name, period in (("DANCE_C_1", 0.5), ("DANCE_R_2", 0.6)):  # given beats: librosa's tracker is tested below
        (root / name / "beats.txt").write_text("\n".join(f"{t:.3f}" for t in np.arange(0.5, 6, period)))
    return root


def test_evaluate_dance_cli(dance_folder, tmp_path, capsys):
    from test_dance import tiny_model

    from audiokit.cli.main import main
    from audiokit.hub.pretrained import save_pretrained
    model = tiny_model()
    path = save_pretrained(model, tmp_path / "dance.safetensors", "dance_lstm", model.config, {"note": "random"})
    common = ["evaluate", "--dance", "--data", str(dance_folder), "--dances", "DANCE_C_1", "DANCE_R_2", "--window", "2"]
    assert main([*common, "--model", str(path), "--no-beat-sync"]) == 0
    capsys.readouterr()
    assert main([*common, "--model", str(path)]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines()[1:6]]
    assert rows == ["generated", "real", "another", "random", "frozen"], out
    assert out.splitlines()[0].split()[:3] == ["beat", "F", "BAS"] and "another song DANCE_R_2" in out
    assert "windows of 2 s (6 per row) against 6 of real dancing in 2 other dances" in out
    assert main([*common, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["rows"]) == ["real", "another song", "random", "frozen"]
    assert report["reference"]["dances"] == ["DANCE_T_4", "DANCE_W_3"]
    assert report["dances"]["DANCE_R_2"]["music_beats_per_s"] == pytest.approx(10 / 6.0)  # the given beats.txt
    frozen, real = report["rows"]["frozen"], report["rows"]["real"]
    assert frozen["freeze"] == 1.0 and frozen["speed_per_body"] == 0.0 and real["speed_per_body"] > 0
    assert frozen["fid_k"] > real["fid_k"]
    from audiokit.motion import read_dance, write_bvh
    for name in ("DANCE_C_1", "DANCE_R_2"):  # generated motion given as BVH files: here the real dancer's
        write_bvh(tmp_path / f"{name}.bvh", read_dance(dance_folder / name).positions)
    assert main([*common, "--motion", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert list(rows) == list(dance_eval.ROWS)
    assert rows["generated"]["speed_per_body"] == pytest.approx(rows["real"]["speed_per_body"], rel=0.3)
    for options, problem in ((["evaluate", "--model", str(path)], "--model: only used with --dance"),
                             ([*common, "--model", str(path), "--motion", str(tmp_path)], "give one of them"),
                             (["evaluate"], "--clean DIR and --estimate DIR are needed"),
                             ([*common, "--clean", str(tmp_path)], "--clean: not used with --dance"),
                             ([*common, "--dances", "DANCE_X_9"], "holds no dance DANCE_X_9"),
                             ([*common, "--model", str(path), "--style", "salsa"], "--style salsa"),
                             ([*common, "--no-beat-sync"], "--no-beat-sync: only used with --model"),
                             (["evaluate", "--no-beat-sync"], "--no-beat-sync: only used with --dance")):
        assert main(options) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and problem in err and err.count("\n") == 1, err


def test_evaluate_dance_leaves_out_a_dance_that_cannot_be_scored(dance_folder, tmp_path, capsys):
    """A scored dance whose music is truncated, whose generated BVH is cut short, or a reference dance that cannot
    be read: one error line each, the other dances scored in every row, status 1 (as evaluate does for files)."""
    import shutil

    from audiokit.cli.main import main
    from audiokit.motion import read_dance, write_bvh

    data, motion = tmp_path / "data", tmp_path / "motion"
    shutil.copytree(dance_folder, data)
    for name in ("DANCE_C_1", "DANCE_R_2"):
        write_bvh(motion / f"{name}.bvh", read_dance(data / name).positions)
    music = next((data / "DANCE_W_3").glob("audio.*"))
    music.write_bytes(music.read_bytes()[:music.stat().st_size // 2])
    text = (motion / "DANCE_R_2.bvh").read_text()
    (motion / "DANCE_R_2.bvh").write_text(text[:len(text) // 2])
    (data / "DANCE_T_4" / "config.json").write_text("{")  # a reference dance
    common = ["evaluate", "--dance", "--data", str(data), "--window", "2", "--json"]
    assert main([*common, "--dances", "DANCE_C_1", "DANCE_R_2", "DANCE_W_3", "--motion", str(motion)]) == 1
    captured = capsys.readouterr()
    errors = captured.err.splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors), captured.err
    assert errors[0].startswith(f"error: {motion / 'DANCE_R_2.bvh'}: not a valid BVH file")
    assert errors[1].startswith(f"error: {music}: truncated")
    assert errors[2].startswith(f"error: {data / 'DANCE_T_4' / 'config.json'}: ")
    report = json.loads(captured.out)
    assert list(report["dances"]) == ["DANCE_C_1"] and report["windows"]["generated"] == report["windows"]["real"]
    assert report["reference"]["dances"] == ["DANCE_C_1"]  # (no reference dance left: the real dancers' windows)
    assert main([*common, "--dances", "DANCE_W_3"]) == 1  # nothing left to score
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {data}: no dance could be scored"


@pytest.mark.slow
def test_music_beats_of_a_click_track():
    rate, clicks = 16000, np.arange(0.25, 12, 0.5)  # 120 beats per minute
    wav = np.zeros(12 * rate, np.float32)
    burst = np.random.default_rng(0).normal(size=800) * np.exp(-np.arange(800) / 150)  # a drum-like hit
    for start in clicks:
        wav[int(start * rate):int(start * rate) + 800] += burst
    beats = dance.music_beats(wav, rate)
    assert 20 <= len(beats) <= 24 and np.median(np.diff(beats)) == pytest.approx(0.5, abs=0.02)
    assert dance.beat_f_measure(clicks, beats) > 0.9
    assert len(dance.music_beats(np.zeros(rate), rate)) == 0


@pytest.mark.shared
@pytest.mark.skipif(not DANCES.is_dir(), reason="needs ../shared/data/dance_with_melody")
def test_real_dancer_scores_on_one_real_dance():
    from audiokit.motion.dance_data import read_dance
    clip = read_dance(DANCES / "DANCE_W_30")
    beats = dance.music_beats(clip.audio, clip.sample_rate)
    assert 1.2 < len(beats) / clip.duration < 1.7  # a waltz at about 86 beats per minute
    real = dance.score_motion(clip.positions, clip.fps, beats)
    assert 0.4 < real["beats_per_s"] < 1.2 and 0.1 < real["speed_per_body"] < 0.2 and real["freeze"] == 0.0
    assert 0 < real["bas"] < 1 and 0 < real["beat_f"] < 1 and 20 < real["foot_sliding"] < 80
    assert abs(real["root_drift"]) < 15 and 500 < dance.body_size(clip.positions) < 540
    frozen = dance.score_motion(dance_eval.frozen(clip.positions), clip.fps, beats)
    assert frozen["freeze"] == 1.0 and frozen["beats_per_s"] == 0.0
    others = [read_dance(DANCES / name, audio=False).positions for name in ("DANCE_W_28", "DANCE_W_29")]
    reference = np.concatenate([dance_eval.motion_features(p, clip.fps, 10.0)[0] for p in others])
    kinetic = dance_eval.motion_features(clip.positions, clip.fps, 10.0)[0]
    still = dance_eval.motion_features(dance_eval.frozen(clip.positions), clip.fps, 10.0)[0]
    assert feat.frechet_distance(kinetic, reference) < feat.frechet_distance(still, reference) / 3
