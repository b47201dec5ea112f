"""``audiokit models``: the pretrained models shipped with audiokit, the default model of each task, the model
families (``audiokit.hub.registry``) and the official networks it loads."""
from __future__ import annotations

import argparse
import sys

from audiokit.errors import AudiokitError, one_line


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``models`` subcommand."""
    return subparsers.add_parser("models", help="list the available models", description=__doc__)


def describe(name: str, path) -> dict:
    """``{name, family, rate, latency, size_mb, params}`` of a pretrained file; latency is
    ``"<ms> ms"`` for a causal model (a streaming classifier: one posterior frame), else ``"offline"``."""
    from audiokit.hub.pretrained import load_model, read_metadata

    model = load_model(str(path))
    rate = int(getattr(model, "sample_rate", 16000))
    samples = getattr(model, "latency_samples", getattr(model, "frame_samples", None))
    latency = f"{1000 * samples / rate:.1f} ms" if getattr(model, "causal", False) and samples is not None \
        else "offline"
    return {"name": name, "family": read_metadata(path)["family"], "rate": rate, "latency": latency,
            "size_mb": path.stat().st_size / 1e6, "params": sum(p.numel() for p in model.parameters())}


def run(args: argparse.Namespace) -> int:
    """Print one row per pretrained model, the default of each task, the families, then the ClearerVoice names."""
    from audiokit.hub.clearvoice import clearvoice_names
    from audiokit.hub.pretrained import available
    from audiokit.hub.registry import DEFAULT_MODELS, FAMILIES

    status = 0
    print(f"{'pretrained':<24}{'family':<16}{'rate':>8}{'latency':>12}{'size':>10}{'params':>12}")
    for name, path in available().items():
        try:
            row = describe(name, path)
        except AudiokitError as exc:
            print(f"error: {one_line(exc, path)}", file=sys.stderr)
            status = 1
            continue
        tasks = [task for task, default in DEFAULT_MODELS.items() if default == name]
        mark = f" (default of {', '.join(tasks)})" if tasks else ""
        print(f"{name:<24}{row['family']:<16}{row['rate']:>8}{row['latency']:>12}"
              f"{row['size_mb']:>7.2f} MB{row['params']:>12,}{mark}")
    if not available():
        print("(none shipped yet)")
    print("\ndefault model of each task:")
    for task, name in DEFAULT_MODELS.items():
        print(f"  {task:<10}{name or '(none shipped yet)'}")
    print(f"\nmodel families: {', '.join(sorted(FAMILIES))}")
    print("\nofficial ClearerVoice networks (audiokit.hub.clearvoice.load_clearvoice):")
    for name in clearvoice_names():
        print(f"  {name}")
    return status
