"""Batch processing of audio files for file-processing subcommands (enhance, separate, ...).

A subcommand adds the shared options with ``add_batch_arguments(parser)`` and, in its ``run``, calls
``process_files(args.inputs, args.output_dir, "enhanced", processor, model_rate, args.force, device=args.device)``
where ``processor`` streams blocks (``audiokit.api.Enhancer``) or is a function running the model on
one whole channel (``wav [T] at model_rate -> [T] or [S, T]``).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np
import torch
from tqdm import tqdm

from audiokit.audio.io import find_audio_files
from audiokit.blocks import (
    check_targets,
    file_identity,
    output_extension,
    output_paths,
    process_file,
    written_by_audiokit,
)
from audiokit.errors import AudioError, FileError, ModelError, one_line
from audiokit.hub.registry import DEFAULT_MODELS, default_model
from audiokit.streaming.outputs import OutputSpec

ProcessFn = Callable[[torch.Tensor], torch.Tensor]


class ProcessorFactory(Protocol):
    """Makes a block processor (``audiokit.streaming.pipeline``) for a file of ``channels`` channels. It may
    also have ``output`` (an ``OutputSpec``; audio by default): its outputs per input (named up front when
    the count is known) and whether they are audio or frames."""

    def open(self, channels: int): ...


def add_batch_arguments(parser: argparse.ArgumentParser, task: str | None = None) -> None:
    """Add the options every file-processing subcommand shares:
    INPUT..., -o/--output-dir, --model (None: ``task``'s default, see :func:`load_cli_model`), --checkpoint,
    --device, --force."""
    default = DEFAULT_MODELS.get(task) or "none shipped yet"
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="audio files, folders (searched recursively) or quoted glob patterns")
    parser.add_argument("-o", "--output-dir", type=Path, metavar="DIR",
                        help="write the results here (default: next to each input)")
    parser.add_argument("--model", metavar="NAME|PATH",
                        help="pretrained model name or .safetensors file" + (f" (default: {default})" if task else ""))
    parser.add_argument("--checkpoint", type=Path, metavar="FILE",
                        help="weights to load instead of the pretrained ones")
    parser.add_argument("--device", default="cpu", metavar="cpu|cuda",
                        help="torch device to run the model on (default: cpu)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")


def add_atten_lim_argument(parser: argparse.ArgumentParser) -> None:
    """``--atten-lim DB`` of ``enhance`` and ``stream enhance`` (``args.atten_lim_db``)."""
    parser.add_argument("--atten-lim", dest="atten_lim_db", type=float, metavar="DB",
                        help="enhance: attenuate the noise by at most DB dB, keeping that share of the input "
                             "(less distortion of the speech; default: no limit)")


@contextmanager
def naming_model(name: str, errors: type = ModelError):
    """Errors of type ``errors`` raised inside become FileError naming the model: ``error: <name>: <problem>``."""
    try:
        yield
    except errors as exc:
        raise FileError(name, str(exc)) from None


def load_cli_model(args: argparse.Namespace, task: str) -> torch.nn.Module:
    """``--model`` (weights from ``--checkpoint`` when given) on ``--device``; errors name the model. Without
    ``--model``, ``task``'s default model (``args.model`` is set to its name; ModelError when none ships)."""
    from audiokit.hub.pretrained import load_model

    args.model = args.model or default_model(task)
    with naming_model(args.model):
        return load_model(args.model, checkpoint=args.checkpoint, device=args.device)


def process_files(
    inputs: Iterable[str | Path],
    out_dir: str | Path | None,
    suffix: str,
    process_fn: ProcessFn | ProcessorFactory,
    model_rate: int,
    force: bool = False,
    *,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    outputs_like: str | None = None,
) -> int:
    r"""Run ``process_fn`` over every audio file in ``inputs``; return 0 if all succeeded, else 1.

    Inputs are files, folders or glob patterns (``find_audio_files``); files found in folders or by
    patterns that are outputs of an earlier run (stems ending in ``_<suffix>``, or matching the regular
    expression ``outputs_like``, e.g. ``_s\d+$`` for separated sources, and written by audiokit) are skipped.
    ``process_fn`` is either

    * a processor factory (anything with ``open(channels)``, e.g. ``audiokit.api.Enhancer``): each file
      is streamed block by block through ``audiokit.streaming.pipeline.BlockPipeline``, in bounded memory; or
    * a function on one whole channel: float32 tensor [T] at ``model_rate`` Hz on ``device`` -> [T]
      (one output) or [S, T] (S outputs, e.g. speakers).

    One output is written as ``<stem>_<suffix>.wav``, S outputs as ``<stem>_s1.wav`` ... ``<stem>_sS.wav``:
    resampled from ``model_rate`` to the file's rate in chunks, trimmed (or zero-padded) to its length,
    16-bit WAV with the input's channels, to ``out_dir`` (default: the input's folder), through temporary
    files renamed at the end; existing files are kept unless ``force`` (also one that another run writes
    meanwhile), and a file this run reads is never written over, whatever its name or spelling.
    Prints a progress bar (stderr; by default only on a terminal), the real-time factor (wall seconds per
    second of audio) per file and overall, and for each failing input one line ``error: <file>: <problem>``
    on stderr, then goes on with the next file.
    """
    report = BatchErrors(partial(tqdm.write, file=sys.stderr))
    try:
        check_output_dir(out_dir)
    except AudioError as exc:
        report(exc)
        return 1
    output_stem = re.compile(f"_{re.escape(suffix)}$" + (f"|{outputs_like}" if outputs_like else ""))
    files = [f for f in find_audio_files(inputs, on_missing=report)
             if not output_stem.search(f.stem) or _named_explicitly(f, inputs) or not written_by_audiokit(f)]
    reads = read_identities(files)
    open_processor = process_fn.open if hasattr(process_fn, "open") else partial(_WholeChannels, process_fn, device)
    output = getattr(process_fn, "output", OutputSpec.audio(None))  # a known count: existing outputs refused first
    claimed: dict[Path, Path] = {}  # output -> the input it belongs to, to catch name clashes in one run
    total_audio = total_wall = 0.0
    disable = None if progress is None else not progress
    for path in tqdm(files, desc=suffix, unit="file", disable=disable):
        start = time.perf_counter()
        try:
            with tqdm(desc=path.name, unit="s", leave=False, disable=disable) as bar:
                audio_seconds = process_file(path, open_processor, model_rate,
                                             partial(_claim_outputs, path, out_dir, suffix, force, claimed,
                                                     output_extension(output), reads),
                                             on_progress=lambda n: bar.update(n), output=output, replace=force)
        except Exception as exc:  # one bad file must not stop the batch
            report(exc, path)
            continue
        wall = time.perf_counter() - start
        total_audio, total_wall = total_audio + audio_seconds, total_wall + wall
        names = ", ".join(str(p) for p, source in claimed.items() if source == path)
        tqdm.write(f"{path} -> {names} ({audio_seconds:.2f} s audio, RTF {wall / audio_seconds:.3f})")
    if total_audio > 0:
        tqdm.write(f"overall RTF {total_wall / total_audio:.3f} ({total_audio:.1f} s audio in {total_wall:.1f} s)")
    return report.status(files)


class BatchErrors:
    """The failed inputs of a batch command: ``report(error, path=None)`` writes one ``error: <file>: <problem>``
    line and counts it; :meth:`status` writes the count (if any) and gives the exit status. ``write`` takes a
    line for stderr (default: print and flush; ``tqdm.write`` beside a progress bar)."""

    def __init__(self, write=None):
        self.count = 0
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))

    def __call__(self, error: BaseException, path: Path | str | None = None) -> None:
        self.count += 1
        self.write(f"error: {one_line(error, path)}")

    def status(self, files) -> int:
        """1 if an input failed or none was found, else 0."""
        if self.count:
            self.write(f"{self.count} input(s) failed")
        return 1 if self.count or not files else 0


def check_output_dir(out_dir: str | Path | None) -> None:
    """AudioError when ``-o`` names something that exists and is not a folder (a missing one is created)."""
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise AudioError(out_dir, "is not a folder (-o names the folder to write into)")


def read_identities(files: Iterable[Path]) -> set[tuple[int, int]]:
    """The :func:`~audiokit.blocks.file_identity` of every input a run reads (none is ever written over)."""
    return {identity for identity in map(file_identity, files) if identity is not None}


def claim_targets(path: Path, targets: list[Path], force: bool, claimed: dict[Path, Path], reads: set) -> list[Path]:
    """``targets``, the outputs of input ``path``, claimed for it in this run; AudioError when one is an input of
    the run (``reads``: :func:`read_identities`), exists (without ``force``) or was claimed for another input
    (``claimed``: output -> input, updated here). All are checked before any is written."""
    for target in targets:
        if target in claimed:
            raise AudioError(target, f"would be written for both {claimed[target]} and {path}")
    check_targets(targets, force, inputs=reads)
    claimed.update(dict.fromkeys(targets, path))
    return targets


def _named_explicitly(path: Path, inputs: Iterable[str | Path]) -> bool:
    """True when ``path`` was given itself, not found in a folder or by a pattern."""
    return any(Path(item) == path for item in inputs)


def _claim_outputs(path: Path, out_dir, suffix: str, force: bool, claimed: dict[Path, Path], extension: str,
                   reads: set, count: int) -> list[Path]:
    """The ``count`` output paths of ``path``, claimed (:func:`claim_targets`)."""
    targets = output_paths(path, Path(out_dir) if out_dir is not None else path.parent, suffix, count, extension)
    return claim_targets(path, targets, force, claimed, reads)


class _WholeChannels:
    """A processor (``audiokit.streaming.pipeline``) running a whole-channel ``process_fn`` on each channel at the
    end."""

    def __init__(self, process_fn: ProcessFn, device, channels: int):
        self.process_fn, self.device, self.parts = process_fn, device, []

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        self.parts.append(x)
        return x.new_zeros(1, x.shape[0], 0)

    def flush(self) -> torch.Tensor:
        with torch.inference_mode():
            channels = [self._run(channel) for channel in torch.cat(self.parts, dim=-1)]
        if len({tuple(c.shape) for c in channels}) > 1:
            shapes = [tuple(c.shape) for c in channels]
            raise ModelError(f"the model gave outputs of shapes {shapes} for one file's channels")
        result = torch.stack(channels, dim=-2)  # [C, T] or [S, C, T]
        return result[None] if result.ndim == 2 else result

    def _run(self, channel: torch.Tensor) -> torch.Tensor:
        output = self.process_fn(channel.to(self.device))
        if not isinstance(output, (torch.Tensor, np.ndarray)):
            raise ModelError(f"the model returned {type(output).__name__}, want a tensor [T] or [S, T]")
        output = torch.as_tensor(output).detach().to("cpu", torch.float32)
        if output.ndim not in (1, 2) or output.shape[-1] == 0:
            raise ModelError(f"the model returned shape {tuple(output.shape)}, want [T] or [S, T]")
        return output
