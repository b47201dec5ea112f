"""Weighted mean of the weights of pretrained files of one model (a "model soup" of its fine-tunes).

    python tools/interpolate_models.py OUT.safetensors A.safetensors 0.7 B.safetensors 0.3
"""
import argparse
import json

from audiokit.hub.export import interpolate_pretrained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_path", help="the .safetensors file to write")
    parser.add_argument("pairs", nargs="+", help="pretrained file and its weight, repeated")
    parser.add_argument("--card", type=json.loads, default={}, help="model card entries, JSON")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give each pretrained file with its weight: FILE WEIGHT [FILE WEIGHT ...]")
    paths, weights = args.pairs[0::2], [float(w) for w in args.pairs[1::2]]
    print(interpolate_pretrained(paths, weights, args.out_path, args.card))


if __name__ == "__main__":
    main()
