"""``audiokit enhance INPUT... [-o DIR] [--model NAME|PATH] [--checkpoint FILE] [--device cpu|cuda]
[--stream --chunk-ms N] [--atten-lim DB] [--force]``: write ``<stem>_enhanced.wav`` for every input.

Each channel is enhanced on its own, streamed block by block in bounded memory (audiokit.api.Enhancer).
"""
from __future__ import annotations

import argparse

from audiokit.cli.batch import add_atten_lim_argument, add_batch_arguments, load_cli_model, naming_model, process_files
from audiokit.errors import ModelError, ModelKindError
from audiokit.hub.pretrained import check_device
from audiokit.streaming.pipeline import kept_input_share


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``enhance`` subcommand."""
    parser = subparsers.add_parser("enhance", help="remove noise from speech recordings",
                                   description=__doc__.split("\n\n")[1])
    add_batch_arguments(parser, task="enhance")
    parser.add_argument("--stream", action="store_true",
                        help="feed the model small chunks, as live audio would arrive (default: 10 s blocks)")
    parser.add_argument("--chunk-ms", type=float, metavar="N", help="chunk length with --stream (default: 20 ms)")
    add_atten_lim_argument(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the model once, then enhance every input; 1 if any input failed."""
    from audiokit.api import Enhancer

    check_device(args.device, "--device ")
    kept_input_share(args.atten_lim_db)  # before the model loads
    if args.chunk_ms is not None and not args.stream:
        raise ModelError(f"--chunk-ms {args.chunk_ms:g}: only used with --stream")
    model = load_cli_model(args, "enhance")
    with naming_model(args.model, ModelKindError):
        enhancer = Enhancer(model, stream=args.stream, chunk_ms=args.chunk_ms, atten_lim_db=args.atten_lim_db)
    return process_files(args.inputs, args.output_dir, "enhanced", enhancer, enhancer.sample_rate, args.force,
                         device=args.device)
