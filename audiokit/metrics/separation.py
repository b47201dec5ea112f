"""Permutation-invariant scoring of separated sources against references, per mixture and per folder.

A mixture ``<stem>`` has references ``<stem>_s1.*``, ``<stem>_s2.*``, ... and estimates named the same
way (what ``audiokit separate`` writes); the estimates may come in any order. Scores are in dB.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from audiokit.audio.io import find_audio_files
from audiokit.errors import AudioError, AudiokitError, one_line
from audiokit.metrics.energy import pit_si_snr, sdr, si_snr
from audiokit.metrics.scoring import _mono_at as _mono
from audiokit.metrics.scoring import check_length

SOURCE_NAME = re.compile(r"^(?P<stem>.+)_s(?P<index>\d+)$")


def score_separation(references, estimates, mixture=None) -> dict[str, float]:
    """``si_snr`` (best mean over permutations), ``sdr`` (plain, same permutation) and, with the
    ``mixture`` [T], ``si_snri`` (``si_snr`` minus the mean SI-SNR of the mixture against each
    reference) of ``estimates`` against ``references``, both [S, T] (trimmed to the shorter)."""
    refs, ests = np.asarray(references), np.asarray(estimates)
    length = min(refs.shape[-1], ests.shape[-1], np.shape(mixture)[-1] if mixture is not None else np.inf)
    refs, ests = refs[:, :length], ests[:, :length]
    score, perm = pit_si_snr(refs, ests)
    row = {"si_snr": score, "sdr": float(sdr(refs, ests[list(perm)]).mean())}
    if mixture is not None:
        row["si_snri"] = score - float(si_snr(refs, np.asarray(mixture)[None, :length]).mean())
    return row


def group_sources(files: list[Path]) -> dict[str, list[Path]]:
    """``{stem: [<stem>_s1, <stem>_s2, ...]}`` of the files named ``<stem>_s<k>.*`` (sorted by k); AudioError
    when two files (e.g. in two subfolders) claim the same stem and k."""
    groups: dict[str, dict[int, Path]] = {}
    for f in files:
        match = SOURCE_NAME.match(f.stem)
        if match:
            found = groups.setdefault(match["stem"], {})
            if int(match["index"]) in found:
                raise AudioError(f, f"the same source as {found[int(match['index'])]}; one of them must go")
            found[int(match["index"])] = f
    return {stem: [found[k] for k in sorted(found)] for stem, found in sorted(groups.items())}


def _indices(files: list[Path]) -> list[int]:
    """The source numbers ``k`` of files named ``<stem>_s<k>.*``, in order."""
    return [int(SOURCE_NAME.match(f.stem)["index"]) for f in files]


def score_separated_folders(reference_dir, estimate_dir, mixture_dir=None,
                            on_error: Callable[[AudiokitError], None] | None = None) -> dict[str, dict[str, float]]:
    """Scores (:func:`score_separation`) of every mixture with references ``<stem>_s<k>.*`` under
    ``reference_dir``, keyed by stem; estimates ``<stem>_s<k>.*`` under ``estimate_dir`` (resampled to
    the first reference's rate, as are the other references); ``si_snri`` when ``mixture_dir`` holds
    ``<stem>.*``. A mixture whose estimates are missing or numbered unlike its references, or with a
    silent reference, estimates without references, and a ``reference_dir`` without references, are passed as
    errors to ``on_error`` (raised when None)."""
    scores: dict[str, dict[str, float]] = {}
    try:
        references = group_sources(find_audio_files([reference_dir]))
        estimates = group_sources(find_audio_files([estimate_dir]))
        if not references:
            raise AudioError(reference_dir, "holds no references <stem>_s<k>.* (e.g. mix_s1.wav, mix_s2.wav)")
    except AudioError as error:
        if on_error is None:
            raise
        on_error(error)
        return scores
    mixtures = {f.stem: f for f in find_audio_files([mixture_dir])} if mixture_dir is not None else {}
    for stem in sorted(set(estimates) - set(references)):
        error = AudioError(estimates[stem][0], f"no references {stem}_s*.* for it in {reference_dir}; not scored")
        if on_error is None:
            raise error
        on_error(error)
    for stem, ref_files in references.items():
        try:
            est_files = estimates.get(stem, [])
            if not est_files:
                raise AudioError(ref_files[0], f"no estimates {stem}_s*.* in {estimate_dir}")
            if _indices(est_files) != _indices(ref_files):
                raise AudioError(ref_files[0], f"references {stem}_s{_indices(ref_files)}, but estimates "
                                               f"{stem}_s{_indices(est_files)} in {estimate_dir}")
            first, rate = _mono(ref_files[0], None)
            refs = [first] + [_mono(f, rate)[0] for f in ref_files[1:]]
            for ref, path in zip(refs, ref_files):
                if not np.any(ref):
                    raise AudioError(path, "is silent: SI-SNR against it is undefined")
            ests = [_mono(f, rate)[0] for f in est_files]
            for est, path, ref in zip(ests, est_files, refs):
                check_length(path, len(est), len(ref), rate)
            length = min(len(x) for x in refs + ests)
            mixture = None
            if mixture_dir is not None:
                if stem not in mixtures:
                    raise AudioError(ref_files[0], f"no mixture {stem}.* in {mixture_dir}")
                mixture = _mono(mixtures[stem], rate)[0]
            scores[stem] = score_separation(np.stack([r[:length] for r in refs]),
                                            np.stack([e[:length] for e in ests]), mixture)
        except Exception as exc:  # one bad mixture must not stop the others
            if on_error is None:
                raise
            on_error(exc if isinstance(exc, AudiokitError) else AudioError(ref_files[0], one_line(exc)))
    return scores
