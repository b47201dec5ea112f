"""Export a SpeechBrain training run as a pretrained file (``audiokit.hub.pretrained`` format).

``export_run(run_dir, out_path, card)`` rebuilds the model from ``<run_dir>/hyperparams.yaml`` (the
datasets are overridden with null, so no data folder is scanned), loads the best checkpoint by
the run's validation figure (its recipe's ``select_by``, else SI-SNR; the latest when no checkpoint records
one) strictly, and saves it with its config.
With ``average=K`` it loads the mean of the weights of the K best checkpoints by that figure
instead (SpeechBrain's ``average_checkpoints``; keep them with the recipe's ``keep_checkpoints``).
``select_by`` ranks the run's kept checkpoints by another figure they record (e.g. ``stoi`` in a run kept by
``pesq``); lower is better for the figures of :data:`LOWER_IS_BETTER`, higher for any other.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from audiokit.errors import CheckpointError, ModelError
from audiokit.hub.pretrained import save_pretrained
from audiokit.hub.registry import family_of
from audiokit.nn.checkpoint import load_strict, not_a_checkpoint, read_state_dict

# recipe keys that would scan data folders or open logs; null while exporting
_SKIPPED_KEYS = ("train_set", "valid_set", "train_logger")
LOWER_IS_BETTER = ("loss", "pose_loss", "free_score", "stoi_below_noisy")
"""Checkpoint figures where lower is better, for a ``select_by`` other than the run's own."""


def build_run_model(run_dir: Path):
    """The untrained ``model:`` of ``<run_dir>/hyperparams.yaml``."""
    return build_recipe_model(run_dir / "hyperparams.yaml", run_dir)[0]


def build_recipe_model(hparams_file: Path, output_folder: Path, keep: tuple[str, ...] = ()):
    """``(model, hparams)``: the untrained ``model:`` of a recipe or run's ``hyperparams.yaml``, built
    without its datasets and logs (``output_folder`` replaces the recipe's) but those named in ``keep``
    (e.g. ``("valid_set",)``, which then reads its data folders)."""
    from hyperpyyaml import load_hyperpyyaml

    if not hparams_file.is_file():
        raise CheckpointError(hparams_file, "no such file (not a recipe or training run folder?)")
    with open(hparams_file, encoding="utf-8") as f:
        text = f.read()
    skipped = {key: None for key in _SKIPPED_KEYS if key not in keep and f"\n{key}:" in f"\n{text}"}
    # the run may have moved since it was trained
    hparams = load_hyperpyyaml(text, {**skipped, "output_folder": str(output_folder)})
    if "model" not in hparams:
        raise ModelError(f"{hparams_file}: has no 'model' entry")
    return hparams["model"], hparams


def selection_key(run_dir: Path) -> str:
    """The validation figure the run keeps its checkpoints by: its recipe's ``select_by`` (``si_snr``, ``pesq``,
    ``accuracy``, ``pose_loss``, ...), ``si_snr`` when the recipe names none."""
    hparams = run_dir / "hyperparams.yaml"
    found = re.search(r"^select_by:\s*(\w+)", hparams.read_text(encoding="utf-8"), re.M) if hparams.is_file() else None
    return found[1] if found else "si_snr"


def higher_is_better(checkpoints) -> bool:
    """Whether the run's Brain ranked its checkpoints by a figure where higher is better, as it wrote in their
    meta (``higher_is_better``); checkpoints of runs older than that record held scores (True)."""
    flags = {c.meta.get("higher_is_better", True) for c in checkpoints}
    if len(flags) > 1:
        raise CheckpointError(Path(checkpoints[0].path).parent, "holds checkpoints ranked both ways "
                                                                "(higher and lower is better)")
    return flags.pop() if flags else True


def _ranking(run_dir: Path, checkpoints, select_by: Optional[str]) -> tuple[str, bool]:
    """``(figure, higher is better)`` that the checkpoints are ranked by: the run's own (:func:`selection_key`,
    :func:`higher_is_better`), or ``select_by``, one they record."""
    if select_by is None or select_by == selection_key(run_dir):
        return selection_key(run_dir), higher_is_better(checkpoints)
    if checkpoints and not any(select_by in c.meta for c in checkpoints):
        raise CheckpointError(run_dir / "save", f"no checkpoint records a {select_by!r} figure")
    return select_by, select_by not in LOWER_IS_BETTER


def find_run_checkpoint(run_dir: Path, select_by: Optional[str] = None) -> tuple[Path, dict]:
    """``(folder, meta)`` of the checkpoint in ``<run_dir>/save`` with the best figure (:func:`_ranking`: the run's
    own or ``select_by``), else the latest."""
    from speechbrain.utils.checkpoints import Checkpointer

    checkpointer = Checkpointer(run_dir / "save")
    found = checkpointer.list_checkpoints()
    if not found:
        raise CheckpointError(run_dir / "save", "holds no SpeechBrain checkpoint (CKPT+*)")
    key, higher = _ranking(run_dir, found, select_by)
    scored = [c for c in found if key in c.meta]
    best = max if higher else min
    ckpt = best(scored, key=lambda c: c.meta[key]) if scored else max(found, key=lambda c: c.meta["unixtime"])
    return Path(ckpt.path), dict(ckpt.meta)


def read_checkpoint_meta(folder: Path) -> dict:
    """The meta SpeechBrain stored beside a checkpoint (``CKPT.yaml``)."""
    import yaml
    meta_file = folder / "CKPT.yaml"
    if not meta_file.is_file():
        raise CheckpointError(folder, "is not a SpeechBrain checkpoint folder (no CKPT.yaml)")
    return yaml.safe_load(meta_file.read_text()) or {}


def average_run_checkpoints(run_dir: Path, count: int, select_by: Optional[str] = None) -> tuple[dict, dict]:
    """``(state, meta)``: the mean weights of the ``count`` checkpoints of ``<run_dir>/save`` with the best
    validation figure (:func:`_ranking`: the run's own or ``select_by``); ``meta`` names them (``averaged``), with
    their ``epochs`` and figures."""
    from speechbrain.utils.checkpoints import Checkpointer, average_checkpoints

    checkpointer = Checkpointer(run_dir / "save")
    key, higher = _ranking(run_dir, checkpointer.list_checkpoints(), select_by)
    direction = "max_key" if higher else "min_key"
    found = checkpointer.find_checkpoints(**{direction: key}, max_num_checkpoints=count)
    if len(found) < count:
        raise CheckpointError(run_dir / "save", f"holds {len(found)} checkpoints with a validation {key}, "
                                                f"fewer than the {count} to average")
    state = average_checkpoints(found, "model", parameter_loader=lambda path, map_location: read_state_dict(path))
    meta = {"averaged": [Path(c.path).name for c in found], "epochs": [c.meta.get("epoch") for c in found],
            key: [c.meta[key] for c in found]}
    return state, meta


def load_run_model(run_dir: Path, checkpoint=None, average: int = 1, select_by: Optional[str] = None):
    """``(model, folder, meta)``: the run's model with the weights of its best (else latest) checkpoint,
    of ``checkpoint`` (a ``CKPT+*`` folder of the run), or (``average`` > 1) the mean of its ``average``
    best checkpoints (``folder`` is then the run's ``save`` folder), loaded strictly; best by the run's own
    figure or ``select_by``."""
    if average < 1:
        raise ModelError(f"the number of checkpoints to average must be at least 1, not {average}")
    model = build_run_model(run_dir)
    if average > 1:
        if checkpoint is not None:
            raise ModelError("give either a checkpoint or a number of checkpoints to average, not both")
        state, meta = average_run_checkpoints(run_dir, average, select_by)
        load_strict(model, state, run_dir / "save")
        return model, run_dir / "save", meta
    if checkpoint is None:
        folder, meta = find_run_checkpoint(run_dir, select_by)
    else:
        folder = Path(checkpoint)
        meta = read_checkpoint_meta(folder)
    weights = folder / "model.ckpt"
    load_strict(model, read_state_dict(weights), weights)
    return model, folder, meta


def export_run(run_dir, out_path, card: Optional[dict] = None, checkpoint=None, average: int = 1,
               select_by: Optional[str] = None) -> Path:
    """Write the run's best (else latest) model to ``out_path`` (.safetensors) with its family,
    ``model.config`` and ``card`` plus the checkpoint's name and meta. Returns ``out_path``.

    ``checkpoint``: a specific ``CKPT+*`` folder of the run (e.g. chosen on a development set);
    ``average``: export the mean of the run's ``average`` best checkpoints instead; ``select_by``: best by
    this figure of the checkpoints instead of the run's own.
    """
    model, folder, meta = load_run_model(Path(run_dir), checkpoint, average, select_by)
    source = {"checkpoint": folder.name} if "averaged" not in meta else {}
    full_card = {**(card or {}), **source, **{k: v for k, v in meta.items() if k != "unixtime"}}
    return save_pretrained(model, out_path, family_of(model), model.config, full_card)


def interpolate_pretrained(paths, weights, out_path, card: Optional[dict] = None) -> Path:
    """Write the weighted mean of pretrained files' weights (a "model soup" of fine-tunes of one model) to
    ``out_path``. The files must be of one family with one config; ``weights`` (one per file, finite, >= 0) are
    normalised to sum to 1. Every floating-point tensor is averaged, buffers too (batch-norm running statistics,
    normalisation constants); integer tensors (batch norm's ``num_batches_tracked``) are the first file's. The card
    is ``card`` plus ``interpolated``: each source's file name, share, SHA-256 and own card. Returns ``out_path``;
    nothing is written when a file or weight is refused."""
    import hashlib
    import math

    from audiokit.hub.pretrained import load_model, read_metadata

    paths = [Path(p) for p in paths]
    weights = [float(w) for w in weights]
    if len(paths) < 2 or len(weights) != len(paths):
        raise ModelError(f"give two or more pretrained files and one weight each (got {len(paths)} files, "
                         f"{len(weights)} weights)")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ModelError(f"weights must be finite and >= 0 with a positive sum, not {weights}")
    for path in paths:
        if (problem := not_a_checkpoint(path, "model")) is not None:
            raise CheckpointError(path, problem)
    metas = [read_metadata(p) for p in paths]
    for path, meta in zip(paths[1:], metas[1:]):
        if (meta["family"], meta["config"]) != (metas[0]["family"], metas[0]["config"]):
            raise CheckpointError(path, f"is not the same model as {paths[0]} (family or config differ)")
    shares = [w / sum(weights) for w in weights]
    models = [load_model(str(p)) for p in paths]
    states = [m.state_dict() for m in models]
    mixed = {key: (sum(s * state[key].double() for s, state in zip(shares, states)).to(value.dtype)
                   if value.is_floating_point() else value)
             for key, value in states[0].items()}
    model = models[0]
    model.load_state_dict(mixed)
    sources = [{"file": p.name, "share": round(s, 6), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                "card": meta["card"]} for p, s, meta in zip(paths, shares, metas)]
    return save_pretrained(model, out_path, metas[0]["family"], model.config, {**(card or {}), "interpolated": sources})
