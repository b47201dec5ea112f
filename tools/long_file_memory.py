"""Peak memory of ``audiokit enhance`` on a long file (not a test; prints the figure).

    python tools/long_file_memory.py [--minutes 60] [--model NAME|PATH]

Writes a synthetic 16 kHz file of ``--minutes`` block by block (never whole in memory), enhances it in
this process with a tiny random-weight causal FRCRN (or ``--model``), and prints the peak RSS.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from benchmark import peak_rss_kb  # noqa: E402  (tools/ is on sys.path when run as a script)


def write_long_file(path: Path, minutes: float, rate: int = 16000) -> None:
    """A noisy chirp-like signal written one minute at a time."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as f:
        for minute in range(int(np.ceil(minutes))):
            n = int(min(1.0, minutes - minute) * 60 * rate)
            t = np.arange(n) / rate
            f.write((0.3 * np.sin(2 * np.pi * (200 + 100 * minute % 7) * t) + 0.05 * rng.standard_normal(n)) * 0.8)


def peak_rss_mb() -> float:
    return peak_rss_kb() / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--model", help="pretrained name or file (default: a tiny random-weight FRCRN)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_model import save_tiny

    from audiokit.cli.main import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "long.wav"
        write_long_file(source, args.minutes)
        model = args.model or str(save_tiny(Path(tmp) / "tiny.safetensors"))
        before = peak_rss_mb()
        start = time.perf_counter()
        status = cli(["enhance", str(source), "--model", model, "-o", str(Path(tmp) / "out")])
        wall = time.perf_counter() - start
        print(f"{args.minutes:g} min: status {status}, {wall:.0f} s, peak RSS {peak_rss_mb():.0f} MB "
              f"(before enhancing: {before:.0f} MB)")


if __name__ == "__main__":
    main()
