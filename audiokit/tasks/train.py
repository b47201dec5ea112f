"""Train a speech-enhancement or separation model from a HyperPyYAML recipe.

    audiokit train recipes/enhancement/frcrn_causal_small.yaml --output_folder results/x --batch_size 4
    torchrun --nproc_per_node 2 -m audiokit.tasks.train RECIPE.yaml [--key value ...]   # DDP

``--key value`` pairs are SpeechBrain run options (``--device``, ``--precision``,
``--distributed_backend``, ...) or recipe overrides (any top-level key of the YAML).
A run whose output folder holds checkpoints resumes from the latest one. The recipe's optional
``brain_class: !name:...`` picks the SpeechBrain Brain (default: EnhancementBrain), e.g.
``audiokit.tasks.separation.SeparationBrain`` for recipes/separation/*.yaml. The optional recipe key
``init_from`` names a state dict (``torch.save`` file read with ``weights_only``, or ``.safetensors``) that
the model starts from, all keys checked; a resumed run's checkpoint replaces it.

``--max_minutes M`` (or the recipe key ``max_minutes``) limits the run's wall-clock time, counted from the
command's start: at the first training step after M minutes the run saves SpeechBrain's intra-epoch
checkpoint (the one ``ckpt_interval_minutes`` saves) and exits 0 with one line saying it stopped on the time
limit; the same command again resumes mid-epoch. A limit reached during validation stops right after that
epoch's checkpoint. ``tools/gpu_train.py`` uses it for short runs on a lent GPU.
"""
from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch

from audiokit.errors import AudiokitError, os_reason
from audiokit.nn.checkpoint import load_strict, read_state_dict
from audiokit.shipped import find_recipe, shipped_folder

if TYPE_CHECKING:
    from speechbrain.utils.run_opts import RunOptions

    from audiokit.tasks.recipe_brain import TimeLimitReached

# speechbrain, HyperPyYAML and the Brains are imported where they are used: the ``audiokit`` command
# line imports this module for its parser, and speechbrain takes about a second to import.


def run_option_names() -> set[str]:
    """Names of SpeechBrain's run options (``--device``, ``--precision``, ...)."""
    from speechbrain.utils.run_opts import RunOptions
    return {f.name for f in fields(RunOptions)} - {"overridden_args", "param_file"}


def parse_overrides(recipe_path: str | Path, overrides=None) -> tuple[RunOptions, str | dict]:
    """Split overrides into (run options, recipe overrides for ``load_hyperpyyaml``).

    ``overrides``: a list of CLI strings (``["--batch_size", "4"]``) or a dict
    (``{"batch_size": 4, "device": "cpu"}``). Without CUDA the DDP backend defaults to gloo;
    with a bf16-capable GPU the training precision defaults to bf16.
    """
    import speechbrain as sb
    from speechbrain.utils.run_opts import RunOptions
    names = run_option_names()
    if isinstance(overrides, dict):
        run_part = {k: v for k, v in overrides.items() if k in names}
        recipe_part = {k: v for k, v in overrides.items() if k not in names}
        run_opts = RunOptions.from_dictionary(run_part)
    else:
        _, run_opts, recipe_part = sb.parse_arguments([str(recipe_path), *(overrides or [])])
    cuda = torch.cuda.is_available()
    defaults = {"distributed_backend": "nccl" if cuda else "gloo"}
    if cuda and torch.cuda.is_bf16_supported():
        defaults["precision"] = "bf16"
    defaults = {k: v for k, v in defaults.items() if k not in run_opts.overridden_args}
    run_opts = replace(run_opts, **defaults, overridden_args=set(run_opts.overridden_args) | set(defaults))
    return run_opts, recipe_part


#: run options of which only one may be active: giving one on the command line turns off the recipe's other
EXCLUSIVE_RUN_OPTIONS = ("ckpt_interval_minutes", "ckpt_interval_steps")


def recipe_run_options(run_opts: RunOptions, hparams: dict) -> RunOptions:
    """Run options set in the recipe (e.g. ``ckpt_interval_minutes``) unless given on the command line
    (``--ckpt_interval_steps N`` there replaces the recipe's ``ckpt_interval_minutes``, and the reverse)."""
    given = set(run_opts.overridden_args)
    if given & set(EXCLUSIVE_RUN_OPTIONS):
        # the others count as given too (at their off value), or the Brain would take them from the recipe
        given |= set(EXCLUSIVE_RUN_OPTIONS)
    from_recipe = {k: hparams[k] for k in run_option_names() if k in hparams and k not in given}
    return replace(run_opts, **from_recipe, overridden_args=given | set(from_recipe))


def split_max_minutes(overrides):
    """``(max_minutes or None, the other overrides)``: ``--max_minutes M`` (``--max_minutes=M``, or the dict key)
    is audiokit's own option, neither a SpeechBrain run option nor necessarily a key of the recipe."""
    if isinstance(overrides, dict):
        rest = dict(overrides)
        value = rest.pop("max_minutes", None)
    else:
        rest, value, items = [], None, list(overrides or [])
        while items:
            item = items.pop(0)
            if item == "--max_minutes":
                if not items:
                    raise AudiokitError("--max_minutes needs a number of minutes")
                value = items.pop(0)
            elif item.startswith("--max_minutes="):
                value = item.split("=", 1)[1]
            else:
                rest.append(item)
    if value is None:
        return None, rest
    return check_max_minutes(value), rest


def check_max_minutes(value) -> float | None:
    """``value`` as a positive number of minutes (None or 0: no limit); AudiokitError otherwise."""
    if value is None:
        return None
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        raise AudiokitError(f"max_minutes {value!r}: must be a number of minutes") from None
    if not minutes >= 0 or minutes == float("inf"):
        raise AudiokitError(f"max_minutes {value!r}: must be a positive number of minutes")
    return minutes or None


def load_initial_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load the state dict in ``path`` into ``model``, every key checked (``CheckpointError`` otherwise).

    ``path``: a ``torch.save`` file (read with ``weights_only``; bare, DDP-prefixed or wrapped in
    ``{"model": ...}``) or a ``.safetensors`` file such as a pretrained model.
    """
    load_strict(model, read_state_dict(path), path)


@contextmanager
def _recipe_errors(recipe_path: Path):
    """A bad recipe or override (YAML, unknown key, a value its object refuses) raised inside becomes one
    AudiokitError line naming the recipe; audiokit's own errors and missing files pass as they are."""
    try:
        yield
    except (AudiokitError, FileNotFoundError):
        raise
    except OSError as exc:
        if (problem := _unwritable_run_folder(exc)) is not None:
            raise AudiokitError(problem) from None
        raise AudiokitError(f"{recipe_path}: {_recipe_problem(exc)}") from None
    except Exception as exc:
        raise AudiokitError(f"{recipe_path}: {_recipe_problem(exc)}") from None


def _unwritable_run_folder(exc: OSError) -> str | None:
    """The line for a run folder that cannot be made or written (read-only, no permission, full), or None for
    another OS error. A permission error on a path that does not exist is a folder that could not be made."""
    refused = exc.errno in (errno.EACCES, errno.EPERM) and exc.filename and not os.path.exists(exc.filename)
    if exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT) or refused:
        return f"{exc.filename}: cannot be made or written ({os_reason(exc)}); see --output_folder"
    return None


def _recipe_problem(exc: Exception) -> str:
    """One line saying what is wrong with a recipe or its overrides."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return f"cannot make the folder {exc.filename}: a file stands in its way (see --output_folder)"
    unknown = re.match(r"""["']?Override '([^']+)' not found""", text)
    if unknown:
        return f"unknown recipe key {unknown[1]!r} (overrides must name top-level keys of the recipe)"
    return f"{type(exc).__name__}: {text}"[:300]


def check_sizes(hparams: dict) -> None:
    """AudiokitError for sizes that would train or validate on nothing (and save such epochs as real)."""
    epoch, batch, valid = hparams.get("epoch_size"), hparams.get("batch_size"), hparams.get("valid_size")
    if isinstance(epoch, int) and isinstance(batch, int) and epoch < batch:
        raise AudiokitError(f"epoch_size {epoch} < batch_size {batch}: an epoch would hold no training step")
    if isinstance(valid, int) and valid < 1:
        raise AudiokitError(f"valid_size {valid}: validation needs at least one item")


def check_resumable(hparams: dict) -> None:
    """AudiokitError, before anything is written to the run folder, when the newest checkpoint whose model
    file reads does not fit the recipe's model (e.g. other overrides than the run had). Unreadable ones are
    left to the checkpointer, which skips them (:class:`~audiokit.tasks.checkpoints.SafeCheckpointer`)."""
    checkpointer, model = hparams.get("checkpointer"), hparams.get("modules", {}).get("model")
    if checkpointer is None or model is None:
        return
    for newest in sorted(checkpointer.list_checkpoints(), key=lambda c: c.meta.get("unixtime", 0), reverse=True):
        if "model" not in newest.paramfiles:
            continue
        try:
            state = read_state_dict(newest.paramfiles["model"])
        except AudiokitError:
            continue
        break
    else:
        return
    try:
        load_strict(model, state, newest.paramfiles["model"])
    except AudiokitError as exc:
        raise AudiokitError(f"cannot resume: {exc}; use a new --output_folder for another model, or delete "
                            f"{newest.path} to resume from the checkpoint before it") from None


class TrainResult(NamedTuple):
    folder: Path  #: the (absolute) output folder
    stopped: TimeLimitReached | None  #: set when the run stopped on its ``max_minutes`` (checkpoint saved)


def train(recipe_path: str | Path, overrides=None) -> Path:
    """Fit the recipe's model; returns the (absolute) output folder.

    Resumes from the newest checkpoint in ``<output_folder>/save`` when there is one. A run that stops on its
    ``max_minutes`` returns normally too (see :func:`train_run` to tell).
    """
    return train_run(recipe_path, overrides).folder


def train_run(recipe_path: str | Path, overrides=None) -> TrainResult:
    """:func:`train`, also saying whether the run stopped on its time limit (``max_minutes``)."""
    started = time.monotonic()
    import speechbrain as sb
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.utils.checkpoints import Checkpointer

    from audiokit.tasks.checkpoints import SafeCheckpointer
    from audiokit.tasks.enhancement import EnhancementBrain
    from audiokit.tasks.recipe_brain import RecipeBrain, TimeLimitReached

    recipe_path = find_recipe(recipe_path)
    if not recipe_path.is_file():
        raise FileNotFoundError(f"{recipe_path}: recipe not found (a file, or a shipped recipe's name: "
                                f"{', '.join(sorted(p.stem for p in shipped_folder('recipes').glob('*/*.yaml')))})")
    if os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "").lower() in ("1", "y", "yes", "true"):
        raise AudiokitError("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: loading checkpoints (resuming, averaging) "
                            "could run code from them; unset it")
    max_minutes, overrides = split_max_minutes(overrides)
    with _recipe_errors(recipe_path):  # e.g. an option without its value
        run_opts, recipe_overrides = parse_overrides(recipe_path, overrides)
    sb.utils.distributed.ddp_init_group(run_opts)  # no-op unless started by torchrun
    with _recipe_errors(recipe_path), open(recipe_path, encoding="utf-8") as f:
        hparams = load_hyperpyyaml(f, recipe_overrides)
    check_sizes(hparams)
    hparams["max_minutes"] = max_minutes if max_minutes is not None else check_max_minutes(hparams.get("max_minutes"))
    run_opts = recipe_run_options(run_opts, hparams)
    if hparams.get("init_from"):
        load_initial_weights(hparams["modules"]["model"], hparams["init_from"])
    if type(hparams.get("checkpointer")) is Checkpointer:  # a recipe of its own: give it atomic saves too
        hparams["checkpointer"].__class__ = SafeCheckpointer
    check_resumable(hparams)
    output_folder = Path(hparams["output_folder"]).resolve()
    if output_folder.exists() and not output_folder.is_dir():
        raise AudiokitError(f"{output_folder}: --output_folder names a file, not a folder")
    try:
        sb.create_experiment_directory(str(output_folder), hyperparams_to_save=str(recipe_path),
                                       overrides=recipe_overrides)
    except OSError as exc:
        if (problem := _unwritable_run_folder(exc)) is None:
            raise
        raise AudiokitError(problem) from None
    brain_class = hparams.get("brain_class") or EnhancementBrain
    if hparams["max_minutes"] and not issubclass(brain_class, RecipeBrain):
        raise AudiokitError(f"max_minutes needs a Brain derived from audiokit's RecipeBrain, not {brain_class}")
    brain = brain_class(modules=hparams["modules"], opt_class=hparams["opt_class"],
                             hparams=hparams, run_opts=run_opts, checkpointer=hparams["checkpointer"])
    if hparams["max_minutes"]:
        brain.stop_at = started + 60.0 * hparams["max_minutes"]
    try:
        brain.fit(hparams["epoch_counter"], hparams["train_set"], hparams.get("valid_set"),
                  train_loader_kwargs=hparams["train_dataloader_opts"],
                  valid_loader_kwargs=hparams.get("valid_dataloader_opts", {}))
    except TimeLimitReached as stop:
        return TrainResult(output_folder, stop)
    return TrainResult(output_folder, None)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``audiokit train RECIPE.yaml [--key value ...]``."""
    parser = subparsers.add_parser("train", help="train a model from a recipe YAML",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="HyperPyYAML recipe file, or a shipped recipe by name (e.g. frcrn_causal_small)")
    parser.add_argument("overrides", nargs=argparse.REMAINDER,
                        help="--key value pairs: recipe overrides or SpeechBrain run options")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """CLI action: train, print the output folder; one-line error and exit status 1 on bad input."""
    try:
        folder, stopped = train_run(args.recipe, list(args.overrides))
    except (FileNotFoundError, ValueError, AudiokitError) as err:
        print(f"audiokit train: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    if stopped is not None:
        print(f"audiokit train: {stopped}; the same command resumes it: {folder}")
        return 0
    print(f"trained: {folder}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audiokit.tasks.train")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
