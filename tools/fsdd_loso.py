"""Leave-one-speaker-out on the Free Spoken Digit Dataset: one training run per speaker, each tested on the
speaker it never heard (its best checkpoint chosen by validation files of the other speakers).

    OMP_NUM_THREADS=1 python tools/fsdd_loso.py /work/runs/fsdd_loso --number_of_epochs 12

Runs (or resumes) ``recipes/classification/lssl_fsdd_digits.yaml`` with ``--holdout_speaker S`` into
``ROOT/S`` for every speaker, then prints each fold's accuracy and their mean. Extra ``--key value`` pairs
are recipe overrides.
"""
import argparse
import sys
from pathlib import Path

import torch

from audiokit.hub.export import load_run_model
from audiokit.metrics.classification import classification_scores
from audiokit.tasks.keyword_data import digit_clips, digits_set
from audiokit.tasks.train import train

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes/classification/lssl_fsdd_digits.yaml"
DATA = REPO.parent / "shared/data/fsdd/recordings"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="folder of the runs, one per held-out speaker")
    parser.add_argument("--data", type=Path, default=DATA)
    args, overrides = parser.parse_known_args()
    torch.set_num_threads(1)
    speakers = sorted({clip.speaker for clip in digit_clips(args.data)})
    accuracies = {}
    for speaker in speakers:
        folder = args.root / speaker
        train(RECIPE, ["--output_folder", str(folder), "--holdout_speaker", speaker, "--data_root", str(args.data),
                       "--noprogressbar", *overrides])
        model, _, _ = load_run_model(folder)
        test = digits_set(args.data, "test", model.sample_rate, holdout_speaker=speaker)
        accuracies[speaker] = classification_scores(model, test)["accuracy"]
        print(f"held out {speaker}: {100 * accuracies[speaker]:.2f} % ({len(test)} clips)", flush=True)
    mean = sum(accuracies.values()) / len(accuracies)
    print(f"leave-one-speaker-out mean: {100 * mean:.2f} % over {len(accuracies)} speakers")


if __name__ == "__main__":
    sys.exit(main())
