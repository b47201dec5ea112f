"""A tiny random-weight FRCRN saved as a pretrained file, for CLI/API tests (the shipped weights are trained
elsewhere)."""
from __future__ import annotations

from pathlib import Path

import torch

from audiokit.hub.pretrained import save_pretrained
from audiokit.models.frcrn import FRCRN

TINY = dict(win_len=320, win_inc=160, fft_len=320, channels=4, fsmn_hidden=4)


def tiny_frcrn(causal: bool = True, seed: int = 0, **changes) -> FRCRN:
    """FRCRN with 4 channels, 320/160 STFT at 16 kHz, random weights, eval mode."""
    torch.manual_seed(seed)
    return FRCRN(**{**TINY, "causal": causal, **changes}).eval()


def save_tiny(path: Path, causal: bool = True, **changes) -> Path:
    """Save ``tiny_frcrn`` as a pretrained file at ``path``; returns ``path``."""
    model = tiny_frcrn(causal, **changes)
    return save_pretrained(model, path, "frcrn", model.config, {"note": "random weights, for tests"})
