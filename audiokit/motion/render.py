"""Stick-figure video of joint positions: GIF, or MP4 with the music muxed in.

Frames are drawn with matplotlib (its Agg canvas, no window, no pyplot state) as a 3-D stick figure: the
dancer's left side blue, right side red, trunk and head black, on a floor grid that stays fixed in the world
while the camera follows the dancer's hips (smoothed over a second), so travel across the floor shows. Frames
are piped to the ffmpeg that the ``imageio-ffmpeg`` package ships, one at a time (a long dance never sits
in memory): H.264 (yuv420p) with AAC music for MP4, a fixed palette of the drawing's colours for GIF.
Files are written to a temporary name beside the target and renamed when complete.

Positions are [T, 23, 3] in centimetres with y up (:mod:`audiokit.motion.skeleton`); other sizes work if
``unit_cm`` says how many centimetres one unit is.
"""
from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from audiokit.errors import MotionError, MotionFileError
from audiokit.motion.files import replace_atomically
from audiokit.motion.skeleton import BVH_RIG, FPS, UP_AXIS, check_positions

BACKGROUND = (1.0, 1.0, 1.0)
COLOURS = {"left": (0.12, 0.35, 0.85), "right": (0.85, 0.15, 0.12), "centre": (0.1, 0.1, 0.1),
           "floor": (0.6, 0.6, 0.6)}
VIEW_HALF_WIDTH_CM = 110.0
HEIGHT_CM = 200.0
GRID_CM = 50.0


def _segments() -> list[tuple[int, int, str]]:
    """(rig joint, rig joint, colour name) for each line of the figure."""
    names = BVH_RIG.names
    pairs = [(BVH_RIG.joints[j.parent].name, j.name) for j in BVH_RIG.joints if j.parent >= 0]
    pairs = [("neck", child) if child.endswith("_shoulder") else (parent, child) for parent, child in pairs]
    pairs += [("left_heel", "left_toe"), ("right_heel", "right_toe")]
    out = []
    for a, b in pairs:
        side = "left" if b.startswith("left_") else "right" if b.startswith("right_") else "centre"
        out.append((names.index(a), names.index(b), side))
    return out


def _even(n: float) -> int:
    return max(2, int(round(n / 2)) * 2)


def render_frames(positions, fps: float = FPS, size: tuple[int, int] = (480, 480), title: str | None = None,
                  unit_cm: float = 1.0, clock: bool = True) -> Iterator[np.ndarray]:
    """Yield one RGB frame (uint8 [height, width, 3], both even) per pose of ``positions`` [T, 23, 3]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    positions = check_positions(positions)
    if positions.ndim != 3 or len(positions) == 0:
        raise MotionError(f"positions must have shape [frames, 23, 3] with at least one frame, not "
                          f"{list(positions.shape)}")
    width, height = _even(size[0]), _even(size[1])
    rig = BVH_RIG.expand(positions * unit_cm)  # centimetres
    # plot axes (X, Y, Z up) = (x, -z, y): a proper rotation, so left stays left
    plot = np.stack([rig[..., 0], -rig[..., 2], rig[..., UP_AXIS]], axis=-1)
    hips = plot[:, 0, :2]
    window = max(1, int(round(fps)))
    kernel = np.ones(window) / window
    padded = np.pad(hips, ((window // 2, window - 1 - window // 2), (0, 0)), mode="edge")
    centre = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(2)], axis=-1)

    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=BACKGROUND)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1), projection="3d", facecolor=BACKGROUND)
    axes.set_axis_off()
    axes.view_init(elev=12, azim=-70)
    axes.set_box_aspect((1, 1, HEIGHT_CM / (2 * VIEW_HALF_WIDTH_CM)), zoom=1.45)
    segments = _segments()
    lines = [axes.plot([], [], [], color=COLOURS[side], linewidth=2.5, solid_capstyle="round")[0]
             for _a, _b, side in segments]
    head = BVH_RIG.names.index("head")
    head_marker = axes.plot([], [], [], linestyle="", marker="o", markersize=13, markerfacecolor=BACKGROUND,
                            markeredgecolor=COLOURS["centre"], markeredgewidth=2)[0]
    ticks = int(2 * VIEW_HALF_WIDTH_CM // GRID_CM) + 2
    grid = [axes.plot([], [], [], color=COLOURS["floor"], linewidth=0.8)[0] for _ in range(2 * ticks)]
    text = figure.text(0.02, 0.97, "", fontsize=9, va="top", color=COLOURS["centre"])
    for t in range(len(plot)):
        cx, cy = centre[t]
        half = VIEW_HALF_WIDTH_CM
        x0, x1, y0, y1 = cx - half, cx + half, cy - half, cy + half
        axes.set_xlim(x0, x1)
        axes.set_ylim(y0, y1)
        axes.set_zlim(0, HEIGHT_CM)
        first_x, first_y = np.ceil(x0 / GRID_CM) * GRID_CM, np.ceil(y0 / GRID_CM) * GRID_CM
        for k in range(ticks):
            gx, gy = first_x + k * GRID_CM, first_y + k * GRID_CM
            grid[2 * k].set_data_3d(*(([gx, gx], [y0, y1], [0, 0]) if gx <= x1 else ([], [], [])))
            grid[2 * k + 1].set_data_3d(*(([x0, x1], [gy, gy], [0, 0]) if gy <= y1 else ([], [], [])))
        pose = plot[t]
        for line, (a, b, _side) in zip(lines, segments):
            line.set_data_3d(pose[[a, b], 0], pose[[a, b], 1], pose[[a, b], 2])
        head_marker.set_data_3d(pose[[head], 0], pose[[head], 1], pose[[head], 2])
        label = [title] if title else []
        if clock:
            label.append(f"{t / fps:6.2f} s")
        text.set_text("   ".join(label))
        canvas.draw()
        frame = np.asarray(canvas.buffer_rgba())[..., :3]
        yield np.ascontiguousarray(frame[:height, :width])


def ffmpeg_executable() -> str:
    """The ffmpeg binary that imageio-ffmpeg ships (MotionError if the package is missing)."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise MotionError("rendering video needs the imageio-ffmpeg package (pip install imageio-ffmpeg)") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def _palette(path: Path):
    """A 16x16 PNG palette: ramps from the background to each drawing colour (for GIF)."""
    colours = [COLOURS["centre"], COLOURS["left"], COLOURS["right"], COLOURS["floor"]]
    ramp = np.linspace(0, 1, 64)[:, None]
    rows = [np.array(BACKGROUND) * (1 - ramp) + np.array(c) * ramp for c in colours]
    image = (np.concatenate(rows).reshape(16, 16, 3) * 255).round().astype(np.uint8)
    from matplotlib.image import imsave
    imsave(path, image)


def _encode(path: Path, frames: Iterator[np.ndarray], fps: float, audio: Path | None = None,
            palette: Path | None = None):
    first = next(frames)
    height, width = first.shape[:2]
    command = [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", f"{fps:g}",
               "-i", "pipe:0"]
    if path.suffix.lower() == ".gif":
        command += ["-i", str(palette), "-lavfi", "[0:v][1:v]paletteuse=dither=none", "-loop", "0", str(path)]
    else:
        if audio is not None:
            command += ["-i", str(audio)]
        command += ["-map", "0:v:0"] + (["-map", "1:a:0", "-c:a", "aac", "-b:a", "160k"] if audio is not None else [])
        command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(path)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        try:
            for frame in _chain(first, frames):
                process.stdin.write(frame.tobytes())
        except BrokenPipeError:
            pass
        finally:
            process.stdin.close()
            code = process.wait()
        log.seek(0)
        message = " ".join(log.read().decode("utf-8", "replace").split())
    if code != 0:
        for cause in _SYSTEM_CAUSES:  # ffmpeg says the system's reason (strerror) in its log: keep it as such
            if os.strerror(cause) in message:
                raise OSError(cause, os.strerror(cause))
        raise OSError(f"ffmpeg failed (exit {code}): {message[-400:] or 'no message'}")


#: failures of the system that ffmpeg reports in its log, turned back into their OSError
_SYSTEM_CAUSES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG, errno.EIO)


def _chain(first, rest):
    yield first
    yield from rest


def render(path: str | os.PathLike, positions, fps: float = FPS, audio=None, sample_rate: int | None = None,
           size: tuple[int, int] = (480, 480), title: str | None = None, unit_cm: float = 1.0,
           force: bool = False) -> Path:
    """Render ``positions`` [T, 23, 3] to ``path``: ``.gif``, or ``.mp4`` with ``audio`` (float [samples] or
    [samples, channels], at ``sample_rate``) as its soundtrack, cut or padded with silence to the video's
    length ``T / fps``. Refuses to overwrite unless ``force``. Returns the path."""
    return replace_atomically(path, video_writer(path, positions, fps, audio, sample_rate, size, title, unit_cm),
                              force)


def video_writer(path: str | os.PathLike, positions, fps: float = FPS, audio=None, sample_rate: int | None = None,
                 size: tuple[int, int] = (480, 480), title: str | None = None,
                 unit_cm: float = 1.0) -> Callable[[Path], None]:
    """The arguments of :func:`render` checked now (MotionError, MotionFileError), and a function ``write(tmp)``
    that renders the video to ``tmp`` (a file name with ``path``'s extension), for
    :func:`audiokit.motion.files.write_together`."""
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".gif", ".mp4"):
        raise MotionFileError(path, "can only render to .gif or .mp4")
    if not (np.isfinite(fps) and fps > 0):
        raise MotionError(f"fps must be positive, not {fps}")
    positions = check_positions(positions)
    if positions.ndim != 3 or len(positions) == 0:
        raise MotionError(f"positions must have shape [frames, 23, 3] with at least one frame, not "
                          f"{list(positions.shape)}")
    music = None
    if audio is not None:
        if kind == ".gif":
            raise MotionError("a GIF has no sound: render to .mp4 to mux in the music")
        music = np.asarray(audio, dtype=np.float32)
        if music.ndim not in (1, 2) or music.shape[0] == 0 or not np.isfinite(music).all():
            raise MotionError(f"audio must be finite samples [samples] or [samples, channels], not {list(music.shape)}")
        if not sample_rate or sample_rate <= 0:
            raise MotionError("audio needs its sample_rate")
        samples = int(round(len(positions) / fps * sample_rate))
        music = music[:samples]
        if len(music) < samples:
            music = np.concatenate([music, np.zeros((samples - len(music),) + music.shape[1:], np.float32)])

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="audiokit-render-") as work:
            extra = Path(work) / ("palette.png" if kind == ".gif" else "music.wav")
            if kind == ".gif":
                _palette(extra)
            elif music is not None:
                sf.write(extra, music, int(sample_rate), subtype="FLOAT")
            frames = render_frames(positions, fps, size, title, unit_cm)
            _encode(tmp, frames, fps, audio=extra if music is not None else None,
                    palette=extra if kind == ".gif" else None)

    return write
