"""A training run's learning curve as Markdown tables, for model cards.

    python tools/learning_curve.py RUN [--first 1] [--per-row 16]

Reads ``RUN/learning_curve.csv`` (written by the recipes' Brains: epoch, lr, losses, validation
SI-SNR in dB) and prints tables of ``--per-row`` epochs each: validation SI-SNR and learning rate.
When an epoch appears more than once (a run resumed from an earlier checkpoint), the last row wins.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_curve(path: Path) -> dict[int, dict]:
    """``{epoch: row}`` of a ``learning_curve.csv``, later rows replacing earlier ones."""
    with open(path, newline="", encoding="utf-8") as f:
        return {int(row["epoch"]): row for row in csv.DictReader(f)}


def markdown_tables(curve: dict[int, dict], first: int = 1, per_row: int = 16) -> str:
    epochs = [e for e in sorted(curve) if e >= first]
    blocks = []
    for start in range(0, len(epochs), per_row):
        chunk = epochs[start:start + per_row]
        lines = ["| epoch | " + " | ".join(str(e) for e in chunk) + " |",
                 "|---|" + "---|" * len(chunk),
                 "| SI-SNR | " + " | ".join(f"{float(curve[e]['valid_si_snr']):.2f}" for e in chunk) + " |",
                 "| lr | " + " | ".join(f"{float(curve[e]['lr']):.2g}" for e in chunk) + " |"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run folder (holds learning_curve.csv)")
    parser.add_argument("--first", type=int, default=1, help="first epoch shown (default 1)")
    parser.add_argument("--per-row", type=int, default=16, help="epochs per table (default 16)")
    args = parser.parse_args(argv)
    path = args.run / "learning_curve.csv"
    if not path.is_file():
        print(f"error: {path}: no such file", file=sys.stderr)
        return 1
    print(markdown_tables(read_curve(path), args.first, args.per_row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
