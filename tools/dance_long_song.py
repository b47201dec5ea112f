"""Does a dance model drift or freeze on a long song? The held-out test songs played one after another.

    python tools/dance_long_song.py [--model NAME|FILE] [--data DIR] [--style auto]

The music of the test dances (``audiokit.motion.dance_data.TEST_DANCES``, never trained on) is joined into one
song of several minutes; the model dances to it once, and the script prints per minute: the mean joint speed in
body sizes per second (the real dancers: about 0.13-0.15), the share of still seconds (``audiokit.metrics.dance``'s
freeze measure) and the median root height (cm; the real dancers' hips are about 95 cm above the floor).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import audiokit
from audiokit.audio.resample import resample
from audiokit.metrics.dance import body_size, freeze, joint_speed
from audiokit.motion.dance_data import TEST_DANCES, read_dance
from audiokit.motion.poses import ROOT_JOINTS


def long_song(root: Path, rate: int) -> np.ndarray:
    """The test dances' music, mono at ``rate`` Hz, joined: ``[T]`` float32."""
    parts = []
    for name in TEST_DANCES:
        clip = read_dance(root / name)
        parts.append(np.asarray(resample(np.asarray(clip.audio, dtype=np.float32)[None], clip.sample_rate, rate))[0])
    return np.concatenate(parts)


def per_minute(positions: np.ndarray, fps: float) -> list[tuple[int, float, float, float]]:
    """``(minute, speed per body size, still share, median root height)`` for every whole or last minute."""
    size = body_size(positions)
    frames = int(round(60 * fps))
    rows = []
    for k, start in enumerate(range(0, len(positions) - 1, frames)):
        part = positions[start:start + frames + 1]
        if len(part) < 2 * fps:
            break
        speed = float(joint_speed(part, fps).mean() / size)
        root = float(np.median(part[:, list(ROOT_JOINTS), 1].mean(axis=1)))
        rows.append((k + 1, speed, freeze(part, fps, last_s=60.0), root))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="dance model name or file (default: the shipped default)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/dance_with_melody"))
    parser.add_argument("--style", default="auto")
    args = parser.parse_args()
    dancer = audiokit.load_dancer(args.model)
    rate = dancer.sample_rate
    song = long_song(args.data, rate)
    positions = audiokit.dance(song, rate, model=dancer, style=args.style)
    fps = dancer.fps
    print(f"song: {', '.join(TEST_DANCES)} joined, {len(song) / rate / 60:.1f} min; {len(positions)} poses")
    print("minute  speed/body  still  root height (cm)")
    for minute, speed, still, root in per_minute(positions, fps):
        print(f"{minute:6d}  {speed:10.3f}  {still:5.2f}  {root:8.1f}")


if __name__ == "__main__":
    main()
