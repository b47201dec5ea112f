"""DNSMOS P.835 (SIG, BAK, OVRL; no clean reference) of an enhancer's noisy input and of its output.

    python tools/dnsmos_enhancer.py                        # the default enhancer, data in ../shared/data
    python tools/dnsmos_enhancer.py --model my.safetensors --stream --json

Scores noisy speech whose speech frcrn_causal_small was never trained on:
- ``noisy_dev/dfn48k/noisy_snr0.flac``, a real noisy recording at 48 kHz (the model resamples);
- mixtures, made in memory with a fixed seed by the training mixer (no reverberation, -25 dBFS): VoiceBank
  p232 clean speech (``noisy_dev``, never trained on), each clip in turn, with every noise file the recipe
  holds out from training (its validation set, which chose the checkpoint, mixes them with other speakers)
  and the dfn48k noise, at 0, 5 and 10 dB SNR.

The dfn48k noise is also ``noise/freesound_573577_48k.flac``, a training noise file: the "held-out noise"
means leave out the dfn48k file and its mixtures. Prints per-file scores, then the means of each subset.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from evaluate_enhancer import DATA, load_enhancer  # (puts this checkout first on sys.path)

from audiokit.api import enhance
from audiokit.audio.io import find_audio_files, read_audio
from audiokit.errors import AudiokitError, one_line
from audiokit.metrics.dnsmos import Dnsmos
from audiokit.tasks.augment import Mixer, random_segment
from audiokit.tasks.data import AudioCache

RECORDING = "noisy_dev/dfn48k/noisy_snr0.flac"
RECORDING_NOISE = "noisy_dev/dfn48k/noise_freesound_573577.flac"
CLEAN = "noisy_dev/voicebank_p232/clean"
#: the noise files frcrn_causal_small's recipe holds out from training (noise_valid_fraction 0.25)
HELD_OUT = ("noise/ambience/coffee-shop.flac", "noise/ambience/storm.flac", "noise/ambience/summer-night.flac",
            "noise/ambience/waves.flac", "noise/berlin/A7B4879B-6791-4E01-B612-F8F60193BC66.flac",
            "noise/speech_commands_bg/pink_noise.flac")
SNRS = (0.0, 5.0, 10.0)
LEVEL_DBFS = -25.0
RATE = 16000
METRICS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")


def mixtures(clean_files: list[Path], noise_files: list[Path], snrs=SNRS, seed: int = 0,
             rate: int = RATE) -> dict[str, tuple[np.ndarray, Path]]:
    """``{name: (noisy [T] at rate, noise file)}``: every noise file at every SNR (dB) under a clean file taken in
    turn from a seeded permutation, a seeded noise segment, mixed at ``LEVEL_DBFS`` by the training mixer."""
    rng, load_mono = np.random.default_rng(seed), AudioCache(rate)
    order = rng.permutation(len(clean_files))
    out = {}
    for index, (snr, noise_file) in enumerate(itertools.product(snrs, noise_files)):
        clean_file = clean_files[order[index % len(order)]]
        speech = load_mono(clean_file)
        noise = random_segment(load_mono(noise_file), speech.numel(), rng)
        mixer = Mixer(snr_db=(snr, snr), level_dbfs=(LEVEL_DBFS, LEVEL_DBFS), reverb_prob=0.0)
        noisy = mixer.mix(speech, noise, rng)["noisy"]
        label = noise_file.stem.removeprefix("noise_")
        label = label.split("-")[0] if len(label) > 16 else label  # (a Berlin recording's UUID: its first part)
        out[f"{clean_file.stem}+{label}@{snr:g}dB"] = (noisy.numpy(), noise_file)
    return out


def scores(items: dict[str, tuple[np.ndarray, int]], enhancer, dnsmos) -> dict[str, dict]:
    """``{name: {"noisy": scores, "enhanced": scores}}`` of ``{name: (noisy [T], rate)}``."""
    return {name: {"noisy": dnsmos(wav, rate), "enhanced": dnsmos(enhance(wav, rate, model=enhancer), rate)}
            for name, (wav, rate) in items.items()}


def means(rows: dict[str, dict], subsets: dict[str, list[str]]) -> dict[str, dict]:
    """Mean noisy and enhanced scores of each non-empty subset (a list of row names)."""
    return {subset: {"files": len(names), **{kind: {m: float(np.mean([rows[n][kind][m] for n in names]))
                                                    for m in METRICS} for kind in ("noisy", "enhanced")}}
            for subset, names in subsets.items() if names}


def evaluate(data: Path, enhancer, dnsmos, seed: int = 0) -> tuple[dict, dict]:
    """(per-file rows, subset means) of the recording and the mixtures under ``data`` (../shared/data's layout)."""
    if not data.is_dir():
        raise AudiokitError(f"{data}: shared data folder not found (../shared/data beside the checkout, or --data)")
    noise_files = [data / name for name in HELD_OUT] + [data / RECORDING_NOISE]
    mixed = mixtures(find_audio_files([data / CLEAN]), noise_files, SNRS, seed)
    recording, rate = read_audio(data / RECORDING)
    items = {"dfn48k/noisy_snr0": (recording.mean(axis=0), rate), **{n: (wav, RATE) for n, (wav, _) in mixed.items()}}
    rows = scores(items, enhancer, dnsmos)
    subsets = {"dfn48k recording": ["dfn48k/noisy_snr0"],
               **{f"mixtures {snr:g} dB": [n for n in mixed if n.endswith(f"@{snr:g}dB")] for snr in SNRS},
               "mixtures, held-out noise": [n for n, (_, f) in mixed.items() if f != data / RECORDING_NOISE],
               "all": list(rows)}
    return rows, means(rows, subsets)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="pretrained name or file (default: the embedded default)")
    parser.add_argument("--dnsmos", type=Path, default=DATA / "dnsmos/DNSMOS", help="DNSMOS model folder")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mixtures (default 0)")
    parser.add_argument("--stream", action="store_true", help="stream in 10 ms chunks")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        dnsmos = Dnsmos(args.dnsmos)
        rows, mean = evaluate(args.data, load_enhancer(args.model, args.stream), dnsmos, args.seed)
    except AudiokitError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({"files": rows, "mean": mean, "seconds": seconds}, indent=1))
        return 0
    print(f"{'':36} {'SIG noisy':>9} {'enh':>5} {'BAK noisy':>9} {'enh':>5} {'OVRL noisy':>10} {'enh':>5}")
    for name, r in list(rows.items()) + [("", None)] + [(f"mean {s} ({m['files']})", m) for s, m in mean.items()]:
        if r is not None:
            cells = [f"{r['noisy'][m]:{w}.3f} {r['enhanced'][m]:5.3f}" for m, w in zip(METRICS, (9, 9, 10))]
            print(f"{name:36} " + " ".join(cells))
        else:
            print()
    above = [f"{m[7:].upper()} {'yes' if mean['all']['enhanced'][m] > mean['all']['noisy'][m] else 'NO'}"
             for m in METRICS]
    print(f"\nenhanced above noisy (mean of all): {', '.join(above)}; {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
