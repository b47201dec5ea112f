"""``audiokit separate INPUT... [-o DIR] [--model NAME|PATH] [--checkpoint FILE] [--num-speakers N]
[--device cpu|cuda] [--window S --overlap S] [--shifts N] [--force]``: write ``<stem>_s1.wav``, ``<stem>_s2.wav``, ...

Each channel is separated on its own, in overlapping windows whose speaker order is aligned on the
overlap, so a speaker stays on the same output over any length of audio, in bounded memory.
"""
from __future__ import annotations

import argparse

from audiokit.cli.batch import add_batch_arguments, load_cli_model, naming_model, process_files
from audiokit.errors import FileError, ModelKindError
from audiokit.hub.pretrained import check_device


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``separate`` subcommand."""
    parser = subparsers.add_parser("separate", help="split a recording of several talkers into one file per talker",
                                   description=__doc__.split("\n\n")[1])
    add_batch_arguments(parser, task="separate")
    parser.add_argument("--num-speakers", type=int, metavar="N",
                        help="speakers to separate (must match the model; default: the model's)")
    parser.add_argument("--window", type=float, default=4.0, metavar="S", help="seconds per model call (default: 4)")
    parser.add_argument("--overlap", type=float, default=1.0, metavar="S",
                        help="seconds shared by consecutive windows, used to keep speakers in order (default: 1)")
    parser.add_argument("--shifts", type=int, default=1, metavar="N",
                        help="separate each window N times on shifted frame grids and average "
                             "(better, N times slower; default: 1)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the model once, then separate every input; 1 if any input failed."""
    from audiokit.streaming.separation import WindowedSeparator

    check_device(args.device, "--device ")
    model = load_cli_model(args, "separate")
    with naming_model(args.model, ModelKindError):
        separator = WindowedSeparator(model, args.window, args.overlap, device=args.device, shifts=args.shifts)
    speakers = separator.output.count
    if args.num_speakers is not None and speakers is not None and args.num_speakers != speakers:
        raise FileError(args.model, f"separates {speakers} speakers, not --num-speakers {args.num_speakers}")
    return process_files(args.inputs, args.output_dir, "separated", separator, separator.sample_rate, args.force,
                         device=args.device, outputs_like=r"_s\d+$")
