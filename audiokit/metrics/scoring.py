"""Scoring of clean/estimate pairs and of whole folders of them (intrusive metrics + optional DNSMOS).

Signals are mono [T] float in [-1, 1]; scores are floats (PESQ in MOS, STOI 0..1, SI-SNR/SDR in dB).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from audiokit.audio.io import find_audio_files, read_audio
from audiokit.audio.resample import resample
from audiokit.errors import AudioError, AudiokitError, one_line
from audiokit.metrics.energy import sdr, si_snr
from audiokit.metrics.perceptual import pesq_nb, pesq_wb, stoi

METRICS = ("pesq_wb", "pesq_nb", "stoi", "si_snr", "sdr")


def score_pair(clean, estimate, sample_rate: int) -> dict[str, float]:
    """PESQ wb/nb, STOI, SI-SNR and SDR (see METRICS) of ``estimate`` against ``clean``, both mono [T]
    at ``sample_rate`` Hz; the longer one is trimmed to the shorter. PESQ is NaN when it finds no speech."""
    length = min(len(clean), len(estimate))
    clean, estimate = np.asarray(clean[:length]), np.asarray(estimate[:length])
    return {
        "pesq_wb": pesq_wb(clean, estimate, sample_rate),
        "pesq_nb": pesq_nb(clean, estimate, sample_rate),
        "stoi": stoi(clean, estimate, sample_rate),
        "si_snr": float(si_snr(clean, estimate)),
        "sdr": float(sdr(clean, estimate)),
    }


def check_length(estimate_path: Path, estimate_samples: int, reference_samples: int, sample_rate: int) -> None:
    """AudioError naming the estimate when its length differs from its reference's by more than 1 % or 20 ms
    (scoring trims to the shorter, so a truncated estimate would otherwise be scored on its stub only)."""
    allowed = max(0.01 * max(estimate_samples, reference_samples), 0.02 * sample_rate)
    if abs(estimate_samples - reference_samples) > allowed:
        raise AudioError(estimate_path, f"{estimate_samples / sample_rate:.3f} s long, its reference "
                                        f"{reference_samples / sample_rate:.3f} s: not an estimate of it")


def match_estimates(clean_files: list[Path], estimate_files: list[Path]) -> dict[Path, list[Path]]:
    """Estimates of each clean file, matched by stem: ``<stem>.*`` or ``<stem>_<suffix>.*`` (e.g.
    ``p232_001_enhanced.wav`` for ``p232_001.wav``); an estimate goes to the longest clean stem it fits."""
    stems = {f.stem: f for f in clean_files}
    matches: dict[Path, list[Path]] = {f: [] for f in clean_files}
    for est in estimate_files:
        fits = [s for s in stems if est.stem == s or est.stem.startswith(s + "_")]
        if fits:
            matches[stems[max(fits, key=len)]].append(est)
    return matches


def _mono_at(path: Path, sample_rate: int | None) -> tuple[np.ndarray, int]:
    """File as mono [T] (channel mean), resampled to ``sample_rate`` Hz when given."""
    wav, rate = read_audio(path)
    mono = wav.mean(axis=0)
    return (mono, rate) if sample_rate is None else (resample(mono, rate, sample_rate), sample_rate)


def score_folders(
    clean_dir: str | Path,
    estimate_dir: str | Path,
    dnsmos: Callable[[np.ndarray, int], dict[str, float]] | None = None,
    on_error: Callable[[AudiokitError], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Scores of every clean file (found recursively) against its estimate, keyed by clean stem.

    Multi-channel files are scored on their channel mean; the estimate is resampled to the clean file's
    rate. ``dnsmos`` (e.g. ``metrics.dnsmos.Dnsmos(dir)``) adds its non-intrusive scores of the estimate.
    A clean file with no, several or an unreadable estimate, a silent clean file (every score against it is
    undefined), and an estimate that fits no clean file are passed as errors to ``on_error`` and skipped
    (raised when ``on_error`` is None).
    """
    clean_files = find_audio_files([clean_dir])
    repeated = {f.stem for f in clean_files if [g.stem for g in clean_files].count(f.stem) > 1}
    estimate_files = find_audio_files([estimate_dir])
    matches = match_estimates(clean_files, estimate_files)
    matched = {e for found in matches.values() for e in found}
    scores: dict[str, dict[str, float]] = {}
    for clean_path, estimates in matches.items():
        try:
            if clean_path.stem in repeated:
                raise AudioError(clean_path, "another clean file has the same stem")
            if len(estimates) != 1:
                found = ", ".join(e.name for e in estimates) or "none"
                raise AudioError(clean_path, f"want one estimate <stem>[_suffix].* in {estimate_dir}, found {found}")
            clean, rate = _mono_at(clean_path, None)
            if not np.any(clean):
                raise AudioError(clean_path, SILENT_REFERENCE)
            estimate, _ = _mono_at(estimates[0], rate)
            check_length(estimates[0], len(estimate), len(clean), rate)
            row = score_pair(clean, estimate, rate)
            if dnsmos is not None:
                row.update(dnsmos(estimate, rate))
            scores[clean_path.stem] = row
        except Exception as exc:  # one bad pair must not stop the others
            if on_error is None:
                raise
            on_error(exc if isinstance(exc, AudiokitError) else AudioError(clean_path, one_line(exc)))
    for estimate in estimate_files:
        if estimate not in matched:
            error = AudioError(estimate, f"no clean file <stem>.* for it in {clean_dir}; not scored")
            if on_error is None:
                raise error
            on_error(error)
    return scores


SILENT_REFERENCE = "is silent: SI-SNR, SDR and PESQ against it are undefined"


def average_scores(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the same files: those whose every score is defined (:func:`undefined_scores`
    names the others, e.g. PESQ finding no speech); NaN when there are none."""
    names = list(dict.fromkeys(name for row in scores.values() for name in row))
    left_out = undefined_scores(scores)
    rows = [row for file, row in scores.items() if file not in left_out]
    return {n: float(np.mean([row[n] for row in rows])) if rows else float("nan") for n in names}


def undefined_scores(scores: dict[str, dict[str, float]]) -> dict[str, list[str]]:
    """``{file: [metric, ...]}`` of the files with a score that is undefined (NaN, or missing from their row):
    :func:`average_scores` leaves them out of every average."""
    names = list(dict.fromkeys(name for row in scores.values() for name in row))
    missing = {file: [n for n in names if not np.isfinite(row.get(n, np.nan))] for file, row in scores.items()}
    return {file: metrics for file, metrics in missing.items() if metrics}
