"""Perceptual metrics of one mono signal pair: PESQ (ITU-T P.862, ``pesq``) and STOI (``pystoi``).

Signals are 1-D arrays or tensors [T] in [-1, 1] at ``sample_rate`` Hz (same length);
they are resampled to the rate each metric needs (PESQ wb 16 kHz, nb 8 kHz).
"""
from __future__ import annotations

import warnings

import numpy as np
import pesq as pesq_lib
import pystoi

from audiokit.audio.resample import resample


def _mono(x) -> np.ndarray:
    """1-D float64 array of an array or tensor [T]."""
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"want a mono signal [T], got shape {x.shape}")
    return x


def _pesq(reference, estimate, sample_rate: int, rate: int, mode: str) -> float:
    """PESQ MOS-LQO of the pair resampled to ``rate`` Hz in ``mode`` ('wb' or 'nb'); NaN when PESQ
    finds no speech (e.g. silence)."""
    ref, est = (resample(_mono(x), sample_rate, rate) for x in (reference, estimate))
    try:
        with np.errstate(invalid="ignore", divide="ignore"):  # pesq normalises by the peak, 0 for silence
            return float(pesq_lib.pesq(rate, ref, est, mode))
    except (pesq_lib.PesqError, ValueError):  # no utterance found; NaN levels of an all-zero signal
        return float("nan")


def pesq_wb(reference, estimate, sample_rate: int) -> float:
    """Wide-band PESQ (P.862.2) at 16 kHz, about 1.0 (bad) to 4.64 (identical)."""
    return _pesq(reference, estimate, sample_rate, 16000, "wb")


def pesq_nb(reference, estimate, sample_rate: int) -> float:
    """Narrow-band PESQ (P.862.1 MOS-LQO) at 8 kHz, about 1.0 (bad) to 4.55 (identical)."""
    return _pesq(reference, estimate, sample_rate, 8000, "nb")


def stoi(reference, estimate, sample_rate: int, extended: bool = False) -> float:
    """Short-time objective intelligibility, 0..1 (or extended STOI when ``extended``); NaN when the
    reference has too little speech for it (pystoi needs 30 non-silent frames, about 0.4 s)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(pystoi.stoi(_mono(reference), _mono(estimate), sample_rate, extended=extended))
        except (ValueError, IndexError):  # numpy's AxisError on a few samples
            return float("nan")
    too_short = any("Not enough STFT frames" in str(w.message) for w in caught)
    return float("nan") if too_short else value
