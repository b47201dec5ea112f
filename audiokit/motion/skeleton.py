"""The 23-joint skeleton of the "Dance with Melody" dataset (Tang, Jia and Mao, ACM MM 2018), and mirroring.

Positions are float arrays ``[..., 23, 3]`` in **centimetres**, **y up**, right-handed (x, z horizontal), at
25 frames per second. Joint numbers are the dataset's; names and sides were worked out from the data
(all 36 dances of ``shared/data/dance_with_melody``, 58 000 frames), since the dataset gives none:

====  ====================  =====================================================================
 #    name                  where it is (mean over all frames, relative to the hip midpoint)
====  ====================  =====================================================================
 0    head_back             60 cm up; the back point of the head pair (see below)
 1    head_front            61 cm up; 10.5 cm from 0, mostly to the front-left of it
 2    spine                 15 cm up: the lower back, where the authors' drawing forks to the legs
 3    right_shoulder        44 cm up, 16 cm to the right
 4    right_elbow           29.6 cm from the shoulder
 5    right_wrist           11.7 cm from the elbow (on the elbow-hand line)
 6    right_hand            25.2 cm from the elbow
 7    right_hip             the hips are 21.3 cm apart
 8    right_knee            47.0 cm below the hip; the knee bends to the front
 9    right_ankle           32.5 cm below the knee
 10   right_heel            lowest but one, 10 cm behind the hip line
 11   right_toe             the lowest joint, 21.4 cm in front of the heel
 12   left_shoulder         as 3, mirrored
 13   left_elbow            28.9 cm from the shoulder
 14   left_wrist            17.3 cm from the elbow
 15   left_hand             23.6 cm from the elbow
 16   left_hip
 17   left_knee             48.2 cm
 18   left_ankle            33.0 cm
 19   left_heel
 20   left_toe              22.6 cm in front of the heel
 21   left_hand_dir         the left "hand direction" point: 12.0 cm from the left elbow, between it and 14
 22   right_hand_dir        the right one: 4.7 cm beyond the right hand (27.8 cm from the elbow)
====  ====================  =====================================================================

What the data says, and how it was checked:

* **Units and up axis.** y is up (the feet are 80-90 cm below the hip midpoint in every frame, the head
  about 60 cm above it); lengths are centimetres (thigh 47-48 cm, shin 32-33 cm, hip width 21 cm, a body
  about 150-160 cm tall).
* **The file's two arrays.** ``skeletons`` holds each frame's joints *relative to a per-frame centre* (their
  mean is within a few cm of 0) and ``center`` holds that centre's world track. The centre's x and z are
  right: added to the skeleton, the standing foot stays put (median speed of the slower foot 9-46 cm/s in
  world coordinates against 29-77 cm/s without, in four dances). Its y is not: it drifts by more than 40 cm
  over some dances (the whole dancer slowly floats off the floor), so
  :func:`audiokit.motion.dance_data.read_dance` removes the slow part of the drift and puts the floor at 0.
* **Left and right.** Forward is where the toes point (11 - 10) and where the knees bend; it is
  ``(p16 - p7) x up`` in all 36 dances. In a right-handed frame that makes 7-11 the right leg and 16-20
  the left one, and the shoulders 3 -> 12 point the same way as the hips 7 -> 16. (The data's handedness
  is not stated; were it left-handed, every "left" here would be the dancer's right. Mirroring does not
  depend on it.)
* **The README's joint list was wrong in part** ("3 and 12 hips, 4-6 and 13-15 legs, 7-11 and 16-20 arms"):
  4-6 and 13-15 are 35-48 cm *above* the hips (arms, held up as in a ballroom hold) and 7-11 / 16-20 reach
  the floor (legs), which is also how the authors' drawing code joins them (2 to the shoulder midpoint and
  to 7 and 16; 3-4-5-6 and 12-13-14-15; 7-8-9 and 16-17-18 then to the middle of 10-11 / 19-20).
* **Bone lengths are not constant**: the capture is noisy. Within a dance the length of a true bone varies
  by a coefficient of variation of 3-8 % (knee-ankle 3.4 %, hip width 3.5 %, thigh 6-8 %, upper arm 8 %),
  the head pair 13 % and the short hand bones 10-17 %; across dances the mean lengths agree within 1-5 %
  (one performer's size). The rigid trunk is the steadiest: spine to head, to each shoulder and to the
  shoulder midpoint 2.6-3.2 %, as are its diagonals (right shoulder to left hip 2.7 %). Pairs across a
  bending joint vary a little more (hip to ankle 8-9 %, shoulder to hand 11-14 %) and pairs on two limbs
  far more (hand to hand 14 %, ankle to ankle 38 %). So constancy alone does not single out the bones: the
  tree follows the authors' drawing code, the positions in the table and the steadiest of those pairs.
* **The head pair (0, 1)** is the noisiest bone. Seen from the shoulders, 0 -> 1 points forward-left in most
  frames (yaw 0-90 degrees, as a ballroom dancer's head turned left), so 1 is taken as the front; this is
  the weakest of these inferences.
* **The hand-direction points (21, 22)**, added by the authors for their Unity demo, are not placed alike on
  the two sides (see the table), so a mirrored dance has them at the other side's places.

``PARENTS`` is the tree over the 23 joints used for bone lengths (:func:`bone_lengths`); the BVH rig
(:data:`BVH_RIG`) adds three virtual joints: the hip midpoint ``pelvis`` (its root), the shoulder midpoint
``neck`` and the midpoint of the head pair, ``head``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audiokit.errors import MotionError

FPS = 25.0
"""Frames per second of the dataset."""

JOINT_NAMES = (
    "head_back", "head_front", "spine",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "right_hip", "right_knee", "right_ankle", "right_heel", "right_toe",
    "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "left_hip", "left_knee", "left_ankle", "left_heel", "left_toe",
    "left_hand_dir", "right_hand_dir",
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT = {name: i for i, name in enumerate(JOINT_NAMES)}

# The tree over the data joints (-1: root). The root is the spine point (2); head, shoulders and hips hang
# from it as in the authors' drawing (which draws 2 to the shoulder midpoint rather than to each shoulder,
# and the head from that midpoint); the head pair hangs from the spine by its back point (spine to head is
# a rigid 48 cm, 3 % variation), the hand-direction points from the hands.
PARENTS = (2, 0, -1, 2, 3, 4, 5, 2, 7, 8, 9, 9, 2, 12, 13, 14, 2, 16, 17, 18, 18, 15, 6)

# Left/right pairs (right, left); mirroring swaps them. The others (head, spine) map to themselves.
MIRROR_PAIRS = ((3, 12), (4, 13), (5, 14), (6, 15), (7, 16), (8, 17), (9, 18), (10, 19), (11, 20), (22, 21))
MIRROR_INDEX = np.arange(NUM_JOINTS)
for _right, _left in MIRROR_PAIRS:
    MIRROR_INDEX[_right], MIRROR_INDEX[_left] = _left, _right
MIRROR_INDEX.setflags(write=False)
del _right, _left

UP_AXIS = 1
"""y is up."""

FEET = (JOINT["right_heel"], JOINT["right_toe"], JOINT["left_heel"], JOINT["left_toe"])


def bones() -> list[tuple[int, int]]:
    """(parent, child) pairs of :data:`PARENTS`: the 22 bones of the data tree."""
    return [(p, c) for c, p in enumerate(PARENTS) if p >= 0]


def check_positions(positions, joints: int = NUM_JOINTS, what: str = "positions") -> np.ndarray:
    """``positions`` as a float array [..., joints, 3]; MotionError for another shape or NaN/Inf."""
    array = np.asarray(positions)
    if array.ndim < 2 or array.shape[-2:] != (joints, 3):
        raise MotionError(f"{what} must have shape [..., {joints}, 3], not {list(array.shape)}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise MotionError(f"{what} hold NaN or Inf")
    return array


def bone_lengths(positions) -> np.ndarray:
    """Lengths [..., 22] of the bones of :func:`bones` (same unit as ``positions`` [..., 23, 3])."""
    positions = check_positions(positions)
    parent, child = np.array(bones()).T
    return np.linalg.norm(positions[..., child, :] - positions[..., parent, :], axis=-1)


def mirror(positions, axis: int = 0) -> np.ndarray:
    """Left/right mirror image of ``positions`` [..., 23, 3] for augmentation: coordinate ``axis`` (0 = x or
    2 = z, a vertical plane through the origin) is negated and each left joint swapped with its right one,
    so the mirrored dancer is a valid 23-joint skeleton whose right leg does what the left one did.
    ``mirror(mirror(p)) == p``. Bone lengths move to the other side with their joints."""
    positions = check_positions(positions)
    if axis not in (0, 2):
        raise MotionError(f"mirror axis must be 0 (x) or 2 (z), the horizontal ones, not {axis}")
    out = positions[..., MIRROR_INDEX, :].copy()
    out[..., axis] = -out[..., axis]
    return out


@dataclass(frozen=True)
class RigJoint:
    """One joint of a BVH rig.

    ``source``: the data joint it sits on, or a tuple of data joints whose mean it is (a virtual joint).
    ``parent``: index in the rig (-1 for the root; parents come before children). ``rest``: the direction of
    the bone from the parent to this joint in the rest pose (any length; the writer scales it to the mean
    bone length). ``twist``: how this joint's rotation is fixed about its first child's bone: ``None``
    (minimal rotation from the parent's), ``"parent"`` (keep the incoming bone in the same plane) or the
    name of another child (keep that child in the same plane).
    """

    name: str
    source: int | tuple[int, ...]
    parent: int
    rest: tuple[float, float, float] | None
    twist: str | None = None


@dataclass(frozen=True)
class Rig:
    """A tree of :class:`RigJoint` over the joints of a positions array (see :mod:`audiokit.motion.bvh`)."""

    joints: tuple[RigJoint, ...]
    data_joints: int

    def __post_init__(self):
        names = [j.name for j in self.joints]
        if len(set(names)) != len(names):
            raise MotionError("rig joint names must be unique")
        for i, joint in enumerate(self.joints):
            if (joint.parent < 0) != (i == 0) or joint.parent >= i:
                raise MotionError(f"rig joint {joint.name!r}: the root must come first and parents before children")
            if i and joint.rest is None:
                raise MotionError(f"rig joint {joint.name!r} needs a rest direction")
        sources = [j.source for j in self.joints if isinstance(j.source, int)]
        if sorted(sources) != list(range(self.data_joints)):
            raise MotionError("each data joint must be on exactly one rig joint")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def parents(self) -> np.ndarray:
        return np.array([j.parent for j in self.joints])

    def children(self, index: int) -> list[int]:
        return [i for i, j in enumerate(self.joints) if j.parent == index]

    def data_index(self) -> np.ndarray:
        """For each data joint, the index of the rig joint that sits on it."""
        out = np.empty(self.data_joints, dtype=int)
        for i, joint in enumerate(self.joints):
            if isinstance(joint.source, int):
                out[joint.source] = i
        return out

    def expand(self, positions: np.ndarray) -> np.ndarray:
        """Rig joint positions [..., len(joints), 3] from data positions [..., data_joints, 3]."""
        positions = check_positions(positions, self.data_joints)
        return np.stack([positions[..., j.source, :] if isinstance(j.source, int)
                         else positions[..., list(j.source), :].mean(axis=-2) for j in self.joints], axis=-2)


_UP, _DOWN, _LEFT, _RIGHT, _FWD, _BACK = (0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1), (0, 0, -1)


def make_rig(spec, data_joints: int = NUM_JOINTS) -> Rig:
    """A :class:`Rig` from rows ``(name, source, parent name or None, rest direction, twist)``."""
    index = {row[0]: i for i, row in enumerate(spec)}
    return Rig(tuple(RigJoint(name, source, index[parent] if parent else -1, rest, twist)
                     for name, source, parent, rest, twist in spec), data_joints)


RIG_SPEC = [  # name, source, parent name, rest direction, twist
    ("pelvis", (7, 16), None, None, "spine"),
    ("left_hip", 16, "pelvis", _LEFT, None),
    ("right_hip", 7, "pelvis", _RIGHT, None),
    ("spine", 2, "pelvis", _UP, "left_shoulder"),
    ("neck", (3, 12), "spine", _UP, None),
    ("head", (0, 1), "neck", _UP, "parent"),
    ("head_front", 1, "head", _FWD, None),
    ("head_back", 0, "head", _BACK, None),
    ("left_shoulder", 12, "spine", (1, 1, 0), None),
    ("left_elbow", 13, "left_shoulder", _LEFT, None),
    ("left_wrist", 14, "left_elbow", _LEFT, None),
    ("left_hand", 15, "left_wrist", _LEFT, None),
    ("left_hand_dir", 21, "left_hand", _LEFT, None),
    ("right_shoulder", 3, "spine", (-1, 1, 0), None),
    ("right_elbow", 4, "right_shoulder", _RIGHT, None),
    ("right_wrist", 5, "right_elbow", _RIGHT, None),
    ("right_hand", 6, "right_wrist", _RIGHT, None),
    ("right_hand_dir", 22, "right_hand", _RIGHT, None),
    ("left_knee", 17, "left_hip", _DOWN, None),
    ("left_ankle", 18, "left_knee", _DOWN, "left_heel"),
    ("left_toe", 20, "left_ankle", (0, -1, 2), None),
    ("left_heel", 19, "left_ankle", (0, -1, -1), None),
    ("right_knee", 8, "right_hip", _DOWN, None),
    ("right_ankle", 9, "right_knee", _DOWN, "right_heel"),
    ("right_toe", 11, "right_ankle", (0, -1, 2), None),
    ("right_heel", 10, "right_ankle", (0, -1, -1), None),
]
"""The BVH rig of the dance skeleton: a T-pose facing +z (left is +x), y up."""

BVH_RIG = make_rig(RIG_SPEC)
