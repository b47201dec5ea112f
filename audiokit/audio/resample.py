"""Sample-rate conversion with torchaudio's windowed-sinc resampler."""
from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF


def resample(wav: torch.Tensor | np.ndarray, orig_sr: int, new_sr: int) -> torch.Tensor | np.ndarray:
    """Resample ``wav`` [..., T] from ``orig_sr`` to ``new_sr`` Hz along the last axis.

    Returns the same type (tensor or float ndarray) with ``ceil(T * new_sr / orig_sr)`` samples;
    the input itself when the rates are equal.
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} and {new_sr}")
    if orig_sr == new_sr:
        return wav
    if isinstance(wav, np.ndarray):
        return AF.resample(torch.from_numpy(np.ascontiguousarray(wav)), orig_sr, new_sr).numpy()
    return AF.resample(wav, orig_sr, new_sr)
