"""Model families by name, imported only when one is used, and the default model of every task.

:data:`FAMILIES` maps the ``family`` written in a pretrained file (``audiokit.hub.pretrained``) to the class
that builds it, as ``"module:Class"``: listing or checking names imports no model code, and a family's module
is imported the first time :func:`family_class` builds one. :data:`DEFAULT_MODELS` is the one table of the
model each task uses when none is named: the API (``audiokit.api``), the ``enhance``/``separate`` commands,
``audiokit stream`` and ``audiokit models`` all read it. A task may map to None until its model ships;
:func:`default_model` then says so.

Adding a model family
---------------------
1. One model module, ``audiokit/models/<family>.py``: a ``torch.nn.Module`` whose constructor takes
   JSON-able keyword arguments (kept in ``self.config``), with ``sample_rate`` (Hz) and the task's method
   (``enhance(wav [B, T]) -> [B, T]``, ``separate(wav [B, T]) -> [B, S, T]``, ...); built from the shared blocks
   of ``audiokit/nn``, and a :class:`~audiokit.nn.state.StreamingModule` (``step``, ``flush``) if it streams.
2. One task module, ``audiokit/tasks/<task>.py``: its data, loss and SpeechBrain ``Brain`` for training (and,
   for a new kind of output, an adapter in ``audiokit/streaming/adapters.py`` declaring its
   :class:`~audiokit.streaming.outputs.OutputSpec`).
3. One recipe folder, ``recipes/<task>/``: the HyperPyYAML recipe whose ``model: !new:audiokit.models...``
   builds it (``audiokit train recipes/<task>/<name>.yaml``).
4. One CLI module, ``audiokit/cli/<task>.py``: ``add_parser`` and ``run`` (found automatically), loading the
   model with ``--model`` defaulting to ``default_model("<task>")``.
5. One registry line here: ``"<family>": "audiokit.models.<family>:<Class>"`` in :data:`FAMILIES` (and the
   task's shipped pretrained name in :data:`DEFAULT_MODELS` once there is one).
"""
from __future__ import annotations

import importlib
from typing import Dict, Optional, Union

from ..errors import ModelError

FAMILIES: Dict[str, Union[str, type]] = {
    "frcrn": "audiokit.models.frcrn:FRCRN",
    "mossformer2_ss": "audiokit.models.mossformer2:MossFormer2Separator",
    "mossformer2_se": "audiokit.models.mossformer2:MossFormer2Enhancer",
    "lssl_classifier": "audiokit.models.lssl_classifier:LSSLClassifier",
    "dance_lstm": "audiokit.models.dance:DanceGenerator",
}

DEFAULT_MODELS: Dict[str, Optional[str]] = {
    "enhance": "frcrn_causal_small",
    "separate": "mossformer2_ss_8k_small",
    "classify": "lssl_speech_commands",
    "dance": "dance_lstm",
}


def register(family: str, target: Union[str, type]) -> None:
    """Add a family (``"module:Class"``, or the class itself, e.g. a plug-in or a test's stand-in); ValueError
    when the name is taken by another class."""
    if FAMILIES.get(family, target) != target:
        raise ValueError(f"model family {family!r} is already {FAMILIES[family]!r}")
    FAMILIES[family] = target


def _path(target: Union[str, type]) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def family_class(family: str) -> type:
    """The class of ``family``, its module imported now if it was not yet; ModelError for an unknown name."""
    if family not in FAMILIES:
        raise ModelError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    target = FAMILIES[family]
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def family_of(model) -> str:
    """The family name of ``model``'s class (for saving it); ModelError when it has none. Imports nothing."""
    path = _path(type(model))
    for family, target in FAMILIES.items():
        if _path(target) == path:
            return family
    raise ModelError(f"{type(model).__name__} is not a known model family; known: {', '.join(sorted(FAMILIES))}")


def default_model(task: str) -> str:
    """The pretrained name ``task`` uses when none is given; ModelError for an unknown task or one whose
    model is not shipped yet."""
    if task not in DEFAULT_MODELS:
        raise ModelError(f"unknown task {task!r}; known: {', '.join(DEFAULT_MODELS)}")
    name = DEFAULT_MODELS[task]
    if name is None:
        raise ModelError(f"no default {task} model is shipped yet; name one with --model (or model=)")
    return name
