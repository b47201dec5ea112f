"""Speed of audiokit's models on this CPU: real-time factors, chunk times, latency, memory.

Models (``--models``, default all):

* ``causal_small``: the shipped causal FRCRN (``pretrained/frcrn_causal_small``);
* ``official``: FRCRN_SE_16K at the official size (parity checkpoint of ../shared, else random weights);
* ``separator_small``: the shipped separator ``mossformer2_ss_8k_small`` (8 kHz);
* ``se48k``: MossFormer2_SE_48K at the official size, random weights, at most 6 s of input;
* ``lssl``: not a model but the Linear State-Space Layer (``audiokit.nn.lssl``, H=128 channels, N=64
  states, random weights, 1 thread): the time and peak memory of its convolution kernel for
  L = 1k, 4k, 16k and 64k samples (each length in a fresh subprocess; peak memory is the rise of
  VmHWM over the resident memory before the computation, since torch's allocations escape
  ``tracemalloc``), and its step mode's CPU time per second of 16 kHz audio fed in chunks of 1,
  16 and 160 samples (chunks of 1 on a tenth of a second, scaled), beside the default
  ``LSSLClassifier`` (raw 16 kHz, 6 blocks) streamed in 10 ms chunks.  About half a minute.
* ``kws``: the shipped keyword spotter ``lssl_speech_commands`` on 1 thread: training throughput of its
  convolution mode (forward and backward, batches of 32 one-second clips, clips per CPU second),
  inference real-time factor in convolution mode (10 s at once) and in step mode (10 ms chunks), and the
  detection latency of ``--spot``: 20 held-out Speech Commands words (test speakers of the recipe's split,
  ``../shared/data/speech_commands``; skipped without it) 1.5 s apart, spotted as ``audiokit classify
  --spot`` does; latency is from the end of the word (last sample within 30 dB of the clip's peak) to the
  frame whose detection line is printed (the detection's end, when the posterior falls below half the
  threshold), plus the compute time of the block that prints it; also the onset of the detection.
* ``dance``: the dance generator on 1 thread: the shipped ``DEFAULT_MODELS["dance"]`` when there is one, else the
  architecture of ``recipes/dance/dance_lstm.yaml`` at random initialisation (the printout says which).
  Real-time factor of offline generation (``model.dance`` on 30 s of music, ``--quick`` 2 s) and of streaming
  generation through the adapter ``audiokit stream dance`` runs, fed 10 ms blocks (per-block times: the blocks
  that complete a 40 ms motion frame do the work), the stated latency (one motion frame plus the spectrum
  window a pose reads), and the real-time factor of the beat sync ``audiokit dance`` adds after offline generation
  (``audiokit.dancing.beat_synced``: librosa's beat tracker on the music, motion beats, the retiming).

For each model and each thread count it measures, each in a fresh subprocess (so that peak
memory, VmHWM, belongs to that one measurement):

* offline: real-time factor (processing time / audio duration) of the model's offline entry
  point, ``enhance`` (or ``separate`` for a separator);
* file (causal enhancers): real-time factor of ``audiokit.enhance`` on the signal as files are
  enhanced, the model run on large chunks with its state carried over (engine ``chunks``), and the
  same blocks run frame by frame on each frame engine of ``--engines`` (how files were enhanced
  before); the speed ratio chunks / frames is printed below the table (``file_speedup`` in JSON);
* stream: real-time factor of the stream that ``audiokit stream`` runs for the model (its task
  adapter with default settings: exact causal streaming for causal models, cross-faded windows
  otherwise: 4 s for an enhancer, 1 s for a separator) fed 10 ms chunks, with the 50th/99th
  percentile and the maximum of the per-chunk time (a windowed stream does its work in the
  few chunks that complete a window: see the maximum), and the stream's stated latency.
  Causal models stream on a frame engine (``--engines``, default ``auto``: ONNX Runtime when it
  works, else TorchScript; ``--engines auto torch`` adds TorchScript rows for comparison).

Real-time factors are given from wall-clock time (``rtf``) and from this
process's CPU time (``cpu_rtf``, steadier on a shared machine; with 2 threads
it sums both threads' time).

Reference comparisons time ClearerVoice-Studio's code for an official network beside ours on
the same input (1 thread, the two alternated, best of the repeats) and report the speed ratio
and the largest output difference (ours against the reference's output, speakers in its order):

* ``--reference-code DIR``: DIR is its ``frcrn_se`` package (e.g. ``.../clearvoice/models/frcrn_se``):
  FRCRN_SE_16K (``DCCRN``) with the parity checkpoint of ../shared, else seeded random weights;
* ``--reference-code-ss DIR``: DIR is its ``mossformer2_ss`` package: MossFormer2_SS_16K (the
  ``MossFormer2_SS_16K`` wrapper, official size) with seeded random weights, at most 4 s of input;
  needs the reference's own dependencies (einops, rotary-embedding-torch, torchinfo).

The reference network's state dict is saved to a temporary file and loaded into ours with
``load_clearvoice``, as an official checkpoint would be.

    python tools/benchmark.py [--quick] [--json] [--threads 1 2] [--models NAME ...] [--engines auto torch]
        [--reference-code DIR] [--reference-code-ss DIR]
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional, Tuple

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PARITY_DIR = REPO.parent / "shared" / "parity"
PARITY = PARITY_DIR / "frcrn_se_16k_small"
SMALL_FILE = REPO / "pretrained" / "frcrn_causal_small.safetensors"
SMALL_CONFIG = dict(win_len=512, win_inc=256, fft_len=512, channels=16, fsmn_hidden=16,
                    fsmn_order=10, causal=True)
SEPARATOR_FILE = REPO / "pretrained" / "mossformer2_ss_8k_small.safetensors"
SEPARATOR_CONFIG = dict(in_channels=64, out_channels=64, num_blocks=2, kernel_size=32, sample_rate=8000)
MODELS = ("causal_small", "official", "separator_small", "se48k")
#: what ``--models`` picks from: the models, and the LSSL layer's own section
SECTIONS = MODELS + ("lssl", "kws", "dance")
DANCE_RECIPE = REPO / "recipes" / "dance" / "dance_lstm.yaml"
LSSL_LENGTHS = (1000, 4000, 16000, 64000)
LSSL_CHUNKS = (1, 16, 160)
#: longest input (s) per model, for the slow ones
MAX_SECONDS = {"se48k": 6.0}


def peak_rss_kb() -> int:
    """This process's own peak resident memory (kB); ``ru_maxrss`` would include the parent's at fork."""
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM")).split()[1])


def build(name: str):
    """``(model in eval mode, where its weights come from)``."""
    from audiokit.hub.clearvoice import load_clearvoice
    from audiokit.hub.pretrained import load_model
    from audiokit.models.frcrn import FRCRN
    from audiokit.models.mossformer2 import MossFormer2Enhancer, MossFormer2Separator
    torch.manual_seed(0)
    shipped = {"causal_small": (SMALL_FILE, FRCRN, SMALL_CONFIG),
               "separator_small": (SEPARATOR_FILE, MossFormer2Separator, SEPARATOR_CONFIG)}
    if name in shipped:
        path, cls, config = shipped[name]
        if path.is_file():
            return load_model(str(path)), f"pretrained {path.name}"
        return cls(**config).eval(), "random weights (pretrained file absent)"
    if name == "se48k":
        return MossFormer2Enhancer().eval(), "random weights, official size"
    if (PARITY / "checkpoint.pt").is_file():
        return load_clearvoice("FRCRN_SE_16K", PARITY / "checkpoint.pt"), "parity checkpoint (random weights)"
    return FRCRN(reference_layout=True).eval(), "random weights (parity checkpoint absent)"


def test_signal(seconds: float, rate: int = 16000) -> torch.Tensor:
    """``[1, T]`` noisy harmonic tone, fixed seed."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    return torch.from_numpy((wav + 0.05 * rng.standard_normal(t.size)).astype(np.float32))[None]


def _best_time(fn, repeats: int) -> Tuple[float, float, Any]:
    """Shortest ``(wall-clock, process CPU)`` seconds of ``repeats`` calls (each minimum on its own),
    and the last call's result.

    Process time counts only this process's CPU work, so it is the steadier
    figure on a shared machine; with several threads it adds up their time.
    """
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, result


def _task(model) -> str:
    """The ``audiokit stream`` task of ``model``: ``separate`` or ``enhance``."""
    return "separate" if hasattr(model, "separate") else "enhance"


def measure(model_name: str, mode: str, threads: int, seconds: float, repeats: int,
            engine: str = "auto") -> Optional[dict]:
    """One measurement in this process (see the module docstring); ``engine``: the frame engine of
    causal streams (``audiokit.streaming.engines``), or ``chunks`` for a file on large chunks.  None for
    a stream of a model without frame engines (windowed) and an engine other than ``auto`` (the same
    measurement as ``auto``), and for the file mode of other than causal enhancers."""
    from audiokit.streaming.adapters import ADAPTERS
    os.environ["AUDIOKIT_STREAM_BACKEND"] = "auto" if engine == "chunks" else engine
    torch.set_num_threads(threads)
    model, weights = build(model_name)
    if mode == "stream" and engine != "auto" and not getattr(model, "causal", False):
        return None
    if mode == "file" and (_task(model) != "enhance" or not getattr(model, "causal", False)):
        return None
    rate = model.sample_rate
    wav = test_signal(seconds, rate)
    result = dict(model=model_name, weights=weights, mode=mode, threads=threads, seconds=seconds)
    with torch.no_grad():
        if mode == "offline":
            offline = getattr(model, _task(model))
            offline(wav[:, :rate // 2])  # warm-up
            wall, cpu, _ = _best_time(lambda: offline(wav), repeats)
            result.update(rtf=wall / seconds, cpu_rtf=cpu / seconds)
        elif mode == "file":
            from audiokit.api import enhance
            enhancer = _file_enhancer(model, frames=engine != "chunks")
            enhance(wav[0, :rate // 2].numpy(), rate, enhancer)  # warm-up (builds the frame engine)
            wall, cpu, _ = _best_time(lambda: enhance(wav[0].numpy(), rate, enhancer), repeats)
            result.update(rtf=wall / seconds, cpu_rtf=cpu / seconds, engine=engine)
            if engine != "chunks":
                result["engine"] = enhancer.open(1).backend
        else:
            chunk = rate // 100
            adapter = ADAPTERS[_task(model)](model)
            warm = adapter.open()
            for i in range(0, rate // 2, chunk):
                warm.feed(wav[:, i:i + chunk])
            warm.flush()
            best, best_cpu = None, float("inf")
            for _ in range(repeats):
                stream, times = adapter.open(), []
                start_cpu = time.process_time()
                for i in range(0, wav.shape[-1], chunk):
                    start = time.perf_counter()
                    stream.feed(wav[:, i:i + chunk])
                    times.append(time.perf_counter() - start)
                start = time.perf_counter()
                stream.flush()
                total = sum(times) + time.perf_counter() - start
                best_cpu = min(best_cpu, time.process_time() - start_cpu)
                if best is None or total < best[0]:
                    best = (total, times)
            result.update(rtf=best[0] / seconds, cpu_rtf=best_cpu / seconds, chunk_ms=1000 * chunk / rate,
                          chunk_p50_ms=1000 * float(np.percentile(best[1], 50)),
                          chunk_p99_ms=1000 * float(np.percentile(best[1], 99)), chunk_max_ms=1000 * max(best[1]),
                          latency_ms=1000 * stream.latency_samples / rate,
                          engine=getattr(stream, "backend", "window"))
    result["peak_rss_mb"] = peak_rss_kb() / 1024
    return result


def _file_enhancer(model, frames: bool):
    """``audiokit.api.Enhancer`` as files use it (chunks), or with ``frames`` its blocks run frame by frame."""
    from audiokit.api import Enhancer
    from audiokit.streaming.pipeline import ChannelStreams
    enhancer = Enhancer(model)
    if frames:
        enhancer.open = lambda channels: ChannelStreams(model, channels, enhancer.chunk, window=enhancer.window,
                                                        frames=True)
    return enhancer


def file_speedups(rows) -> list:
    """For each model and thread count with file rows: how many times faster chunks are than each frame engine."""
    chunks = {(r["model"], r["threads"]): r for r in rows if r["mode"] == "file" and r["engine"] == "chunks"}
    return [dict(model=r["model"], threads=r["threads"], engine=r["engine"], speedup=r["rtf"] / base["rtf"],
                 cpu_speedup=r["cpu_rtf"] / base["cpu_rtf"])
            for r in rows if r["mode"] == "file" and r["engine"] != "chunks"
            and (base := chunks.get((r["model"], r["threads"]))) is not None]


def format_speedups(speedups) -> str:
    return "\n".join(f"{s['model']}, {s['threads']} thread(s): a file on chunks is {s['speedup']:.2f}x as fast as "
                     f"frame by frame on {s['engine']} (CPU time {s['cpu_speedup']:.2f}x)" for s in speedups)


#: official constructor arguments of the compared networks (ours take the reference's)
FRCRN_SE_16K_ARGS = dict(complex=True, model_complexity=45, model_depth=14, log_amp=False, padding_mode="zeros",
                         win_len=640, win_inc=320, fft_len=640, win_type="hanning")
SS_16K_ARGS = dict(in_channels=512, out_channels=512, num_blocks=24, kernel_size=16, norm="ln", num_spks=2,
                   skip_around_intra=True, use_global_pos_enc=True, max_length=20000)


def _reference_ss_16k(module, args: dict) -> torch.nn.Module:
    """The reference's top-level ``MossFormer2_SS_16K`` (its network is ``.model``, a ``MossFormer``)."""
    return module.MossFormer2_SS_16K(SimpleNamespace(
        encoder_embedding_dim=args["in_channels"], mossformer_sequence_dim=args["out_channels"],
        num_mossformer_layer=args["num_blocks"], encoder_kernel_size=args["kernel_size"], num_spks=args["num_spks"]))


@dataclass(frozen=True)
class Reference:
    """How to compare an official network with ClearerVoice-Studio's code (its ``option`` names the package folder)."""

    option: str  #: command-line option
    name: str  #: official network name, for ``load_clearvoice``
    module: str  #: module of the reference package that defines the network
    args: dict  #: official constructor arguments
    build: Callable  #: (reference module, args) -> reference model
    checkpointed: Callable  #: reference model -> the module whose state dict is the official checkpoint
    ours_output: Callable  #: our model's output -> waveforms [B, T] or [B, S, T]
    reference_output: Callable  #: the reference model's output -> the same
    parity: Optional[str] = None  #: parity folder whose checkpoint gives the weights, when present
    max_seconds: float = math.inf  #: longest input
    edge: int = 0  #: samples at each end left out of the "interior" difference (zero-padded windows)


REFERENCES = {
    "frcrn_se": Reference("--reference-code", "FRCRN_SE_16K", "frcrn", FRCRN_SE_16K_ARGS,
                          lambda module, args: module.DCCRN(**args), lambda net: net, lambda out: out.wav,
                          lambda out: out[1], parity="frcrn_se_16k_small", edge=FRCRN_SE_16K_ARGS["win_len"]),
    "mossformer2_ss": Reference("--reference-code-ss", "MossFormer2_SS_16K", "mossformer2", SS_16K_ARGS,
                                _reference_ss_16k, lambda net: net.model, lambda out: out,
                                lambda out: torch.stack(out, 1), max_seconds=4.0),
}


def _perturb_constants(model: torch.nn.Module, scale: float = 0.1) -> None:
    """Add noise to every parameter the constructor leaves constant (norm gains and biases, PReLU slopes,
    scales), so that each one matters in the output difference."""
    with torch.no_grad():
        for param in model.parameters():
            if bool((param == param.flatten()[0]).all()):
                param.add_(scale * torch.randn_like(param))


def compare_reference(family: str, code_dir: str, seconds: float, repeats: int) -> dict:
    """Our official-size network ``family`` (a :data:`REFERENCES` key) against the reference code, 1 thread."""
    from audiokit.hub.clearvoice import load_clearvoice
    torch.set_num_threads(1)
    spec = REFERENCES[family]
    folder = Path(code_dir).resolve()
    sys.path.insert(0, str(folder.parent))
    try:
        module = importlib.import_module(f"{folder.name}.{spec.module}")
    except ImportError as exc:
        return dict(network=spec.name, skipped=f"reference code in {folder} not importable: {exc}")
    torch.manual_seed(0)
    reference = spec.build(module, spec.args).eval()
    parity = PARITY_DIR / spec.parity / "checkpoint.pt" if spec.parity else None
    if parity is not None and parity.is_file():
        state = torch.load(parity, map_location="cpu", weights_only=True)["model"]
        spec.checkpointed(reference).load_state_dict(state)
        weights = "parity checkpoint (random weights)"
    else:
        _perturb_constants(reference)
        weights = "seeded random weights"
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "checkpoint.pt"
        torch.save({"model": spec.checkpointed(reference).state_dict()}, checkpoint)
        ours = load_clearvoice(spec.name, checkpoint, **spec.args)
    seconds = min(seconds, spec.max_seconds)
    wav = test_signal(seconds, ours.sample_rate)
    runs = {"ours": lambda x: spec.ours_output(ours(x)), "reference": lambda x: spec.reference_output(reference(x))}
    best, outputs = {side: (math.inf, math.inf) for side in runs}, {}
    with torch.no_grad():
        for run in runs.values():
            run(wav[:, :ours.sample_rate // 2])  # warm-up
        for _ in range(repeats):  # alternate, so that both see the same machine load
            for side, run in runs.items():
                wall, cpu, outputs[side] = _best_time(lambda run=run: run(wav), 1)
                best[side] = (min(best[side][0], wall), min(best[side][1], cpu))
    diff = (outputs["ours"] - outputs["reference"]).abs()[0]
    (wall_ours, cpu_ours), (wall_ref, cpu_ref) = best["ours"], best["reference"]
    result = dict(network=spec.name, weights=weights, seconds=seconds, ours_rtf=wall_ours / seconds,
                  reference_rtf=wall_ref / seconds, speedup=wall_ref / wall_ours, ours_cpu_rtf=cpu_ours / seconds,
                  reference_cpu_rtf=cpu_ref / seconds, cpu_speedup=cpu_ref / cpu_ours,
                  max_abs_diff=diff.max().item(), max_abs_reference=outputs["reference"].abs().max().item())
    if spec.edge:
        result["max_abs_diff_interior"] = diff[..., spec.edge:-spec.edge].max().item()
    return result


def format_reference(ref: dict) -> str:
    """One line for a :func:`compare_reference` result."""
    if "skipped" in ref:
        return f"{ref['network']} vs reference code: skipped ({ref['skipped']})"
    interior = f" (interior {ref['max_abs_diff_interior']:.2e})" if "max_abs_diff_interior" in ref else ""
    return (f"official {ref['network']} vs reference code, {ref['seconds']:g} s, 1 thread, {ref['weights']}: "
            f"ours RTF {ref['ours_rtf']:.3f} (CPU {ref['ours_cpu_rtf']:.3f}), reference RTF "
            f"{ref['reference_rtf']:.3f} (CPU {ref['reference_cpu_rtf']:.3f}), {ref['speedup']:.2f}x faster "
            f"(CPU time {ref['cpu_speedup']:.2f}x), max |diff| {ref['max_abs_diff']:.2e}{interior} "
            f"(max |reference output| {ref['max_abs_reference']:.2e})")


def _reset_peak_rss() -> None:
    """Start VmHWM afresh from the current resident memory (Linux ``clear_refs``; no-op where refused)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def _resident_kb() -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1])


def measure_lssl_kernel(length: int, repeats: int, channels: int = 128, state_size: int = 64) -> dict:
    """Time (best of ``repeats``) and peak memory of one LSSL kernel ``[channels, length]``, 1 thread."""
    from audiokit.nn.lssl import LSSL
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layer = LSSL(channels, state_size)
    with torch.no_grad():
        layer.kernel(64)  # warm-up: libraries loaded before the baseline
        _reset_peak_rss()
        before = _resident_kb()
        wall, cpu, kernel = _best_time(lambda: layer.kernel(length), repeats)
        peak_mb = (peak_rss_kb() - before) / 1024
    return dict(length=length, ms=1000 * wall, cpu_ms=1000 * cpu, peak_mb=peak_mb,
                kernel_mb=kernel.numel() * kernel.element_size() / 2 ** 20)


def measure_lssl_steps(repeats: int, rate: int = 16000) -> dict:
    """CPU seconds per second of ``rate`` audio: one LSSL (H=128, N=64) stepped in chunks of each of
    :data:`LSSL_CHUNKS` samples, and the default ``LSSLClassifier`` streamed in 10 ms chunks; 1 thread."""
    from audiokit.models.lssl_classifier import LSSLClassifier
    from audiokit.nn.lssl import LSSL
    from audiokit.nn.state import streaming
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layer = LSSL(128, 64).eval()
    result = {}
    with torch.no_grad():
        for chunk in LSSL_CHUNKS:
            samples = rate // 10 if chunk == 1 else rate
            x = torch.randn(1, samples, 128)

            def run(chunk=chunk, x=x):
                state = None
                for piece in x.split(chunk, dim=1):
                    _, state = layer.step(piece, state)

            layer.step(x[:, :chunk], None)  # warm-up (builds the cached chunk matrices)
            _, cpu, _ = _best_time(run, repeats)
            result[f"layer_chunk_{chunk}"] = cpu * rate / samples
        model = LSSLClassifier().eval()
        wav = test_signal(1.0, rate)

        def stream():
            with streaming(model):
                for piece in wav.split(rate // 100, dim=-1):
                    model(piece)

        model.frame_logits(wav[:, :rate // 10])
        stream()  # warm-up
        _, cpu, _ = _best_time(stream, repeats)
        result["classifier_chunk_160"] = cpu
    return result


def _word_end(wav: torch.Tensor, rate: int, floor_db: float = 30.0) -> float:
    """Seconds from a clip's start to the end of its word: the last 10 ms frame within ``floor_db`` of the peak."""
    frames = wav[: wav.numel() // (rate // 100) * (rate // 100)].reshape(-1, rate // 100)
    level = 10 * torch.log10(frames.pow(2).mean(-1) + 1e-12)
    loud = torch.nonzero(level > level.max() - floor_db).flatten()
    return float(loud[-1] + 1) / 100


def measure_classifier(repeats: int, words: int = 20) -> dict:
    """The shipped keyword spotter on 1 thread (see the module docstring, ``kws``)."""
    from audiokit.api import iter_spots, load_classifier
    from audiokit.hub.pretrained import load_model
    from audiokit.nn.state import streaming
    from audiokit.tasks.keyword_data import SPEECH_COMMANDS_LABELS, speech_commands_set
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = load_model("lssl_speech_commands")
    rate = model.sample_rate
    result = {}
    batch = 0.1 * torch.randn(32, rate)
    target = torch.randint(0, len(SPEECH_COMMANDS_LABELS), (32,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(batch), target).backward()
        optimizer.step()

    train_step()  # warm-up
    _, cpu, _ = _best_time(train_step, repeats)
    result["train_clips_per_cpu_s"] = 32 / cpu
    model.eval()
    wav = test_signal(10.0, rate)
    with torch.no_grad():
        model.frame_logits(wav[:, :rate])
        _, cpu, _ = _best_time(lambda: model.frame_logits(wav), repeats)
        result["conv_cpu_rtf"] = cpu / 10.0

        def stream():
            with streaming(model):
                for piece in wav.split(rate // 100, dim=-1):
                    model(piece)

        stream()
        _, cpu, _ = _best_time(stream, repeats)
        result["step_cpu_rtf"] = cpu / 10.0
    root = REPO.parent / "shared/data/speech_commands"
    if not root.is_dir():
        return result
    test = speech_commands_set(root, "test", rate)
    clips = [c for c in test.clips if SPEECH_COMMANDS_LABELS[c.label] not in ("_silence_", "_unknown_")]
    clips = clips[:: max(1, len(clips) // words)][:words]
    gap = int(1.5 * rate)
    pieces, ends, labels = [torch.zeros(rate // 2)], [], []
    for clip in clips:
        item = test[test.clips.index(clip)]
        start = sum(p.numel() for p in pieces) / rate
        ends.append(start + _word_end(item["wav"], rate))
        labels.append(SPEECH_COMMANDS_LABELS[clip.label])
        pieces += [item["wav"], torch.zeros(gap)]
    long = torch.cat(pieces) + 1e-4 * torch.randn(sum(p.numel() for p in pieces))
    classifier = load_classifier(model)
    started = time.process_time()
    found = list(iter_spots(long.numpy(), rate, classifier))
    block_cpu = (time.process_time() - started) / (long.numel() / rate) * 0.1  # CPU of one 100 ms block
    line, onset, hits = [], [], 0
    for end, label in zip(ends, labels):
        near = [d for d in found if end - 1.0 <= d.start_s <= end + 1.0]
        if near:
            hits += near[0].label == label
            line.append(near[0].end_s - end + block_cpu)
            onset.append(near[0].start_s - end)
    result.update(spot_words=len(ends), spot_detected=len(line), spot_correct=hits,
                  spot_false=len(found) - len(line),
                  spot_line_latency_s=float(np.median(line)) if line else float("nan"),
                  spot_line_latency_max_s=max(line) if line else float("nan"),
                  spot_onset_s=float(np.median(onset)) if onset else float("nan"))
    return result


def format_classifier(r: dict) -> str:
    """Lines for the ``kws`` section (:func:`measure_classifier`)."""
    lines = [f"keyword spotter lssl_speech_commands, 1 thread: training {r['train_clips_per_cpu_s']:.1f} clips "
             f"per CPU s (convolution mode, batch 32 x 1 s); inference CPU RTF convolution mode "
             f"{r['conv_cpu_rtf']:.4f}, step mode (10 ms chunks) {r['step_cpu_rtf']:.4f}"]
    if "spot_words" in r:
        lines.append(f"--spot on {r['spot_words']} held-out words 1.5 s apart: {r['spot_detected']} detected, "
                     f"{r['spot_correct']} with the right label, {r['spot_false']} other detections; end of word "
                     f"to detection line: median {r['spot_line_latency_s']:.2f} s, max "
                     f"{r['spot_line_latency_max_s']:.2f} s; detection onset: median {r['spot_onset_s']:+.2f} s "
                     f"from the end of the word")
    else:
        lines.append("--spot latency: skipped (no ../shared/data/speech_commands)")
    return "\n".join(lines)


def build_dancer():
    """``(dance generator in eval mode, where it comes from)``: the shipped default, else the recipe's architecture."""
    from audiokit.hub.export import build_recipe_model
    from audiokit.hub.pretrained import load_model
    from audiokit.hub.registry import DEFAULT_MODELS
    name = DEFAULT_MODELS.get("dance")
    if name:
        return load_model(name).eval(), f"pretrained {name}"
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = build_recipe_model(DANCE_RECIPE, Path(tmp))
    return model.eval(), f"random weights, the architecture of {DANCE_RECIPE.relative_to(REPO)}"


def measure_dance(seconds: float, repeats: int) -> dict:
    """The dance generator on 1 thread (see the module docstring, ``dance``)."""
    from audiokit.streaming.adapters import ADAPTERS
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, weights = build_dancer()
    rate = model.sample_rate
    wav = test_signal(seconds, rate)[0]
    model.dance(wav[:rate].numpy())  # warm-up
    wall, cpu, _ = _best_time(lambda: model.dance(wav.numpy()), repeats)
    result = dict(weights=weights, seconds=seconds, offline_rtf=wall / seconds, offline_cpu_rtf=cpu / seconds)
    from audiokit.dancing import beat_synced
    positions, music = model.dance(wav.numpy()), wav.numpy()
    beat_synced(positions[:25], model.fps, music[:rate], rate)  # warm-up (librosa's first call compiles)
    wall, _, _ = _best_time(lambda: beat_synced(positions, model.fps, music, rate), repeats)
    result.update(beat_sync_rtf=wall / seconds)
    adapter, chunk = ADAPTERS["dance"](model), rate // 100
    warm = adapter.open()
    for piece in wav[:rate].split(chunk):
        warm.feed(piece[None])
    best, best_cpu = None, math.inf
    for _ in range(repeats):
        stream, times = adapter.open(), []
        start_cpu = time.process_time()
        for piece in wav.split(chunk):
            start = time.perf_counter()
            stream.feed(piece[None])
            times.append(time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
        if best is None or sum(times) < sum(best):
            best = times
    result.update(stream_rtf=sum(best) / seconds, stream_cpu_rtf=best_cpu / seconds, chunk_ms=1000 * chunk / rate,
                  chunk_p50_ms=1000 * float(np.percentile(best, 50)), chunk_max_ms=1000 * max(best),
                  frame_ms=1000 * model.frame_samples / rate, window_ms=1000 * model.window_samples / rate,
                  latency_ms=1000 * adapter.latency_samples / rate,
                  params_m=sum(p.numel() for p in model.parameters()) / 1e6)
    return result


def format_dance(r: dict) -> str:
    """Lines for the ``dance`` section (:func:`measure_dance`)."""
    return (f"dance generator ({r['weights']}, {r['params_m']:.2f} M parameters), 1 thread, {r['seconds']:g} s of "
            f"music:\noffline (model.dance) RTF {r['offline_rtf']:.4f} (CPU {r['offline_cpu_rtf']:.4f}), then beat "
            f"sync (audiokit dance) RTF {r['beat_sync_rtf']:.4f}; streaming "
            f"(stream dance's adapter, {r['chunk_ms']:g} ms blocks) RTF {r['stream_rtf']:.4f} (CPU "
            f"{r['stream_cpu_rtf']:.4f}), per block p50 {r['chunk_p50_ms']:.2f} ms, max {r['chunk_max_ms']:.2f} ms; "
            f"latency {r['latency_ms']:.1f} ms = motion frame {r['frame_ms']:g} ms + spectrum window "
            f"{r['window_ms']:g} ms")


def format_lssl(report: dict) -> str:
    """Lines for the ``lssl`` section: ``{"kernel": [rows of measure_lssl_kernel], "step": measure_lssl_steps}``."""
    lines = ["LSSL kernel, H=128, N=64, float64, 1 thread:",
             f"{'length':>7} {'ms':>8} {'cpu ms':>8} {'peak MB':>8} {'kernel MB':>9}"]
    lines += [f"{r['length']:>7} {r['ms']:8.1f} {r['cpu_ms']:8.1f} {r['peak_mb']:8.1f} {r['kernel_mb']:9.1f}"
              for r in report["kernel"]]
    step = report["step"]
    chunks = ", ".join(f"{chunk}: {step[f'layer_chunk_{chunk}']:.3f}" for chunk in LSSL_CHUNKS)
    lines.append(f"LSSL step mode, CPU s per s of 16 kHz audio (1 thread) by chunk length: {chunks}; "
                 f"default LSSLClassifier streamed in 10 ms chunks: {step['classifier_chunk_160']:.3f}")
    return "\n".join(lines)


def _in_subprocess(task: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(task)], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"benchmark worker failed for {task}:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(rows) -> str:
    header = (f"{'model':<16} {'mode':<8} {'engine':<6} {'thr':>3} {'RTF':>7} {'cpuRTF':>7} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'max ms':>7} {'lat ms':>7} {'RSS MB':>7}")
    lines = [header, "-" * len(header)]
    for r in rows:
        cell = lambda k, fmt="7.2f": f"{r[k]:{fmt}}" if k in r else f"{'-':>7}"  # noqa: E731
        lines.append(f"{r['model']:<16} {r['mode']:<8} {r.get('engine', '-'):<6} {r['threads']:>3} {r['rtf']:7.3f} "
                     f"{cell('cpu_rtf', '7.3f')} "
                     f"{cell('chunk_p50_ms')} {cell('chunk_p99_ms')} {cell('chunk_max_ms')} {cell('latency_ms')} "
                     f"{r['peak_rss_mb']:7.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short input, one repeat, 1 thread")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts (default 1 2)")
    parser.add_argument("--models", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="models to measure, and/or lssl for the LSSL layer's section (default all)")
    parser.add_argument("--seconds", type=float, default=None, help="input length (default 10, quick 1)")
    parser.add_argument("--engines", nargs="+", choices=("auto", "onnx", "torch"), default=["auto"],
                        help="frame engines for streaming causal models and for files frame by frame (default "
                             "auto: ONNX Runtime when it works)")
    for family, spec in REFERENCES.items():
        parser.add_argument(spec.option, metavar="DIR", dest=family,
                            help=f"folder of ClearerVoice-Studio's {family} package")
    parser.add_argument("--e2e-latency", action="store_true",
                        help="also measure input-to-output latency of `audiokit stream` per shipped model "
                             "(PortAudio through ALSA's file plugin; see tools/stream_latency.py)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        task = json.loads(args.worker)
        kind = task.pop("kind")
        workers = {"reference": compare_reference, "measure": measure, "lssl_kernel": measure_lssl_kernel,
                   "lssl_steps": measure_lssl_steps, "kws": measure_classifier, "dance": measure_dance}
        print(json.dumps(workers[kind](**task)))
        return 0
    references = {family: getattr(args, family) for family in REFERENCES if getattr(args, family)}
    for family, code_dir in references.items():
        if not (Path(code_dir) / "__init__.py").is_file():
            parser.error(f"{REFERENCES[family].option} {code_dir}: not a Python package folder (no __init__.py)")
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    threads = args.threads or ([1] if args.quick else [1, 2])
    repeats = 1 if args.quick else 3
    runs = ([("offline", "auto"), ("file", "chunks")] + [("file", engine) for engine in args.engines]
            + [("stream", engine) for engine in args.engines])
    models = [m for m in args.models if m in MODELS]
    rows = [_in_subprocess(dict(kind="measure", model_name=m, mode=mode, engine=engine, threads=t, repeats=repeats,
                                seconds=min(seconds, MAX_SECONDS.get(m, math.inf))))
            for m in models for mode, engine in runs for t in threads]
    rows = [row for row in rows if row is not None]
    report = {"rows": rows, "file_speedup": file_speedups(rows), "references": {
        family: _in_subprocess(dict(kind="reference", family=family, code_dir=code_dir, seconds=seconds,
                                    repeats=repeats))
        for family, code_dir in references.items()}}
    if "lssl" in args.models:
        report["lssl"] = {"kernel": [_in_subprocess(dict(kind="lssl_kernel", length=length, repeats=repeats))
                                     for length in LSSL_LENGTHS],
                          "step": _in_subprocess(dict(kind="lssl_steps", repeats=repeats))}
    if "kws" in args.models:
        report["kws"] = _in_subprocess(dict(kind="kws", repeats=repeats))
    if "dance" in args.models:
        report["dance"] = _in_subprocess(dict(kind="dance", seconds=args.seconds or (2.0 if args.quick else 30.0),
                                              repeats=repeats))
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for m in models:
        print(f"{m}: {next(r['weights'] for r in rows if r['model'] == m)}")
    if rows:
        print(format_table(rows))
    if report["file_speedup"]:
        print(format_speedups(report["file_speedup"]))
    for ref in report["references"].values():
        print(format_reference(ref))
    if "lssl" in report:
        print(format_lssl(report["lssl"]))
    if "kws" in report:
        print(format_classifier(report["kws"]))
    if "dance" in report:
        print(format_dance(report["dance"]))
    if args.e2e_latency:
        import stream_latency
        stream_latency.main(sorted(stream_latency.available()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
