"""Batch processing of audio files for file-processing subcommands (enhance, separate, ...).

A subcommand adds the shared options with ``add_batch_arguments(parser)`` and, in its ``run``, calls
``process_files(args.inputs, args.output_dir, "enhanced", model_fn, model_rate, args.force, device=args.device)``
where ``model_fn(wav [T] at model_rate) -> [T] or [S, T]`` runs the model on one channel.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from audiokit.audio.io import find_audio_files, read_audio, write_audio
from audiokit.audio.resample import resample
from audiokit.errors import AudioError, ModelError, one_line

ProcessFn = Callable[[torch.Tensor], torch.Tensor]


def add_batch_arguments(parser: argparse.ArgumentParser, default_model: str | None = None) -> None:
    """Add the options every file-processing subcommand shares:
    INPUT..., -o/--output-dir, --model, --checkpoint, --device, --force."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="audio files, folders (searched recursively) or quoted glob patterns")
    parser.add_argument("-o", "--output-dir", type=Path, metavar="DIR",
                        help="write the results here (default: next to each input)")
    parser.add_argument("--model", default=default_model, metavar="NAME|PATH",
                        help="pretrained model name or model folder" + (f" (default: {default_model})" if default_model else ""))
    parser.add_argument("--checkpoint", type=Path, metavar="FILE", help="weights to load instead of the pretrained ones")
    parser.add_argument("--device", default="cpu", metavar="cpu|cuda", help="torch device to run the model on (default: cpu)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")


def process_files(
    inputs: Iterable[str | Path],
    out_dir: str | Path | None,
    suffix: str,
    process_fn: ProcessFn,
    model_rate: int,
    force: bool = False,
    *,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
) -> int:
    """Run ``process_fn`` over every audio file in ``inputs``; return 0 if all succeeded, else 1.

    Inputs are files, folders or glob patterns (``find_audio_files``). Each channel of a file is resampled
    to ``model_rate`` Hz, moved to ``device`` and passed as a float32 tensor [T] to ``process_fn``, which
    returns [T] (one output, written as ``<stem>_<suffix>.wav``) or [S, T] (S outputs, e.g. speakers,
    written as ``<stem>_s1.wav`` ... ``<stem>_sS.wav``). Outputs are resampled back to the file's rate,
    trimmed (or zero-padded) to its length, and written atomically as 16-bit WAV with the input's channels
    to ``out_dir`` (default: the input's folder); existing files are kept unless ``force``.
    Prints a progress bar (stderr; by default only on a terminal), the real-time factor (wall seconds per
    second of audio) per file and overall, and for each failing input one line ``error: <file>: <problem>``
    on stderr, then goes on with the next file.
    """
    failures = 0

    def report(error: BaseException, path: Path | str | None = None) -> None:
        nonlocal failures
        failures += 1
        tqdm.write(f"error: {one_line(error, path)}", file=sys.stderr)

    files = find_audio_files(inputs, on_missing=report)
    claimed: dict[Path, Path] = {}  # output -> the input it belongs to, to catch name clashes in one run
    total_audio = total_wall = 0.0
    for path in tqdm(files, desc=suffix, unit="file", disable=(None if progress is None else not progress)):
        start = time.perf_counter()
        try:
            audio_seconds, outputs = _process_one(path, out_dir, suffix, process_fn, model_rate, force, device, claimed)
        except Exception as exc:  # one bad file must not stop the batch
            report(exc, path)
            continue
        wall = time.perf_counter() - start
        total_audio, total_wall = total_audio + audio_seconds, total_wall + wall
        names = ", ".join(str(p) for p in outputs)
        tqdm.write(f"{path} -> {names} ({audio_seconds:.2f} s audio, RTF {wall / audio_seconds:.3f})")
    if total_audio > 0:
        tqdm.write(f"overall RTF {total_wall / total_audio:.3f} ({total_audio:.1f} s audio in {total_wall:.1f} s)")
    if failures:
        tqdm.write(f"{failures} input(s) failed", file=sys.stderr)
    return 1 if failures or not files else 0


def _process_one(path: Path, out_dir, suffix: str, process_fn: ProcessFn, model_rate: int, force: bool,
                 device, claimed: dict[Path, Path]) -> tuple[float, list[Path]]:
    """Process one file; returns (its duration in seconds, the paths written)."""
    wav, rate = read_audio(path)
    with torch.inference_mode():
        channels = [_run_model(torch.from_numpy(channel), rate, process_fn, model_rate, device) for channel in wav]
    if len({tuple(c.shape) for c in channels}) > 1:
        raise ModelError(f"the model gave outputs of shapes {[tuple(c.shape) for c in channels]} for one file's channels")
    result = torch.stack(channels, dim=-2)  # [C, T] or [S, C, T]
    folder = Path(out_dir) if out_dir is not None else path.parent
    if result.ndim == 2:
        result, names = result[None], [f"{path.stem}_{suffix}.wav"]
    else:
        names = [f"{path.stem}_s{i + 1}.wav" for i in range(result.shape[0])]
    targets = [folder / name for name in names]
    for target in targets:  # check all before writing any, so that a file's outputs are all or none new
        if target in claimed:
            raise AudioError(target, f"would be written for both {claimed[target]} and {path}")
        if target.exists() and not force:
            raise AudioError(target, "exists, use --force")
    claimed.update(dict.fromkeys(targets, path))
    for target, output in zip(targets, result):
        write_audio(target, output, rate, force=force)
    return wav.shape[1] / rate, targets


def _run_model(channel: torch.Tensor, rate: int, process_fn: ProcessFn, model_rate: int, device) -> torch.Tensor:
    """One channel [T] at ``rate`` Hz through ``process_fn`` at ``model_rate``; returns [T] or [S, T] at ``rate``
    on the CPU, trimmed or zero-padded to T samples."""
    output = process_fn(resample(channel, rate, model_rate).to(device))
    if not isinstance(output, (torch.Tensor, np.ndarray)):
        raise ModelError(f"the model returned {type(output).__name__}, want a tensor [T] or [S, T]")
    output = torch.as_tensor(output).detach().to("cpu", torch.float32)
    if output.ndim not in (1, 2) or output.shape[-1] == 0:
        raise ModelError(f"the model returned shape {tuple(output.shape)}, want [T] or [S, T]")
    output = resample(output, model_rate, rate)
    return F.pad(output, (0, channel.shape[-1] - output.shape[-1]))  # negative padding trims
