"""Grow a trained MossFormer2 separator run, deeper or wider, into a model with the same output.

    python tools/grow_separator.py RUN_DIR OUT.ckpt --num-blocks 3
    torchrun ... -m audiokit.tasks.train RECIPE --num_blocks 3 --init_from OUT.ckpt --output_folder NEW_RUN
    python tools/grow_separator.py RUN_DIR OUT.ckpt --channels 128      # then --channels 128 --init_from

The best checkpoint of RUN_DIR (by validation SI-SNR) is loaded into a separator with
``--num-blocks`` MossFormer + gated-FSMN pairs (see :func:`audiokit.models.mossformer2.deepen`): the
trained pairs come first, the added ones have zeroed output projections, so the deeper model starts
from exactly the trained one's output and training goes on with more capacity.  ``--channels``
(a whole multiple of the trained width) repeats every channel (see :mod:`audiokit.nn.widen`), with
antithetic noise (``--noise``, a share of each weight's spread) so that the copies can part;
widening comes before deepening.  OUT.ckpt is a plain state dict (``torch.save``), read by the
recipe key ``init_from``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiokit.errors import AudiokitError  # noqa: E402
from audiokit.hub.export import load_run_model  # noqa: E402
from audiokit.models.mossformer2 import MossFormer2Separator, deepen  # noqa: E402
from audiokit.nn.widen import widen_state_dict  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run folder (hyperparams.yaml, save/)")
    parser.add_argument("out", type=Path, help="state dict to write (.ckpt)")
    parser.add_argument("--num-blocks", type=int, help="block pairs of the deeper model (default: as trained)")
    parser.add_argument("--channels", type=int, help="width of the wider model (default: as trained)")
    parser.add_argument("--noise", type=float, default=0.1,
                        help="antithetic noise on widened weights, share of their spread (default 0.1)")
    args = parser.parse_args(argv)
    try:
        model, folder, meta = load_run_model(args.run)
        if not isinstance(model, MossFormer2Separator):
            raise AudiokitError(f"{args.run}: not a MossFormer2 separator run")
        config, trained = model.config, model.state_dict()
        if args.channels and args.channels != config["in_channels"]:
            config = {**config, "in_channels": args.channels, "out_channels": args.channels}
            trained = widen_state_dict(MossFormer2Separator(**config), trained, noise=args.noise)
        deeper = MossFormer2Separator(**{**config, "num_blocks": args.num_blocks or config["num_blocks"]})
        added = deepen(deeper, trained)
    except AudiokitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {args.run}: {exc}", file=sys.stderr)
        return 1
    partial = args.out.with_name(args.out.name + ".partial")
    torch.save(deeper.state_dict(), partial)
    partial.replace(args.out)
    print(f"{folder.name} (epoch {meta.get('epoch')}, SI-SNR {meta.get('si_snr', float('nan')):.2f} dB): "
          f"{model.config['num_blocks']} + {added} block pairs, {model.config['in_channels']} -> "
          f"{config['in_channels']} channels -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
