"""The motion layer: dance skeleton, mirroring, dance folders, BVH out and back, stick-figure video."""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.spatial.transform import Rotation

from audiokit.errors import MotionError, MotionFileError
from audiokit.motion import bvh, dance_data, render, rotations, skeleton
from audiokit.motion.skeleton import BVH_RIG, JOINT, JOINT_NAMES, NUM_JOINTS

DANCES = Path(__file__).resolve().parents[2] / "shared" / "data" / "dance_with_melody"
_skip_without_dances = pytest.mark.skipif(not DANCES.is_dir(), reason="needs ../shared/data/dance_with_melody")


def needs_dances(test):
    return pytest.mark.shared(_skip_without_dances(test))


# ---------------------------------------------------------------- synthetic motion

# Rest offsets of a rigid body on BVH_RIG (cm; y up, facing +z, left +x). Not all along the rig's rest
# directions, so the writer has to find the real shape. The virtual joints stay midpoints: the hips are
# opposite about the pelvis, the neck is the mean of the shoulders (all three hang from the spine), the two
# head points are opposite about the head.
OFFSETS = {
    "left_hip": (10.5, -1.0, 0.5), "right_hip": (-10.5, 1.0, -0.5), "spine": (0.0, 15.0, 3.0),
    "left_shoulder": (15.0, 28.0, -2.0), "right_shoulder": (-15.0, 28.0, -2.0), "neck": (0.0, 28.0, -2.0),
    "head": (0.0, 17.0, 1.0), "head_front": (1.0, 0.5, 5.0), "head_back": (-1.0, -0.5, -5.0),
    "left_elbow": (29.0, 0.0, 0.0), "left_wrist": (17.0, 0.0, 1.0), "left_hand": (7.0, 0.0, 3.0),
    "left_hand_dir": (10.0, 0.0, -8.0),
    "right_elbow": (-29.0, -2.0, 0.0), "right_wrist": (-11.7, 0.0, 0.0), "right_hand": (-14.0, 0.0, 1.0),
    "right_hand_dir": (-4.7, 0.5, 0.0),
    "left_knee": (0.0, -47.0, 1.0), "left_ankle": (0.0, -33.0, -1.0), "left_toe": (0.5, -7.0, 16.0),
    "left_heel": (0.0, -8.0, -6.0),
    "right_knee": (0.0, -47.5, 1.0), "right_ankle": (0.0, -32.5, -1.0), "right_toe": (-0.5, -7.0, 16.0),
    "right_heel": (0.0, -8.5, -6.0),
}


def synthetic_motion(frames: int = 100, fps: float = 25.0, seed: int = 0) -> np.ndarray:
    """Rigid motion [frames, 23, 3] in cm: smooth random joint rotations (up to about 70 degrees, the root
    turning all the way round) and the hips walking a circle, by forward kinematics written here."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    joints = BVH_RIG.joints
    global_rot = [None] * len(joints)
    out = np.zeros((frames, len(joints), 3))
    for j, joint in enumerate(joints):
        freq, phase = rng.uniform(0.3, 1.5, 3), rng.uniform(0, 2 * np.pi, 3)
        rotvec = 0.4 * np.sin(2 * np.pi * freq * t[:, None] + phase) * rng.uniform(0.5, 1.0, 3)
        if joint.parent < 0:
            rotvec = rotvec * 0.3 + np.outer(0.8 * t, [0.0, 1.0, 0.0])  # spinning
            local = Rotation.from_rotvec(rotvec)
            global_rot[j] = local
            out[:, j] = np.stack([80 * np.cos(0.5 * t), 95 + 3 * np.sin(4 * t), 80 * np.sin(0.5 * t)], axis=1)
        else:
            local = Rotation.from_rotvec(rotvec)
            global_rot[j] = global_rot[joint.parent] * local
            out[:, j] = out[:, joint.parent] + global_rot[joint.parent].apply(OFFSETS[joint.name])
    return out[:, BVH_RIG.data_index()]


def t_pose() -> np.ndarray:
    """One symmetric pose [23, 3] (the synthetic body with no rotation, hips at the origin)."""
    rig = np.zeros((len(BVH_RIG.joints), 3))
    for j, joint in enumerate(BVH_RIG.joints):
        if joint.parent >= 0:
            rig[j] = rig[joint.parent] + OFFSETS[joint.name]
    return rig[BVH_RIG.data_index()]


def test_synthetic_motion_keeps_the_virtual_joints_midpoints():
    motion = synthetic_motion(20)
    rig = BVH_RIG.expand(motion)
    names = BVH_RIG.names
    for virtual in ("pelvis", "neck", "head"):
        assert np.isfinite(rig[:, names.index(virtual)]).all()
    assert np.allclose(np.linalg.norm(motion[:, 7] - motion[:, 16], axis=-1), 2 * np.linalg.norm(OFFSETS["left_hip"]))


# ---------------------------------------------------------------- skeleton and mirroring

def test_skeleton_tables_are_consistent():
    assert len(JOINT_NAMES) == len(set(JOINT_NAMES)) == NUM_JOINTS == 23
    assert skeleton.PARENTS.count(-1) == 1 and len(skeleton.PARENTS) == 23
    for joint in range(23):  # every joint reaches the root
        seen = set()
        while joint >= 0:
            assert joint not in seen
            seen.add(joint)
            joint = skeleton.PARENTS[joint]
    assert len(skeleton.bones()) == 22
    assert sorted(np.asarray(skeleton.MIRROR_INDEX)[skeleton.MIRROR_INDEX].tolist()) == list(range(23))
    assert (skeleton.MIRROR_INDEX[skeleton.MIRROR_INDEX] == np.arange(23)).all()
    for right, left in skeleton.MIRROR_PAIRS:
        a, b = JOINT_NAMES[right], JOINT_NAMES[left]
        assert a.startswith("right_") and b.startswith("left_") and a[6:] == b[5:]
    assert len(set(BVH_RIG.names)) == len(BVH_RIG.names)
    assert sorted(BVH_RIG.data_index().tolist()) == sorted(set(BVH_RIG.data_index().tolist()))
    assert [BVH_RIG.names[i] for i in BVH_RIG.data_index()] == list(JOINT_NAMES)


def test_mirror_swaps_sides_and_is_its_own_inverse():
    motion = synthetic_motion(30, seed=1)
    mirrored = skeleton.mirror(motion)
    assert np.array_equal(skeleton.mirror(mirrored), motion)
    assert np.allclose(mirrored[:, JOINT["left_hand"], 0], -motion[:, JOINT["right_hand"], 0])
    assert np.allclose(mirrored[:, JOINT["left_hand"], 1:], motion[:, JOINT["right_hand"], 1:])
    assert np.allclose(mirrored[:, JOINT["spine"]], motion[:, JOINT["spine"]] * [-1, 1, 1])
    # bone lengths move with their side
    lengths, mirrored_lengths = skeleton.bone_lengths(motion), skeleton.bone_lengths(mirrored)
    bone_index = {bone: k for k, bone in enumerate(skeleton.bones())}
    for k, (parent, child) in enumerate(skeleton.bones()):
        swapped = (skeleton.MIRROR_INDEX[parent], skeleton.MIRROR_INDEX[child])
        if swapped in bone_index:
            assert np.allclose(mirrored_lengths[:, bone_index[swapped]], lengths[:, k])
    # a left-right symmetric pose mirrors onto itself; along z too, for a pose turned to face x
    pose = t_pose()
    symmetric = (pose + skeleton.mirror(pose)) / 2
    assert np.allclose(skeleton.mirror(symmetric), symmetric)
    turned = symmetric @ Rotation.from_euler("y", 90, degrees=True).as_matrix().T
    assert np.allclose(skeleton.mirror(turned, axis=2), turned, atol=1e-9)
    # the mirrored dancer's left side is still on the left: left = up x forward, forward from the toes
    forward = mirrored[:, JOINT["left_toe"]] - mirrored[:, JOINT["left_heel"]]
    left = mirrored[:, JOINT["left_hip"]] - mirrored[:, JOINT["right_hip"]]
    assert np.mean(np.sum(np.cross([0, 1, 0], forward) * left, axis=-1) > 0) > 0.9
    assert skeleton.mirror(motion[0]).shape == (23, 3)
    with pytest.raises(MotionError, match="horizontal"):
        skeleton.mirror(motion, axis=1)
    with pytest.raises(MotionError, match=r"\[\.\.\., 23, 3\]"):
        skeleton.mirror(np.zeros((5, 21, 3)))
    with pytest.raises(MotionError, match="NaN"):
        skeleton.mirror(np.full((2, 23, 3), np.nan))


def test_synthetic_body_faces_forward_with_left_on_plus_x():
    pose = t_pose()
    assert pose[JOINT["left_hip"], 0] > 0 > pose[JOINT["right_hip"], 0]
    assert pose[JOINT["left_toe"], 2] > pose[JOINT["left_heel"], 2]


# ---------------------------------------------------------------- rotations

def test_euler_zyx_matches_scipy_and_round_trips():
    rng = np.random.default_rng(0)
    quats = Rotation.random(200, random_state=1)
    matrices = quats.as_matrix()
    angles = rotations.matrix_to_euler_zyx(matrices)
    assert np.allclose(rotations.euler_to_matrix(angles, "zyx"), matrices, atol=1e-12)
    assert np.allclose(angles, quats.as_euler("ZYX"), atol=1e-9)  # scipy: upper case = intrinsic = BVH order
    order = "xzy"
    angles = rng.uniform(-3, 3, (50, 3))
    assert np.allclose(rotations.euler_to_matrix(angles, order), Rotation.from_euler("XZY", angles).as_matrix())
    locked = Rotation.from_euler("ZYX", [0.3, np.pi / 2, 0.2]).as_matrix()
    assert np.allclose(rotations.euler_to_matrix(rotations.matrix_to_euler_zyx(locked), "zyx"), locked, atol=1e-6)


def test_swing_and_frame():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(100, 3)), rng.normal(size=(100, 3))
    a[0], b[0] = [1, 0, 0], [-1, 0, 0]  # opposite
    a[1], b[1] = [0, 2, 0], [0, 5, 0]  # same
    r = rotations.swing(a, b)
    assert np.allclose(r @ np.swapaxes(r, -1, -2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(r), 1)
    assert np.allclose((r @ rotations.normalize(a)[..., None])[..., 0], rotations.normalize(b), atol=1e-9)
    axis = np.cross(a[2:], b[2:])  # minimal: the common normal is left alone
    assert np.allclose((r[2:] @ axis[..., None])[..., 0], axis, atol=1e-9)
    f, degenerate = rotations.frame(a, b)
    assert np.allclose(f @ np.swapaxes(f, -1, -2), np.eye(3), atol=1e-12) and np.allclose(np.linalg.det(f), 1)
    assert degenerate[:2].all() and not degenerate[2:].any()
    assert np.allclose(f[2:, :, 0], rotations.normalize(a[2:]))
    assert (np.sum(f[2:, :, 1] * b[2:], axis=-1) > 0).all() and np.allclose(np.sum(f[2:, :, 2] * b[2:], -1), 0)


# ---------------------------------------------------------------- BVH

def test_bvh_round_trip_of_rigid_synthetic_motion_is_exact(tmp_path):
    motion = synthetic_motion(120)
    path = bvh.write_bvh(tmp_path / "out" / "synthetic.bvh", motion, fps=25)
    assert path == tmp_path / "out" / "synthetic.bvh" and not [p for p in path.parent.iterdir() if p != path]
    parsed = bvh.read_bvh(path)
    assert parsed.frames == 120 and parsed.fps == pytest.approx(25)
    back = parsed.data_positions()
    assert np.abs(back - motion).max() < 1e-3  # cm: the text's rounding only
    # the rest offsets are the body's bone lengths (what Blender builds its bones from)
    for name, offset in OFFSETS.items():
        j = parsed.names.index(name)
        assert np.linalg.norm(parsed.offsets[j]) == pytest.approx(np.linalg.norm(offset), abs=1e-4), name
    # the rotations are the fitted ones: forward kinematics of the fit equals the input too
    assert bvh.roundtrip_error(motion).max() < 1e-6


def test_bvh_text_is_standard(tmp_path):
    motion = synthetic_motion(10)
    text = bvh.bvh_text(motion, fps=25)
    lines = text.splitlines()
    assert lines[0] == "HIERARCHY" and lines[1] == "ROOT pelvis"
    assert re.search(r"^\tCHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation$", text, re.M)
    names = re.findall(r"^\s*(?:ROOT|JOINT) (\S+)$", text, re.M)
    assert sorted(names) == sorted(BVH_RIG.names) and len(set(names)) == len(names) == 26
    assert len(re.findall(r"^\s*CHANNELS 3 Zrotation Yrotation Xrotation$", text, re.M)) == 25
    leaves = [j for j in range(26) if not BVH_RIG.children(j)]
    assert text.count("End Site") == len(leaves)
    assert text.count("{") == text.count("}") == 26 + len(leaves)
    assert "MOTION\nFrames: 10\nFrame Time: 0.04000000\n" in text
    rows = lines[lines.index("Frame Time: 0.04000000") + 1:]
    assert len(rows) == 10 and all(len(row.split()) == 6 + 25 * 3 for row in rows)
    # scale multiplies every length; the angles stay
    scaled = bvh.parse_bvh(bvh.bvh_text(motion, fps=25, scale=0.01))
    assert np.allclose(scaled.data_positions(), motion * 0.01, atol=1e-5)


@pytest.mark.parametrize("seed", [3, 4])
def test_bvh_round_trip_survives_turns_and_odd_poses(seed):
    motion = synthetic_motion(60, seed=seed) @ Rotation.random(random_state=seed).as_matrix().T  # tilted world
    assert np.abs(bvh.parse_bvh(bvh.bvh_text(motion)).data_positions() - motion).max() < 1e-3


def test_bvh_with_varying_bone_lengths_keeps_directions_and_stretch_is_exact():
    motion = synthetic_motion(80, seed=5)
    rng = np.random.default_rng(5)
    noisy = motion + rng.normal(scale=1.0, size=motion.shape)  # 1 cm of noise: lengths now vary
    parsed = bvh.parse_bvh(bvh.bvh_text(noisy))
    error = np.linalg.norm(parsed.data_positions() - noisy, axis=-1)
    assert 0.3 < error.mean() < 6
    exact = bvh.parse_bvh(bvh.bvh_text(noisy, stretch=True))
    assert np.abs(exact.data_positions() - noisy).max() < 1e-3
    assert all(len(c) == 6 for c in exact.channels)


def test_bvh_reader_follows_the_file(tmp_path):
    text = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
  JOINT Upper Arm
  {
    OFFSET 1 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 2 0
    }
  }
  JOINT Slider {
    OFFSET 0 1 0
    CHANNELS 4 Xposition Yposition Zposition Yrotation
  }
}
ROOT Other
{
  OFFSET 5 5 5
  CHANNELS 0
}
MOTION
Frames: 2
Frame Time: 0.0333333
1 2 3 0 0 90   0 0 0   0 0 0 0
1 2 3 0 0 0   90 0 0   7 8 9 0
"""
    path = tmp_path / "a.bvh"
    path.write_text(text.replace("\n", "\r\n"))
    parsed = bvh.read_bvh(path)
    assert parsed.names == ["Hips", "Upper Arm", "Slider", "Other"]
    assert parsed.parents.tolist() == [-1, 0, 0, -1]
    assert parsed.fps == pytest.approx(30, rel=1e-5)
    positions = parsed.positions(end_sites=True)
    assert positions.shape == (2, 5, 3)
    assert np.allclose(positions[0], [[1, 2, 3], [1, 3, 3], [1, 2, 3], [5, 5, 5], [-1, 3, 3]])  # root turned 90 about z
    assert np.allclose(positions[1], [[1, 2, 3], [2, 2, 3], [8, 10, 12], [5, 5, 5], [0, 2, 3]])  # arm turned
    with pytest.raises(MotionError, match="lacks the joints"):
        parsed.data_positions()


@pytest.mark.parametrize("text, problem", [
    ("", "no MOTION"),
    ("ROOT a\n{\n}\n", "line 1: expected HIERARCHY"),
    ("HIERARCHY\nROOT a\n{\nOFFSET 0 0\n", "line 4: OFFSET needs 3 numbers"),
    ("HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 2 Xrotation Twist\n}\n", "line 5: CHANNELS 2"),
    ("HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 1 Xrotation\nMOTION\n", "line 6: MOTION before"),
    ("HIERARCHY\nROOT a\n{\nCHANNELS 1 Xrotation\n}\nMOTION\nFrames: 1\nFrame Time: 0.04\n0\n", "has no OFFSET"),
    ("HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 1 Xrotation\n}\nMOTION\nFrames: 2\nFrame Time: 0.04\n0\n",
     "expected 2 frames of 1 channels"),
    ("HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 1 Xrotation\n}\nMOTION\nFrames: 1\nFrame Time: 0\n0\n",
     "Frame Time must be positive"),
    ("HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 1 Xrotation\n}\nMOTION\nFrames: 1\nFrame Time: 0.1\nx\n",
     "non-number"),
    ("HIERARCHY\nJOINT a\n{\n", "JOINT outside a joint"),
])
def test_bvh_reader_names_the_problem(tmp_path, text, problem):
    path = tmp_path / "bad.bvh"
    path.write_text(text)
    with pytest.raises(MotionFileError, match=re.escape(problem)) as caught:
        bvh.read_bvh(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_bvh_reader_says_what_is_not_a_file(tmp_path):
    os.mkfifo(tmp_path / "fifo.bvh")
    (tmp_path / "folder.bvh").mkdir()
    for name, problem in (("fifo.bvh", "not a regular file (a FIFO)"), ("folder.bvh", "is a folder, not a BVH file"),
                          ("none.bvh", "no such file")):
        with pytest.raises(MotionFileError) as caught:
            bvh.read_bvh(tmp_path / name)
        assert str(caught.value) == f"{tmp_path / name}: {problem}"


def test_bvh_writer_refuses_to_overwrite_and_bad_input(tmp_path):
    motion = synthetic_motion(5)
    path = bvh.write_bvh(tmp_path / "a.bvh", motion)
    with pytest.raises(MotionFileError, match="exists"):
        bvh.write_bvh(path, motion)
    bvh.write_bvh(path, motion[:3], force=True)
    assert bvh.read_bvh(path).frames == 3
    with pytest.raises(MotionError, match="23, 3"):
        bvh.write_bvh(tmp_path / "b.bvh", motion[:, :20])
    with pytest.raises(MotionError, match="fps"):
        bvh.bvh_text(motion, fps=0)
    with pytest.raises(MotionFileError, match="no such file"):
        bvh.read_bvh(tmp_path / "missing.bvh")
    assert not (tmp_path / "b.bvh").exists()


@needs_dances
def test_bvh_round_trip_on_a_real_dance(tmp_path):
    clip = dance_data.read_dance(DANCES / "DANCE_C_2", audio=False)
    motion = clip.positions[:500].astype(np.float64)
    parsed = bvh.read_bvh(bvh.write_bvh(tmp_path / "c2.bvh", motion))
    error = np.linalg.norm(parsed.data_positions() - motion, axis=-1)
    # the capture's bone lengths vary by 3-8 %: the error is that variation summed along each chain
    # (all 36 dances: mean 2.7 cm, 95th percentile 8.5 cm; 0.3 cm at the hips, 4 cm at heels and toes)
    assert error.mean() < 4 and np.percentile(error, 95) < 10
    assert error[:, [JOINT["left_hip"], JOINT["right_hip"]]].mean() < 1.0
    # bone offsets are the mean bone lengths of the clip
    for name, (a, b) in {"left_knee": (16, 17), "right_ankle": (8, 9), "left_elbow": (12, 13)}.items():
        mean_length = np.linalg.norm(motion[:, a] - motion[:, b], axis=-1).mean()
        assert np.linalg.norm(parsed.offsets[parsed.names.index(name)]) == pytest.approx(mean_length, rel=1e-5)
    stretched = bvh.parse_bvh(bvh.bvh_text(motion, stretch=True))
    assert np.abs(stretched.data_positions() - motion).max() < 1e-3


# ---------------------------------------------------------------- dance folders

def write_dance(folder: Path, frames: int = 50, gz: bool = True, audio_seconds: float | None = None,
                sample_rate: int = 8000, config: dict | None = None) -> np.ndarray:
    """A dance folder in the dataset's layout from synthetic motion; returns the world positions written."""
    folder.mkdir(parents=True, exist_ok=True)
    motion = synthetic_motion(frames)
    center = motion.mean(axis=1)
    data = {"length": frames, "center": center.tolist(), "skeletons": (motion - center[:, None]).tolist()}
    text = json.dumps(data)
    if gz:
        (folder / "skeletons.json.gz").write_bytes(gzip.compress(text.encode()))
    else:
        (folder / "skeletons.json").write_text(text)
    config = config if config is not None else {"start_position": 0, "end_position": frames + 5}
    (folder / "config.json").write_text(json.dumps(config))
    seconds = audio_seconds if audio_seconds is not None else config.get("end_position", frames) / 25
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sf.write(folder / "audio.wav", 0.3 * np.sin(2 * np.pi * 440 * t), sample_rate)
    return motion


@pytest.mark.parametrize("gz", [True, False])
def test_read_dance_folder(tmp_path, gz):
    motion = write_dance(tmp_path / "DANCE_T_3", gz=gz)
    clip = dance_data.read_dance(tmp_path / "DANCE_T_3", ground=False)
    assert clip.name == "DANCE_T_3" and clip.style == "tango" and clip.fps == 25
    assert clip.positions.shape == (50, 23, 3) and clip.positions.dtype == np.float32
    assert np.allclose(clip.positions, motion, atol=1e-3)
    assert clip.sample_rate == 8000 and clip.audio.dtype == np.float32 and clip.audio.ndim == 1
    assert len(clip.audio) == 50 * 8000 // 25  # trimmed to the motion
    assert len(dance_data.read_dance(tmp_path / "DANCE_T_3", trim=False).audio) == 55 * 8000 // 25
    grounded = dance_data.read_dance(tmp_path / "DANCE_T_3")
    assert abs(np.median(grounded.positions[..., 1].min(axis=1))) < 2  # the floor at 0
    assert np.allclose(grounded.positions[..., [0, 2]], motion[..., [0, 2]], atol=1e-3)
    assert dance_data.find_dances(tmp_path) == [tmp_path / "DANCE_T_3"]


def test_read_dance_cuts_the_span_and_the_longer_side(tmp_path):
    folder = tmp_path / "dance"
    motion = write_dance(folder, frames=40, config={"start_position": 10, "end_position": 60},
                         audio_seconds=70 / 25)
    t = np.arange(int(70 / 25 * 8000)) / 8000
    marker = np.where(t >= 10 / 25, 0.5, -0.5)  # music starts at the span's start
    sf.write(folder / "audio.wav", marker, 8000)
    clip = dance_data.read_dance(folder)
    assert clip.style is None and len(clip.audio) == 40 * 320 and clip.audio.min() > 0
    short = tmp_path / "short"
    write_dance(short, frames=40, config={"start_position": 0, "end_position": 30})
    clip = dance_data.read_dance(short)  # the span (30 frames) is shorter than the motion: the motion is cut
    assert clip.frames == 30 and len(clip.audio) == 30 * 320
    assert motion.shape == (40, 23, 3)


def _break(folder: Path, how: str):
    if how == "no skeletons":
        (folder / "skeletons.json.gz").unlink()
    elif how == "bad gzip":
        (folder / "skeletons.json.gz").write_bytes(b"not gzip")
    elif how == "bad json":
        (folder / "skeletons.json.gz").write_bytes(gzip.compress(b"{\"skeletons\": [1, 2"))
    elif how == "no skeletons key":
        (folder / "skeletons.json.gz").write_bytes(gzip.compress(b"{\"center\": []}"))
    elif how == "wrong joints":
        data = {"length": 2, "center": [[0, 0, 0]] * 2, "skeletons": [[[0, 0, 0]] * 21] * 2}
        (folder / "skeletons.json.gz").write_bytes(gzip.compress(json.dumps(data).encode()))
    elif how == "length":
        data = json.loads(gzip.decompress((folder / "skeletons.json.gz").read_bytes()))
        data["length"] += 1
        (folder / "skeletons.json.gz").write_bytes(gzip.compress(json.dumps(data).encode()))
    elif how == "no config":
        (folder / "config.json").unlink()
    elif how == "bad config":
        (folder / "config.json").write_text(json.dumps({"start_position": 10, "end_position": 5}))
    elif how == "no audio":
        (folder / "audio.wav").unlink()
    elif how == "bad audio":
        (folder / "audio.wav").write_bytes(b"RIFF....garbage")
    elif how == "short audio":
        sf.write(folder / "audio.wav", np.zeros(800), 8000)
    elif how == "truncated audio":  # (its header says 2 s)
        whole = (folder / "audio.wav").read_bytes()
        (folder / "audio.wav").write_bytes(whole[:len(whole) // 2])
    elif how == "audio at 100 Hz":
        sf.write(folder / "audio.wav", np.full(200, 0.1), 100)
    elif how == "audio a FIFO":
        (folder / "audio.wav").unlink()
        os.mkfifo(folder / "audio.wav")


@pytest.mark.parametrize("how, problem", [
    ("no skeletons", "no skeletons.json or skeletons.json.gz"), ("bad gzip", "not readable JSON"),
    ("bad json", "not readable JSON"), ("no skeletons key", "no 'skeletons' key"),
    ("wrong joints", "[frames][23][3], not [2, 21, 3]"), ("length", "'length' is 51"),
    ("no config", "config.json: missing"), ("bad config", "must be after"),
    ("no audio", "no music file"), ("bad audio", "not a readable audio file"), ("short audio", "0.10 s of music"),
    ("truncated audio", "audio.wav: truncated (the file ends before the audio data its header declares)"),
    ("audio at 100 Hz", "audio.wav: sample rate 100: want a whole number of Hz, at least 1000"),
    ("audio a FIFO", "audio.wav: not a regular file (a FIFO)"),  # (the audio files' checks, issue 18)
])
def test_broken_dance_folders_raise_one_line(tmp_path, how, problem):
    folder = tmp_path / "DANCE_W_1"
    write_dance(folder)
    _break(folder, how)
    with pytest.raises(MotionFileError, match=re.escape(problem)) as caught:
        dance_data.read_dance(folder)
    assert "\n" not in str(caught.value) and str(folder) in str(caught.value)


def test_missing_dance_folders(tmp_path):
    with pytest.raises(MotionFileError, match="no such dance folder"):
        dance_data.read_dance(tmp_path / "nope")
    with pytest.raises(MotionFileError, match="holds no dance folder"):
        dance_data.find_dances(tmp_path)


@needs_dances
def test_real_dance_folder_is_read_in_centimetres_y_up():
    folders = dance_data.find_dances(DANCES)
    assert len(folders) == 36 and folders[0].name == "DANCE_C_2"
    clip = dance_data.read_dance(DANCES / "DANCE_W_3")
    assert clip.style == "waltz" and clip.sample_rate == 22050 and clip.frames == 1634
    assert len(clip.audio) == round(clip.frames / 25 * 22050)
    lowest = clip.positions[..., 1].min(axis=1)
    assert abs(np.median(lowest)) < 1 and np.percentile(np.abs(lowest), 95) < 5  # on the floor
    head = clip.positions[:, JOINT["head_front"], 1]
    assert 140 < np.median(head) < 170  # cm
    lengths = np.median(skeleton.bone_lengths(clip.positions), axis=0)
    thigh = lengths[[k for k, bone in enumerate(skeleton.bones()) if bone == (16, 17)][0]]
    assert 40 < thigh < 56


# ---------------------------------------------------------------- rendering

def _probe(path: Path) -> str:
    done = subprocess.run([render.ffmpeg_executable(), "-hide_banner", "-i", str(path)], capture_output=True,
                          text=True)
    return done.stderr


def test_render_gif_and_mp4_with_music(tmp_path):
    import imageio.v3 as iio
    import imageio_ffmpeg

    motion = synthetic_motion(25)
    gif = render.render(tmp_path / "dance.gif", motion, fps=25, size=(160, 160), title="synthetic")
    frames = iio.imread(gif, index=None)
    assert frames.shape == (25, 160, 160, 3)
    assert frames.std() > 5  # something is drawn
    rate = 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(1.3 * rate)) / rate)  # longer than the motion: cut
    mp4 = render.render(tmp_path / "dance.mp4", motion, fps=25, audio=tone, sample_rate=rate, size=(160, 160))
    count, seconds = imageio_ffmpeg.count_frames_and_secs(str(mp4))
    assert count == 25 and seconds == pytest.approx(1.0, abs=0.05)
    probe = _probe(mp4)
    assert re.search(r"Stream #0:\d.*Video: h264", probe) and re.search(r"Stream #0:\d.*Audio: aac", probe)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dance.gif", "dance.mp4"]  # no temporary files left
    silent = render.render(tmp_path / "silent.mp4", motion[:5], size=(160, 160))
    assert "Audio:" not in _probe(silent)


def test_render_refuses_bad_requests(tmp_path):
    motion = synthetic_motion(3)
    (tmp_path / "taken.gif").write_bytes(b"x")
    with pytest.raises(MotionFileError, match="exists"):
        render.render(tmp_path / "taken.gif", motion, size=(64, 64))
    assert (tmp_path / "taken.gif").read_bytes() == b"x"
    with pytest.raises(MotionFileError, match=r"\.gif or \.mp4"):
        render.render(tmp_path / "a.avi", motion)
    with pytest.raises(MotionError, match="no sound"):
        render.render(tmp_path / "a.gif", motion, audio=np.zeros(100), sample_rate=8000)
    with pytest.raises(MotionError, match="sample_rate"):
        render.render(tmp_path / "a.mp4", motion, audio=np.zeros(100))
    with pytest.raises(MotionError, match="at least one frame"):
        render.render(tmp_path / "a.mp4", motion[:0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.gif"]


def test_a_video_on_a_full_disk_says_so(tmp_path):
    """ffmpeg's failure to write keeps its cause as an OSError (os_reason: "no space left on device"), not a line
    of ffmpeg's log; /dev/full stands for the full disk."""
    video = tmp_path / "full.mp4"
    video.symlink_to("/dev/full")
    with pytest.raises(OSError) as caught:
        render._encode(video, render.render_frames(synthetic_motion(3), size=(64, 64)), 25.0)
    assert caught.value.errno == 28 and caught.value.strerror == "No space left on device"
