"""Reading checkpoint files safely (no code from the file is ever run).

Accepts ``.safetensors`` files and ``torch.save`` files loaded with
``weights_only=True``.  A torch file may hold the state dict itself or wrap it
(``{"model": sd, ...}`` from training solvers, ``{"state_dict": sd}``), and
keys may carry the ``module.`` prefix of DistributedDataParallel.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch

from ..errors import CheckpointError

StateDict = Dict[str, torch.Tensor]

_WRAPPERS = ("model", "state_dict", "model_state_dict")


def read_state_dict(path) -> StateDict:
    """The bare state dict stored in ``path`` (``module.`` prefixes removed)."""
    path = Path(path)
    if (problem := not_a_checkpoint(path)) is not None:
        raise CheckpointError(path, problem)
    try:
        if path.suffix == ".safetensors" or _looks_like_safetensors(path):
            from safetensors.torch import load_file
            data = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # no object refused: a corrupt file
            raise CheckpointError(path, "not a readable checkpoint (corrupt pickle)") from None
        raise CheckpointError(path, "refused: it holds pickled objects other than tensors, which could run "
                                    "code (re-save the state dict alone, or as .safetensors)") from None
    except Exception as exc:  # corrupt or truncated
        raise CheckpointError(path, f"not a readable checkpoint ({type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:160]})") from None
    if isinstance(data, Mapping):
        for key in _WRAPPERS:
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(path, "does not contain a state dict of tensors")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in data.items()}


def not_a_checkpoint(path: Path, kind: str = "checkpoint") -> Optional[str]:
    """Why ``path`` cannot be a ``kind`` file at all, before any reader tries it (None when it may be one): it is
    missing, a folder (a training checkpoint folder: its ``model.ckpt`` is named), not a regular file, empty, or
    text."""
    if not path.exists():
        return f"no such {kind} file"
    if path.is_dir():
        inner = path / "model.ckpt"
        hint = f" (a training checkpoint folder? its weights are {inner})" if inner.is_file() else ""
        return f"is a folder, not a {kind} file{hint}"
    if not path.is_file():
        return "not a regular file (a device, FIFO or socket)"
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return "is empty (0 bytes)"
    if _is_text(head):
        first = head.decode("utf-8", "replace").strip().splitlines()[0][:60] if head.strip() else ""
        return f"is a text file, not a {kind} file" + (f" (it starts {first!r})" if first else "")
    return None


def _is_text(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) is UTF-8 text: no NUL, no control bytes but whitespace. Weights are
    never that: a safetensors header starts with its length (NUL bytes), torch files are zip or pickle."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not merely a character cut at the end of the sample
            return False
        text = head[:exc.start].decode("utf-8")
    return not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text)


def _looks_like_safetensors(path: Path) -> bool:
    """True when ``path`` starts as a safetensors file does (a little-endian header length, then ``{``),
    whatever its suffix."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < path.stat().st_size


def load_strict(model: torch.nn.Module, state: StateDict, path) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is a CheckpointError."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("wrong shapes", [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in wrong])):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            problems.append(f"{len(keys)} {label}: {', '.join(keys[:3])}{more}")
    if problems:
        raise CheckpointError(path, "does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
