"""Motion layer: the dance skeleton, reading dance data, BVH out and in, stick-figure video.

Beside ``audio`` in the layer order: it imports only ``audiokit.errors`` (and numpy, scipy, soundfile,
matplotlib, imageio-ffmpeg).
"""
