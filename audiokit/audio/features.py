"""Kaldi-style log-mel filterbank features with delta and delta-delta.

The front end of MossFormer2's 48 kHz enhancement model: per frame, the
``num_mel_bins`` log-mel energies, then their first and second time
derivatives (5-frame regression, edges replicated), concatenated.
Everything is computed by torchaudio (``compliance.kaldi.fbank``,
``functional.compute_deltas``).
"""
from __future__ import annotations

import torch
import torchaudio


def fbank_with_deltas(wav: torch.Tensor, sample_rate: int, num_mel_bins: int = 60,
                      win_length: int = 1920, hop_length: int = 384, window_type: str = "hamming",
                      dither: float = 0.0) -> torch.Tensor:
    """Log-mel fbank | delta | delta-delta, ``[B, T]`` or ``[T]`` -> ``[B, N, 3 * num_mel_bins]``.

    Args:
        wav: waveform at ``sample_rate`` in the scale the features expect
            (MossFormer2 uses 16-bit integer scale, ``wav * 32768``).
        win_length, hop_length: frame length and shift in samples; frames are
            not centred (``N = 1 + (T - win_length) // hop_length``).
        window_type: Kaldi window name.
        dither: Kaldi dither amount (random noise; 0 makes the features deterministic).

    Other settings are Kaldi's defaults (pre-emphasis 0.97, DC removal,
    power spectrum, FFT size rounded up to a power of two, low frequency 20 Hz).
    """
    if wav.dim() == 1:
        wav = wav[None]
    if wav.shape[-1] < win_length:
        raise ValueError(f"need at least {win_length} samples for one frame, got {wav.shape[-1]}")
    feats = []
    for channel in wav:
        fbank = torchaudio.compliance.kaldi.fbank(
            channel[None], dither=dither, frame_length=win_length / sample_rate * 1000,
            frame_shift=hop_length / sample_rate * 1000, num_mel_bins=num_mel_bins,
            sample_frequency=sample_rate, window_type=window_type)
        delta = torchaudio.functional.compute_deltas(fbank.T)
        delta2 = torchaudio.functional.compute_deltas(delta)
        feats.append(torch.cat([fbank, delta.T, delta2.T], dim=1))
    return torch.stack(feats)
