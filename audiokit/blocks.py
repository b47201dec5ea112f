"""Block-by-block processing of signals of any length, with memory bounded by the block size.

* :class:`ChannelStreams`: a model on ``[C, n]`` blocks, one streaming-runtime Stream per channel.
* :class:`BlockPipeline`: file-rate blocks -> model rate -> a processor -> file rate, aligned and trimmed
  to the input length.
* :func:`read_blocks` / :func:`process_file`: a file read block by block (checked like ``read_audio``)
  and written as it goes to temporary files, renamed into place at the end.

A *processor* has ``feed(x [C, n] at the model rate) -> [S, C, m]`` (S outputs, e.g. 1 enhanced signal
or S speakers) and ``flush() -> [S, C, m]``; over a stream the outputs add up to about the input length.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import soundfile as sf
import torch

from audiokit.audio.io import NOT_FINITE, TRUNCATED, format_of, open_audio, temporary_path
from audiokit.audio.resample import StreamResampler
from audiokit.errors import AudioError, ModelError

BLOCK_SECONDS = 10.0


class ChannelStreams:
    """A model on ``[C, n]`` blocks: one streaming-runtime Stream per channel, fed ``chunk`` samples at a time.

    Exact for causal models; windowed overlap-add (``window`` samples, runtime default when None) otherwise.
    Outputs are ``[1, C, m]`` float32 on the CPU.
    """

    def __init__(self, model: torch.nn.Module, channels: int, chunk: int, window: Optional[int] = None):
        from audiokit.streaming.runtime import open_stream

        self.chunk = chunk
        self.device = next(model.parameters(), torch.zeros(0)).device
        self.streams = [open_stream(model, 1, window=window) for _ in range(channels)]

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        if not x.shape[-1]:
            return x.new_zeros(1, len(self.streams), 0)
        x = x.to(self.device, torch.float32)
        with torch.inference_mode():
            return _stack([torch.cat([stream.feed(piece) for piece in channel.split(self.chunk)])
                           for stream, channel in zip(self.streams, x)])

    def flush(self) -> torch.Tensor:
        with torch.inference_mode():
            return _stack([stream.flush() for stream in self.streams])


def _stack(channels: list[torch.Tensor]) -> torch.Tensor:
    """Per-channel outputs ``[T]`` as one ``[1, C, T]`` float32 CPU tensor."""
    return torch.stack([c.detach().to("cpu", torch.float32).reshape(-1) for c in channels])[None]


class BlockPipeline:
    """``[C, n]`` blocks at ``rate`` -> ``processor`` at ``model_rate`` -> ``[S, C, m]`` blocks at ``rate``.

    Over the stream the output has exactly as many samples as the input: the processor's output is
    resampled back, then trimmed, or zero-padded at the end.
    """

    def __init__(self, processor, rate: int, model_rate: int):
        self.processor = processor
        self.to_model: Optional[StreamResampler] = None  # made for the channels of the first block
        self.back: Optional[list[StreamResampler]] = None
        self.rate, self.model_rate = rate, model_rate
        self._samples_in = self._samples_out = 0
        self._held: Optional[torch.Tensor] = None  # output beyond the input so far

    def _deliver(self, out, final: bool) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.ndim != 3:
            raise ModelError(f"the processor returned {getattr(out, 'shape', type(out).__name__)}, want [S, C, T]")
        if self.back is None and not out.shape[-1] and not final:
            return out  # the number of outputs is not known yet
        if self.back is None:
            self.back = [StreamResampler(self.model_rate, self.rate, out.shape[1]) for _ in range(out.shape[0])]
        if len(self.back) != out.shape[0]:
            raise ModelError(f"the number of outputs changed from {len(self.back)} to {out.shape[0]}")
        step = (lambda r, o: torch.cat([r.feed(o), r.flush()], dim=-1)) if final else (lambda r, o: r.feed(o))
        out = torch.stack([step(r, o) for r, o in zip(self.back, out)])
        if self._held is not None:
            out = torch.cat([self._held, out], dim=-1)
        ready = self._samples_in - self._samples_out
        if final:
            out = torch.nn.functional.pad(out, (0, max(0, ready - out.shape[-1])))
        self._held = out[..., ready:]
        self._samples_out += min(ready, out.shape[-1])
        return out[..., :ready]

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        self._samples_in += x.shape[-1]
        if self.to_model is None:
            self.to_model = StreamResampler(self.rate, self.model_rate, x.shape[0])
        return self._deliver(self.processor.feed(self.to_model.feed(x)), final=False)

    def flush(self) -> torch.Tensor:
        tail = self.to_model.flush()
        parts = [self.processor.feed(tail), self.processor.flush()]
        return self._deliver(torch.cat([p for p in parts if p.shape[-1]] or parts[-1:], dim=-1), final=True)


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


def output_paths(path: Path, folder: Path, suffix: str, count: int) -> list[Path]:
    """Where the ``count`` outputs of input ``path`` go in ``folder``: ``<stem>_<suffix>.wav`` for one,
    ``<stem>_s1.wav`` ... ``<stem>_s<count>.wav`` for several (e.g. one per speaker)."""
    if count == 1:
        return [folder / f"{path.stem}_{suffix}.wav"]
    return [folder / f"{path.stem}_s{k + 1}.wav" for k in range(count)]


def check_targets(targets: Sequence[Path], force: bool, force_hint: str = "use --force") -> None:
    """AudioError naming the first target that exists (unless ``force``) or that is not a file (never
    replaced), so that all are checked before any output is written."""
    for target in targets:
        if target.exists() and not force:
            raise AudioError(target, f"exists, {force_hint}")
        if target.exists() and not target.is_file():
            raise AudioError(target, "exists and is not a file; not overwritten")


class OutputFiles:
    """16-bit audio files (WAV, or FLAC, ... by the suffix) written block by block under temporary names;
    ``commit`` renames them into place, ``discard`` deletes them and the folders made for them. AudioError
    naming the file when one cannot be created or put in place (nothing is left behind then)."""

    def __init__(self, targets: Sequence[Path], rate: int, channels: int):
        self.targets, self.files, self.created = list(targets), [], []
        for target in self.targets:
            try:
                kind = format_of(target)
                self.created += _make_folder(target.parent)
                self.files.append(sf.SoundFile(temporary_path(target), "w", rate, channels, "PCM_16", format=kind))
            except AudioError:
                self.discard()
                raise
            except (sf.LibsndfileError, OSError, RuntimeError) as exc:
                self.discard()
                problem = "its folder is not a folder" if _blocked_by_file(target.parent) else "cannot be written"
                raise AudioError(target, f"{problem} ({_reason(exc)})") from None

    def write(self, out: torch.Tensor) -> None:
        """``out`` ``[S, C, n]``: one block of each file."""
        data = out.numpy()
        if not np.isfinite(data).all():
            raise ModelError("the model produced NaN or Inf samples")
        for k, block in enumerate(data):
            self.write_file(k, block.T)

    def write_file(self, k: int, samples: np.ndarray) -> None:
        """``samples`` ``[n]`` or ``[n, C]`` (clipped to [-1, 1]) onto file ``k``."""
        self.files[k].write(np.clip(samples, -1.0, 1.0))

    def commit(self) -> None:
        """Close every file and rename it into place (all discarded if one fails)."""
        target = self.targets[0] if self.targets else None
        try:
            for f in self.files:
                f.close()
            for f, target in zip(self.files, self.targets):
                os.replace(f.name, target)
        except (sf.LibsndfileError, OSError, RuntimeError) as exc:
            self.discard()
            raise AudioError(target, f"cannot be written ({_reason(exc)})") from None

    def discard(self) -> None:
        """Delete the temporary files, and the folders made for them if they are empty again."""
        for f in self.files:
            try:
                f.close()
            except (sf.LibsndfileError, OSError, RuntimeError):
                pass  # deleted below all the same
            Path(f.name).unlink(missing_ok=True)
        for folder in self.created:  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty: something else was written there meanwhile
                break


def _reason(exc: BaseException) -> str:
    """The plain reason inside a libsndfile or OS error, on one line."""
    return " ".join(str(getattr(exc, "error_string", None) or getattr(exc, "strerror", None) or exc).split())


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
                 on_progress: Callable[[int], None] | None = None, outputs: Optional[int] = None) -> float:
    """Stream ``path`` through ``BlockPipeline(open_processor(channels))`` into the files that
    ``name_outputs(S)`` names (S: number of outputs; it may raise to refuse them, e.g. when they exist).

    With ``outputs`` (S known beforehand, e.g. 1 for an enhancer) the names are asked for before any
    block is processed, so refused outputs cost no model time; otherwise on the first output samples.
    Returns the duration in seconds. ``on_progress(n)`` gets the number of input samples done after each
    block. Memory is bounded by ``block_seconds``; on any error nothing is left behind (no temporary
    files, and no output folders this call created).
    """
    targets = name_outputs(outputs) if outputs else None  # before the file is opened: nothing to close
    rate, channels, blocks = open_blocks(Path(path), block_seconds)
    writers: Optional[OutputFiles] = None
    samples = 0

    def write(out: torch.Tensor) -> None:
        """``out`` [S, C, n] onto the outputs, opened (and named, unless already) on the first samples."""
        nonlocal writers
        if not out.shape[-1]:
            return
        if writers is None:
            count = out.shape[0]
            if targets is not None and len(targets) != count:
                raise ModelError(f"the model gave {count} outputs, expected {len(targets)}")
            writers = OutputFiles(targets if targets is not None else name_outputs(count), rate, channels)
        writers.write(out)

    try:
        pipeline = BlockPipeline(open_processor(channels), rate, model_rate)
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
