"""Real-time block engine: fixed-size blocks in, the same number of samples (or the frames ready) out, a constant
delay apart.

It knows nothing about sound cards (``audiokit stream`` wires it to sounddevice; a file or a test can drive it
just as well). The work per block is a live :class:`~audiokit.streaming.pipeline.BlockPipeline`: device-rate
block ``[B]`` -> the model rate -> a task's processor -> ``[S, B]`` audio back at the device rate, the model
output delayed by exactly ``latency`` device samples (or the ``[1, n, *shape]`` frames ready, for a task that
emits frames).

:class:`BlockEngine` is the real-time part.  ``exchange(block)`` is what the audio callback calls: it only moves
blocks through two bounded queues (never runs the model); a worker thread runs the pipeline.  Output slot ``n``
plays the processed block ``n - delay_blocks``, so end to end the output is the input delayed by
``delay_blocks * B + pipeline.latency`` samples, always.  Overload policy when a processed block is not ready
in time: ``"drop"`` plays silence, ``"bypass"`` plays the unprocessed input (a task emitting frames gets none
for that block); stale input blocks are skipped unprocessed (the pipeline is restarted after a gap) so the
engine never drifts behind; ``"wait"`` never drops (the caller waits for the worker: for unclocked devices
such as files).  Everything is counted in :class:`Counters`.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .outputs import OutputSpec
from .pipeline import BlockPipeline

POLICIES = ("drop", "bypass", "wait")


@dataclass
class Counters:
    """What the engine did, for the live report.  Times in seconds; level in dBFS."""
    blocks: int = 0          # exchanges (device callbacks)
    processed: int = 0       # blocks run through the model
    overruns: int = 0        # input blocks dropped: the input queue was full
    skipped: int = 0         # input blocks skipped unprocessed: their output slot had already passed
    late: int = 0            # processed blocks that arrived after their slot (discarded)
    underruns: int = 0       # output slots without a processed block (silence or bypass played)
    xruns: int = 0           # device-reported input overflows / output underflows
    restarts: int = 0        # pipeline restarts after a gap
    level_db: float = -120.0
    proc_time: float = 0.0   # total model time
    proc_max: float = 0.0
    recent_proc: deque = field(default_factory=lambda: deque(maxlen=50), repr=False)

    def mean_recent_proc(self) -> float:
        return sum(self.recent_proc) / len(self.recent_proc) if self.recent_proc else 0.0


class BlockEngine:
    """Bounded queues between an audio callback and a worker thread running ``process``.

    Args:
        process: ``[B] -> [S, B]`` audio or ``[1, n, *shape]`` frames (a live ``BlockPipeline.process``), run on
            the worker thread only.
        block: samples per block; ``output``: what ``process`` returns (S audio outputs, or frames).
        delay_blocks: output slot ``n`` plays processed block ``n - delay_blocks`` (the worker's time budget).
        policy: one of :data:`POLICIES` (see the module docstring).
        bypass: ``[B] -> [S, B]`` played under the ``"bypass"`` policy when a block is missing (frames: no frames).
        queue_blocks: capacity of each queue.
        restart: called on the worker thread before processing a block that follows a gap.
        extra_load: seconds of extra (sleeping) work per block, to test overload.
    """

    def __init__(self, process: Callable[[np.ndarray], np.ndarray], block: int,
                 output: OutputSpec = OutputSpec.audio(1), delay_blocks: int = 2, policy: str = "bypass",
                 bypass: Optional[Callable] = None,
                 queue_blocks: int = 8, restart: Optional[Callable[[], None]] = None, extra_load: float = 0.0,
                 wait_timeout: float = 10.0):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if delay_blocks < 1:
            raise ValueError("delay_blocks must be at least 1")
        self.process, self.block, self.output = process, block, output
        self.delay_blocks, self.policy, self.extra_load = delay_blocks, policy, extra_load
        if policy == "bypass" and bypass is None:
            raise ValueError("the bypass policy needs a bypass function")
        self.bypass = bypass
        self.restart, self.wait_timeout = restart, wait_timeout
        self.counters = Counters()
        self._in: queue.Queue = queue.Queue(maxsize=queue_blocks)
        self._out: queue.Queue = queue.Queue(maxsize=queue_blocks + delay_blocks)
        self._recent: deque = deque(maxlen=delay_blocks + 1)  # (seq, input block) for bypass
        self._held = None  # a processed block taken from the queue early, waiting for its slot
        self._running = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None

    def silence(self) -> np.ndarray:
        """An output slot with nothing in it: ``[S, B]`` zeros, or no frames ``[1, 0, *shape]``."""
        if self.output.is_audio:
            return np.zeros((self.output.count, self.block), dtype=np.float32)
        return np.zeros((1, 0, *self.output.shape), dtype=np.float32)

    @property
    def delay(self) -> int:
        """Queue delay in samples (add the pipeline's latency for end to end)."""
        return self.delay_blocks * self.block

    # --- worker side -------------------------------------------------------------------------------------------
    def start(self) -> "BlockEngine":
        self._running.set()
        self._worker = threading.Thread(target=self._work, name="audiokit-stream-worker", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        """Stop the worker (blocks already queued are left unprocessed)."""
        self._running.clear()
        if self._worker is not None:
            self._worker.join()
            self._worker = None

    def _work(self) -> None:
        expected, c = 0, self.counters
        while self._running.is_set():
            try:
                seq, block = self._in.get(timeout=0.05)
            except queue.Empty:
                continue
            if self.policy != "wait" and c.blocks > seq + self.delay_blocks:
                c.skipped += 1  # its slot is gone: shed the load instead of falling further behind
                continue
            if seq != expected and self.restart is not None:
                self.restart()  # the input had a gap: restart so that the delay stays constant
                c.restarts += 1
            expected = seq + 1
            start = time.perf_counter()
            try:
                out = self.process(block)
            except BaseException as exc:  # a model error ends the stream, reported by the caller
                self.error = exc
                self._running.clear()
                return
            if self.extra_load:
                time.sleep(self.extra_load)
            spent = time.perf_counter() - start
            c.processed += 1
            c.proc_time += spent
            c.proc_max = max(c.proc_max, spent)
            c.recent_proc.append(spent)
            self._out.put((seq, out))  # never full: at most queue_blocks + delay_blocks are in flight

    # --- callback side ---------------------------------------------------------------------------------------------
    def exchange(self, block: np.ndarray) -> np.ndarray:
        """Audio-callback side: queue input ``[B]`` (float), return the output slot ``[S, B]``.
        Never runs the model."""
        c = self.counters
        seq = c.blocks
        c.blocks += 1
        c.level_db = float(10 * np.log10(np.mean(np.square(block, dtype=np.float64)) + 1e-12))
        self._recent.append((seq, block))
        try:
            if self.policy == "wait":
                self._in.put((seq, block), timeout=self.wait_timeout)
            else:
                self._in.put_nowait((seq, block))
        except queue.Full:
            c.overruns += 1
        target = seq - self.delay_blocks
        if target < 0:
            return self.silence()
        return self._take(target)

    def _take(self, target: int) -> np.ndarray:
        c, wait = self.counters, self.policy == "wait"
        deadline = time.monotonic() + self.wait_timeout
        while True:
            if self._held is None:
                try:
                    self._held = self._out.get(timeout=max(0.0, deadline - time.monotonic())) if wait \
                        else self._out.get_nowait()
                except queue.Empty:
                    break
            seq, out = self._held
            if seq > target:
                break  # the target block was dropped or skipped
            self._held = None
            if seq == target:
                return out
            c.late += 1
        c.underruns += 1
        if self.policy == "bypass":
            for seq, block in self._recent:
                if seq == target:
                    return self.bypass(block)
        return self.silence()


def worst_block_seconds(make_pipeline: Callable[[], BlockPipeline], samples: int) -> float:
    """The longest ``process`` call of a fresh pipeline over ``samples`` of silence, in seconds.

    Windowed models work in bursts (one whole window every hop), so the worst block, not the mean, sets the
    time budget a live stream needs. A first pass warms the model up (lazy imports, allocations) unmeasured.
    """
    worst = 0.0
    for measured in (False, True):
        pipeline = make_pipeline()
        silence = np.zeros(pipeline.block, np.float32)
        for _ in range(math.ceil(samples / pipeline.block)):
            start = time.perf_counter()
            pipeline.process(silence)
            if measured:
                worst = max(worst, time.perf_counter() - start)
    return worst


def delay_blocks_for(worst_seconds: float, block_seconds: float, margin: float = 3.0) -> int:
    """Blocks of queue delay that leave the worker ``margin`` times the worst block's time (at least 2)."""
    return max(2, math.ceil(margin * worst_seconds / block_seconds) + 1)


def drive(engine: BlockEngine, wav: np.ndarray, realtime: bool = False, rate: int = 16000,
          tail_blocks: int = 0) -> np.ndarray:
    """Run ``wav`` ``[T]`` through a started engine block by block (as a device would): ``[S, n * B]`` audio, or the
    frames ``[1, N, *shape]``.

    ``realtime`` paces the blocks at ``rate`` like a clocked device; ``tail_blocks`` zero blocks follow the signal.
    """
    b = engine.block
    padded = np.pad(wav.astype(np.float32), (0, (-len(wav)) % b + tail_blocks * b))
    outs, start = [], time.perf_counter()
    for i in range(len(padded) // b):
        if realtime:
            time.sleep(max(0.0, start + i * b / rate - time.perf_counter()))
        outs.append(engine.exchange(padded[i * b:(i + 1) * b]))
    return np.concatenate(outs, axis=1)


def alsa_file_device(infile, outfile) -> str:
    """An ``.asoundrc`` whose default device is a sound card made of files (ALSA's ``file`` plugin): capture reads
    raw 16-bit PCM from ``infile`` as if from a microphone, playback appends what is played to ``outfile``.
    Unclocked (faster than real time): drive it with the ``"wait"`` policy.  Used by tests and benchmarks."""
    return (f'pcm.!default {{ type asym capture.pcm "cap" playback.pcm "play" }}\n'
            f'pcm.cap {{ type file slave.pcm "null" file "/dev/null" infile "{infile}" format "raw" }}\n'
            f'pcm.play {{ type file slave.pcm "null" file "{outfile}" format "raw" }}\n')
