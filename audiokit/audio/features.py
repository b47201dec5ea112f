"""Log-mel features.

* :func:`fbank_with_deltas`: Kaldi-style log-mel filterbank with delta and delta-delta, the front
  end of MossFormer2's 48 kHz enhancement model: per frame, the ``num_mel_bins`` log-mel energies,
  then their first and second time derivatives (5-frame regression, edges replicated),
  concatenated.  Computed by torchaudio (``compliance.kaldi.fbank``, ``functional.compute_deltas``).
* :class:`CausalLogMel`: a log-mel spectrogram whose frames read only past samples, offline or
  step by step (a streaming front end).
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

import torch
import torchaudio
from torch import nn

from .stft import ConvSTFT, State


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


class CausalLogMel(nn.Module):
    """Causal log-mel spectrogram, ``wav [B, T] -> [B, T // hop, n_mels]`` (natural log of mel power + ``floor``).

    Frame ``n`` covers samples ``(n + 1) hop - win .. (n + 1) hop - 1`` (zeros before the signal), so it
    is complete once its last sample has arrived.  Analysis window: the square root of a periodic
    Hann window (:class:`~audiokit.audio.stft.ConvSTFT`), FFT size the power of two at or above
    ``win``; HTK mel bands from ``f_min`` to ``f_max`` Hz (default: half the sample rate).

    :meth:`step` takes chunks of any length and returns the frames they complete; its state holds
    the samples that later frames still read.  :meth:`set_rate` keeps the frame durations (in
    seconds) and the mel bands (in Hz) at another sample rate: the frame rate does not change, and
    the band powers are scaled by ``(sample_rate / rate) ** 2`` (``sample_rate`` the one built with) so
    that the same sound gives the same band power at any rate (a window of half the samples sums to
    a quarter of the power); at the built rate the scale is 1.
    """

    def __init__(self, sample_rate: int, n_mels: int = 40, win_seconds: float = 0.025,
                 hop_seconds: float = 0.010, f_min: float = 20.0, f_max: Optional[float] = None,
                 floor: float = 1e-6):
        super().__init__()
        self.n_mels, self.win_seconds, self.hop_seconds, self.floor = n_mels, win_seconds, hop_seconds, floor
        self.f_min, self.f_max = f_min, sample_rate / 2 if f_max is None else f_max
        self.built_rate = sample_rate
        self.set_rate(sample_rate)

    def set_rate(self, sample_rate: int) -> None:
        """Rebuild the STFT and the mel bands for ``sample_rate`` (window and hop must be whole samples there)."""
        win, hop = (seconds * sample_rate for seconds in (self.win_seconds, self.hop_seconds))
        if abs(win - round(win)) > 1e-6 or abs(hop - round(hop)) > 1e-6:
            raise ValueError(f"a {self.win_seconds} s window and {self.hop_seconds} s hop are not whole "
                             f"samples at {sample_rate} Hz")
        win, hop = round(win), round(hop)
        fft_len = 1 << (win - 1).bit_length()
        device = self.mel_bands.device if hasattr(self, "mel_bands") else None
        self.sample_rate = sample_rate
        self.level = (self.built_rate / sample_rate) ** 2  # the built rate's band power for the same sound
        self.stft = ConvSTFT(win, hop, fft_len, "hann").to(device)
        with warnings.catch_warnings():  # bands above a lower rate's Nyquist frequency are silent: kept on purpose
            warnings.simplefilter("ignore", UserWarning)
            bands = torchaudio.functional.melscale_fbanks(fft_len // 2 + 1, self.f_min, self.f_max, self.n_mels,
                                                          sample_rate)
        self.register_buffer("mel_bands", bands.to(device), persistent=False)  # [F, n_mels]

    @property
    def hop_length(self) -> int:
        """Samples per frame."""
        return self.stft.hop

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.step(wav, None)[0]

    def step(self, wav: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """Frames completed by the chunk ``wav [B, t]``: ``([B, n, n_mels], state)``."""
        context = self.stft.win_len - self.stft.hop
        history = wav.new_zeros(wav.shape[0], context) if state is None else state["samples"]
        full = torch.cat([history, wav], dim=-1)
        frames = (full.shape[-1] - context) // self.stft.hop
        if frames == 0:
            return wav.new_zeros(wav.shape[0], 0, self.n_mels), {"samples": full}
        spec = self.stft(full[:, :context + frames * self.stft.hop])  # [B, 2F, frames]
        real, imag = spec.chunk(2, dim=1)
        power = (real * real + imag * imag).transpose(1, 2)  # [B, frames, F]
        if self.level != 1.0:
            power = power * self.level
        return torch.log(power @ self.mel_bands + self.floor), {"samples": full[:, frames * self.stft.hop:]}


def frame_log_power(wav: torch.Tensor, sample_rate: int, frame_rate: float = 25.0, n_fft: int = 256,
                    hop_length: int = 160, context: int = 8, lead: int = 0, floor: float = 1e-10) -> torch.Tensor:
    """Causal log-power spectrum windows at a frame rate (the audio input of the dance model, one window per
    motion frame): ``wav [B, N]`` or ``[N]`` -> ``[B, T, context * (n_fft // 2 + 1)]`` (or ``[T, ...]``).

    Sub-frames of ``n_fft`` samples (periodic Hann window, not centred) every ``hop_length`` samples; frame
    ``t`` (``T = (N - lead) * frame_rate // sample_rate``) is the ``context`` sub-frames whose last one *ends*
    at sample ``lead + (t + 1) * sample_rate / frame_rate`` (the end of frame ``t``), flattened time-major:
    ``log(|X|^2 + floor)``. It reads ``n_fft + (context - 1) * hop_length`` samples back from there and
    nothing after, so it is causal. ``lead``: samples at the start of ``wav`` that come before frame 0 (its
    context, e.g. when cutting a window out of a song); missing context is zeros. ``sample_rate / frame_rate``
    must be a whole number of samples (640 at 16 kHz and 25 fps).
    """
    per_frame = sample_rate / frame_rate
    if abs(per_frame - round(per_frame)) > 1e-6:
        raise ValueError(f"{frame_rate} frames per second are not whole samples at {sample_rate} Hz")
    per_frame = round(per_frame)
    single = wav.dim() == 1
    if single:
        wav = wav[None]
    span = n_fft + (context - 1) * hop_length
    frames = max(0, (wav.shape[-1] - lead) // per_frame)
    pad = max(0, span - lead)
    x = torch.nn.functional.pad(wav[:, max(0, lead - span):lead + frames * per_frame], (pad, 0))
    # x starts `span` samples before frame 0's start; window t covers x[(t+1) per_frame .. + span)
    window = torch.hann_window(n_fft, periodic=True, device=wav.device, dtype=wav.dtype)
    if frames == 0:
        out = wav.new_zeros(wav.shape[0], 0, context * (n_fft // 2 + 1))
        return out[0] if single else out
    ends = (torch.arange(frames, device=wav.device) + 1) * per_frame + span  # exclusive end of each window in x
    starts = ends[:, None] - n_fft - hop_length * torch.arange(context - 1, -1, -1, device=wav.device)[None]
    index = starts[..., None] + torch.arange(n_fft, device=wav.device)  # [T, context, n_fft]
    segments = x[:, index] * window  # [B, T, context, n_fft]
    power = torch.fft.rfft(segments, dim=-1).abs().square()
    out = torch.log(power + floor).flatten(2)
    return out[0] if single else out
