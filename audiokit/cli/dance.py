"""``audiokit dance MUSIC... [-o DIR] [--style auto|cha-cha|rumba|tango|waltz] [--bvh] [--gif] [--mp4]
[--model NAME|PATH] [--checkpoint FILE] [--device cpu|cuda] [--seed N] [--size PIXELS] [--no-beat-sync] [--force]``:
a dance to every piece of music.

Writes ``<stem>.bvh`` (the skeleton with per-joint rotations) and ``<stem>.mp4`` (a stick figure dancing, with
the music as its soundtrack) for every input, or with --bvh, --gif, --mp4 only the files named. Inputs, resampling
and bad input follow enhance (see ``audiokit.dancing``).
"""
from __future__ import annotations

import argparse
import time

from audiokit.cli.batch import (
    BatchErrors,
    add_batch_arguments,
    check_output_dir,
    claim_targets,
    load_cli_model,
    naming_model,
    read_identities,
)
from audiokit.dancing import DEFAULT_FORMATS, DEFAULT_SIZE, FORMATS, STYLE_CHOICES, check_size, dance_targets
from audiokit.errors import AudiokitError, ModelKindError
from audiokit.hub.pretrained import check_device


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``dance`` subcommand."""
    parser = subparsers.add_parser("dance", help="make a stick figure dance to music (BVH, MP4, GIF)",
                                   description=__doc__.split("\n\n")[1])
    add_batch_arguments(parser, task="dance")
    parser.add_argument("--style", choices=STYLE_CHOICES, default="auto",
                        help="the dance (default: auto, picked from the music)")
    for kind, what in (("bvh", "the motion as BVH (Blender, ...)"), ("gif", "a silent stick-figure GIF"),
                       ("mp4", "a stick-figure video with the music")):
        parser.add_argument(f"--{kind}", action="store_true", help=f"write <stem>.{kind}: {what}")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="seed torch's random generator before each dance (dance_lstm models do not sample: "
                             "they give the same dance without it)")
    parser.add_argument("--no-beat-sync", dest="beat_sync", action="store_false",
                        help="keep the model's own timing (default: the motion's beats near a music beat are moved "
                             "onto it, as audiokit.dancing describes; stream dance always keeps the model's timing)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, metavar="PIXELS",
                        help=f"width and height of the videos (default: {DEFAULT_SIZE})")
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the model once, then dance to every input; 1 if any input failed."""
    from audiokit.api import load_dancer
    from audiokit.audio.io import find_audio_files

    check_device(args.device, "--device ")
    check_size(args.size, "--size")
    formats = [kind for kind in FORMATS if getattr(args, kind)] or list(DEFAULT_FORMATS)
    model = load_cli_model(args, "dance")
    with naming_model(args.model, ModelKindError):
        dancer = load_dancer(model)
    report = BatchErrors()

    try:
        check_output_dir(args.output_dir)
    except AudiokitError as exc:
        report(exc)
        return 1
    files = find_audio_files(args.inputs, on_missing=report)
    reads, claimed = read_identities(files), {}
    for path in files:
        start = time.perf_counter()
        try:
            targets = claim_targets(path, dance_targets(path, args.output_dir, formats), args.force, claimed, reads)
            dancer.dance_file(path, targets, args.style, args.seed, args.size, args.force, beat_sync=args.beat_sync)
        except Exception as exc:  # one bad file must not stop the batch
            report(exc, path)
            continue
        names = ", ".join(map(str, targets))
        print(f"{path} -> {names} ({time.perf_counter() - start:.1f} s)", flush=True)
    return report.status(files)
