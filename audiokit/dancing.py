"""Dancing to music: a dance model (``audiokit.models.dance``, family ``dance_lstm``) on music of any sample rate
and channel count, and its moves written as BVH, GIF or MP4 (``audiokit.motion``).

* :class:`Dancer`: a loaded model ready to dance; :meth:`Dancer.dance` gives joint positions
  ``[frames, 23, 3]`` (centimetres, y up, the skeleton of :mod:`audiokit.motion.skeleton`) at :attr:`Dancer.fps`,
  :meth:`Dancer.dance_file` writes a music file's outputs.
* :func:`dance_targets`: where a music file's outputs go, ``<stem>.bvh``, ``<stem>.gif``, ``<stem>.mp4``.

The music is mixed down to one channel (the mean of its channels), its DC offset removed (inaudible, it would
move the dance: ``audiokit.audio.dc``, as ``audiokit stream dance`` does) and resampled to the model's rate
(``audiokit.audio.resample``); the dance has one pose per whole motion frame of it (``1 / fps`` s, 40 ms at
25 fps), the last partial frame dropped: ``frames = floor(N / (rate / fps))`` for the ``N`` samples at the model's
rate ``rate`` (``N = ceil(T * rate / file rate)``), and at least 2. An MP4 gets the input music itself (every
channel, at its own rate) as its soundtrack, cut to ``frames / fps`` s.

Beat sync (on by default, ``beat_sync=False`` / ``--no-beat-sync`` for the model's own timing): the finished dance
is retimed so that its motion beats (the moments the body slows to change direction,
``audiokit.metrics.dance.motion_beats``) that lie within a quarter second of a music beat (librosa's tracker on the
music as the model heard it) land on it; between beats the motion plays 0.75-1.33x as fast
(``audiokit.motion.retime``). The dance goes through the model's poses in their order (between two frames they are
linearly interpolated); its length and its first and last poses are unchanged. It needs the whole song, so
``audiokit stream dance`` (causal) sends the model's own timing, that of ``beat_sync=False``.

Randomness: the ``dance_lstm`` model has none when it dances: it starts from the mean pose, feeds each predicted
pose to the next frame without sampling and has no dropout, so the same music, style and weights always give
the same dance. ``seed`` seeds torch's random generator (forked: the caller's generator is left as it was) just
before the model runs, so that a model that does sample (a future family, a module kept in training mode) is
reproducible too; for ``dance_lstm`` it changes nothing.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from audiokit.audio.dc import remove_dc
from audiokit.audio.io import read_audio
from audiokit.audio.resample import resample
from audiokit.errors import AudioError, AudiokitError, ModelError, ModelKindError
from audiokit.metrics.dance import motion_beats, music_beats
from audiokit.motion.bvh import bvh_writer
from audiokit.motion.dance_data import STYLES
from audiokit.motion.files import write_together
from audiokit.motion.render import video_writer
from audiokit.motion.retime import beat_anchors, retime

FORMATS = ("bvh", "gif", "mp4")
DEFAULT_FORMATS = ("bvh", "mp4")
#: the dances by name (those of the data, in the order of ``audiokit.models.dance.STYLES``, without importing
#: the model: the command line lists them), and "auto"
STYLE_CHOICES = ("auto", *STYLES.values())
#: the fewest motion frames a dance has (the model's first pose is given, the second is its first prediction)
MIN_FRAMES = 2
DEFAULT_SIZE = 480


def dance_targets(path: Union[str, os.PathLike], folder: Union[str, os.PathLike, None],
                  formats: Iterable[str] = DEFAULT_FORMATS) -> list[Path]:
    """The outputs of music file ``path``: ``<stem>.<format>`` in ``folder`` (None: beside ``path``) for each of
    ``formats`` (a subset of :data:`FORMATS`, given in any order; the paths come in the order of :data:`FORMATS`).
    AudiokitError for an unknown or empty set of formats."""
    formats = set(formats)
    if not formats or not formats <= set(FORMATS):
        raise AudiokitError(f"formats {sorted(formats)}: want one or more of {', '.join(FORMATS)}")
    path = Path(path)
    folder = path.parent if folder is None else Path(folder)
    return [folder / f"{path.stem}.{kind}" for kind in FORMATS if kind in formats]


def beat_synced(positions: np.ndarray, fps: float, music, sample_rate: int) -> np.ndarray:
    """``positions [T, J, 3]`` at ``fps`` retimed onto the beats of ``music`` (mono ``[N]`` at ``sample_rate`` Hz,
    the span danced to): see the module docstring. Same shape and dtype."""
    music = np.asarray(music, dtype=np.float32)
    anchors = beat_anchors(motion_beats(positions, fps), music_beats(music, sample_rate), (len(positions) - 1) / fps)
    return retime(positions, fps, anchors)


def check_style(style) -> None:
    """ModelError unless ``style`` is ``"auto"`` (picked from the music), one of the dances (cha-cha, rumba, tango,
    waltz), or None (the model's "any style" entry)."""
    if style is not None and style not in STYLE_CHOICES:
        raise ModelError(f"style {style!r}: want one of {', '.join(STYLE_CHOICES)}")


def check_size(size, option: str = "size") -> None:
    """AudiokitError unless the videos' ``size`` is a whole number of pixels from 16 to 4096."""
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 4096:
        raise AudiokitError(f"{option} {size!r}: want a whole number of pixels from 16 to 4096")


class Dancer:
    """A dance model ready to dance: a module with ``sample_rate`` (Hz), ``fps`` and
    ``dance(wav [N] at sample_rate, style) -> positions [frames, 23, 3]`` (a ``DanceGenerator``);
    ModelKindError for any other model."""

    def __init__(self, model: nn.Module):
        if not (callable(getattr(model, "dance", None)) and hasattr(model, "fps") and hasattr(model, "sample_rate")):
            raise ModelKindError(f"{type(model).__name__} is not a dance model (it has no dance method)")
        self.model = model
        self.sample_rate, self.fps = int(model.sample_rate), float(model.fps)

    def dance(self, wav: Union[np.ndarray, torch.Tensor], sample_rate: int, style: Optional[str] = "auto",
              seed: Optional[int] = None, name: Union[str, os.PathLike] = "input",
              beat_sync: bool = True) -> np.ndarray:
        """Joint positions ``[frames, 23, 3]`` (float32, cm, at :attr:`fps`; see the module docstring) dancing to
        ``wav`` (float ``[C, T]`` or ``[T]``, finite, at ``sample_rate`` Hz), in ``style``
        (:func:`check_style`), retimed onto the music's beats unless ``beat_sync`` is False. AudioError naming
        ``name`` when the music is shorter than :data:`MIN_FRAMES`
        frames; ModelError for a bad style or seed, or positions with NaN or Inf."""
        check_style(style)
        _check_seed(seed)
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32) if isinstance(wav, np.ndarray) else wav)
        mono = x.detach().cpu().float().reshape(-1, x.shape[-1]).mean(0)
        mono = resample(remove_dc(mono, sample_rate), sample_rate, self.sample_rate)
        hop = round(self.sample_rate / self.fps)  # samples per motion frame
        frames = len(mono) // hop
        if frames < MIN_FRAMES:
            raise AudioError(name, f"is too short to dance to ({x.shape[-1] / sample_rate:.3f} s; a dance needs "
                                   f"at least {MIN_FRAMES / self.fps:g} s)")
        with _seeded(seed, _device(self.model)), torch.inference_mode():
            positions = np.asarray(self.model.dance(mono.numpy(), style=style), dtype=np.float32)
        if positions.ndim != 3 or positions.shape[1:] != (23, 3):
            raise ModelError(f"the model gave positions of shape {list(positions.shape)}, want [frames, 23, 3]")
        if not np.isfinite(positions).all():
            raise ModelError("the model produced NaN or Inf positions")
        if beat_sync:
            positions = beat_synced(positions, self.fps, mono[:len(positions) * hop].numpy(), self.sample_rate)
        return positions

    def dance_file(self, path: Union[str, os.PathLike], targets: Sequence[Path], style: Optional[str] = "auto",
                   seed: Optional[int] = None, size: int = DEFAULT_SIZE, force: bool = False,
                   force_hint: str = "use --force", beat_sync: bool = True) -> list[Path]:
        """Dance to the music file ``path`` and write ``targets`` (:func:`dance_targets`: ``.bvh``, ``.gif``, and
        ``.mp4`` with the music muxed in; videos ``size`` x ``size`` pixels; ``beat_sync``: see :meth:`dance`), all
        or none: each is written under a
        temporary name, then all are moved into place; an existing file is replaced only with ``force`` (see
        :func:`audiokit.motion.files.write_together`). The caller checks beforehand that no target is an input
        (``audiokit.blocks.check_targets``). AudioError for a bad music file, MotionFileError for a file that
        cannot be written; nothing of this input is left behind then. Returns ``targets``."""
        check_style(style)
        _check_seed(seed)
        check_size(size)
        wav, rate = read_audio(path)  # [C, T]
        positions = self.dance(wav, rate, style, seed, path, beat_sync)
        writes = []
        for target in map(Path, targets):
            kind = target.suffix.lower()
            writes.append((target, bvh_writer(positions, self.fps) if kind == ".bvh" else
                           video_writer(target, positions, self.fps, wav.T if kind == ".mp4" else None, rate,
                                        (size, size))))
        return write_together(writes, force, force_hint)


def _check_seed(seed) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or not -2 ** 63 <= seed < 2 ** 64):
        raise ModelError(f"seed {seed!r}: want a whole number (or None)")


def _device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), torch.empty(0))
    return tensor.device


@contextmanager
def _seeded(seed: Optional[int], device: torch.device):
    """Torch's random generators seeded with ``seed`` inside, and restored after (nothing done for None)."""
    if seed is None:
        yield
        return
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
