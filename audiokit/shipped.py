"""Where the files shipped with audiokit are: the pretrained models and the training recipes.

The repository keeps them at its top (``pretrained/``, ``recipes/``); the build carries them into the package
(``audiokit/pretrained``, ``audiokit/recipes``, see ``setup.py``). :func:`shipped_folder` looks in the package
first (an installed wheel), then beside it (a checkout, editable or not), so both find the same files.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def shipped_folder(name: str) -> Path:
    """The folder ``name`` (``"pretrained"`` or ``"recipes"``) as installed; the checkout's when neither exists."""
    inside, beside = PACKAGE / name, PACKAGE.parent / name
    return inside if inside.is_dir() or not beside.is_dir() else beside


def find_recipe(name: str | Path) -> Path:
    """A recipe file: ``name`` itself when it exists, else a shipped recipe by name (``frcrn_causal_small``,
    ``enhancement/frcrn_causal_small`` or with ``.yaml``); ``name`` unchanged when none matches."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.with_suffix(".yaml") if path.suffix != ".yaml" else path
    recipes = shipped_folder("recipes")
    found = [recipes / stem] if (recipes / stem).is_file() else sorted(recipes.glob(f"*/{stem.name}"))
    return found[0] if len(found) == 1 else path
