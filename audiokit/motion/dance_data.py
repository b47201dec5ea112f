"""Reading one dance of the "Dance with Melody" dataset in its own layout.

A dance is a folder (``DANCE_<style>_<n>``, style C cha-cha, R rumba, T tango, W waltz) holding

* ``skeletons.json`` or ``skeletons.json.gz``: ``{"length": T, "center": [T][3], "skeletons": [T][23][3]}``,
  25 frames per second, centimetres, y up; ``skeletons`` are relative to the per-frame ``center``;
* ``config.json``: ``start_position`` and ``end_position``, the danced span of the music in 25 fps frames;
* the music, ``audio.*`` in any format libsndfile reads (``audio.mp3`` in the original download, the whole
  song; ``audio.ogg`` in ``shared/data``, already cut to the span).

:func:`read_dance` returns world positions [T, 23, 3] in centimetres with y up and the floor at y = 0 (see
``ground``), the music of the danced span (mono float32) and its sample rate. Motion frame t belongs to music
time ``t / 25`` s from the start of the span. The motion is often a little shorter than the span (by 1-56
frames, at most 2.2 s, in the 36 dances here); ``trim`` cuts the music to the motion's length.

Every problem with a folder raises :class:`audiokit.errors.MotionFileError` naming the file and the problem.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from audiokit.audio.io import open_audio
from audiokit.errors import AudioError, MotionFileError
from audiokit.motion.skeleton import FPS, NUM_JOINTS, UP_AXIS

STYLES = {"C": "cha-cha", "R": "rumba", "T": "tango", "W": "waltz"}
SKELETON_FILES = ("skeletons.json", "skeletons.json.gz")
AUDIO_PREFERENCE = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
VALID_DANCES = ("DANCE_C_7", "DANCE_R_7", "DANCE_W_29")
"""Held out for validation (choosing the checkpoint): one cha-cha, rumba and waltz."""
TEST_DANCES = ("DANCE_C_6", "DANCE_R_5", "DANCE_W_30")
"""Held out for test (never trained on nor used to choose; scored by ``audiokit evaluate --dance``)."""
DRIFT_WINDOW_S = 2.0
"""Width of the running median that takes the slow drift out of the centre's height (see ``ground``)."""


@dataclass
class DanceClip:
    """One dance: ``positions`` [T, 23, 3] float32 (cm, y up), ``audio`` [samples] float32 mono, the danced
    span of the music (cut to ``T / fps`` s when read with ``trim``)."""

    name: str
    positions: np.ndarray
    fps: float
    audio: np.ndarray
    sample_rate: int
    style: str | None = None
    config: dict = field(default_factory=dict)
    center: np.ndarray | None = None
    """The file's raw ``center`` track [T, 3]."""

    @property
    def frames(self) -> int:
        return len(self.positions)

    @property
    def duration(self) -> float:
        """Seconds of motion."""
        return self.frames / self.fps


def style_of(name: str) -> str | None:
    """The dance style from a folder name such as ``DANCE_W_12`` ("waltz"), else None."""
    match = re.fullmatch(r"DANCE_([A-Z])_\d+", name)
    return STYLES.get(match.group(1)) if match else None


def find_dances(root: str | os.PathLike) -> list[Path]:
    """The dance folders under ``root`` (those holding a skeletons file), in natural order (W_2 before W_10).
    ``root`` may itself be a dance folder. MotionFileError if there is no such folder or no dance in it."""
    root = Path(root)
    if not root.is_dir():
        raise MotionFileError(root, "no such folder" if not root.exists() else "is not a folder")
    if any((root / name).is_file() for name in SKELETON_FILES):
        return [root]
    found = sorted({p.parent for name in SKELETON_FILES for p in root.rglob(name)}, key=_natural)
    if not found:
        raise MotionFileError(root, f"holds no dance folder (none with {' or '.join(SKELETON_FILES)})")
    return found


def _natural(path: Path):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def read_dance(folder: str | os.PathLike, ground: bool = True, trim: bool = True, audio: bool = True) -> DanceClip:
    """Read one dance folder (see the module docstring).

    ``ground``: the file's ``center`` height drifts (up to 45 cm over a dance: the dancer floats off the
    floor), so the height of the lowest joint is taken, its running median over 2 s removed (the slow drift;
    the centre's own rise and fall within steps stays), and the result put so that the lowest joint is at
    y = 0 on average. Without it, positions are ``skeletons + center`` as stored. ``trim``: cut the music
    (or, were the motion the longer one, the motion) to the length of the other. ``audio=False`` skips
    reading the music (``audio`` is then empty).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MotionFileError(folder, "no such dance folder" if not folder.exists() else "is not a folder")
    relative, center = read_skeletons(folder)
    positions = relative + center[:, None, :]
    if ground:
        positions[..., UP_AXIS] -= floor_height(positions)[:, None]
    config = read_config(folder)
    clip = DanceClip(folder.name, positions.astype(np.float32), FPS, np.zeros(0, np.float32), 0, style_of(folder.name),
                     config, center.astype(np.float32))
    if audio:
        clip.audio, clip.sample_rate = read_music(folder, config)
        if trim:
            samples = int(round(clip.frames * clip.sample_rate / FPS))
            if len(clip.audio) >= samples:
                clip.audio = clip.audio[:samples]
            else:
                frames = int(len(clip.audio) * FPS // clip.sample_rate)
                clip.positions, clip.center = clip.positions[:frames], clip.center[:frames]
                clip.audio = clip.audio[:int(round(frames * clip.sample_rate / FPS))]
    return clip


def floor_height(positions: np.ndarray, fps: float = FPS) -> np.ndarray:
    """The height [T] to subtract from ``positions`` [T, J, 3] (y up) to put the floor at 0 without the slow
    drift: the lowest joint's height, running median over :data:`DRIFT_WINDOW_S` seconds."""
    from scipy.ndimage import median_filter  # imported here: it takes a second

    lowest = positions[..., UP_AXIS].min(axis=-1)
    window = max(1, int(round(DRIFT_WINDOW_S * fps)) | 1)
    return median_filter(lowest, size=window, mode="nearest")


def read_skeletons(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(skeletons [T, 23, 3], center [T, 3]) as float64 from ``skeletons.json`` or ``.json.gz``."""
    candidates = [folder / name for name in SKELETON_FILES if (folder / name).is_file()]
    if not candidates:
        raise MotionFileError(folder, f"no {' or '.join(SKELETON_FILES)} in this dance folder")
    path = candidates[0]
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                data = json.load(f)
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MotionFileError(path, f"not readable JSON ({' '.join(str(exc).split()) or type(exc).__name__})") \
            from exc
    if not isinstance(data, dict) or "skeletons" not in data:
        raise MotionFileError(path, "has no 'skeletons' key")
    try:
        skeletons = np.asarray(data["skeletons"], dtype=np.float64)
        center = np.asarray(data.get("center", np.zeros((len(skeletons), 3))), dtype=np.float64)
    except (ValueError, TypeError):
        raise MotionFileError(path, "'skeletons' and 'center' must be arrays of numbers "
                                    f"[frames][{NUM_JOINTS}][3] and [frames][3]") from None
    if skeletons.ndim != 3 or skeletons.shape[1:] != (NUM_JOINTS, 3) or len(skeletons) == 0:
        raise MotionFileError(path, f"'skeletons' must be [frames][{NUM_JOINTS}][3], not {list(skeletons.shape)}")
    if center.shape != (len(skeletons), 3):
        raise MotionFileError(path, f"'center' must be [{len(skeletons)}][3], not {list(center.shape)}")
    length = data.get("length", len(skeletons))
    if length != len(skeletons):
        raise MotionFileError(path, f"'length' is {length} but 'skeletons' holds {len(skeletons)} frames")
    if not (np.isfinite(skeletons).all() and np.isfinite(center).all()):
        raise MotionFileError(path, "holds NaN or Inf")
    return skeletons, center


def read_config(folder: Path) -> dict:
    """``config.json`` with integer ``start_position`` < ``end_position`` (frames)."""
    path = folder / "config.json"
    if not path.is_file():
        raise MotionFileError(path, "missing (a dance folder needs config.json with start_position/end_position)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MotionFileError(path, f"not readable JSON ({' '.join(str(exc).split())})") from exc
    if not isinstance(config, dict):
        raise MotionFileError(path, "must hold a JSON object")
    for key in ("start_position", "end_position"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
            raise MotionFileError(path, f"'{key}' must be a frame number (an integer >= 0), not {value!r}")
    if config["end_position"] <= config["start_position"]:
        raise MotionFileError(path, f"'end_position' ({config['end_position']}) must be after "
                                    f"'start_position' ({config['start_position']})")
    return config


def find_music(folder: Path) -> Path:
    """The music file of a dance folder: ``audio.*`` (wav, flac, ogg, opus, mp3 first, then others)."""
    found = sorted((p for p in folder.glob("audio.*") if not p.is_dir()),  # a FIFO, a broken link: said by the reader
                   key=lambda p: (AUDIO_PREFERENCE.index(p.suffix.lower()) if p.suffix.lower() in AUDIO_PREFERENCE
                                  else len(AUDIO_PREFERENCE), p.name))
    if not found:
        raise MotionFileError(folder, "no music file (audio.*) in this dance folder")
    return found[0]


def read_music(folder: Path, config: dict) -> tuple[np.ndarray, int]:
    """The danced span of the folder's music, mono float32, and its sample rate; the music file checked as every
    audio input is (``open_audio``: a regular file, not truncated, a sample rate a model can take, ...)."""
    path = find_music(folder)
    try:
        with open_audio(path) as f:
            rate = f.samplerate
            start = int(round(config["start_position"] * rate / FPS))
            stop = int(round(config["end_position"] * rate / FPS))
            if f.frames < stop - int(rate / FPS):  # allow one frame's rounding
                raise MotionFileError(path, f"holds {f.frames / rate:.2f} s of music, but config.json's span ends at "
                                            f"{stop / rate:.2f} s")
            f.seek(min(start, f.frames))
            wav = f.read(stop - start, dtype="float32", always_2d=True)
    except MotionFileError:
        raise
    except AudioError as exc:  # (it names the file)
        raise MotionFileError(exc.path, exc.problem) from None
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        detail = getattr(exc, "error_string", None) or str(exc)
        raise MotionFileError(path, f"not a readable audio file ({' '.join(detail.split()).rstrip('.')})") from exc
    if len(wav) == 0:
        raise MotionFileError(path, "holds no music in config.json's span")
    wav = wav.mean(axis=1)
    if not np.isfinite(wav).all():
        raise MotionFileError(path, "holds NaN or Inf samples")
    return np.ascontiguousarray(wav, dtype=np.float32), rate
