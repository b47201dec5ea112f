"""``audiokit stream TASK --input FILE``: an audio file instead of a capture device, for a task emitting frames
(classify, dance).

The file is read in ``--block-ms`` blocks, its channels mixed down to one, as fast as the model goes or, with
``--realtime``, at its own pace (each block handed on when its last sample would have been heard), through the
same :class:`~audiokit.streaming.pipeline.BlockPipeline` and task adapter as a device, its frames to the same
outputs (:class:`~audiokit.cli.live_frames.FrameOutputs`, ``--save``). There is no queue: every frame is out as
soon as the model made it, and the frames are those of the model on the whole file (a last partial frame
completed with silence). Ctrl-C, SIGTERM or ``--duration`` ends the stream; the files are then completed and put
in place (a stream that fails leaves none).
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import List

import numpy as np

from audiokit.audio.io import Placement
from audiokit.blocks import OutputFiles, open_blocks
from audiokit.cli.live_frames import FrameOutputs
from audiokit.errors import AudiokitError, one_line
from audiokit.streaming.adapters import TaskAdapter
from audiokit.streaming.pipeline import BlockPipeline


def stream_file(args: argparse.Namespace, adapter: TaskAdapter, saves: List, frames: FrameOutputs) -> int:
    """Run ``args.input`` through ``adapter`` (see the module docstring); ``saves``: the ``.npz`` file, if any."""
    output = adapter.output
    if output.is_audio:
        raise AudiokitError(f"--input: stream {args.task} gives audio, not frames (for a file: audiokit {args.task} "
                            "FILE)")
    rate, _, blocks = open_blocks(args.input, args.block_ms / 1000)
    block = max(1, int(args.block_ms / 1000 * rate))  # as open_blocks reads them
    pipeline = BlockPipeline(adapter.open, rate, adapter.sample_rate, output, block=block, dc_free=adapter.dc_free)
    files = OutputFiles(saves, rate, 1, output, replace=args.force) if saves else None
    print(f"stream {args.task}: {rate} Hz (model {adapter.sample_rate} Hz), file {args.input}, block {block} "
          f"({1e3 * block / rate:.1f} ms), latency {pipeline.latency} samples ({1e3 * pipeline.latency / rate:.1f} "
          f"ms) = model {pipeline.latency}", file=sys.stderr)
    limit = round(args.duration * rate) if args.duration else None
    stop, last = threading.Event(), [np.zeros((1, 0, *output.shape), np.float32)]

    def put(out) -> None:
        if files is not None:
            files.write(out)
        out = out[:, 0].numpy()
        frames.put(out)
        if out.shape[1]:
            last[0] = out

    previous = _signals_to(stop.set)  # Ctrl-C and SIGTERM end the stream; the files are then still completed
    samples, start, shown, done = 0, time.perf_counter(), time.perf_counter(), False
    try:
        for x in blocks:
            x = x.mean(0, keepdim=True)[:, :None if limit is None else limit - samples]
            if stop.is_set() or not x.shape[-1]:
                break
            if args.realtime:
                time.sleep(max(0.0, start + (samples + x.shape[-1]) / rate - time.perf_counter()))
            put(_model(pipeline.feed, x))
            samples += x.shape[-1]
            if frames.motion is not None:
                frames.motion.hear(x[0].numpy())
            frames.drain()
            if time.perf_counter() - shown > (0.5 if frames.interactive else 2.0):
                shown = time.perf_counter()
                line = _report(samples / rate, shown - start, adapter.describe(last[0]))
                print(("\r" + line) if frames.interactive else line, end="" if frames.interactive else "\n",
                      file=sys.stderr, flush=True)
        put(_model(lambda _: pipeline.flush(), None))
        placement = Placement(args.force)  # every --save file in place, or none
        if frames.motion is not None:
            frames.motion.save(rate, placement)
        if files is not None:
            files.commit(placement)
        done = True
    finally:
        blocks.close()
        if files is not None and not done:
            files.discard()
        frames.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    frames.drain(end=True)
    if frames.interactive:
        print(file=sys.stderr)
    print(("interrupted: " if stop.is_set() else "") + "done: "
          + _report(samples / rate, time.perf_counter() - start, adapter.describe(last[0])) + frames.summary(),
          file=sys.stderr)
    return 0


def _report(seconds: float, elapsed: float, extra: str) -> str:
    return f"input {seconds:.2f} s in {elapsed:.2f} s | RTF {elapsed / max(seconds, 1e-9):.3f}" + (
        f" | {extra}" if extra else "")


def _model(call, x):
    """``call(x)``; a failure of the model (not of the input or the outputs) as one AudiokitError line."""
    try:
        return call(x)
    except AudiokitError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model failing mid-stream is reported, not a traceback
        raise AudiokitError(f"model failed during streaming: {one_line(exc)}") from exc


def _signals_to(handler) -> dict:
    """Make SIGINT and SIGTERM call ``handler()`` (main thread only); the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, lambda signum, frame: handler()) for sig in (signal.SIGINT, signal.SIGTERM)}
