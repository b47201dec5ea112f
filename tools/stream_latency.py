"""End-to-end latency of ``audiokit stream`` per model, measured through PortAudio and ALSA's file plugin.

A click train is "spoken" into a sound card made of files (:func:`audiokit.streaming.realtime.alsa_file_device`),
``audiokit stream enhance`` runs on it, and the delay from the microphone file to the speaker file is found by
cross-correlation: algorithmic latency + queue delay + PortAudio's output buffer.  Also reports the model time
per block and the real-time factor on this machine (1 torch thread).

    python tools/stream_latency.py [MODEL ...] [--block-ms 10]

MODEL: pretrained names or .safetensors files (default: every shipped model, plus a tiny random causal FRCRN).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiokit.hub.pretrained import available, read_metadata, save_pretrained  # noqa: E402
from audiokit.models.frcrn import FRCRN  # noqa: E402
from audiokit.streaming.realtime import alsa_file_device  # noqa: E402


def tiny_model(folder: Path) -> Path:
    torch.manual_seed(0)
    model = FRCRN(win_len=320, win_inc=160, fft_len=320, channels=4, fsmn_hidden=4, causal=True)
    return save_pretrained(model, folder / "tiny_causal_frcrn.safetensors", "frcrn", model.config)


def measure(model: str, block_ms: float, seconds: float = 1.0, rate: int = 16000, task: str = "enhance") -> dict:
    """Stated and measured latency of ``audiokit stream TASK`` (``separate`` plays speaker 1)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mic, speaker = tmp / "mic.raw", tmp / "speaker.raw"
        (tmp / ".asoundrc").write_text(alsa_file_device(mic, speaker))
        clicks = np.zeros(int(seconds * rate), np.int16)
        rng = np.random.default_rng(0)
        for start in range(1000, len(clicks) - 400, 2731):  # irregular click train: one unambiguous lag
            clicks[start:start + 200] = (rng.standard_normal(200) * 8000).astype(np.int16)
        clicks.tofile(mic)
        cmd = [sys.executable, "-m", "audiokit.cli.main", "stream", task, "--model", model, "--overload", "wait",
               "--duration", str(seconds), "--block-ms", str(block_ms)]
        if task == "separate":
            cmd += ["--play-speaker", "1"]
        env = dict(os.environ, HOME=str(tmp), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{model}: {done.stderr.strip().splitlines()[-1]}")
        played = np.fromfile(speaker, "<i2").astype(np.float64)
        x = clicks.astype(np.float64)
        max_lag = min(len(played) // 2, int(rate * (0.125 if task == "enhance" else 1.5)))
        corr = np.correlate(played, x[:len(played) - max_lag], mode="valid")
        measured = int(np.argmax(np.abs(corr)))
        stated = int(re.search(r"latency (\d+) samples", done.stderr).group(1))
        device_rate = int(re.search(r"stream \w+: (\d+) Hz", done.stderr).group(1))  # the files' sample rate
        proc_ms = float(re.search(r"done: .*?([\d.]+) ms/block", done.stderr).group(1))
        return {"model": Path(model).stem, "stated_ms": 1e3 * stated / device_rate,
                "measured_ms": 1e3 * measured / device_rate,
                "proc_ms": proc_ms, "rtf": proc_ms / block_ms}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--block-ms", type=float, default=10.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models or [*available(), str(tiny_model(Path(tmp)))]
        print("| model | block | engine latency (stated) | end-to-end (measured) | model time/block | RTF |")
        print("|---|---|---|---|---|---|")
        for model in models:
            separator = model in available() and read_metadata(available()[model])["family"] == "mossformer2_ss"
            r = measure(model, args.block_ms, seconds=5.0 if separator else 1.0,
                        task="separate" if separator else "enhance")
            print(f"| {r['model']} | {args.block_ms:g} ms | {r['stated_ms']:.1f} ms | {r['measured_ms']:.1f} ms "
                  f"| {r['proc_ms']:.1f} ms | {r['rtf']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
