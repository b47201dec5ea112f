"""Motion layer: the dance skeleton, reading dance data, BVH out and in, stick-figure video.

Beside ``audio`` in the layer order: it imports only ``audiokit.errors`` and ``audiokit.audio`` (whose atomic file
writing it shares; and numpy, scipy, soundfile; matplotlib and imageio-ffmpeg when rendering:
``audiokit.motion.render.render``).
"""
from audiokit.motion.bvh import Bvh, fit_rig, read_bvh, write_bvh
from audiokit.motion.dance_data import DanceClip, find_dances, read_dance
from audiokit.motion.skeleton import BVH_RIG, FPS, JOINT_NAMES, MIRROR_PAIRS, NUM_JOINTS, PARENTS, bone_lengths, mirror

__all__ = ["BVH_RIG", "Bvh", "DanceClip", "FPS", "JOINT_NAMES", "MIRROR_PAIRS", "NUM_JOINTS", "PARENTS", "bone_lengths",
           "find_dances", "fit_rig", "mirror", "read_bvh", "read_dance", "write_bvh"]
