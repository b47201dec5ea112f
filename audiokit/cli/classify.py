"""``audiokit classify INPUT... [--model NAME|PATH] [--checkpoint FILE] [--device cpu|cuda] [--top-k K] [--json]
[--spot [--threshold P]]``: the class of every input, or the keywords spotted through it.

One line per file, ``FILE: label (0.97)`` (``--top-k``: the K best), or with ``--json`` one object per line
``{"file", "label", "prob", "top": [{"label", "prob"}, ...], "end"}``. With ``--spot``, one line per word detected
through a recording of any length, ``FILE: go (0.95) 12.31-13.40 s`` (``--json``: ``{"file", "label", "prob",
"start", "end"}``), printed as it is found; the audio is streamed through the model's step mode in bounded memory.
Inputs are files, folders and globs at any rate (resampled; channels mixed down to one); a bad input gets one
``error: FILE: problem`` line and exit status 1, while the other inputs are still processed.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from audiokit.cli.batch import BatchErrors, load_cli_model, naming_model
from audiokit.errors import AudiokitError, ModelKindError
from audiokit.hub.pretrained import check_device
from audiokit.hub.registry import DEFAULT_MODELS

DEFAULT_THRESHOLD = 0.8


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``classify`` subcommand."""
    parser = subparsers.add_parser("classify", help="name the word in each clip, or spot keywords in recordings",
                                   description=__doc__.split("\n\n")[1])
    default = DEFAULT_MODELS.get("classify") or "none shipped yet"
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="audio files, folders (searched recursively) or quoted glob patterns")
    parser.add_argument("--model", metavar="NAME|PATH",
                        help=f"pretrained model name or .safetensors file (default: {default})")
    parser.add_argument("--checkpoint", type=Path, metavar="FILE",
                        help="weights to load instead of the pretrained ones")
    parser.add_argument("--device", default="cpu", metavar="cpu|cuda",
                        help="torch device to run the model on (default: cpu)")
    parser.add_argument("--top-k", type=int, metavar="K", help="also list the K most likely classes (default: 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--spot", action="store_true",
                        help="spot keywords through each (long) recording instead: one line per detection")
    parser.add_argument("--threshold", type=float, metavar="P",
                        help=f"--spot: posterior a word must reach to be detected (default: {DEFAULT_THRESHOLD})")
    return parser


def _check_options(args: argparse.Namespace) -> None:
    if args.top_k is not None and args.spot:
        raise AudiokitError(f"--top-k {args.top_k}: not used with --spot")
    if args.top_k is not None and args.top_k < 1:
        raise AudiokitError(f"--top-k {args.top_k}: must be at least 1")
    if args.threshold is not None and not args.spot:
        raise AudiokitError(f"--threshold {args.threshold:g}: only used with --spot")
    if args.threshold is not None and not (math.isfinite(args.threshold) and 0 < args.threshold <= 1):
        raise AudiokitError(f"--threshold {args.threshold:g}: must be a probability in (0, 1]")


def _emit(line: str) -> None:
    print(line, flush=True)  # each result as soon as it is known (long recordings, pipes)


def run(args: argparse.Namespace) -> int:
    """Load the model once, then classify (or spot through) every input; 1 if any input failed."""
    from audiokit.api import Classifier, classify, iter_spots
    from audiokit.audio.io import find_audio_files

    _check_options(args)
    check_device(args.device, "--device ")
    model = load_cli_model(args, "classify")
    with naming_model(args.model, ModelKindError):
        classifier = Classifier(model)
    report = BatchErrors()

    files = find_audio_files(args.inputs, on_missing=report)
    threshold = args.threshold if args.threshold is not None else DEFAULT_THRESHOLD
    for path in files:
        try:
            if args.spot:
                found = 0
                for detection in iter_spots(path, model=classifier, threshold=threshold):
                    found += 1
                    _emit(json.dumps({"file": str(path), **detection.as_dict()}) if args.json
                          else f"{path}: {detection}")
                if not found and not args.json:
                    print(f"{path}: no word reached {threshold:g}", file=sys.stderr, flush=True)
            else:
                result = classify(path, model=classifier, top_k=args.top_k or 1)
                _emit(json.dumps({"file": str(path), **result.as_dict()}) if args.json else f"{path}: {result}")
        except Exception as exc:  # one bad file must not stop the batch
            report(exc, path)
    return report.status(files)
