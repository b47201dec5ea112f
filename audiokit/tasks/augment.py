"""On-the-fly mixing for speech enhancement: noise at an SNR, level, reverberation.

All signals are 1-D float32 tensors of samples (mono) at one sample rate; all randomness
comes from a ``numpy.random.Generator`` that the caller seeds, so a mixture is a pure
function of its seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torchaudio.functional as AF

EPS = 1e-8

#: spectral slope exponent (power ~ 1/f**alpha) of each noise colour
NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def rms(x: torch.Tensor) -> torch.Tensor:
    """Root mean square of ``x`` [T] (same units as x)."""
    return x.pow(2).mean().sqrt()


def db_to_amplitude(db: float) -> float:
    return 10.0 ** (db / 20.0)


def coloured_noise(num_samples: int, colour: str, rng: np.random.Generator) -> torch.Tensor:
    """White, pink or brown Gaussian noise [num_samples] with unit RMS.

    White noise is shaped in the frequency domain by f**(-alpha/2) so its power
    spectrum falls as 1/f**alpha (alpha: 0 white, 1 pink, 2 brown).
    """
    white = torch.from_numpy(rng.standard_normal(num_samples).astype(np.float32))
    alpha = NOISE_COLOURS[colour]
    if alpha:
        spectrum = torch.fft.rfft(white)
        freqs = torch.arange(spectrum.numel(), dtype=torch.float32)
        freqs[0] = 1.0  # keep DC finite; it is removed below
        spectrum = spectrum * freqs.pow(-alpha / 2.0)
        spectrum[0] = 0.0
        white = torch.fft.irfft(spectrum, n=num_samples)
    return white / (rms(white) + EPS)


def scale_to_snr(target: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """Noise [T] scaled so that 10*log10(P(target)/P(noise)) equals ``snr_db``."""
    return noise * (rms(target) / (rms(noise) + EPS) / db_to_amplitude(snr_db))


def set_level(
    mixture: torch.Tensor, others: list[torch.Tensor], level_dbfs: float, peak_limit: float = 0.99
) -> tuple[torch.Tensor, list[torch.Tensor], float]:
    """Scale ``mixture`` [T] to an RMS level of ``level_dbfs`` (dBFS, full scale = 1.0).

    ``others`` (e.g. the clean target) get the same gain. If the scaled mixture's peak
    exceeds ``peak_limit`` the gain is lowered so it does not clip (the level then ends
    below ``level_dbfs``). Returns (mixture, others, applied gain).
    """
    gain = db_to_amplitude(level_dbfs) / (float(rms(mixture)) + EPS)
    peak = float(mixture.abs().max()) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return mixture * gain, [x * gain for x in others], gain


def simulated_rir(rt60: float, sample_rate: int, rng: np.random.Generator) -> torch.Tensor:
    """Exponentially decaying Gaussian noise impulse response [L] with a direct path at 0.

    The envelope exp(-6.908 t / rt60) falls by 60 dB after ``rt60`` seconds;
    L = 1.2 * rt60 seconds. Normalised to a unit direct path.
    """
    length = max(int(1.2 * rt60 * sample_rate), 2)
    t = torch.arange(length, dtype=torch.float32) / sample_rate
    tail = torch.from_numpy(rng.standard_normal(length).astype(np.float32)) * torch.exp(-6.908 * t / rt60)
    tail[0] = 1.0 / 0.3  # direct path a little above the diffuse tail
    return tail / tail[0]


def reverberate(
    speech: torch.Tensor, rir: torch.Tensor, sample_rate: int, early_ms: float = 50.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convolve ``speech`` [T] with ``rir`` [L]; return (reverberant [T], early-reverb target [T]).

    The RIR is cut to start at its strongest tap (the direct path) so the output stays
    time-aligned with ``speech``. The target is the speech convolved with the first
    ``early_ms`` milliseconds of that RIR (``early_ms=0`` gives the dry, direct-path-scaled speech).
    Both outputs are scaled by the same factor so the target has the dry speech's RMS.
    """
    rir = rir[int(rir.abs().argmax()):]
    early = rir[: max(1, int(early_ms * sample_rate / 1000))]
    num = speech.numel()
    wet = AF.fftconvolve(speech, rir)[:num]
    target = AF.fftconvolve(speech, early)[:num]
    scale = rms(speech) / (rms(target) + EPS)
    return wet * scale, target * scale


def random_segment(signal: torch.Tensor, num_samples: int, rng: np.random.Generator) -> torch.Tensor:
    """A random ``num_samples`` window of ``signal`` [T]; shorter signals are tiled."""
    if signal.numel() < num_samples:
        signal = signal.repeat(num_samples // max(signal.numel(), 1) + 1)
    start = int(rng.integers(0, signal.numel() - num_samples + 1))
    return signal[start : start + num_samples]


def change_speed(signal: torch.Tensor, num_samples: int) -> torch.Tensor:
    """``signal`` [T] played faster or slower to fill ``num_samples`` (linear interpolation: tempo and pitch move
    together by ``T / num_samples``; for noise, not speech)."""
    return torch.nn.functional.interpolate(signal.view(1, 1, -1), size=num_samples, mode="linear",
                                           align_corners=True).view(-1)


def random_eq(signal: torch.Tensor, max_db: float, rng: np.random.Generator, points: int = 6) -> torch.Tensor:
    """``signal`` [T] through a random smooth equaliser: gains uniform in +-``max_db`` dB at ``points`` places
    evenly spaced on a log-frequency axis (from 1/1000 of the band to its top), interpolated in dB between them;
    the RMS is kept."""
    spectrum = torch.fft.rfft(signal)
    bins = spectrum.numel()
    places = np.linspace(np.log(bins / 1000), np.log(bins - 1), points)
    gains_db = rng.uniform(-max_db, max_db, points)
    curve = np.interp(np.log(np.maximum(np.arange(bins), 1)), places, gains_db)
    shaped = torch.fft.irfft(spectrum * torch.from_numpy(10 ** (curve / 20)).to(spectrum.real.dtype), n=signal.numel())
    return shaped * (rms(signal) / (rms(shaped) + EPS))


@dataclass
class Mixer:
    """Settings of the noisy/clean pair generator (what a recipe configures).

    snr_db: uniform range of the speech-to-noise ratio (dB), measured against the
        reverberant speech that is in the mixture.
    level_dbfs: uniform range of the mixture RMS level (dBFS), lowered if it would clip.
    noise_weights: relative probabilities of noise kinds ``file``, ``coloured``, ``babble``
        (``file`` is skipped when there are no noise files).
    babble_talkers: inclusive range of the number of other utterances summed into babble.
    reverb_prob: probability of reverberating the speech; ``measured_rir_prob`` of those
        use a file RIR (when any), the rest a simulated RIR with RT60 uniform in ``rt60_s``.
    early_ms: the target keeps this much early reverberation (0: dry speech).
    noise_speed: uniform range of the speed a noise file is played at (tempo and pitch together; ``(1, 1)``: as
        recorded), so that a few recordings give many noises.
    noise_eq_db: a noise file goes through :func:`random_eq` with gains up to this many dB (0: off).
    noise_mix_prob: probability of adding a second noise (any kind) to the first, 0 to 10 dB below it.
    """

    snr_db: tuple[float, float] = (-5.0, 20.0)
    level_dbfs: tuple[float, float] = (-25.0, -5.0)
    noise_weights: dict = field(default_factory=lambda: {"file": 0.6, "coloured": 0.2, "babble": 0.2})
    babble_talkers: tuple[int, int] = (3, 6)
    reverb_prob: float = 0.3
    measured_rir_prob: float = 0.5
    rt60_s: tuple[float, float] = (0.2, 1.0)
    early_ms: float = 50.0
    noise_speed: tuple[float, float] = (1.0, 1.0)
    noise_eq_db: float = 0.0
    noise_mix_prob: float = 0.0

    def vary_noise(self, read: Callable[[int], torch.Tensor], num_samples: int,
                   rng: np.random.Generator) -> torch.Tensor:
        """A noise file's segment [num_samples] at a random speed and colour; ``read(n)`` gives ``n`` samples of it.
        Draws no random numbers for the variations that are off (old recipes mix the same noise as before)."""
        if tuple(self.noise_speed) == (1.0, 1.0):
            noise = read(num_samples)
        else:
            noise = change_speed(read(int(np.ceil(num_samples * rng.uniform(*self.noise_speed)))), num_samples)
        return random_eq(noise, self.noise_eq_db, rng) if self.noise_eq_db else noise

    def pick_noise_kind(self, rng: np.random.Generator, have_files: bool) -> str:
        kinds = [k for k, w in self.noise_weights.items() if w > 0 and (k != "file" or have_files)]
        weights = np.array([self.noise_weights[k] for k in kinds], dtype=np.float64)
        return kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]

    def reverb(self, speech: torch.Tensor, sample_rate: int, rirs: list[torch.Tensor],
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(speech in the mixture, training target), both [T]; unchanged when not reverberated."""
        if rng.random() >= self.reverb_prob:
            return speech, speech
        if rirs and rng.random() < self.measured_rir_prob:
            rir = rirs[int(rng.integers(len(rirs)))]
        else:
            rir = simulated_rir(float(rng.uniform(*self.rt60_s)), sample_rate, rng)
        return reverberate(speech, rir, sample_rate, self.early_ms)

    def mix(self, speech: torch.Tensor, noise: torch.Tensor, rng: np.random.Generator,
            target: torch.Tensor | None = None) -> dict:
        """Mix ``speech`` [T] (possibly reverberant) with ``noise`` [T] at a random SNR and level.

        Returns dict(noisy [T], clean [T] (``target`` or ``speech`` after the same gain),
        snr_db, level_dbfs).
        """
        target = speech if target is None else target
        snr = float(rng.uniform(*self.snr_db))
        level = float(rng.uniform(*self.level_dbfs))
        noisy = speech + scale_to_snr(speech, noise, snr)
        noisy, (clean,), _ = set_level(noisy, [target], level)
        return {"noisy": noisy, "clean": clean, "snr_db": snr, "level_dbfs": level}
