"""SI-SNR improvement of a separation model on a fixed set of 2-speaker mixtures of held-out speakers.

    python tools/eval_separation.py --run /work/runs/sep_small            # best checkpoint of a training run
    python tools/eval_separation.py --model mossformer2_ss_8k_small       # a pretrained name or .safetensors
    python tools/eval_separation.py --run /work/runs/sep_d5 --average 5   # mean weights of its 5 best checkpoints
    python tools/eval_separation.py --run /work/runs/sep_d5 --split valid # the run's own validation set
    python tools/eval_separation.py --model mossformer2_ss_8k_small --shifts 4  # as audiokit separate --shifts 4

The mixtures come from the recipe's ``holdout_speakers`` (speakers never trained on) through
``SpeakerMixtureDataset(split="heldout")``: ``--count`` mixtures of ``--seconds`` seconds, two different
speakers at a relative level uniform in +-5 dB, no noise, no reverberation, drawn with ``--seed``
(the same set every time). Prints the mean, median and spread of the SI-SNRi (dB) and the mean by
corpus pair and by the speakers' sexes (LibriSpeech ``SPEAKERS.TXT``, AN4's f/m id prefix), and
optionally writes every mixture's figures as JSON.

``--split valid`` scores the run's (or ``--recipe``'s) validation set instead, the one training reports
and picks checkpoints on (seen speakers, noise and reverberation as in training); its mean SI-SNR is
the ``valid si_snr`` of the training log. Use it to choose between checkpoints or averages without
looking at the held-out speakers.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiokit.hub.export import build_recipe_model  # noqa: E402
from audiokit.metrics.separation import score_separation  # noqa: E402
from audiokit.streaming.separation import averaged_over_shifts  # noqa: E402
from audiokit.tasks.augment import Mixer  # noqa: E402
from audiokit.tasks.mixtures import SpeakerMixtureDataset  # noqa: E402

DEFAULT_RECIPE = REPO / "recipes/separation/mossformer2_ss_8k_small.yaml"


def recipe_data(recipe: Path) -> dict:
    """``speech_folders``, ``extra_speech``, ``holdout_speakers`` of a recipe (no data folder is scanned)."""
    with tempfile.TemporaryDirectory() as tmp:
        hparams = build_recipe_model(recipe, Path(tmp))[1]
    return {key: hparams[key] for key in ("speech_folders", "extra_speech", "holdout_speakers")}


def heldout_mixtures(data: dict, sample_rate: int, count: int, seconds: float, seed: int) -> SpeakerMixtureDataset:
    """The fixed evaluation set: clean 2-speaker mixtures of the held-out speakers of ``data``
    (:func:`recipe_data`)."""
    return SpeakerMixtureDataset(data["speech_folders"], extra_speech=data["extra_speech"], sample_rate=sample_rate,
                                 segment_seconds=seconds, epoch_size=count, seed=seed, split="heldout",
                                 mixer=Mixer(reverb_prob=0.0, level_dbfs=(-25.0, -15.0)), num_speakers=2,
                                 relative_db=(-5.0, 5.0), noise_prob=0.0, holdout_speakers=data["holdout_speakers"])


def validation_mixtures(hparams_file: Path):
    """The ``valid_set`` of a recipe or run's ``hyperparams.yaml`` (reads its data folders)."""
    with tempfile.TemporaryDirectory() as tmp:
        return build_recipe_model(hparams_file, Path(tmp), keep=("valid_set",))[1]["valid_set"]


def load_separator(args) -> torch.nn.Module:
    """The model of ``--run`` (best checkpoint by validation SI-SNR, or the mean of the ``--average``
    best) or ``--model``, in eval mode."""
    if args.run is not None:
        from audiokit.hub.export import load_run_model

        model, folder, meta = load_run_model(Path(args.run), average=args.average)
        print(f"{'checkpoints' if args.average > 1 else 'checkpoint'} {meta.pop('averaged', folder.name)} "
              f"(validation {meta})")
        return model.eval()
    from audiokit.hub.pretrained import load_model

    return load_model(args.model)


def corpus_of(speaker: str) -> str:
    """``libri``, ``tts``, ... (the id's prefix), ``an4`` for a bare id starting with f or m (AN4 names its
    speakers by sex and initials), else the bare id (e.g. ``ljspeech``)."""
    if ":" in speaker:
        return speaker.split(":")[0]
    return "an4" if speaker[:1] in ("f", "m") else speaker


def speaker_sexes(folders) -> dict[str, str]:
    """``{"libri:<id>": "F" | "M"}`` from any LibriSpeech ``SPEAKERS.TXT`` in ``folders``."""
    sexes = {}
    for folder in folders:
        table = Path(folder) / "SPEAKERS.TXT"
        if table.is_file():
            for line in table.read_text(encoding="utf-8", errors="replace").splitlines():
                fields = [f.strip() for f in line.split("|")]
                if not line.startswith(";") and len(fields) > 2 and fields[1] in ("F", "M"):
                    sexes[f"libri:{fields[0]}"] = fields[1]
    return sexes


def sex_of(speaker: str, sexes: dict[str, str]) -> str:
    """F, M (from ``sexes``, or the first letter of an AN4 id) or ? (unknown)."""
    if speaker in sexes:
        return sexes[speaker]
    return speaker[0].upper() if corpus_of(speaker) == "an4" else "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="training run folder (hyperparams.yaml, save/)")
    source.add_argument("--model", help="pretrained name or .safetensors file")
    parser.add_argument("--average", type=int, default=1, metavar="K",
                        help="with --run: the mean weights of its K best checkpoints by validation SI-SNR")
    parser.add_argument("--split", choices=("heldout", "valid"), default="heldout",
                        help="held-out speakers (default) or the run's validation set")
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="recipe naming the held-out speakers")
    parser.add_argument("--count", type=int, default=200, help="number of mixtures (default 200)")
    parser.add_argument("--seconds", type=float, default=3.0, help="mixture length (default 3 s)")
    parser.add_argument("--seed", type=int, default=20240, help="seed of the mixture set (default 20240)")
    parser.add_argument("--shifts", type=int, default=1, metavar="N",
                        help="average N separations on shifted frame grids (as audiokit separate --shifts)")
    parser.add_argument("--json", type=Path, help="write per-mixture figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if args.average > 1 and args.run is None:
        parser.error("--average needs --run")
    model = load_separator(args)
    separate = averaged_over_shifts(model.separate, args.shifts, model.hop_length)
    data = recipe_data(args.recipe)
    if args.split == "valid":
        mixtures = validation_mixtures(args.run / "hyperparams.yaml" if args.run else args.recipe)
        drawn = "as in training"
    else:
        mixtures = heldout_mixtures(data, int(model.sample_rate), args.count, args.seconds, args.seed)
        drawn = f"of {args.seconds} s, seed {args.seed}"
    names = list(mixtures.speakers)
    print(f"{len(names)} {args.split} speakers ({sum(corpus_of(n) == 'an4' for n in names)} AN4, "
          f"{sum(corpus_of(n) == 'libri' for n in names)} LibriSpeech), {len(mixtures)} mixtures {drawn} "
          f"at {model.sample_rate} Hz")
    sexes = speaker_sexes(data["extra_speech"] or [])
    rows, by_pair, by_sexes = [], defaultdict(list), defaultdict(list)
    for i in range(len(mixtures)):
        item = mixtures[i]
        with torch.inference_mode():
            est = separate(item["noisy"][None])[0]
        row = score_separation(item["clean"].numpy(), est.numpy(), item["noisy"].numpy())
        row["pair"] = "+".join(sorted(corpus_of(s) for s in item["speakers"]))
        row["speakers"] = list(item["speakers"])
        row["sexes"] = "+".join(sorted(sex_of(s, sexes) for s in item["speakers"]))
        rows.append(row)
        by_pair[row["pair"]].append(row["si_snri"])
        by_sexes[row["sexes"]].append(row["si_snri"])
    si_snri = np.array([r["si_snri"] for r in rows])
    si_snr = np.array([r["si_snr"] for r in rows])
    print(f"SI-SNRi  mean {si_snri.mean():6.2f} dB  median {np.median(si_snri):6.2f}  std {si_snri.std():5.2f}  "
          f"p10 {np.percentile(si_snri, 10):6.2f}  p90 {np.percentile(si_snri, 90):6.2f}")
    print(f"SI-SNR   mean {si_snr.mean():6.2f} dB (mixture {np.mean(si_snr - si_snri):6.2f} dB)")
    for pair, values in [*sorted(by_pair.items()), *sorted(by_sexes.items())]:
        print(f"  {pair:<12} {len(values):4d} mixtures  SI-SNRi mean {np.mean(values):6.2f} dB")
    print(f"share of mixtures with SI-SNRi >= 10 dB: {np.mean(si_snri >= 10):.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "mean_si_snri": float(si_snri.mean())}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
