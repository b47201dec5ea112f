"""Training speed of a recipe's model on this CPU: time per optimiser step and audio trained per CPU second.

    python tools/benchmark_training.py [RECIPE] [--batch 2] [--seconds 2] [--steps 5] [--threads 1]

RECIPE defaults to ``recipes/separation/mossformer2_ss_8k_small.yaml`` (the shipped separator's).
Its ``model:`` is built untrained (no data folder is scanned); each step runs forward, backward and an
Adam update on a fixed random ``[batch, seconds * sample_rate]`` input, with the mean square of the
outputs as the loss (the recipe's loss costs little next to the model). After one warm-up step it
prints the median wall-clock and process-CPU time per step and the seconds of audio trained per
second of CPU time. To compare two versions of the code, run it from each checkout in one session.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiokit.errors import AudiokitError  # noqa: E402
from audiokit.hub.export import build_recipe_model  # noqa: E402

DEFAULT_RECIPE = REPO / "recipes/separation/mossformer2_ss_8k_small.yaml"


def output_loss(outputs) -> torch.Tensor:
    """Mean square of a model's output tensor(s), a stand-in loss with the same backward graph."""
    if isinstance(outputs, torch.Tensor):
        return outputs.square().mean()
    return sum(output_loss(o) for o in outputs)


def time_steps(model: torch.nn.Module, batch: torch.Tensor, steps: int) -> tuple[list, list]:
    """Wall-clock and CPU seconds of ``steps`` training steps (after one untimed warm-up step)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    walls, cpus = [], []
    for index in range(steps + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        optimizer.zero_grad()
        output_loss(model(batch)).backward()
        optimizer.step()
        if index:
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - start_cpu)
    return walls, cpus


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, nargs="?", default=DEFAULT_RECIPE)
    parser.add_argument("--batch", type=int, default=2, help="items per step (default 2)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per item (default 2)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model, hparams = build_recipe_model(args.recipe, Path(tmp))
    except AudiokitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rate = int(hparams.get("sample_rate", 16000))
    batch = 0.1 * torch.randn(args.batch, int(args.seconds * rate))
    walls, cpus = time_steps(model, batch, args.steps)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(f"{args.recipe.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, batch "
          f"{args.batch} x {args.seconds:g} s at {rate} Hz, {args.threads} thread(s)")
    print(f"step {wall * 1e3:.0f} ms wall, {cpu * 1e3:.0f} ms CPU (median of {args.steps}); "
          f"{args.batch * args.seconds / cpu:.2f} s of audio trained per CPU second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
