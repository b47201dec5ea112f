"""``audiokit stream TASK``: live audio through a model, microphone in, speakers and/or files out.

The sounddevice callback only exchanges blocks with the :class:`~audiokit.streaming.realtime.BlockEngine`
(bounded queues); a worker thread runs the model, a writer thread the files.  Output is the input delayed by
a constant latency (printed at start); under overload blocks are bypassed or dropped and counted.
Ctrl-C, SIGTERM or ``--duration`` ends the stream; ``--save`` files are then completed with the delayed tail
(uninterruptibly) and put in place; a stream that fails leaves none.

A task emitting frames (``classify``: running class posteriors; ``dance``: poses) plays nothing: the live report
shows its latest frame (the top class and its probability; where the dancer is), its events (the words detected)
are printed on stdout as they happen (``--json``: one object per line), ``--osc`` sends every frame as it comes
out, ``--save`` collects its frames into an ``.npz`` file and poses into BVH/MP4/GIF files
(:mod:`audiokit.cli.live_frames`). Such a task also takes an audio file as its input instead of a device
(``--input FILE``, :mod:`audiokit.cli.stream_file`).
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from audiokit.audio.io import STDIN_REFUSED, Placement
from audiokit.cli.batch import add_atten_lim_argument, naming_model
from audiokit.cli.live_devices import check_devices, device_index, device_rate, open_stream, sounddevice_module
from audiokit.cli.live_files import Taps, check_outputs, save_paths
from audiokit.cli.live_frames import MOTION_SUFFIXES, FrameOutputs, MotionSaves
from audiokit.errors import AudioError, AudiokitError, ModelKindError, one_line
from audiokit.hub.pretrained import load_model
from audiokit.hub.registry import DEFAULT_MODELS, default_model
from audiokit.motion.dance_data import STYLES
from audiokit.streaming.adapters import ADAPTERS
from audiokit.streaming.osc import FrameSender, check_osc_address, osc_target
from audiokit.streaming.pipeline import BlockPipeline, kept_input_share
from audiokit.streaming.realtime import POLICIES, BlockEngine, delay_blocks_for, worst_block_seconds

TASK_OPTIONS = {"threshold": "--threshold", "atten_lim_db": "--atten-lim", "style": "--style"}
"""The options only some tasks take (an adapter's ``options``), by argument name, with their flags."""
MAX_BLOCK_MS = 1000.0
MAX_DELAY_SECONDS = 10.0  # queue delay: beyond it a live stream is not live (and its tail is that long)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("stream", help="process live audio (microphone in, speakers/file out)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("task", nargs="?", choices=sorted(ADAPTERS), help="what to do with the audio")
    p.add_argument("--model", metavar="NAME|PATH",
                   help="pretrained model name or file (default: " + "; ".join(
                       f"{task}: {name}" for task, name in DEFAULT_MODELS.items() if task in ADAPTERS and name) + ")")
    p.add_argument("--checkpoint", type=Path, metavar="FILE", help="weights to load instead of the pretrained ones")
    p.add_argument("--list-devices", action="store_true", help="list the audio devices and exit")
    p.add_argument("--input-device", metavar="ID|NAME", help="capture device (default: the system default)")
    p.add_argument("--input", metavar="FILE",
                   help="tasks emitting frames (classify, dance): an audio file as the input instead of a device, "
                        "channels mixed down, read as fast as the model goes (--realtime: at its own pace)")
    p.add_argument("--realtime", action="store_true", help="--input: read the file at its own pace")
    p.add_argument("--output-device", metavar="ID|NAME", help="playback device (default: the system default)")
    p.add_argument("--no-play", action="store_true", help="capture only (use with --save)")
    p.add_argument("--device-rate", type=int, metavar="HZ",
                   help="device sample rate (default: the model's if the devices support it, else theirs)")
    p.add_argument("--block-ms", type=float, default=10.0, help="block length in ms (default: 10)")
    p.add_argument("--delay-blocks", type=int,
                   help="blocks of queue delay, the model's time budget per block (default: three times the slowest "
                        "block measured at start, at least 2)")
    p.add_argument("--overload", choices=POLICIES, default="bypass",
                   help="a block not processed in time: play it unprocessed (bypass), silence (drop), or wait "
                        "for the model (wait: only for unclocked devices such as files); default: bypass")
    p.add_argument("--record", type=Path, metavar="RAW.wav", help="also write the captured input")
    p.add_argument("--save", type=Path, metavar="OUT.wav", action="append",
                   help="also write the output (separate: OUT_s1.wav, OUT_s2.wav, ...), aligned with --record "
                        "plus the latency; classify: the posteriors of every frame, OUT.npz; dance: the poses, "
                        "OUT.bvh, OUT.mp4 (the input as its music), OUT.gif and/or OUT.npz (repeat --save)")
    p.add_argument("--play-speaker", type=int, default=1, metavar="N", help="separate: the speaker played (default 1)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds of input (default: Ctrl-C)")
    p.add_argument("--window-ms", type=float, help="windowed models: window length (separate default: 1000)")
    p.add_argument("--overlap-ms", type=float, help="windowed models: cross-fade (default: a quarter window)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the model (default: 1)")
    p.add_argument("--threshold", type=float, metavar="P",
                   help="classify: posterior a word must reach to be detected (default: 0.8)")
    add_atten_lim_argument(p)
    p.add_argument("--json", action="store_true", help="classify: print each detection as a JSON object")
    p.add_argument("--style", choices=("any", "auto", *STYLES.values()),
                   help="dance: the dance style (default: any; auto: picked from the music as it plays)")
    p.add_argument("--osc", metavar="HOST:PORT",
                   help="tasks emitting frames: send every frame as it comes out over OSC (UDP) to HOST:PORT")
    p.add_argument("--osc-address", metavar="/ADDRESS",
                   help="--osc: the address of the frame messages (default: /audiokit/pose for dance, "
                        "/audiokit/TASK otherwise)")
    p.add_argument("--extra-load-ms", type=float, default=0.0, help=argparse.SUPPRESS)  # overload tests
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    return p


def _check_options(args) -> None:
    """AudiokitError naming the first option whose value cannot work."""
    for name in ("block_ms", "duration", "window_ms", "overlap_ms", "device_rate", "delay_blocks", "threads"):
        value = getattr(args, name)
        if value is not None and not 0 < value < math.inf:
            raise AudiokitError(f"--{name.replace('_', '-')} {value:g}: must be a positive number")
    if args.block_ms > MAX_BLOCK_MS:
        raise AudiokitError(f"--block-ms {args.block_ms:g}: at most {MAX_BLOCK_MS:g}")
    if args.delay_blocks is not None and args.delay_blocks * args.block_ms > 1000 * MAX_DELAY_SECONDS:
        raise AudiokitError(f"--delay-blocks {args.delay_blocks}: {args.delay_blocks} blocks of {args.block_ms:g} ms "
                            f"is more than {MAX_DELAY_SECONDS:g} s of delay")
    if args.threads > (cores := _cores()):
        raise AudiokitError(f"--threads {args.threads}: this machine has {cores} cores for it")
    adapter = ADAPTERS[args.task]
    for name, flag in TASK_OPTIONS.items():
        value = getattr(args, name)
        if value is not None and name not in adapter.options:
            shown = f"{value:g}" if isinstance(value, float) else value
            raise AudiokitError(f"{flag} {shown}: not used by stream {args.task}")
    if args.threshold is not None and not (math.isfinite(args.threshold) and 0 < args.threshold <= 1):
        raise AudiokitError(f"--threshold {args.threshold:g}: must be a probability in (0, 1]")
    kept_input_share(args.atten_lim_db)
    if args.json and not adapter.reports_events:
        raise AudiokitError(f"--json: stream {args.task} prints no events")
    saves = args.save or []
    if len(saves) > 1 and not adapter.motion:
        raise AudiokitError(f"--save: stream {args.task} writes one file, {len(saves)} given")
    if args.osc_address is not None and args.osc is None:
        raise AudiokitError(f"--osc-address {args.osc_address}: needs --osc HOST:PORT")
    if args.osc is not None:  # before any audio: the host resolves, or one line
        osc_target(args.osc)
        if args.osc_address is not None:
            check_osc_address(args.osc_address)
    for name in ("input_device", "output_device", "device_rate", "delay_blocks", "record"):
        if args.input is not None and getattr(args, name) is not None:
            raise AudiokitError(f"--{name.replace('_', '-')}: not with --input (a file is the input)")
    if args.realtime and args.input is None:
        raise AudiokitError("--realtime: only with --input FILE (a device keeps its own pace)")


def _cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _report(engine: BlockEngine, block_s: float, extra: str = "", overall: bool = False) -> str:
    """The live status line; model time per block over the last 50 blocks, or with ``overall`` all of them."""
    c = engine.counters
    proc = c.proc_time / max(1, c.processed) if overall else c.mean_recent_proc()
    return (f"in {c.level_db:6.1f} dBFS | {proc * 1e3:6.2f} ms/block (max {c.proc_max * 1e3:.1f}) | "
            f"RTF {proc / block_s:5.2f} | overruns {c.overruns} skipped {c.skipped} late {c.late} "
            f"underruns {c.underruns} xruns {c.xruns} restarts {c.restarts}" + (f" | {extra}" if extra else ""))


def run(args: argparse.Namespace) -> int:
    if not args.list_devices:
        if args.task is None:
            raise AudiokitError("name a task: " + ", ".join(sorted(ADAPTERS)))
        _check_options(args)
        if args.input is not None:
            from audiokit.cli.stream_file import stream_file
            if args.input == "-":  # said as enhance says it (a file named so is ./-)
                raise AudioError(args.input, STDIN_REFUSED)
            args.input = Path(args.input)
            return stream_file(args, *_prepare(args, inputs=[args.input]))
    sd = sounddevice_module()
    try:
        check_devices(sd)
        if args.list_devices:
            print(sd.query_devices())
            return 0
        return _stream(sd, args)
    except sd.PortAudioError as exc:  # whatever PortAudio refuses, wherever: one line
        raise AudiokitError(f"audio device: {' '.join(str(exc).split())}") from None


def _prepare(args: argparse.Namespace, inputs=()) -> tuple:
    """``(adapter, --save files for Taps, frame outputs)``: the model loaded into the task's adapter, the outputs
    checked (none of them one of ``inputs``), the OSC sender ready; AudiokitError for what cannot work."""
    torch.set_num_threads(args.threads)
    model_name = args.model or default_model(args.task)
    with naming_model(model_name):  # as enhance names it
        model = load_model(model_name, checkpoint=args.checkpoint)
    rate_guess = int(getattr(model, "sample_rate", 16000))
    ms = lambda v: None if v is None else round(v * rate_guess / 1000)  # noqa: E731
    options = {name: getattr(args, name) for name in ADAPTERS[args.task].options}
    with naming_model(model_name, ModelKindError):
        adapter = ADAPTERS[args.task](model, window=ms(args.window_ms), overlap=ms(args.overlap_ms), **options)
    output = adapter.output
    if output.is_audio and args.osc is not None:
        raise AudiokitError(f"--osc: stream {args.task} gives audio, not frames")
    if output.is_audio and not 1 <= args.play_speaker <= output.count:
        raise AudiokitError(f"--play-speaker must be 1..{output.count}")
    given = args.save or []
    motion = [p for p in given if adapter.motion and p.suffix.lower() in MOTION_SUFFIXES]
    others = [p for p in given if p not in motion]
    if len(others) > 1:
        raise AudiokitError(f"--save: one {others[0].suffix or 'audio'} file, {len(others)} given")
    saves = save_paths(others[0] if others else None, output.count)
    check_outputs(saves + motion, args.record, args.force, output, MOTION_SUFFIXES if adapter.motion else (),
                  inputs)
    osc = None if args.osc is None else FrameSender(args.osc, args.osc_address or adapter.osc_address,
                                                    output.frame_rate)
    sinks = FrameOutputs(adapter, args.json, sys.stderr.isatty(), osc,
                          MotionSaves(motion, output.frame_rate, args.force) if motion else None)
    return adapter, saves, sinks


def _stream(sd, args: argparse.Namespace) -> int:
    microphone = device_index(sd, args.input_device, "input")
    adapter, saves, sinks = _prepare(args)
    output = adapter.output
    no_play = args.no_play or not output.is_audio  # frames are shown and saved, not played
    devices = (microphone, None if no_play else device_index(sd, args.output_device, "output"))

    rate = device_rate(sd, args, devices, adapter.sample_rate, no_play)
    block = max(1, round(rate * args.block_ms / 1000))
    make_pipeline = lambda: BlockPipeline(adapter.open, rate, adapter.sample_rate, output, block=block,  # noqa: E731
                                          dc_free=adapter.dc_free)
    pipeline = make_pipeline()
    worst = worst_block_seconds(make_pipeline, pipeline.latency + rate)  # also warms the model up
    delay_blocks = args.delay_blocks or delay_blocks_for(worst, block / rate)
    if delay_blocks * block / rate > MAX_DELAY_SECONDS:
        raise AudiokitError(f"the model's slowest block took {worst:.2f} s: too slow for live audio (its queue "
                            f"delay would exceed {MAX_DELAY_SECONDS:g} s)")
    engine = BlockEngine(pipeline.process, block, output, delay_blocks, args.overload,
                         adapter.bypass, queue_blocks=delay_blocks + 8, restart=pipeline.reset,
                         extra_load=args.extra_load_ms / 1000)
    latency = engine.delay + pipeline.latency
    limit = math.ceil(args.duration * rate / block) if args.duration else None
    done, last_out = threading.Event(), [engine.silence()]
    speaker = args.play_speaker - 1
    taps: Optional[Taps] = None
    interactive, interrupted, finished = sys.stderr.isatty(), False, False
    motion = sinks.motion
    failures: list = []  # what went wrong in the audio callback (or the tail): ends the stream as Ctrl-C does

    def callback(indata, outdata, frames, time_info, status):
        if status.input_overflow or status.output_underflow:
            engine.counters.xruns += 1
        seq = engine.counters.blocks
        block_in = indata[:, 0].astype(np.float32) / 32768  # 16-bit: what every device and the file plugin take
        out = engine.exchange(block_in)
        taps.put(seq, block_in, out)  # first: the files keep this block whatever fails below
        if output.is_audio or out.shape[1]:
            last_out[0] = out  # the latest frames, for the report
        sinks.put(out)
        if motion is not None:
            motion.hear(block_in)
        if outdata is not None:
            outdata[:, 0] = np.clip(np.rint(out[speaker] * 32768), -32768, 32767)
        if limit is not None and engine.counters.blocks >= limit:
            raise sd.CallbackStop

    try:
        kind = sd.InputStream if no_play else sd.Stream
        stream = open_stream(sd, kind, rate, block, devices[0] if no_play else devices, no_play, callback,
                             done.set, failures.append)  # the device is opened before any output file
    except (ValueError, sd.PortAudioError) as exc:
        raise AudiokitError(f"audio device: {' '.join(str(exc).split())}") from None
    print(f"stream {args.task}: {rate} Hz (model {adapter.sample_rate} Hz), "
          f"block {block} ({1e3 * block / rate:.1f} ms), "
          f"latency {latency} samples ({1e3 * latency / rate:.1f} ms) = queue {engine.delay} ({delay_blocks} blocks; "
          f"slowest block {1e3 * worst:.1f} ms) + model {pipeline.latency}", file=sys.stderr)
    previous_term = _stop_on_sigterm()
    try:
        taps = Taps(args.record, saves, rate, block, output, replace=args.force)
        engine.start()
        with stream:
            lat_in, lat_out = (stream.latency, 0.0) if no_play else stream.latency
            print(f"device latency (PortAudio): input {1e3 * lat_in:.1f} ms, output {1e3 * lat_out:.1f} ms",
                  file=sys.stderr)
            try:
                while not done.wait(0.5 if interactive else 2.0):
                    if engine.error is not None:
                        break
                    sinks.drain()
                    line = _report(engine, block / rate, adapter.describe(last_out[0]))
                    print(("\r" + line) if interactive else line, end="" if interactive else "\n",
                          file=sys.stderr, flush=True)
            except KeyboardInterrupt:
                interrupted = True
        finished = engine.error is None
    except sd.PortAudioError as exc:
        raise AudiokitError(f"audio device: {exc}") from None
    finally:
        previous = _hold_signals()  # finishing the files is not interrupted, by Ctrl-C or SIGTERM
        try:
            stream.close()
            summary = (_report(engine, block / rate, adapter.describe(last_out[0]), overall=True)
                       + f" | blocks {engine.counters.blocks} processed {engine.counters.processed}")  # the live part
            if taps is not None:
                captured = engine.counters.blocks * block  # input samples
                length = captured + latency if output.is_audio else math.ceil(captured * output.frame_rate / rate)
                sinks.limit = None if output.is_audio else length
                tail_failure = _finish(engine, taps, bool(saves) or sinks.wanted, block, latency, length,
                                       keep=finished, on_out=sinks.put,
                                       save_motion=None if motion is None else partial(motion.save, rate))
                if tail_failure is not None and not failures:
                    failures.append(tail_failure)
        finally:
            engine.stop()
            sinks.close()
            _restore_signals(previous if previous_term is None else {**previous, signal.SIGTERM: previous_term})
    if interactive:
        print(file=sys.stderr)
    if engine.error is not None:
        raise AudiokitError(f"model failed during streaming: {engine.error}")
    sinks.drain(end=True)
    print(("stopped: " if failures else "interrupted: " if interrupted else "") + "done: " + summary
          + ("" if output.is_audio else sinks.summary())
          + (f" | writer dropped {taps.dropped}" if taps.dropped else ""), file=sys.stderr)
    if failures:
        kept = "; the files hold what it produced" if saves or args.record or motion is not None else ""
        raise AudiokitError(f"streaming failed: {one_line(failures[0])} (the stream stopped there{kept})")
    return 0


def _finish(engine: BlockEngine, taps: Taps, tail: bool, block: int, latency: int, length: int,
            keep: bool, on_out=None, save_motion=None) -> Optional[Exception]:
    """With ``tail`` (--save files, or a task's events), run the delayed tail (the device is gone: the engine waits
    for the model): the --save files get ``length`` samples or frames in all, ``on_out`` every tail output;
    then put every file in place (``keep``: ``save_motion(placement)`` first, the motion files, and the others
    through the same placement, all or none) or delete them. An exception of the tail's own (the code the audio
    callback runs) ends the tail there, the files kept as they are; it is returned."""
    captured, failure = engine.counters.blocks, None
    engine.policy = "wait"
    taps.limit_saves(length)
    if keep and tail:
        for i in range(math.ceil(latency / block)):
            if engine.error is not None:
                break  # the model failed: the files go
            try:
                out = engine.exchange(np.zeros(block, np.float32))
                taps.put(captured + i, None, out)
                if on_out is not None:
                    on_out(out)
            except Exception as exc:  # noqa: BLE001 - reported by the caller
                failure = exc
                break
    keep = keep and engine.error is None
    placement = Placement(taps.files.replace)
    if keep and save_motion is not None:
        try:
            save_motion(placement)  # (withdrawn by itself when it fails)
        except BaseException:
            taps.close(False)
            raise
    taps.close(keep, placement)
    return failure


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _hold_signals() -> dict:
    """Ignore SIGINT and SIGTERM (main thread only); the previous handlers, for ``_restore_signals``."""
    if not _main_thread():
        return {}
    return {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def _stop_on_sigterm():
    """Make SIGTERM end the stream as Ctrl-C does (files completed); returns the previous handler."""
    if not _main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
