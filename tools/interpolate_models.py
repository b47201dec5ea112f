"""Weighted mean of the weights of pretrained files of one model (a "model soup" of its fine-tunes).

    python tools/interpolate_models.py OUT.safetensors A.safetensors 0.7 B.safetensors 0.3
"""
import argparse
import json
import math
import sys
from pathlib import Path

from audiokit.errors import AudiokitError, one_line
from audiokit.hub.export import interpolate_pretrained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_path", help="the .safetensors file to write")
    parser.add_argument("pairs", nargs="+", help="pretrained file and its weight, repeated")
    parser.add_argument("--card", type=json.loads, default={}, help="model card entries, a JSON object")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give each pretrained file with its weight: FILE WEIGHT [FILE WEIGHT ...]")
    if not isinstance(args.card, dict):
        parser.error(f"--card: want a JSON object, not {args.card!r}")
    if not Path(args.out_path).resolve().parent.is_dir():
        parser.error(f"{args.out_path}: its folder does not exist")
    weights = []
    for text in args.pairs[1::2]:
        try:
            weights.append(float(text))
        except ValueError:
            parser.error(f"weight {text!r}: not a number")
        if not math.isfinite(weights[-1]) or weights[-1] < 0:
            parser.error(f"weight {text!r}: want a finite number >= 0")
    try:
        print(interpolate_pretrained(args.pairs[0::2], weights, args.out_path, args.card))
    except (AudiokitError, OSError) as exc:
        print(f"error: {one_line(exc, args.out_path if isinstance(exc, OSError) else None)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
