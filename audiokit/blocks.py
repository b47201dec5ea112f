"""Files processed block by block, with memory bounded by the block size.

* :func:`open_blocks`: a file read block by block (checked like ``read_audio``).
* :class:`OutputFiles`: audio files written block by block, and frame files (``.npz``), under temporary names
  renamed into place at the end (never over a file that exists by then, unless asked to replace); audio outputs
  carry :data:`SOFTWARE_MARK`, by which :func:`written_by_audiokit` knows them.
* :func:`check_targets`: outputs refused before any work: existing ones (unless forced), and inputs (always).
* :func:`process_file`: a file through a :class:`~audiokit.streaming.pipeline.BlockPipeline` (the processor
  interface is described there) into its output files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Collection, Iterator, Optional, Sequence

import numpy as np
import soundfile as sf
import torch

from audiokit.audio.io import (
    NOT_FINITE,
    TRUNCATED,
    AudioWriter,
    Placement,
    file_identity,
    format_of,
    open_audio,
    remove_temporary,
    temporary_path,
)
from audiokit.errors import AudioError, ModelError, os_reason
from audiokit.streaming.outputs import OutputSpec
from audiokit.streaming.pipeline import BlockPipeline

BLOCK_SECONDS = 10.0
FRAMES_SUFFIX = ".npz"
#: the ``software`` field of every audio output (libsndfile appends its own version)
SOFTWARE_MARK = "audiokit"


def open_blocks(path: Path, seconds: float = BLOCK_SECONDS) -> tuple[int, int, Iterator[torch.Tensor]]:
    """``(sample rate, channels, blocks)`` of ``path``: float32 ``[C, n]`` blocks of ``seconds`` (the last one shorter),
    checked as ``read_audio`` checks a whole file: AudioError for a missing, unreadable, truncated or empty
    file, or NaN/Inf samples (raised on opening or by the block that shows it)."""
    f = open_audio(path)
    frames = max(1, int(seconds * f.samplerate))

    def read() -> np.ndarray:
        try:
            return f.read(frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:  # a compressed stream that breaks off
            raise AudioError(path, f"{TRUNCATED}: {exc}") from exc

    def blocks() -> Iterator[torch.Tensor]:
        total = 0
        with f:
            while len(block := read()):
                if not np.isfinite(block).all():
                    raise AudioError(path, NOT_FINITE)
                total += len(block)
                yield torch.from_numpy(np.ascontiguousarray(block.T))
            if total == 0:
                raise AudioError(path, "contains no samples")
            if total < f.frames:
                raise AudioError(path, TRUNCATED)

    return f.samplerate, f.channels, blocks()


def output_paths(path: Path, folder: Path, suffix: str, count: int, extension: str = ".wav") -> list[Path]:
    """Where the ``count`` outputs of input ``path`` go in ``folder``: ``<stem>_<suffix>.wav`` for one,
    ``<stem>_s1.wav`` ... ``<stem>_s<count>.wav`` for several (e.g. one per speaker); frames get
    ``extension=FRAMES_SUFFIX``."""
    if count == 1:
        return [folder / f"{path.stem}_{suffix}{extension}"]
    return [folder / f"{path.stem}_s{k + 1}{extension}" for k in range(count)]


def output_extension(output: OutputSpec) -> str:
    """The file suffix of an output of this kind: ``.wav`` for audio, :data:`FRAMES_SUFFIX` for frames."""
    return ".wav" if output.is_audio else FRAMES_SUFFIX


def written_by_audiokit(path: Path) -> bool:
    """True for an audio file that audiokit wrote (its ``software`` field starts with :data:`SOFTWARE_MARK`)."""
    try:
        with sf.SoundFile(path) as f:
            return (f.software or "").startswith(SOFTWARE_MARK)
    except (sf.LibsndfileError, OSError, RuntimeError, TypeError):
        return False


def check_targets(targets: Sequence[Path], force: bool, force_hint: str = "use --force",
                  inputs: Collection[tuple[int, int]] = ()) -> None:
    """AudioError naming the first target that is one of ``inputs`` (:func:`file_identity` of every file the
    run reads: never replaced, even with ``force``), that exists (unless ``force``) or that is not a file
    (never replaced), so that all are checked before any output is written."""
    for target in targets:
        if inputs and file_identity(target) in inputs:
            raise AudioError(target, "is also an input; not overwritten")
        if target.exists() and not force:
            raise AudioError(target, f"exists, {force_hint}")
        if target.exists() and not target.is_file():
            raise AudioError(target, "exists and is not a file; not overwritten")


class FrameFile:
    """Frames of one output collected and written on ``close`` as an ``.npz`` file: ``frames`` (float32
    ``[C, N, *shape]``), ``frame_rate`` (Hz), ``times`` (``[N]``, the time in seconds at which each frame ends:
    ``(n + 1) / frame_rate``) and, when the output has them, ``labels``. The file is created when the object is
    (so that a path that cannot be written shows at once)."""

    def __init__(self, name: Path, output: OutputSpec, channels: int):
        self.name, self.output = name, output
        self.parts = [np.zeros((channels, 0, *output.shape), np.float32)]
        self.file = open(name, "wb")

    def write(self, frames: np.ndarray) -> None:
        """``frames`` ``[C, n, *shape]``."""
        self.parts.append(np.asarray(frames, np.float32))

    def close(self) -> None:
        if self.file.closed:
            return
        with self.file:
            labels = {} if self.output.labels is None else {"labels": np.array(self.output.labels)}
            frames = np.concatenate(self.parts, axis=1)
            times = np.arange(1, frames.shape[1] + 1) / self.output.frame_rate
            np.savez(self.file, frames=frames, frame_rate=self.output.frame_rate, times=times, **labels)


class OutputFiles:
    """Output files written block by block under temporary names: 16-bit audio (WAV, or FLAC, ... by the
    suffix, marked with :data:`SOFTWARE_MARK`) or, for the targets ending in :data:`FRAMES_SUFFIX`, the frames
    of ``output`` (:class:`FrameFile`). ``commit`` renames them into place, ``discard`` deletes them and the
    folders made for them. AudioError naming the file when one cannot be created or put in place (nothing is
    left behind then). Without ``replace``, a target that exists when they are put in place (another run wrote
    it meanwhile) is not replaced: AudioError ``exists, <force_hint>``, and none of the files is put in place."""

    def __init__(self, targets: Sequence[Path], rate: int, channels: int, output: OutputSpec = OutputSpec.audio(),
                 replace: bool = False, force_hint: str = "use --force"):
        self.targets, self.files, self.created = list(targets), [], []
        self.replace, self.force_hint = replace, force_hint
        for target in self.targets:
            try:
                frames = target.suffix.lower() == FRAMES_SUFFIX and not output.is_audio
                if not frames:
                    format_of(target)  # an extension that cannot be written: said before any folder is made
                self.created += _make_folder(target.parent)
                self.files.append(FrameFile(temporary_path(target), output, channels) if frames else
                                  AudioWriter(temporary_path(target), rate, channels, target=target,
                                              software=SOFTWARE_MARK))
            except AudioError:
                self.discard()
                raise
            except (sf.LibsndfileError, OSError, RuntimeError) as exc:
                self.discard()
                problem = "its folder is not a folder" if _blocked_by_file(target.parent) else "cannot be written"
                raise AudioError(target, f"{problem} ({os_reason(exc)})") from None

    def write(self, out: torch.Tensor) -> None:
        """``out`` ``[S, C, n, *shape]``: one block of each file."""
        data = out.numpy()
        if not np.isfinite(data).all():
            raise ModelError("the model produced NaN or Inf samples")
        for k, block in enumerate(data):
            if isinstance(self.files[k], FrameFile):
                self.files[k].write(block)
            else:
                self.write_file(k, block.T)

    def write_file(self, k: int, samples: np.ndarray) -> None:
        """Onto file ``k``: audio ``[n]`` or ``[n, C]`` (clipped to [-1, 1]), or a channel's frames ``[n, *shape]``."""
        f = self.files[k]
        f.write(samples[None] if isinstance(f, FrameFile) else np.clip(samples, -1.0, 1.0))

    def commit(self, placement: Optional[Placement] = None) -> None:
        """Close every file and rename it into place (see the class docstring); all discarded if one fails, and
        without ``replace`` those already in place withdrawn. ``placement``: one that has already put other
        outputs of the same run in place (e.g. motion files), withdrawn with these."""
        target = self.targets[0] if self.targets else None
        placement = Placement(self.replace) if placement is None else placement
        try:
            for f, target in zip(self.files, self.targets):
                f.close()
            for f, target in zip(self.files, self.targets):
                placement.place(Path(f.name), target)
        except AudioError:  # a file that could not be completed (none of these placed yet)
            placement.withdraw()
            self.discard()
            raise
        except (sf.LibsndfileError, OSError, RuntimeError) as exc:
            placement.withdraw()  # those placed by this call, unless they replaced files or were replaced meanwhile
            self.discard()
            if isinstance(exc, FileExistsError):
                raise AudioError(target, f"exists, {self.force_hint}") from None
            raise AudioError(target, f"cannot be written ({os_reason(exc)})") from None

    def discard(self) -> None:
        """Delete the temporary files, and the folders made for them if they are empty again."""
        for f in self.files:
            try:
                f.close()
            except (AudioError, sf.LibsndfileError, OSError, RuntimeError):
                pass  # deleted below all the same
            remove_temporary(Path(f.name))
        for folder in self.created:  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty: something else was written there meanwhile
                break


def _blocked_by_file(folder: Path) -> bool:
    """True when ``folder`` or one of its parents exists as something other than a folder."""
    return any(p.exists() and not p.is_dir() for p in (folder, *folder.parents))


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
    return missing


def process_file(path: Path, open_processor: Callable[[int], object], model_rate: int,
                 name_outputs: Callable[[int], Sequence[Path]], block_seconds: float = BLOCK_SECONDS,
                 on_progress: Callable[[int], None] | None = None,
                 output: OutputSpec = OutputSpec.audio(None), replace: bool = False,
                 force_hint: str = "use --force") -> float:
    """Stream ``path`` through a ``BlockPipeline`` of ``open_processor(channels)``, which emits ``output``, into
    the files that ``name_outputs(S)`` names (S: number of outputs; it may raise to refuse them, e.g. when they
    exist; frames go to :data:`FRAMES_SUFFIX` files).

    When ``output.count`` is known beforehand (e.g. 1 for an enhancer) the names are asked for before any
    block is processed, so refused outputs cost no model time; otherwise on the first output samples. They are
    put in place at the end, replacing existing files only with ``replace`` (see :class:`OutputFiles`, whose
    "exists" error ends with ``force_hint``).
    Returns the duration in seconds. ``on_progress(n)`` gets the number of input samples done after each
    block. Memory is bounded by ``block_seconds`` (frames, small, are collected); on any error nothing is
    left behind (no temporary files, and no output folders this call created).
    """
    targets = name_outputs(output.count) if output.count else None  # before the file is opened: nothing to close
    rate, channels, blocks = open_blocks(Path(path), block_seconds)
    writers: Optional[OutputFiles] = None
    samples = 0

    def write(out: torch.Tensor) -> None:
        """``out`` [S, C, n, *shape] onto the outputs, opened (and named, unless already) on the first samples."""
        nonlocal writers
        if not out.shape[2]:
            return
        if writers is None:
            count = out.shape[0]
            if targets is not None and len(targets) != count:
                raise ModelError(f"the model gave {count} outputs, expected {len(targets)}")
            writers = OutputFiles(targets if targets is not None else name_outputs(count), rate, channels, output,
                                  replace, force_hint)
        writers.write(out)

    try:
        pipeline = BlockPipeline(lambda: open_processor(channels), rate, model_rate, output, channels)
        for block in blocks:
            write(pipeline.feed(block))
            samples += block.shape[-1]
            if on_progress:
                on_progress(block.shape[-1])
        write(pipeline.flush())
        writers.commit()
    except BaseException:
        blocks.close()
        if writers is not None:
            writers.discard()
        raise
    return samples / rate
