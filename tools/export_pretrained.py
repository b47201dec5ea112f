"""Export a training run as a shipped pretrained model.

    python tools/export_pretrained.py /work/runs/frcrn_small_c16 pretrained/frcrn_causal_small.safetensors \
        --card '{"data": "...", "recipe": "recipes/enhancement/frcrn_causal_small.yaml"}'
"""
import argparse
import json

from audiokit.hub.export import export_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="training output folder (hyperparams.yaml, save/CKPT+*)")
    parser.add_argument("out_path", help="the .safetensors file to write")
    parser.add_argument("--checkpoint",
                        help="a CKPT+* folder to export instead of the best by the recipe's select_by figure")
    parser.add_argument("--average", type=int, default=1, metavar="K",
                        help="export the mean weights of the K best checkpoints by the recipe's select_by figure")
    parser.add_argument("--select-by", metavar="FIGURE",
                        help="rank the checkpoints by this figure they record (e.g. stoi) instead of the recipe's")
    parser.add_argument("--card", type=json.loads, default={}, help="model card, JSON (data, recipe, scores)")
    args = parser.parse_args()
    print(export_run(args.run_dir, args.out_path, args.card, args.checkpoint, args.average, args.select_by))


if __name__ == "__main__":
    main()
