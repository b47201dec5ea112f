"""``audiokit evaluate --clean DIR --estimate DIR [--json] [--dnsmos DIR] [--separated [--mixture DIR]]``:
score estimates against references; ``audiokit evaluate --dance [--model NAME|PATH | --motion DIR] [--data DIR]
[--dances NAME ...] [--json]``: score dances.

Per file (matched by stem, ``<stem>_enhanced.wav`` fits ``<stem>.wav``): PESQ wb/nb, STOI, SI-SNR (dB),
SDR (dB, plain energy ratio) and optionally DNSMOS SIG/BAK/OVRL of the estimate, then the averages, every column
over the same files (a file with an undefined score, e.g. PESQ finding no speech, is named and left out of all).
A silent reference, and an estimate that fits no reference, are errors.
With ``--separated``: per mixture, references ``<stem>_s1.wav, <stem>_s2.wav, ...`` in --clean against the
``audiokit separate`` outputs ``<stem>_s1.wav, ...`` in --estimate, in whichever order fits best
(permutation-invariant SI-SNR, SDR; SI-SNR improvement when --mixture holds ``<stem>.wav``).
With ``--dance``: the model's motion for each test dance's music beside the real dancer and controls (another
song's dancer, random poses, a frozen pose), see :mod:`audiokit.metrics.dance_eval`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from audiokit.cli import evaluate_dance
from audiokit.errors import AudiokitError, FileError, one_line


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand."""
    parser = subparsers.add_parser("evaluate", help="score enhanced/separated files against references, or dances",
                                   description=__doc__.split("\n\n")[1])
    parser.add_argument("--clean", type=Path, metavar="DIR", help="folder of clean reference files")
    parser.add_argument("--estimate", type=Path, metavar="DIR", help="folder of processed files")
    parser.add_argument("--dnsmos", type=Path, metavar="DIR",
                        help="folder with the DNSMOS P.835 sig_bak_ovr.onnx model (needs onnxruntime)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--separated", action="store_true",
                        help="score separated sources <stem>_s<k>.wav permutation-invariantly")
    parser.add_argument("--mixture", type=Path, metavar="DIR",
                        help="with --separated: folder of the mixtures <stem>.wav (adds SI-SNR improvement)")
    evaluate_dance.add_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Score the folders, print a table (or JSON) on stdout and error lines on stderr; 1 if any file failed."""
    evaluate_dance.check_options(args)
    errors = []

    def report(error: Exception) -> None:
        errors.append(error)
        print(f"error: {one_line(error)}", file=sys.stderr)

    if args.dance:  # a dance that cannot be scored: one line, left out of every row, status 1
        result = evaluate_dance.run(args, on_error=report)
        print(json.dumps(_json_safe(result), indent=2) if args.json else evaluate_dance.format_table(result))
        return 1 if errors else 0
    if args.clean is None or args.estimate is None:
        raise AudiokitError("--clean DIR and --estimate DIR are needed (or --dance)")
    # imported here: the metrics pull in scipy.signal (most of a second) that other commands never need
    from audiokit.metrics.scoring import average_scores, score_folders, undefined_scores
    from audiokit.metrics.separation import score_separated_folders

    if args.mixture is not None and not args.separated:
        raise FileError(args.mixture, "--mixture is only used with --separated")
    clean, estimate = args.clean.resolve(), args.estimate.resolve()
    if clean == estimate:
        raise FileError(args.estimate, "is the --clean folder itself; the estimates need their own folder")
    if args.clean.is_dir() and (estimate in clean.parents or clean in estimate.parents):
        raise FileError(args.estimate, "holds, or is inside, the --clean folder; the two must be apart")
    dnsmos = None
    if args.dnsmos is not None:
        from audiokit.metrics.dnsmos import Dnsmos

        dnsmos = Dnsmos(args.dnsmos)
    if args.separated:
        scores = score_separated_folders(args.clean, args.estimate, args.mixture, on_error=report)
    else:
        scores = score_folders(args.clean, args.estimate, dnsmos=dnsmos, on_error=report)
    average, left_out = average_scores(scores), undefined_scores(scores)
    for name, metrics in left_out.items():  # every column averages the same files
        print(f"note: {name}: {', '.join(metrics)} undefined (e.g. no speech found); left out of every average",
              file=sys.stderr)
    if args.json:
        print(json.dumps(_json_safe({"files": scores, "average": average, "averaged": len(scores) - len(left_out),
                                     "left_out": left_out}), indent=2))
    else:
        print(format_table(scores, average))
    return 1 if errors or not scores else 0


def format_table(scores: dict[str, dict[str, float]], average: dict[str, float]) -> str:
    """Plain-text table: one row per file, then the averages."""
    columns = list(average)
    width = max([len(name) for name in scores] + [len("average")])
    lines = [f"{'file':<{width}}" + "".join(f"{c:>12}" for c in columns)]
    for name, row in [*scores.items(), ("average", average)]:
        lines.append(f"{name:<{width}}" + "".join(f"{row.get(c, math.nan):>12.3f}" for c in columns))
    return "\n".join(lines)


def _json_safe(value):
    """``value`` with NaN/Inf floats replaced by None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value if not isinstance(value, float) or math.isfinite(value) else None
