"""Speed of audiokit's FRCRN models on this CPU: real-time factors, chunk times, latency, memory.

For each model (the shipped causal small FRCRN, the official-size FRCRN_SE_16K)
and each thread count it measures, each in a fresh subprocess (so that peak
memory, VmHWM, belongs to that one measurement):

* offline: real-time factor (processing time / audio duration) of ``enhance``;
* stream: real-time factor of the streaming runtime fed 10 ms chunks, with the
  50th/99th percentile of the per-chunk time, and the algorithmic latency.

Real-time factors are given from wall-clock time (``rtf``) and from this
process's CPU time (``cpu_rtf``, steadier on a shared machine; with 2 threads
it sums both threads' time).

``--reference-code DIR`` (a folder holding ClearerVoice-Studio's ``frcrn_se``
package, e.g. ``.../clearvoice/models/frcrn_se``) also times the reference
implementation of FRCRN_SE_16K beside ours on the same input (1 thread) and
reports the speed ratio and the largest output difference.

    python tools/benchmark.py [--quick] [--json] [--threads 1 2] [--reference-code DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PARITY = REPO.parent / "shared" / "parity" / "frcrn_se_16k_small"
SMALL_FILE = REPO / "pretrained" / "frcrn_causal_small.safetensors"
SMALL_CONFIG = dict(win_len=512, win_inc=256, fft_len=512, channels=16, fsmn_hidden=16,
                    fsmn_order=10, causal=True)
MODELS = ("causal_small", "official")



def peak_rss_kb() -> int:
    """This process's own peak resident memory (kB); ``ru_maxrss`` would include the parent's at fork."""
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM")).split()[1])

def build(name: str):
    """``(model in eval mode, where its weights come from)``."""
    from audiokit.hub.clearvoice import load_clearvoice
    from audiokit.hub.pretrained import load_model
    from audiokit.models.frcrn import FRCRN
    torch.manual_seed(0)
    if name == "causal_small":
        if SMALL_FILE.is_file():
            return load_model(str(SMALL_FILE)), f"pretrained {SMALL_FILE.name}"
        return FRCRN(**SMALL_CONFIG).eval(), "random weights (pretrained file absent)"
    if (PARITY / "checkpoint.pt").is_file():
        return load_clearvoice("FRCRN_SE_16K", PARITY / "checkpoint.pt"), "parity checkpoint (random weights)"
    return FRCRN(reference_layout=True).eval(), "random weights (parity checkpoint absent)"


def test_signal(seconds: float, rate: int = 16000) -> torch.Tensor:
    """``[1, T]`` noisy harmonic tone, fixed seed."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    return torch.from_numpy((wav + 0.05 * rng.standard_normal(t.size)).astype(np.float32))[None]


def _best_time(fn, repeats: int) -> Tuple[float, float]:
    """Shortest ``(wall-clock, process CPU)`` seconds of ``repeats`` calls (each minimum on its own).

    Process time counts only this process's CPU work, so it is the steadier
    figure on a shared machine; with several threads it adds up their time.
    """
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def measure(model_name: str, mode: str, threads: int, seconds: float, repeats: int) -> dict:
    """One measurement in this process (see the module docstring)."""
    from audiokit.streaming.runtime import open_stream
    torch.set_num_threads(threads)
    model, weights = build(model_name)
    rate = model.sample_rate
    wav = test_signal(seconds, rate)
    result = dict(model=model_name, weights=weights, mode=mode, threads=threads, seconds=seconds)
    with torch.no_grad():
        if mode == "offline":
            model.enhance(wav[:, :rate // 2])  # warm-up
            wall, cpu = _best_time(lambda: model.enhance(wav), repeats)
            result.update(rtf=wall / seconds, cpu_rtf=cpu / seconds)
        else:
            chunk = rate // 100
            warm = open_stream(model)
            for i in range(0, rate // 2, chunk):
                warm.feed(wav[:, i:i + chunk])
            best, best_cpu = None, float("inf")
            for _ in range(repeats):
                stream, times = open_stream(model), []
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
                          chunk_p99_ms=1000 * float(np.percentile(best[1], 99)),
                          latency_ms=1000 * stream.latency_samples / rate)
    result["peak_rss_mb"] = peak_rss_kb() / 1024
    return result


def compare_reference(code_dir: str, seconds: float, repeats: int) -> dict:
    """Our official-size FRCRN against the reference code on the same input, 1 thread."""
    torch.set_num_threads(1)
    folder = Path(code_dir).resolve()
    sys.path.insert(0, str(folder.parent))
    reference_module = __import__(f"{folder.name}.frcrn", fromlist=["DCCRN"])
    config = json.loads((PARITY / "config.json").read_text())["constructor_args"]
    reference = reference_module.DCCRN(**config)
    reference.load_state_dict(torch.load(PARITY / "checkpoint.pt", map_location="cpu", weights_only=True)["model"])
    reference.eval()
    ours, _ = build("official")
    wav = test_signal(seconds)
    with torch.no_grad():
        ours(wav[:, :8000]), reference(wav[:, :8000])  # warm-up
        (wall_ours, cpu_ours), (wall_ref, cpu_ref) = [(float("inf"),) * 2] * 2
        for _ in range(repeats):  # alternate, so that both see the same machine load
            w, c = _best_time(lambda: ours(wav), 1)
            wall_ours, cpu_ours = min(wall_ours, w), min(cpu_ours, c)
            w, c = _best_time(lambda: reference(wav), 1)
            wall_ref, cpu_ref = min(wall_ref, w), min(cpu_ref, c)
        diff = (ours(wav).wav - reference(wav)[1]).abs()[0]
        edge = ours.win_len  # the first and last window see zero padding: a looser match is expected there
    return dict(seconds=seconds, ours_rtf=wall_ours / seconds, reference_rtf=wall_ref / seconds,
                speedup=wall_ref / wall_ours, ours_cpu_rtf=cpu_ours / seconds,
                reference_cpu_rtf=cpu_ref / seconds, cpu_speedup=cpu_ref / cpu_ours, max_abs_diff=diff.max().item(),
                max_abs_diff_interior=diff[edge:-edge].max().item())


def _in_subprocess(task: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(task)], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"benchmark worker failed for {task}:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(rows) -> str:
    header = (f"{'model':<14} {'mode':<8} {'thr':>3} {'RTF':>7} {'cpuRTF':>7} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'lat ms':>7} {'RSS MB':>7}")
    lines = [header, "-" * len(header)]
    for r in rows:
        cell = lambda k, fmt="7.2f": f"{r[k]:{fmt}}" if k in r else f"{'-':>7}"  # noqa: E731
        lines.append(f"{r['model']:<14} {r['mode']:<8} {r['threads']:>3} {r['rtf']:7.3f} {cell('cpu_rtf', '7.3f')} "
                     f"{cell('chunk_p50_ms')} {cell('chunk_p99_ms')} {cell('latency_ms')} {r['peak_rss_mb']:7.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short input, one repeat, 1 thread")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts (default 1 2)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seconds", type=float, default=None, help="input length (default 10, quick 1)")
    parser.add_argument("--reference-code", help="folder of ClearerVoice-Studio's frcrn_se package")
    parser.add_argument("--e2e-latency", action="store_true",
                        help="also measure input-to-output latency of `audiokit stream` per shipped model "
                             "(PortAudio through ALSA's file plugin; see tools/stream_latency.py)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        task = json.loads(args.worker)
        kind = task.pop("kind")
        print(json.dumps(compare_reference(**task) if kind == "reference" else measure(**task)))
        return 0
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    threads = args.threads or ([1] if args.quick else [1, 2])
    repeats = 1 if args.quick else 3
    rows = [_in_subprocess(dict(kind="measure", model_name=m, mode=mode, threads=t, seconds=seconds, repeats=repeats))
            for m in args.models for mode in ("offline", "stream") for t in threads]
    report = {"rows": rows}
    if args.reference_code:
        report["reference"] = _in_subprocess(dict(kind="reference", code_dir=args.reference_code,
                                                  seconds=seconds, repeats=repeats))
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for m in args.models:
        print(f"{m}: {next(r['weights'] for r in rows if r['model'] == m)}")
    print(format_table(rows))
    if "reference" in report:
        ref = report["reference"]
        print(f"official FRCRN_SE_16K vs reference code, {ref['seconds']:.0f} s, 1 thread: ours RTF "
              f"{ref['ours_rtf']:.3f} (CPU {ref['ours_cpu_rtf']:.3f}), reference RTF {ref['reference_rtf']:.3f} "
              f"(CPU {ref['reference_cpu_rtf']:.3f}), {ref['speedup']:.2f}x faster (CPU time {ref['cpu_speedup']:.2f}x), "
              f"max |diff| {ref['max_abs_diff']:.2e} (interior {ref['max_abs_diff_interior']:.2e})")
    if args.e2e_latency:
        import stream_latency
        stream_latency.main(sorted(stream_latency.available()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
