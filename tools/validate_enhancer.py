"""Scores of an enhancer on its recipe's validation set (the set that chooses checkpoints), optionally with every
mixture scaled by some dB to see how the model copes with quieter or louder input.

    python tools/validate_enhancer.py                                   # the default enhancer, as recorded
    python tools/validate_enhancer.py --model my.safetensors --shift-db -20 -10 0 10 20 \\
        --extra-speech ../extdata/an4 ../extdata/libri251 --json

The validation mixtures are the recipe's ``valid_set`` (held-out speakers and noise files, seeded), built with the
same ``--extra-speech`` folders as the training run (they change the speaker split). Each shift scales noisy and
clean alike; the model runs through the user's path (``audiokit.api.enhance``). Prints per shift the mean
PESQ-WB (undefined items left out), STOI, SI-SNR and the number of mixtures whose STOI fell below the noisy input's.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from evaluate_enhancer import DATA, REPO, load_enhancer  # (puts this checkout first on sys.path)

from audiokit.api import enhance
from audiokit.metrics import pesq_wb, si_snr, stoi

RECIPE = REPO / "recipes/enhancement/frcrn_causal_small.yaml"


def validation_items(recipe: Path, data_root: Path, extra_speech: list[str]) -> list[dict]:
    """The recipe's validation mixtures: ``[{"noisy", "clean"}]`` as float arrays [T] at 16 kHz."""
    from hyperpyyaml import load_hyperpyyaml
    with tempfile.TemporaryDirectory() as out, open(recipe) as f:
        hparams = load_hyperpyyaml(f, {"data_root": str(data_root), "extra_speech": extra_speech,
                                       "output_folder": out})
    items = hparams["valid_set"]
    return [{k: items[i][k].numpy() for k in ("noisy", "clean")} for i in range(len(items))]


def shift_scores(model, items: list[dict], shift_db: float, rate: int = 16000) -> dict:
    """Mean scores of ``model`` (an Enhancer) on ``items`` with noisy and clean scaled by ``shift_db``."""
    gain = 10 ** (shift_db / 20)
    rows = []
    for item in items:
        noisy, clean = item["noisy"] * gain, item["clean"] * gain
        out = enhance(noisy, rate, model=model)
        try:
            pesq = pesq_wb(clean, out, rate)
        except Exception:  # noqa: BLE001 - PESQ is undefined for some items (no utterance found)
            pesq = float("nan")
        rows.append((pesq, stoi(clean, out, rate), float(si_snr(clean, out)), stoi(clean, noisy, rate)))
    a = np.array(rows)
    return {"shift_db": shift_db, "pesq_wb": float(np.nanmean(a[:, 0])), "stoi": float(a[:, 1].mean()),
            "si_snr": float(a[:, 2].mean()), "stoi_below_noisy": int((a[:, 1] < a[:, 3]).sum()), "items": len(a)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="pretrained name or file (default: the embedded default)")
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--data-root", type=Path, default=DATA)
    parser.add_argument("--extra-speech", nargs="*", default=[], help="the training run's extra_speech folders")
    parser.add_argument("--shift-db", type=float, nargs="+", default=[0.0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_enhancer(args.model)
    items = validation_items(args.recipe, args.data_root, args.extra_speech)
    for shift in args.shift_db:
        scores = shift_scores(model, items, shift)
        print(json.dumps(scores) if args.json else
              f"shift {shift:+.0f} dB: PESQ-WB {scores['pesq_wb']:.3f}  STOI {scores['stoi']:.4f}  SI-SNR "
              f"{scores['si_snr']:.2f} dB  STOI below noisy {scores['stoi_below_noisy']} of {scores['items']}",
              flush=True)


if __name__ == "__main__":
    main()
