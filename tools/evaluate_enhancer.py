"""Score an enhancement model on a folder pair of clean/noisy files (default: the VoiceBank p232 dev set).

    python tools/evaluate_enhancer.py                       # the default model on ../shared/data
    python tools/evaluate_enhancer.py --model my.safetensors --stream --json

Prints per-file and mean PESQ-WB, STOI and SI-SNR of the noisy input and of the model's output
(offline, or streamed in 10 ms chunks with ``--stream``), and the improvement.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's audiokit, not an installed one

from audiokit.api import Enhancer, enhance  # noqa: E402
from audiokit.audio.io import read_audio  # noqa: E402
from audiokit.metrics import pesq_wb, si_snr, stoi  # noqa: E402

DATA = REPO.parent / "shared/data"
DEV = DATA / "noisy_dev/voicebank_p232"
STREAM_CHUNK_MS = 10


def load_enhancer(model: str | None = None, stream: bool = False) -> Enhancer:
    """``model`` (a pretrained name or file; None: the embedded default) ready to enhance offline, or streamed in
    ``STREAM_CHUNK_MS`` chunks as live audio."""
    return Enhancer(model, stream, STREAM_CHUNK_MS if stream else None)


def score(clean: np.ndarray, estimate: np.ndarray, rate: int) -> dict:
    return {"pesq_wb": pesq_wb(clean, estimate, rate), "stoi": stoi(clean, estimate, rate),
            "si_snr": float(si_snr(clean, estimate))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="pretrained name or file (default: the embedded default)")
    parser.add_argument("--clean", type=Path, default=DEV / "clean")
    parser.add_argument("--noisy", type=Path, default=DEV / "noisy")
    parser.add_argument("--stream", action="store_true", help="stream in 10 ms chunks")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_enhancer(args.model, args.stream)
    rows = {}
    for noisy_path in sorted(args.noisy.iterdir()):
        noisy, rate = read_audio(noisy_path)
        clean, _ = read_audio(args.clean / noisy_path.name)
        out = enhance(noisy[0], rate, model=model)
        rows[noisy_path.stem] = {"noisy": score(clean[0], noisy[0], rate), "enhanced": score(clean[0], out, rate)}
    mean = {kind: {m: float(np.mean([r[kind][m] for r in rows.values()])) for m in ("pesq_wb", "stoi", "si_snr")}
            for kind in ("noisy", "enhanced")}
    if args.json:
        print(json.dumps({"files": rows, "mean": mean}, indent=1))
        return
    print(f"{'file':12} {'PESQ noisy':>10} {'PESQ enh':>9} {'STOI noisy':>10} {'STOI enh':>9} "
          f"{'SI-SNR n':>9} {'SI-SNR e':>9}")
    for name, r in list(rows.items()) + [("mean", mean)]:
        n, e = r["noisy"], r["enhanced"]
        print(f"{name:12} {n['pesq_wb']:10.3f} {e['pesq_wb']:9.3f} {n['stoi']:10.4f} {e['stoi']:9.4f} "
              f"{n['si_snr']:9.2f} {e['si_snr']:9.2f}")


if __name__ == "__main__":
    main()
