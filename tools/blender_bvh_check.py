"""Check that Blender imports our BVH files right: bone lengths and the posed joints, frame by frame.

    python tools/blender_bvh_check.py [DANCE_FOLDER] [--frames 200] [--blender blender]

writes a BVH of the dance (or of synthetic motion when no folder is given), has Blender (``apt-get install
blender``) import it in the background with its default BVH settings (forward -Z, up Y, scale 1), and
compares Blender's bone lengths with the BVH offsets and Blender's posed bone heads with the BVH's own
forward kinematics. Not part of the test suite (it needs Blender); run it after changing the BVH writer.

Run by Blender itself (``blender -b --python THIS -- BVH JSON``), it does the import and writes what it
found to JSON.
"""
from __future__ import annotations

import json
import sys


def inside_blender(bvh_path: str, json_path: str):
    import builtins

    import bpy

    try:  # Debian's Blender 3.4 runs its BVH add-on on Python 3.11, which dropped open(..., "rU")
        from io_anim_bvh import import_bvh
        import_bvh.open = lambda file, mode="r", *a, **k: builtins.open(file, mode.replace("U", ""), *a, **k)
    except ImportError:
        pass
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=bvh_path, global_scale=1.0, rotate_mode="NATIVE", axis_forward="-Z",
                            axis_up="Y", update_scene_fps=True, update_scene_duration=True)
    armature = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
    scene = bpy.context.scene
    lengths = {b.name: b.length for b in armature.data.bones}
    heads = []
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        heads.append({b.name: list(armature.matrix_world @ b.head) for b in armature.pose.bones})
    with open(json_path, "w") as f:
        json.dump({"lengths": lengths, "heads": heads, "fps": scene.render.fps / scene.render.fps_base}, f)


def main():
    import argparse
    import subprocess
    import tempfile
    from pathlib import Path

    import numpy as np

    from audiokit.motion import bvh, dance_data

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dance", nargs="?", help="a dance folder (default: synthetic motion from the tests)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--blender", default="blender")
    parser.add_argument("--stretch", action="store_true", help="write position channels on every joint")
    args = parser.parse_args()
    if args.dance:
        positions = dance_data.read_dance(args.dance, audio=False).positions[:args.frames].astype(np.float64)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_motion import synthetic_motion
        positions = synthetic_motion(args.frames)
    with tempfile.TemporaryDirectory() as work:
        path = bvh.write_bvh(Path(work) / "check.bvh", positions, stretch=args.stretch)
        out = Path(work) / "blender.json"
        command = [args.blender, "-b", "--factory-startup", "--python", __file__, "--", str(path), str(out)]
        done = subprocess.run(command, capture_output=True, text=True)
        if not out.exists():
            sys.exit(f"Blender did not write its result:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        found = json.loads(out.read_text())
        parsed = bvh.read_bvh(path)
    ours = parsed.positions()  # BVH frame: y up; Blender's import turns it to z up: (x, y, z) -> (x, -z, y)
    blender = np.array([[frame[name] for name in parsed.names] for frame in found["heads"]])
    blender = np.stack([blender[..., 0], blender[..., 2], -blender[..., 1]], axis=-1)
    frames = min(len(ours), len(blender))
    error = np.linalg.norm(blender[:frames] - ours[:frames], axis=-1)
    print(f"frames: BVH {len(ours)}, Blender {len(blender)}; fps {found['fps']:g} (file {parsed.fps:g})")
    print(f"posed joints, Blender against the BVH's forward kinematics: max {error.max():.4f}, "
          f"mean {error.mean():.5f} (file units)")
    worst = 0.0
    for j, name in enumerate(parsed.names):
        children = [c for c, p in enumerate(parsed.parents) if p == j]
        if len(children) == 1:  # Blender's bone runs to its one child
            expected = np.linalg.norm(parsed.offsets[children[0]])
            worst = max(worst, abs(found["lengths"][name] - expected))
    print(f"bone lengths (single-child joints), Blender against the BVH offsets: max difference {worst:.5f}")
    if error.max() > 1e-2 or worst > 1e-3 or len(blender) < len(ours):
        sys.exit("MISMATCH")
    print("OK")


if __name__ == "__main__":
    try:
        import bpy  # noqa: F401
    except ImportError:
        main()
    else:
        inside_blender(*sys.argv[sys.argv.index("--") + 1:][:2])
