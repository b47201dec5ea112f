"""Files written live by ``audiokit stream``: ``--record`` (the input) and ``--save`` (the outputs), block by
block from a writer thread, under temporary names put in place only when the stream ends well."""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from audiokit.audio.io import Placement, format_of
from audiokit.blocks import FRAMES_SUFFIX, OutputFiles, check_targets, file_identity
from audiokit.errors import AudioError
from audiokit.streaming.outputs import OutputSpec


class Taps:
    """Writer thread for --record (input blocks) and --save (output blocks): the callback only queues them.

    All audio files are mono 16-bit at ``rate`` (WAV, or FLAC, ... by the suffix); a task emitting frames
    (``output``) saves them to one ``.npz`` file. All are written under temporary names and put in place by
    ``close(keep=True)``, replacing existing files only with ``replace``. A write that fails (e.g. a full disk)
    is kept in ``error``; the thread goes on draining the queue, and ``close`` then deletes the files and raises
    AudioError.
    """

    def __init__(self, record: Optional[Path], saves: List[Path], rate: int, block: int,
                 output: OutputSpec = OutputSpec.audio(), replace: bool = False):
        self.files = OutputFiles(([record] if record else []) + saves, rate, 1, output, replace)
        self.first_save = 1 if record else 0
        self.limits: List[Optional[int]] = [None] * len(self.files.targets)
        self.written = [0] * len(self.files.targets)
        self.block, self.dropped, self._next = block, 0, 0
        # what the saves get for a block the writer lost: silence, or no frames
        self.lost = np.zeros((len(saves), block) if output.is_audio else (1, 0, *output.shape), np.float32)
        self.error: Optional[BaseException] = None
        self._queue: queue.Queue = queue.Queue(maxsize=2000)
        self._thread = threading.Thread(target=self._write, name="audiokit-stream-writer", daemon=True)
        self._thread.start()

    def put(self, seq: int, block: Optional[np.ndarray], out: np.ndarray) -> None:
        try:
            self._queue.put_nowait((seq, block, out))
        except queue.Full:
            self.dropped += 1

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # keep draining, so that neither the callback nor close() waits on a full queue
            seq, block, out = item
            try:
                for _ in range(self._next, seq):  # blocks the writer lost: keep the files aligned
                    self._put(np.zeros(self.block, np.float32), self.lost)
                self._next = seq + 1
                self._put(block, out)
            except Exception as exc:  # noqa: BLE001 - reported by close()
                self.error = exc

    def _put(self, block: Optional[np.ndarray], out: np.ndarray) -> None:
        if self.first_save and block is not None:
            self._write_file(0, block)
        for k, signal in zip(range(self.first_save, len(self.limits)), out):  # none without --save
            self._write_file(k, signal)

    def _write_file(self, k: int, samples: np.ndarray) -> None:
        if self.limits[k] is not None:
            samples = samples[:max(0, self.limits[k] - self.written[k])]
        self.files.write_file(k, samples)
        self.written[k] += len(samples)

    def limit_saves(self, length: int) -> None:
        """Write at most ``length`` samples (or frames) to each --save file (set before queueing past that)."""
        for k in range(self.first_save, len(self.limits)):
            self.limits[k] = length

    def close(self, keep: bool = True, placement: Optional[Placement] = None) -> None:
        """Write what is queued, then put the files in place (``keep``) or delete them; AudioError (files
        deleted) when a write failed. ``placement``: one that put the run's other outputs in place (motion
        files), withdrawn when these cannot be."""
        self._queue.put(None)
        self._thread.join()
        if keep and self.error is None:
            self.files.commit(placement)
            return
        if placement is not None:
            placement.withdraw()
        self.files.discard()
        if keep and isinstance(self.error, AudioError):  # it names the file and the cause
            raise self.error
        if keep:
            raise AudioError(self.files.targets[0], f"writing failed: {' '.join(str(self.error).split())}")


def check_outputs(saves: List[Path], record: Optional[Path], force: bool, output: OutputSpec,
                  also: Sequence[str] = (), inputs: Sequence[Path] = ()) -> None:
    """AudioError for an output named twice, of a type that cannot be written (frames: not ``.npz`` nor one of the
    suffixes ``also``), standing as a folder, existing (without ``force``) or being one of ``inputs``."""
    paths, seen = saves + ([record] if record else []), set()
    for path in paths:
        if path.resolve() in seen:
            raise AudioError(path, "named twice among the --save and --record outputs")
        seen.add(path.resolve())
        if path != record and not output.is_audio:
            if path.suffix.lower() not in (FRAMES_SUFFIX, *also):
                raise AudioError(path, f"frames are saved as {' or '.join((FRAMES_SUFFIX, *also))} files")
        else:
            format_of(path)
    check_targets(paths, force, inputs={identity for p in inputs if (identity := file_identity(p)) is not None})


def save_paths(save: Optional[Path], outputs: int) -> List[Path]:
    """The --save files: ``save`` itself for one output, ``<stem>_s1<suffix>``, ... for several (none without)."""
    if save is None:
        return []
    if outputs == 1:
        return [save]
    return [save.with_name(f"{save.stem}_s{i + 1}{save.suffix}") for i in range(outputs)]
