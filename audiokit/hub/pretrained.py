"""Pretrained models: the embedded defaults in ``pretrained/`` and user files.

A pretrained file is a ``.safetensors`` file whose metadata holds
``family`` (a family of :mod:`audiokit.hub.registry`), ``config`` (the model constructor
arguments, JSON) and ``card`` (JSON: data, recipe, steps, scores).  Loading
runs no code from the file.  ``load_model(name_or_path)`` accepts

* a name from :func:`available` (``frcrn_causal_small``, ...), the files in
  the ``pretrained/`` folder shipped with audiokit (None: the default
  enhancer, ``registry.default_model("enhance")``);
* a path to such a ``.safetensors`` file;
* a family name plus ``checkpoint=`` (a SpeechBrain ``model.ckpt`` or any
  state-dict file), built with the family's default configuration or the one
  given in ``config=`` (``mossformer2_ss``/``mossformer2_se`` default to the
  published sizes);
* a published ClearerVoice-Studio name (:data:`CLEARVOICE_NAMES`, e.g.
  ``mossformer2_se_48k``) plus ``checkpoint=`` (the official file).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from ..audio.resample import rate_problem
from ..errors import CheckpointError, ModelError
from ..nn.checkpoint import load_strict, not_a_checkpoint, read_state_dict
from ..shipped import shipped_folder
from .registry import FAMILIES, default_model, family_class

#: our names of the official checkpoints that :func:`audiokit.hub.clearvoice.load_clearvoice` reads
CLEARVOICE_NAMES = {"frcrn_se_16k": "FRCRN_SE_16K", "mossformer2_ss_16k": "MossFormer2_SS_16K",
                    "mossformer2_se_48k": "MossFormer2_SE_48K"}
PRETRAINED_DIR = shipped_folder("pretrained")
MAX_METADATA_DEPTH = 32  # levels of lists and objects in a pretrained file's config and card (the shipped files: 1)


def available() -> Dict[str, Path]:
    """Names of the shipped pretrained models and their files."""
    return {p.stem: p for p in sorted(PRETRAINED_DIR.glob("*.safetensors"))}


def save_pretrained(model: nn.Module, path, family: str, config: dict, card: Optional[dict] = None) -> Path:
    """Write ``model``'s weights with their family, config and model card (atomically)."""
    from safetensors.torch import save_file
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    # cloned: buffers shared between modules (MossFormer2's rotary table) are saved once per key
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    meta = {"family": family, "config": json.dumps(config), "card": json.dumps(card or {})}
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # a shipped file, readable by everyone
    tmp.replace(path)
    return path


def read_metadata(path) -> dict:
    """``{"family", "config", "card"}`` of a pretrained file (config and card decoded)."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise CheckpointError(path, f"not a readable safetensors file ({type(exc).__name__})") from None
    if meta.get("family") not in FAMILIES:
        raise CheckpointError(path, f"unknown model family {meta.get('family')!r} in its metadata")
    try:
        decoded = {"family": meta["family"], "config": json.loads(meta.get("config", "{}")),
                   "card": json.loads(meta.get("card", "{}"))}
    except json.JSONDecodeError:
        raise CheckpointError(path, "metadata is not valid JSON") from None
    except RecursionError:  # the decoder recurses once per level
        raise CheckpointError(path, f"metadata nested more than {MAX_METADATA_DEPTH} levels deep") from None
    if not isinstance(decoded["config"], dict) or not isinstance(decoded["card"], dict):
        raise CheckpointError(path, "metadata config and card must be JSON objects")
    if max(_depth(decoded["config"]), _depth(decoded["card"])) > MAX_METADATA_DEPTH:
        # what parses may still break whatever walks it recursively later (copies, printing, JSON again)
        raise CheckpointError(path, f"metadata nested more than {MAX_METADATA_DEPTH} levels deep")
    return decoded


def _depth(value) -> int:
    """How deeply lists and dicts nest in decoded JSON ``value`` (0 for a scalar), found without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            todo.extend((child, level + 1) for child in children)
    return deepest


def check_device(device, option: str = "device=") -> None:
    """ModelError unless ``device`` names a torch device this machine has (cpu, cuda, cuda:N); the message
    starts with ``option`` and the value (the CLI passes ``"--device "``)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ModelError(f"{option}{device}: not a torch device (cpu, cuda, cuda:N)") from None
    kind = parsed.type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"{option}{device}: CUDA is not available on this machine")
    if kind == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise ModelError(f"{option}{device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind not in ("cpu", "cuda"):
        raise ModelError(f"{option}{device}: only cpu and cuda are supported")


def build(family: str, config: Optional[dict] = None) -> nn.Module:
    """A freshly initialised model of ``family`` with constructor arguments ``config``."""
    cls = family_class(family)
    if config is not None and not isinstance(config, dict):
        raise ModelError(f"bad configuration for {family}: want a dict, got {type(config).__name__}")
    try:
        return cls(**(config or {}))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"bad configuration for {family}: {' '.join(str(exc).split())}") from None


def load_model(name_or_path: Optional[str] = None, checkpoint=None, config: Optional[dict] = None,
               device: str = "cpu") -> nn.Module:
    """A model in eval mode on ``device`` (see the module docstring for what is accepted).

    With ``checkpoint`` given and ``name_or_path`` a pretrained name or file,
    the architecture comes from the pretrained file and the weights from
    ``checkpoint``.
    """
    name_or_path = default_model("enhance") if name_or_path is None else name_or_path
    shipped = available()
    path = shipped.get(name_or_path)
    if path is None and str(name_or_path).endswith(".safetensors"):
        path = Path(name_or_path)
        if (problem := not_a_checkpoint(path, "model")) is not None:
            raise CheckpointError(path, problem)
    check_device(device)
    if path is not None:
        meta = read_metadata(path)
        try:
            model = build(meta["family"], {**meta["config"], **(config or {})})
        except ModelError as exc:
            raise CheckpointError(path, str(exc)) from None
        model.card = meta["card"]
        load_strict(model, read_state_dict(checkpoint or path), checkpoint or path)
    elif name_or_path in CLEARVOICE_NAMES:
        if checkpoint is None:
            raise ModelError(f"{name_or_path} is not shipped (too large); download the official checkpoint "
                             "and pass it with --checkpoint")
        from .clearvoice import load_clearvoice
        model = load_clearvoice(CLEARVOICE_NAMES[name_or_path], checkpoint, **(config or {}))
    elif name_or_path in FAMILIES:
        model = build(name_or_path, config)
        if checkpoint is None:
            raise ModelError(f"model family {name_or_path!r} needs --checkpoint (or use a pretrained name: "
                             f"{', '.join(shipped) or 'none shipped'})")
        load_strict(model, read_state_dict(checkpoint), checkpoint)
    else:
        known = sorted(set(shipped) | set(FAMILIES) | set(CLEARVOICE_NAMES))
        raise ModelError(f"unknown model {name_or_path!r}; known: {', '.join(known)} or a .safetensors file")
    if (problem := rate_problem(getattr(model, "sample_rate", 16000))) is not None:
        raise CheckpointError(path or name_or_path, f"model sample_rate {problem}")
    return model.to(device).eval()
