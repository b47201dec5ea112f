"""Joint positions to BVH (with per-joint rotations) and back.

Writing (:func:`write_bvh`, :func:`fit_rig`): positions [T, 23, 3] are placed on a rig
(:data:`audiokit.motion.skeleton.BVH_RIG`: the 23 joints plus three virtual ones, the hip midpoint ``pelvis``,
which is the root, the shoulder midpoint ``neck`` and the middle of the head pair, ``head``).

* **Rest pose.** A T-pose facing +z with y up (left is +x): each bone's OFFSET is its *mean length over the
  clip* along a fixed rest direction, so Blender builds bones of the right lengths. Where a joint has more
  than one child, the directions of the other children are their mean directions in that joint's frame over
  the clip (so a rigid group, such as the foot's ankle, heel and toe, keeps its real shape).
* **Rotations.** Each joint's global rotation takes the rest direction of its *first* child's bone exactly to
  the observed direction. The twist about that bone is fixed, per joint (``RigJoint.twist``), by a second
  child (the pelvis by the spine, the spine by the left shoulder, each ankle by its heel, the left wrist by
  the left hand-direction point), by the incoming bone (the head), or else is the minimal rotation from the
  parent's (swing only: no twist about the bone relative to the parent). Where the second vector is
  parallel to the bone, that frame falls back to the swing. A joint without children (toe, heel, hands,
  head points) takes its parent's rotation. Local rotation = parent's global rotation transposed times
  the joint's.
* **Channels.** The root has ``Xposition Yposition Zposition Zrotation Yrotation Xrotation``, every other
  joint ``Zrotation Yrotation Xrotation``: the local rotation is ``Rz(z) @ Ry(y) @ Rx(x)`` acting on column
  vectors, angles in degrees, unwrapped over time (no 360-degree jumps). The root's OFFSET is 0 and its
  position channels are the hip midpoint's world position. Leaves end with an End Site a quarter of their
  bone's length further on. Units are the positions' (centimetres for the dance data) times ``scale``; in
  Blender's BVH import use Scale 0.01 for centimetres, forward -Z, up Y (its defaults). Checked with
  ``tools/blender_bvh_check.py`` in Blender 3.4.1 on real dances: its bone lengths equal the offsets (to
  1e-5 cm) and its posed joints this module's forward kinematics (to 1e-4 cm), with and without ``stretch``.

So reading the file back (:func:`read_bvh`, forward kinematics in :meth:`Bvh.positions`) gives each joint at
its parent's position plus the observed bone *direction* times the bone's *mean* length. Where lengths are
constant and each multi-child joint's children keep their shape (a rigid rig; synthetic motion), the
positions come back to rounding error (about 1e-5 cm). On the real dance data, whose bone lengths vary by
3-8 % (see :mod:`audiokit.motion.skeleton`), the error is that variation added up along each chain, plus the
change of shape of the trunk and feet (:func:`roundtrip_error`): over all 36 dances a mean of 2.7 cm (95th
percentile 8.5 cm), from 0.3 cm at the hips to 4 cm at heels and toes. Scaling each bone to its mean length
alone accounts for about 2 cm of it. ``stretch=True`` writes the positions exactly instead.

Reading (:func:`read_bvh`) takes any BVH file: one or more roots, any channel lists and orders; position
channels on a joint replace its OFFSET (as Blender reads them).
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from audiokit.audio.io import file_kind
from audiokit.errors import MotionError, MotionFileError
from audiokit.motion.files import replace_atomically
from audiokit.motion.rotations import axis_rotation, euler_to_matrix, frame, matrix_to_euler_zyx, normalize, swing
from audiokit.motion.skeleton import BVH_RIG, FPS, Rig, check_positions

END_SITE_FRACTION = 0.25


@dataclass
class RigFit:
    """Positions placed on a rig: rest ``offsets`` [J, 3] (from each joint's parent; the root's is 0), global
    ``rotations`` [T, J, 3, 3] and the ``root`` track [T, 3]."""

    rig: Rig
    offsets: np.ndarray
    rotations: np.ndarray
    root: np.ndarray

    def local_rotations(self) -> np.ndarray:
        """[T, J, 3, 3]: each joint's rotation relative to its parent's (the root's is global)."""
        parents = self.rig.parents
        out = self.rotations.copy()
        child = parents >= 0
        out[:, child] = np.swapaxes(self.rotations[:, parents[child]], -1, -2) @ self.rotations[:, child]
        return out

    def positions(self) -> np.ndarray:
        """Forward kinematics of the fit: rig joint positions [T, J, 3]."""
        out = np.empty(self.rotations.shape[:2] + (3,))
        for j, joint in enumerate(self.rig.joints):
            if joint.parent < 0:
                out[:, j] = self.root
            else:
                out[:, j] = out[:, joint.parent] + self.rotations[:, joint.parent] @ self.offsets[j]
        return out


def fit_rig(positions, rig: Rig = BVH_RIG, rest: np.ndarray | None = None) -> RigFit:
    """Rest offsets and per-joint rotations for ``positions`` [T, data joints, 3] (see the module docstring).

    ``rest``: rest offsets [J, 3] to use instead of the clip's own (e.g. one skeleton for many clips); the
    rotations then take those directions to the observed ones.
    """
    positions = check_positions(positions, rig.data_joints)
    if positions.ndim != 3 or positions.shape[0] < 1:
        raise MotionError(f"positions must have shape [frames, {rig.data_joints}, 3], not {list(positions.shape)}")
    p = rig.expand(positions.astype(np.float64))
    frames, joints = p.shape[:2]
    if rest is None:
        offsets = np.zeros((joints, 3))
        for j, joint in enumerate(rig.joints):
            if joint.parent >= 0:
                length = np.linalg.norm(p[:, j] - p[:, joint.parent], axis=-1).mean()
                offsets[j] = normalize(np.asarray(joint.rest, dtype=np.float64)) * length
    else:
        offsets = np.array(rest, dtype=np.float64)
        if offsets.shape != (joints, 3) or not np.isfinite(offsets).all():
            raise MotionError(f"rest offsets must be finite with shape [{joints}, 3], not {list(offsets.shape)}")
    rotations = np.empty((frames, joints, 3, 3))
    identity = np.broadcast_to(np.eye(3), (frames, 3, 3))
    for j, joint in enumerate(rig.joints):
        parent_rotation = rotations[:, joint.parent] if joint.parent >= 0 else identity
        children = rig.children(j)
        if not children:
            rotations[:, j] = parent_rotation
            continue
        first = children[0]
        bone = p[:, first] - p[:, j]
        swung = swing(parent_rotation @ offsets[first], bone) @ parent_rotation
        if joint.twist is None:
            if len(children) > 1:
                raise MotionError(f"rig joint {joint.name!r} has several children and needs a twist reference")
            rotations[:, j] = swung
            continue
        if joint.twist == "parent":
            if joint.parent < 0:
                raise MotionError(f"rig root {joint.name!r} cannot take its twist from a parent")
            reference, rest_reference = p[:, j] - p[:, joint.parent], offsets[j]
        else:
            k = rig.names.index(joint.twist) if joint.twist in rig.names else -1
            if k not in children or k == first:
                raise MotionError(f"rig joint {joint.name!r}: twist reference {joint.twist!r} is not another child")
            reference, rest_reference = p[:, k] - p[:, j], offsets[k]
        observed, degenerate = frame(bone, reference)
        rest_frame, _ = frame(offsets[first], rest_reference)
        rotation = observed @ rest_frame.T
        rotations[:, j] = np.where(degenerate[:, None, None], swung, rotation)
        if rest is None:  # the other children: their mean direction in this joint's frame
            for c in children[1:]:
                local = np.swapaxes(rotations[:, j], -1, -2) @ normalize(p[:, c] - p[:, j])[..., None]
                offsets[c] = normalize(local[..., 0].mean(axis=0)) * np.linalg.norm(offsets[c])
    return RigFit(rig, offsets, rotations, p[:, 0].copy())


def roundtrip_error(positions, rig: Rig = BVH_RIG) -> np.ndarray:
    """Distance [T, data joints] between ``positions`` and their rig fit's forward kinematics (what a BVH
    written from them gives back, before the text's rounding), in the positions' unit."""
    positions = check_positions(positions, rig.data_joints)
    fit = fit_rig(positions, rig)
    return np.linalg.norm(fit.positions()[:, rig.data_index()] - positions, axis=-1)


def bvh_text(positions, fps: float = FPS, rig: Rig = BVH_RIG, scale: float = 1.0, rest: np.ndarray | None = None,
             stretch: bool = False, decimals: int = 6) -> str:
    """The BVH file for ``positions`` [T, data joints, 3] at ``fps`` frames per second (see the module
    docstring); lengths are multiplied by ``scale``. With ``stretch`` every joint also gets position channels
    holding its bone's observed length and direction, so that the file reproduces the positions exactly
    (bone lengths then change over time; Blender reads such channels, some tools do not)."""
    if not (np.isfinite(fps) and fps > 0):
        raise MotionError(f"fps must be positive, not {fps}")
    if not (np.isfinite(scale) and scale > 0):
        raise MotionError(f"scale must be positive, not {scale}")
    fit = fit_rig(positions, rig, rest)
    angles = np.degrees(np.unwrap(matrix_to_euler_zyx(fit.local_rotations()), axis=0))  # [T, J, 3] (z, y, x)
    order = _depth_first(rig)
    if stretch:
        parents = rig.parents
        rig_positions = rig.expand(np.asarray(positions, dtype=np.float64))
        local = np.zeros_like(rig_positions)
        child = parents >= 0
        delta = rig_positions[:, child] - rig_positions[:, parents[child]]
        local[:, child] = (np.swapaxes(fit.rotations[:, parents[child]], -1, -2) @ delta[..., None])[..., 0]
        columns = [fit.root * scale, angles[:, 0]]
        columns += [c for j in order[1:] for c in (local[:, j] * scale, angles[:, j])]
    else:
        columns = [fit.root * scale, angles[:, 0]] + [angles[:, j] for j in order[1:]]
    motion = np.concatenate(columns, axis=1)
    number = f"{{:.{decimals}f}}"
    lines = ["HIERARCHY"]

    def declare(j: int, depth: int):
        tab = "\t" * depth
        joint = rig.joints[j]
        offset = fit.offsets[j] * scale
        lines.append(f"{tab}{'ROOT' if joint.parent < 0 else 'JOINT'} {joint.name}")
        lines.append(f"{tab}{{")
        lines.append(f"{tab}\tOFFSET " + " ".join(number.format(v) for v in offset))
        channels = "6 Xposition Yposition Zposition " if joint.parent < 0 or stretch else "3 "
        lines.append(f"{tab}\tCHANNELS {channels}Zrotation Yrotation Xrotation")
        children = rig.children(j)
        for c in children:
            declare(c, depth + 1)
        if not children:
            end = " ".join(number.format(v) for v in offset * END_SITE_FRACTION)
            lines.extend([f"{tab}\tEnd Site", f"{tab}\t{{", f"{tab}\t\tOFFSET {end}", f"{tab}\t}}"])
        lines.append(f"{tab}}}")

    declare(0, 0)
    lines += ["MOTION", f"Frames: {len(motion)}", f"Frame Time: {1.0 / fps:.8f}"]
    buffer = io.StringIO()
    np.savetxt(buffer, motion, fmt=f"%.{decimals}f", delimiter=" ")
    return "\n".join(lines) + "\n" + buffer.getvalue()


def write_bvh(path: str | os.PathLike, positions, fps: float = FPS, rig: Rig = BVH_RIG, scale: float = 1.0,
              rest: np.ndarray | None = None, stretch: bool = False, force: bool = False) -> Path:
    """Write ``positions`` [T, 23, 3] as a BVH file (see :func:`bvh_text`), atomically: to a temporary file,
    then renamed. Refuses to overwrite unless ``force``; creates the folder. Returns the path."""
    return replace_atomically(path, bvh_writer(positions, fps, rig, scale, rest, stretch), force)


def bvh_writer(positions, fps: float = FPS, rig: Rig = BVH_RIG, scale: float = 1.0, rest: np.ndarray | None = None,
               stretch: bool = False) -> Callable[[Path], object]:
    """The BVH text of ``positions`` made now (:func:`bvh_text`; MotionError for bad positions), and a function
    ``write(tmp)`` writing it to ``tmp``, for :func:`audiokit.motion.files.write_together`."""
    text = bvh_text(positions, fps, rig, scale, rest, stretch)
    return lambda tmp: tmp.write_text(text, encoding="ascii")


def _depth_first(rig: Rig) -> list[int]:
    order = []

    def visit(j):
        order.append(j)
        for c in rig.children(j):
            visit(c)

    visit(0)
    return order


@dataclass
class Bvh:
    """A parsed BVH file. Joints are in the file's order (depth first); ``parents`` [J] (-1 for a root),
    ``offsets`` [J, 3], ``channels`` (per joint, e.g. ``["Xposition", ..., "Zrotation", ...]``),
    ``end_sites`` (joint index -> End Site offset), ``motion`` [T, total channels], ``frame_time`` in seconds."""

    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    channels: list[list[str]]
    motion: np.ndarray
    frame_time: float
    end_sites: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def frames(self) -> int:
        return len(self.motion)

    def transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """Local rotations [T, J, 3, 3] and translations [T, J, 3] of every joint in every frame."""
        frames, joints = len(self.motion), len(self.names)
        rotations = np.broadcast_to(np.eye(3), (frames, joints, 3, 3)).copy()
        translations = np.broadcast_to(self.offsets, (frames, joints, 3)).copy()
        column = 0
        for j, channels in enumerate(self.channels):
            values = self.motion[:, column:column + len(channels)]
            column += len(channels)
            axes = [name[0].lower() for name in channels if name.lower().endswith("rotation")]
            if axes:
                angles = np.radians(values[:, [k for k, n in enumerate(channels) if n.lower().endswith("rotation")]])
                rotations[:, j] = euler_to_matrix(angles, "".join(axes)) if len(axes) == 3 else \
                    _rotation_product(angles, axes)
            for k, name in enumerate(channels):
                if name.lower().endswith("position"):
                    translations[:, j, "xyz".index(name[0].lower())] = values[:, k]
        return rotations, translations

    def positions(self, end_sites: bool = False) -> np.ndarray:
        """World positions [T, J, 3] by forward kinematics (with ``end_sites``: [T, J + E, 3], the End Sites
        after the joints, in ``sorted(end_sites)`` order)."""
        local_rotations, translations = self.transforms()
        rotations = np.empty_like(local_rotations)
        out = np.empty_like(translations)
        for j, parent in enumerate(self.parents):
            if parent < 0:
                rotations[:, j], out[:, j] = local_rotations[:, j], translations[:, j]
            else:
                rotations[:, j] = rotations[:, parent] @ local_rotations[:, j]
                out[:, j] = out[:, parent] + (rotations[:, parent] @ translations[:, j, :, None])[..., 0]
        if end_sites and self.end_sites:
            ends = [out[:, j] + rotations[:, j] @ self.end_sites[j] for j in sorted(self.end_sites)]
            out = np.concatenate([out, np.stack(ends, axis=1)], axis=1)
        return out

    def data_positions(self, rig: Rig = BVH_RIG) -> np.ndarray:
        """Positions [T, data joints, 3] of ``rig``'s data joints, found by name (MotionError if missing)."""
        missing = [rig.joints[i].name for i in rig.data_index() if rig.joints[i].name not in self.names]
        if missing:
            raise MotionError(f"the BVH lacks the joints {', '.join(missing)}")
        return self.positions()[:, [self.names.index(rig.joints[i].name) for i in rig.data_index()]]


def _rotation_product(angles, axes) -> np.ndarray:
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for k, axis in enumerate(axes):
        out = out @ axis_rotation(axis, angles[..., k])
    return out


_CHANNEL = re.compile(r"^[XYZxyz](position|rotation)$", re.IGNORECASE)


def read_bvh(path: str | os.PathLike) -> Bvh:
    """Parse a BVH file; MotionFileError (one line, with the line number) for anything malformed."""
    path = Path(path)
    if not path.is_file():  # (a FIFO or a device could be read forever)
        problem = "no such file" if not path.exists() else "is a folder, not a BVH file" if path.is_dir() else \
            f"not a regular file (a {file_kind(path.stat().st_mode)})"
        raise MotionFileError(path, problem)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise MotionFileError(path, f"cannot read ({exc.strerror or exc})") from exc
    try:
        return _parse(text)
    except _ParseError as exc:
        raise MotionFileError(path, f"not a valid BVH file: {exc}") from None


class _ParseError(Exception):
    pass


def parse_bvh(text: str) -> Bvh:
    """Parse BVH ``text`` (see :func:`read_bvh`); raises MotionError on malformed text."""
    try:
        return _parse(text)
    except _ParseError as exc:
        raise MotionError(f"not a valid BVH file: {exc}") from None


def _parse(text: str) -> Bvh:
    lines = text.splitlines()
    names, parents, offsets, channels, end_sites = [], [], [], [], {}
    stack: list[int] = []  # open joints; -2 marks an open End Site
    number = 0
    motion_line = None
    pending = None  # a joint or End Site declared, waiting for its "{"
    seen_hierarchy = False
    end_owner = -1

    def fail(message):
        raise _ParseError(f"line {number}: {message}")

    def floats(tokens, count, what):
        if len(tokens) != count:
            fail(f"{what} needs {count} numbers")
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            fail(f"{what} holds a non-number")
        if not np.isfinite(values).all():
            fail(f"{what} holds NaN or Inf")
        return values

    for number, raw in enumerate(lines, start=1):
        tokens = raw.split()
        if not tokens:
            continue
        key = tokens[0].upper()
        if not seen_hierarchy:
            if key != "HIERARCHY":
                fail("expected HIERARCHY")
            seen_hierarchy = True
            continue
        if key in ("ROOT", "JOINT"):
            name = " ".join(t for t in tokens[1:] if t != "{").strip()
            if not name:
                fail(f"{key} without a name")
            if key == "ROOT" and stack:
                fail("ROOT inside another joint")
            if key == "JOINT" and (not stack or stack[-1] < 0):
                fail("JOINT outside a joint")
            names.append(name)
            parents.append(stack[-1] if stack else -1)
            offsets.append(None)
            channels.append([])
            pending = len(names) - 1
            if tokens[-1] == "{":
                stack.append(pending)
                pending = None
        elif key == "END":
            if not stack or stack[-1] < 0:
                fail("End Site outside a joint")
            pending = -2
            end_owner = stack[-1]
            if tokens[-1] == "{":
                stack.append(-2)
                pending = None
        elif key == "{":
            if pending is None:
                fail("unexpected {")
            stack.append(pending)
            pending = None
        elif key == "}":
            if not stack:
                fail("unexpected }")
            closed = stack.pop()
            if closed >= 0 and offsets[closed] is None:
                fail(f"joint {names[closed]!r} has no OFFSET")
        elif key == "OFFSET":
            if not stack:
                fail("OFFSET outside a joint")
            values = floats(tokens[1:], 3, "OFFSET")
            if stack[-1] == -2:
                end_sites[end_owner] = np.array(values)
            else:
                offsets[stack[-1]] = values
        elif key == "CHANNELS":
            if not stack or stack[-1] < 0:
                fail("CHANNELS outside a joint")
            try:
                count = int(tokens[1])
            except (IndexError, ValueError):
                fail("CHANNELS needs a count")
            listed = tokens[2:]
            if len(listed) != count or not all(_CHANNEL.match(t) for t in listed):
                fail(f"CHANNELS {count} must list {count} of Xposition..Zrotation")
            channels[stack[-1]] = listed
        elif key == "MOTION":
            if stack or pending is not None:
                fail("MOTION before the hierarchy is closed")
            motion_line = number
            break
        else:
            fail(f"unexpected {tokens[0]!r}")
    if motion_line is None:
        raise _ParseError("no MOTION section")
    if not names:
        raise _ParseError("no joints")
    rest = lines[motion_line:]
    header = [(i, line.split()) for i, line in enumerate(rest) if line.strip()][:2]
    if len(header) < 2:
        raise _ParseError("MOTION needs 'Frames:' and 'Frame Time:' lines")
    (i1, frames_tokens), (i2, time_tokens) = header
    number = motion_line + i1 + 1
    if len(frames_tokens) != 2 or frames_tokens[0].lower() != "frames:" or not frames_tokens[1].isdigit():
        fail("expected 'Frames: <count>'")
    frames = int(frames_tokens[1])
    number = motion_line + i2 + 1
    if len(time_tokens) != 3 or [t.lower() for t in time_tokens[:2]] != ["frame", "time:"]:
        fail("expected 'Frame Time: <seconds>'")
    frame_time = floats(time_tokens[2:], 1, "Frame Time")[0]
    if not frame_time > 0:
        fail("Frame Time must be positive")
    width = sum(len(c) for c in channels)
    try:
        values = np.array(" ".join(rest[i2 + 1:]).split(), dtype=np.float64)
    except ValueError:
        raise _ParseError("the motion data holds a non-number") from None
    if values.size != frames * width:
        raise _ParseError(f"expected {frames} frames of {width} channels ({frames * width} numbers), "
                          f"found {values.size} numbers")
    if not np.isfinite(values).all():
        raise _ParseError("the motion data holds NaN or Inf")
    return Bvh(names, np.array(parents), np.array(offsets, dtype=np.float64), channels,
               values.reshape(frames, width), frame_time, end_sites)
