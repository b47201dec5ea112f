"""Files written live by ``audiokit stream``: ``--record`` (the input) and ``--save`` (the outputs), block by
block from a writer thread, under temporary names put in place only when the stream ends well."""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import List, Optional

import numpy as np
import soundfile as sf

from audiokit.audio.io import temporary_path
from audiokit.blocks import check_targets
from audiokit.errors import AudioError


class WavWriter:
    """16-bit audio (WAV, FLAC, ... by the suffix) written block by block under a temporary name, renamed when
    closed (at most ``limit`` samples); AudioError naming ``path`` when it cannot be written."""

    def __init__(self, path: Path, rate: int, limit: Optional[int] = None):
        self.path, self.limit, self.written = path, limit, 0
        self.tmp = temporary_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = sf.SoundFile(str(self.tmp), "w", samplerate=rate, channels=1, subtype="PCM_16")
        except (sf.LibsndfileError, OSError, TypeError, ValueError) as exc:
            reason = getattr(exc, "error_string", None) or getattr(exc, "strerror", None) or str(exc)
            raise AudioError(path, f"cannot be written ({' '.join(reason.split())})") from None

    def write(self, samples: np.ndarray) -> None:
        if self.limit is not None:
            samples = samples[:max(0, self.limit - self.written)]
        self.file.write(samples)
        self.written += len(samples)

    def close(self, keep: bool = True) -> None:
        """Close, then rename into place (``keep``) or delete the temporary file."""
        self.file.close()
        if keep:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)


class Taps:
    """Writer thread for --record (input blocks) and --save (output blocks): the callback only queues them."""

    def __init__(self, record: Optional[Path], saves: List[Path], rate: int, block: int):
        opened: List[WavWriter] = []
        try:
            for path in ([record] if record else []) + saves:
                opened.append(WavWriter(path, rate))
        except AudioError:
            for writer in opened:
                writer.close(keep=False)
            raise
        self.record = opened.pop(0) if record else None
        self.saves = opened
        self.block, self.dropped, self._next = block, 0, 0
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
            seq, block, out = item
            for _ in range(self._next, seq):  # blocks the writer lost: keep the files aligned
                self._put(np.zeros(self.block, np.float32), np.zeros((len(self.saves), self.block), np.float32))
            self._next = seq + 1
            self._put(block, out)

    def _put(self, block: Optional[np.ndarray], out: np.ndarray) -> None:
        if self.record is not None and block is not None:
            self.record.write(block)
        for writer, signal in zip(self.saves, out):
            writer.write(signal)

    def limit_saves(self, length: int) -> None:
        """Write at most ``length`` samples to each --save file (set before queueing past that)."""
        for writer in self.saves:
            writer.limit = length

    def close(self, keep: bool = True) -> None:
        """Write what is queued, then put the files in place (``keep``) or delete them."""
        self._queue.put(None)
        self._thread.join()
        for writer in ([self.record] if self.record else []) + self.saves:
            writer.close(keep)


def check_outputs(paths: List[Path], force: bool) -> None:
    """AudioError for an output named twice, standing as a folder, or existing (without ``force``)."""
    seen = set()
    for path in paths:
        if path.resolve() in seen:
            raise AudioError(path, "named twice among the --save and --record outputs")
        seen.add(path.resolve())
    check_targets(paths, force)


def save_paths(save: Optional[Path], outputs: int) -> List[Path]:
    """The --save files: ``save`` itself for one output, ``<stem>_s1<suffix>``, ... for several (none without)."""
    if save is None:
        return []
    if outputs == 1:
        return [save]
    return [save.with_name(f"{save.stem}_s{i + 1}{save.suffix}") for i in range(outputs)]
