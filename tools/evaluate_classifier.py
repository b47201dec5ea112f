"""Accuracy of a classifier on the speakers it never saw: the test split of its recipe's data.

    python tools/evaluate_classifier.py pretrained/lssl_speech_commands.safetensors             # SC test speakers
    python tools/evaluate_classifier.py RUN_FOLDER --rate 8000                                   # zero-shot at 8 kHz
    python tools/evaluate_classifier.py pretrained/lssl_fsdd_digits.safetensors --data fsdd     # standard split
    python tools/evaluate_classifier.py RUN --data fsdd --holdout-speaker george                 # one LOSO fold

MODEL is a pretrained file or a training run folder (its best checkpoint by validation accuracy). The test
split is the recipes' (speaker hash for Speech Commands, index 0-4 or one held-out speaker for FSDD), so
it was never trained on nor used to choose a checkpoint. Prints accuracy, per-class accuracy and (with
--json) the confusion matrix.
"""
import argparse
import json
from pathlib import Path

import torch

from audiokit.metrics.classification import classification_scores
from audiokit.tasks.keyword_data import digits_set, speech_commands_set

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data"


def load(model_path: Path):
    if model_path.is_dir():
        from audiokit.hub.export import load_run_model
        model, folder, meta = load_run_model(model_path)
        print(f"run checkpoint {folder.name} (epoch {meta.get('epoch')}, valid accuracy {meta.get('accuracy')})")
        return model
    from audiokit.hub.pretrained import load_model
    return load_model(str(model_path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="pretrained .safetensors file or training run folder")
    parser.add_argument("--data", choices=("speech_commands", "fsdd"), default="speech_commands")
    parser.add_argument("--root", type=Path, help="data folder (default: ../shared/data/<data>)")
    parser.add_argument("--split", default="test", choices=("test", "valid", "train"))
    parser.add_argument("--holdout-speaker", help="FSDD: leave-one-speaker-out fold (that speaker is the test set)")
    parser.add_argument("--rate", type=int, help="run at this sample rate, zero-shot (the model's set_rate)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load(args.model)
    if args.data == "fsdd":
        dataset = digits_set(args.root or SHARED / "fsdd/recordings", args.split, model.sample_rate,
                             holdout_speaker=args.holdout_speaker)
    else:
        dataset = speech_commands_set(args.root or SHARED / "speech_commands", args.split, model.sample_rate)
    scores = classification_scores(model, dataset, rate=args.rate)
    if args.json:
        print(json.dumps(scores))
        return
    rate = args.rate or model.sample_rate
    print(f"{args.data} {args.split} ({scores['items']} clips, {rate} Hz): accuracy {100 * scores['accuracy']:.2f} %")
    print("  " + "  ".join(f"{label} {100 * acc:.0f}" for label, acc in scores["per_class"].items()))


if __name__ == "__main__":
    main()
