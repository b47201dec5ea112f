"""``audiokit stream TASK``: live audio through a model, microphone in, speakers and/or files out.

The sounddevice callback only exchanges blocks with the :class:`~audiokit.streaming.realtime.BlockEngine`
(bounded queues); a worker thread runs the model, a writer thread the files.  Output is the input delayed by
a constant latency (printed at start); under overload blocks are bypassed or dropped and counted.
Ctrl-C (or ``--duration``) ends the stream; ``--save`` files are then completed with the delayed tail.
"""
from __future__ import annotations

import argparse
import math
import queue
import sys
import threading
from pathlib import Path
from typing import List, Optional

import numpy as np
import soundfile as sf
import torch

from audiokit.errors import AudioError, AudiokitError
from audiokit.hub.pretrained import DEFAULT_ENHANCER, load_model
from audiokit.streaming.adapters import ADAPTERS
from audiokit.streaming.realtime import POLICIES, BlockEngine, BlockPipeline

DEFAULT_MODELS = {"enhance": DEFAULT_ENHANCER}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("stream", help="process live audio (microphone in, speakers/file out)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("task", nargs="?", choices=sorted(ADAPTERS), help="what to do with the audio")
    p.add_argument("--model", metavar="NAME|PATH", help=f"pretrained model name or file (enhance: {DEFAULT_ENHANCER})")
    p.add_argument("--checkpoint", type=Path, metavar="FILE", help="weights to load instead of the pretrained ones")
    p.add_argument("--list-devices", action="store_true", help="list the audio devices and exit")
    p.add_argument("--input-device", metavar="ID|NAME", help="capture device (default: the system default)")
    p.add_argument("--output-device", metavar="ID|NAME", help="playback device (default: the system default)")
    p.add_argument("--no-play", action="store_true", help="capture only (use with --save)")
    p.add_argument("--device-rate", type=int, metavar="HZ",
                   help="device sample rate (default: the model's if the devices support it, else theirs)")
    p.add_argument("--block-ms", type=float, default=10.0, help="block length in ms (default: 10)")
    p.add_argument("--delay-blocks", type=int, default=2,
                   help="blocks of queue delay, the model's time budget per block (default: 2)")
    p.add_argument("--overload", choices=POLICIES, default="bypass",
                   help="a block not processed in time: play it unprocessed (bypass), silence (drop), or wait "
                        "for the model (wait: only for unclocked devices such as files); default: bypass")
    p.add_argument("--record", type=Path, metavar="RAW.wav", help="also write the captured input")
    p.add_argument("--save", type=Path, metavar="OUT.wav",
                   help="also write the output (separate: OUT_s1.wav, OUT_s2.wav, ...), aligned with --record "
                        "plus the latency")
    p.add_argument("--play-speaker", type=int, default=1, metavar="N", help="separate: the speaker played (default 1)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds of input (default: Ctrl-C)")
    p.add_argument("--window-ms", type=float, help="windowed models: window length (separate default: 1000)")
    p.add_argument("--overlap-ms", type=float, help="windowed models: cross-fade (default: a quarter window)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the model (default: 1)")
    p.add_argument("--extra-load-ms", type=float, default=0.0, help=argparse.SUPPRESS)  # overload tests
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    return p


class _WavWriter:
    """16-bit WAV written block by block under a temporary name, renamed when closed (at most ``limit`` samples)."""

    def __init__(self, path: Path, rate: int, limit: Optional[int] = None):
        self.path, self.limit, self.written = path, limit, 0
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.file = sf.SoundFile(str(self.tmp), "w", samplerate=rate, channels=1, subtype="PCM_16", format="WAV")

    def write(self, samples: np.ndarray) -> None:
        if self.limit is not None:
            samples = samples[:max(0, self.limit - self.written)]
        self.file.write(samples)
        self.written += len(samples)

    def close(self) -> None:
        self.file.close()
        self.tmp.replace(self.path)


class _Taps:
    """Writer thread for --record (input blocks) and --save (output blocks): the callback only queues them."""

    def __init__(self, record: Optional[Path], saves: List[Path], rate: int, block: int):
        self.record = _WavWriter(record, rate) if record else None
        self.saves = [_WavWriter(p, rate) for p in saves]
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

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        for writer in ([self.record] if self.record else []) + self.saves:
            writer.close()


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise AudiokitError(f"live audio needs PortAudio and sounddevice (apt-get install libportaudio2; "
                            f"pip install 'audiokit[mic]'): {exc}") from None
    return sounddevice


def _device(value: Optional[str]):
    return int(value) if value is not None and value.isdigit() else value


def _device_rate(sd, args, model_rate: int) -> int:
    """The model's rate if both devices take it, else the input device's default rate."""
    if args.device_rate:
        return args.device_rate
    try:
        sd.check_input_settings(_device(args.input_device), channels=1, dtype="int16", samplerate=model_rate)
        if not args.no_play:
            sd.check_output_settings(_device(args.output_device), channels=1, dtype="int16", samplerate=model_rate)
        return model_rate
    except Exception:
        return int(sd.query_devices(_device(args.input_device), "input")["default_samplerate"])


def _save_paths(save: Optional[Path], outputs: int) -> List[Path]:
    if save is None:
        return []
    if outputs == 1:
        return [save]
    return [save.with_name(f"{save.stem}_s{i + 1}{save.suffix}") for i in range(outputs)]


def _report(engine: BlockEngine, block_s: float, extra: str = "") -> str:
    c = engine.counters
    proc = c.mean_recent_proc()
    return (f"in {c.level_db:6.1f} dBFS | {proc * 1e3:6.2f} ms/block (max {c.proc_max * 1e3:.1f}) | "
            f"RTF {proc / block_s:5.2f} | overruns {c.overruns} skipped {c.skipped} late {c.late} "
            f"underruns {c.underruns} xruns {c.xruns} restarts {c.restarts}" + (f" | {extra}" if extra else ""))


def run(args: argparse.Namespace) -> int:
    sd = _sounddevice()
    if args.list_devices:
        print(sd.query_devices())
        return 0
    if args.task is None:
        raise AudiokitError("name a task: " + ", ".join(sorted(ADAPTERS)))
    torch.set_num_threads(args.threads)
    model_name = args.model or DEFAULT_MODELS.get(args.task)
    if model_name is None:
        raise AudiokitError(f"stream {args.task} needs --model (no default {args.task} model is shipped yet)")
    model = load_model(model_name, checkpoint=args.checkpoint)
    rate_guess = int(getattr(model, "sample_rate", 16000))
    ms = lambda v: None if v is None else round(v * rate_guess / 1000)  # noqa: E731
    adapter = ADAPTERS[args.task](model, window=ms(args.window_ms), overlap=ms(args.overlap_ms))
    if not 1 <= args.play_speaker <= adapter.outputs:
        raise AudiokitError(f"--play-speaker must be 1..{adapter.outputs}")
    saves = _save_paths(args.save, adapter.outputs)
    for path in saves + ([args.record] if args.record else []):
        if path.exists() and not args.force:
            raise AudioError(path, "already exists (use --force to overwrite)")

    rate = _device_rate(sd, args, adapter.sample_rate)
    block = max(1, round(rate * args.block_ms / 1000))
    pipeline = BlockPipeline(adapter.open, adapter.outputs, adapter.sample_rate, rate, block)
    engine = BlockEngine(pipeline.process, block, adapter.outputs, args.delay_blocks, args.overload,
                         adapter.bypass, restart=pipeline.reset, extra_load=args.extra_load_ms / 1000)
    latency = engine.delay + pipeline.latency
    limit = math.ceil(args.duration * rate / block) if args.duration else None
    taps = _Taps(args.record, saves, rate, block)
    done, last_out = threading.Event(), [np.zeros((adapter.outputs, block), np.float32)]
    speaker = args.play_speaker - 1

    def callback(indata, outdata, frames, time_info, status):
        if status.input_overflow or status.output_underflow:
            engine.counters.xruns += 1
        seq = engine.counters.blocks
        block_in = indata[:, 0].astype(np.float32) / 32768  # 16-bit: what every device and the file plugin take
        out = engine.exchange(block_in)
        last_out[0] = out
        taps.put(seq, block_in, out)
        if outdata is not None:
            outdata[:, 0] = np.clip(np.rint(out[speaker] * 32768), -32768, 32767)
        if limit is not None and engine.counters.blocks >= limit:
            raise sd.CallbackStop

    print(f"stream {args.task}: {rate} Hz (model {adapter.sample_rate} Hz), block {block} ({1e3 * block / rate:.1f} ms), "
          f"latency {latency} samples ({1e3 * latency / rate:.1f} ms) = queue {engine.delay} + model "
          f"{pipeline.latency}", file=sys.stderr)
    interactive, interrupted = sys.stderr.isatty(), False
    engine.start()
    try:
        kind = sd.InputStream if args.no_play else sd.Stream
        devices = _device(args.input_device) if args.no_play else (_device(args.input_device),
                                                                      _device(args.output_device))
        stream = _open(sd, kind, rate, block, devices, args.no_play, callback, done.set)
        with stream:
            lat_in, lat_out = (stream.latency, 0.0) if args.no_play else stream.latency
            print(f"device latency (PortAudio): input {1e3 * lat_in:.1f} ms, output {1e3 * lat_out:.1f} ms",
                  file=sys.stderr)
            try:
                while not done.wait(0.5 if interactive else 2.0):
                    if engine.error is not None:
                        break
                    line = _report(engine, block / rate, ADAPTERS[args.task].describe(adapter, last_out[0]))
                    print(("\r" + line) if interactive else line, end="" if interactive else "\n",
                          file=sys.stderr, flush=True)
            except KeyboardInterrupt:
                interrupted = True
    except sd.PortAudioError as exc:
        raise AudiokitError(f"audio device: {exc}") from None
    finally:
        captured = engine.counters.blocks * block
        engine.policy = "wait"  # no device any more: complete the saved output with the delayed tail
        taps.limit_saves(captured + latency)
        if engine.error is None and saves:
            seq = engine.counters.blocks
            for i in range(math.ceil(latency / block)):
                taps.put(seq + i, None, engine.exchange(np.zeros(block, np.float32)))
        engine.stop()
        taps.close()
    if interactive:
        print(file=sys.stderr)
    if engine.error is not None:
        raise AudiokitError(f"model failed during streaming: {engine.error}")
    print(("interrupted: " if interrupted else "") + "done: " + _report(engine, block / rate)
          + f" | blocks {engine.counters.blocks} processed {engine.counters.processed}"
          + (f" | writer dropped {taps.dropped}" if taps.dropped else ""), file=sys.stderr)
    return 0


def _open(sd, kind, rate, block, devices, no_play, callback, finished):
    """A started-on-enter sounddevice stream calling ``callback(indata, outdata|None, frames, time, status)``."""
    if no_play:
        def wrapped(indata, frames, time_info, status):
            callback(indata, None, frames, time_info, status)
    else:
        wrapped = callback
    return kind(samplerate=rate, blocksize=block, device=devices, channels=1, dtype="int16", latency="low",
                callback=wrapped, finished_callback=finished)
