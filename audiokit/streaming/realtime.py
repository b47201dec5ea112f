"""Real-time block engine: fixed-size blocks in, the same number of samples out, a constant delay apart.

Two pieces, none of which knows about sound cards (``audiokit stream`` wires them to sounddevice; a file
or a test can drive them just as well):

* :class:`BlockPipeline` - device-rate block ``[B]`` -> resample to the model rate -> a task's runtime stream
  -> resample back -> ``[S, B]`` (S outputs, e.g. speakers).  A FIFO primed with ``latency`` zeros makes every
  block come out whole, so pipeline output = model output delayed by exactly ``latency`` device samples.
* :class:`BlockEngine` - the real-time part.  ``exchange(block)`` is what the audio callback calls: it only moves
  blocks through two bounded queues (never runs the model); a worker thread runs the pipeline.  Output slot ``n``
  plays the processed block ``n - delay_blocks``, so end to end the output is the input delayed by
  ``delay_blocks * B + pipeline.latency`` samples, always.  Overload policy when a processed block is not ready
  in time: ``"drop"`` plays silence, ``"bypass"`` plays the unprocessed input; stale input blocks are skipped
  unprocessed (the pipeline is restarted after a gap) so the engine never drifts behind; ``"wait"`` never drops
  (the caller waits for the worker: for unclocked devices such as files).  Everything is counted in
  :class:`Counters`.
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
import torch

from ..audio.resample import StreamResampler

POLICIES = ("drop", "bypass", "wait")


class BlockPipeline:
    """Device-rate blocks through a task's runtime stream: ``process(block [B]) -> [S, B]``.

    ``open_stream()`` makes a fresh runtime stream fed ``[T]`` at ``model_rate`` returning ``[S, t]`` (with
    ``latency_samples`` and, for hop-based streams, ``hop``).  ``latency`` (device samples) is the constant delay
    between input and output: resampler look-ahead both ways, the stream's latency plus hop buffering, rounded up.
    """

    def __init__(self, open_stream: Callable[[], object], outputs: int, model_rate: int, device_rate: int,
                 block: int):
        self.open_stream, self.outputs, self.block = open_stream, outputs, block
        self.model_rate, self.device_rate = model_rate, device_rate
        self.starved = 0  # blocks that came out short (would mean the latency bound is wrong)
        self._open()
        stream_bound = self._stream.latency_samples + getattr(self._stream, "hop", 1) - 1
        down_held = self._down.held if self._down else 0
        up_held = self._up.held if self._up else 0
        self.latency = math.ceil(down_held + (stream_bound + up_held) * device_rate / model_rate)
        self._fifo = torch.zeros(outputs, self.latency)

    def _open(self) -> None:
        resampled = self.model_rate != self.device_rate
        self._stream = self.open_stream()
        self._down = StreamResampler(self.device_rate, self.model_rate) if resampled else None
        self._up = StreamResampler(self.model_rate, self.device_rate, self.outputs) if resampled else None

    def reset(self) -> None:
        """Start over (after a gap in the input): fresh stream and resamplers, FIFO primed with zeros."""
        self._open()
        self._fifo = torch.zeros(self.outputs, self.latency)

    def _push(self, x: torch.Tensor) -> None:
        y = self._stream.feed(self._down.feed(x[None])[0] if self._down else x)
        self._fifo = torch.cat([self._fifo, self._up.feed(y) if self._up else y], dim=-1)

    def process(self, block: np.ndarray) -> np.ndarray:
        """``[B]`` float samples in, ``[S, B]`` out (the input ``latency`` samples ago, processed)."""
        self._push(torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)))
        out, self._fifo = self._fifo[:, :self.block], self._fifo[:, self.block:]
        if out.shape[-1] < self.block:  # cannot happen if latency is a true bound; counted, never silent
            self.starved += 1
            out = torch.nn.functional.pad(out, (0, self.block - out.shape[-1]))
        return out.numpy()


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
        process: ``[B] -> [S, B]`` (a :meth:`BlockPipeline.process`), run on the worker thread only.
        block: samples per block; ``outputs``: S.
        delay_blocks: output slot ``n`` plays processed block ``n - delay_blocks`` (the worker's time budget).
        policy: one of :data:`POLICIES` (see the module docstring).
        bypass: ``[B] -> [S, B]`` played under the ``"bypass"`` policy when a block is missing.
        queue_blocks: capacity of each queue.
        restart: called on the worker thread before processing a block that follows a gap.
        extra_load: seconds of extra (sleeping) work per block, to test overload.
    """

    def __init__(self, process: Callable[[np.ndarray], np.ndarray], block: int, outputs: int = 1,
                 delay_blocks: int = 2, policy: str = "bypass", bypass: Optional[Callable] = None,
                 queue_blocks: int = 8, restart: Optional[Callable[[], None]] = None, extra_load: float = 0.0,
                 wait_timeout: float = 10.0):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if delay_blocks < 1:
            raise ValueError("delay_blocks must be at least 1")
        self.process, self.block, self.outputs = process, block, outputs
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
        """Audio-callback side: queue input ``[B]`` (float), return the output slot ``[S, B]``.  Never runs the model."""
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
            return np.zeros((self.outputs, self.block), dtype=np.float32)
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
        return np.zeros((self.outputs, self.block), dtype=np.float32)


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
    """Run ``wav`` ``[T]`` through a started engine block by block (as a device would): ``[S, n * B]``.

    ``realtime`` paces the blocks at ``rate`` like a clocked device; ``tail_blocks`` zero blocks follow the signal.
    """
    b = engine.block
    padded = np.pad(wav.astype(np.float32), (0, (-len(wav)) % b + tail_blocks * b))
    outs, start = [], time.perf_counter()
    for i in range(len(padded) // b):
        if realtime:
            time.sleep(max(0.0, start + i * b / rate - time.perf_counter()))
        outs.append(engine.exchange(padded[i * b:(i + 1) * b]))
    return np.concatenate(outs, axis=-1)


def alsa_file_device(infile, outfile) -> str:
    """An ``.asoundrc`` whose default device is a sound card made of files (ALSA's ``file`` plugin): capture reads
    raw 16-bit PCM from ``infile`` as if from a microphone, playback appends what is played to ``outfile``.
    Unclocked (faster than real time): drive it with the ``"wait"`` policy.  Used by tests and benchmarks."""
    return (f'pcm.!default {{ type asym capture.pcm "cap" playback.pcm "play" }}\n'
            f'pcm.cap {{ type file slave.pcm "null" file "/dev/null" infile "{infile}" format "raw" }}\n'
            f'pcm.play {{ type file slave.pcm "null" file "{outfile}" format "raw" }}\n')
