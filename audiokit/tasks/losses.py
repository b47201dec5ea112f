"""FRCRN training loss: negative SI-SNR on the waveform, complex-mask MSE, a compressed-spectrum MSE and,
optionally, a differentiable PESQ-WB distance (``torch_pesq``, P.862 without time alignment) and a
differentiable STOI (``torch_stoi``, an intelligibility term).

Spectra and masks use the model layout ``[B, 2F, N]``: real rows, then imaginary rows.
"""
from __future__ import annotations

import torch
from speechbrain.nnet.losses import cal_si_snr

EPS = 1e-8


def si_snr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SI-SNR in dB per item ``[B]`` of ``estimate`` vs ``target`` (both ``[B, T]``; the
    longer one is cropped to the shorter). Uses speechbrain's ``cal_si_snr``."""
    num = min(estimate.shape[-1], target.shape[-1])
    est = estimate[..., :num].float().t().unsqueeze(-1).clone()  # [T, B, 1]; cal_si_snr masks in place
    ref = target[..., :num].float().t().unsqueeze(-1)
    return -cal_si_snr(ref, est).view(-1)


def ideal_complex_mask(noisy_spec: torch.Tensor, clean_spec: torch.Tensor) -> torch.Tensor:
    """Ideal complex ratio mask M = S / Y ``[B, 2F, N]`` from spectra ``[B, 2F, N]``."""
    yr, yi = noisy_spec.float().chunk(2, dim=1)
    sr, si = clean_spec.float().chunk(2, dim=1)
    power = yr.pow(2) + yi.pow(2) + EPS
    return torch.cat([(yr * sr + yi * si) / power, (yr * si - yi * sr) / power], dim=1)


def compress_mask(mask: torch.Tensor, bound: float = 2.0, steepness: float = 1.0) -> torch.Tensor:
    """Bounded cIRM compression, applied to real and imaginary parts separately:

        K * (1 - exp(-C x)) / (1 + exp(-C x)) = K * tanh(C x / 2),  K = bound, C = steepness.

    The result lies in (-K, K). The defaults K=2, C=1 have unit slope at 0, so masks
    with |x| < ~1 pass almost unchanged, and match the FRCRN mask output range
    (tanh + tanh of the two U-Nets lies in (-2, 2)); unbounded ratios where the noisy
    spectrum is near zero saturate at +-2 instead of dominating the MSE.
    """
    return bound * torch.tanh(steepness * mask / 2.0)


def compressed_spectrum_loss(est_spec: torch.Tensor, clean_spec: torch.Tensor, power: float = 0.3,
                             magnitude_share: float = 0.7) -> torch.Tensor:
    """MSE between power-law compressed spectra ``[B, 2F, N]`` (real rows, then imaginary rows), the mix of
    GTCRN and DeepFilterNet: ``magnitude_share * MSE(|S|^p, |Ŝ|^p) + (1 - magnitude_share) * MSE(S_c, Ŝ_c)``
    where ``S_c = |S|^p e^{j angle(S)}`` (complex, compressed). Compression (p = 0.3) weighs quiet
    time-frequency bins, where residual noise is audible, far more than a linear MSE does."""
    frames = min(est_spec.shape[-1], clean_spec.shape[-1])

    def compress(spec):
        real, imag = spec[..., :frames].float().chunk(2, dim=1)
        magnitude = (real.pow(2) + imag.pow(2) + EPS).sqrt()
        scale = magnitude.pow(power - 1.0)
        return magnitude.pow(power), real * scale, imag * scale

    (est_mag, est_re, est_im), (ref_mag, ref_re, ref_im) = compress(est_spec), compress(clean_spec)
    mse = torch.nn.functional.mse_loss
    complex_mse = mse(est_re, ref_re) + mse(est_im, ref_im)
    return magnitude_share * mse(est_mag, ref_mag) + (1.0 - magnitude_share) * complex_mse


class FRCRNLoss(torch.nn.Module):
    """``si_snr_weight * (-SI-SNR dB) + mask_weight * MSE(mask, compress(cIRM))
    + spectral_weight * compressed_spectrum_loss(STFT(est), STFT(clean)) + pesq_weight * PESQ distance
    - stoi_weight * STOI``.

    ``forward(est_wav [B, T'], clean [B, T], est_mask [B, 2F, N], noisy_spec [B, 2F, N],
    clean_spec [B, 2F, N], est_spec [B, 2F, N]) -> scalar``. A zero weight skips its spectra.
    The PESQ distance is ``torch_pesq.PesqLoss``: P.862's symmetric and asymmetric disturbance,
    ``0.1 d_sym + 0.0309 d_asym``, the raw MOS below 4.5 before the wide-band mapping (a PESQ-aware term;
    on the enhancement validation set its MOS tracks ``pesq`` 0.996 correlated). ``sample_rate`` (Hz)
    is that of the waveforms. STOI is ``torch_stoi.NegSTOILoss`` (classic STOI, silent frames dropped as
    in the metric), in [0, 1]: with ``stoi_weight`` 20 a gain of 0.01 weighs as much as 0.2 dB of SI-SNR.
    """

    def __init__(self, si_snr_weight: float = 1.0, mask_weight: float = 1.0,
                 mask_bound: float = 2.0, mask_steepness: float = 1.0, spectral_weight: float = 0.0,
                 spectral_power: float = 0.3, magnitude_share: float = 0.7, pesq_weight: float = 0.0,
                 stoi_weight: float = 0.0, sample_rate: int = 16000):
        super().__init__()
        self.si_snr_weight, self.mask_weight, self.spectral_weight = si_snr_weight, mask_weight, spectral_weight
        self.mask_bound, self.mask_steepness = mask_bound, mask_steepness
        self.spectral_power, self.magnitude_share = spectral_power, magnitude_share
        self.pesq_weight = pesq_weight
        if pesq_weight:
            from torch_pesq import PesqLoss  # training-only dependency, imported when the term is on
            self.pesq = PesqLoss(1.0, sample_rate=sample_rate)
        self.stoi_weight = stoi_weight
        if stoi_weight:
            from torch_stoi import NegSTOILoss  # training-only dependency, imported when the term is on
            self.neg_stoi = NegSTOILoss(sample_rate)

    def mask_loss(self, est_mask, noisy_spec, clean_spec) -> torch.Tensor:
        target = compress_mask(ideal_complex_mask(noisy_spec, clean_spec), self.mask_bound, self.mask_steepness)
        return torch.nn.functional.mse_loss(est_mask.float(), target)

    @staticmethod
    def voiced_pairs(est_wav, clean):
        """``(est, ref)`` cropped to the shorter length, without the items where either is silent (a
        perceptual distance is undefined there and would send NaN into the gradient); ``None`` if none is left."""
        num = min(est_wav.shape[-1], clean.shape[-1])
        est, ref = est_wav[..., :num].float(), clean[..., :num].float()
        voiced = (ref.abs().amax(dim=-1) > 1e-4) & (est.detach().abs().amax(dim=-1) > 1e-4)
        return (est[voiced], ref[voiced]) if voiced.any() else None

    def pesq_loss(self, est_wav, clean) -> torch.Tensor:
        """Mean PESQ distance of ``est_wav`` to ``clean`` (both ``[B, T]``) over the voiced items
        (SI-SNR still scores the others)."""
        pairs = self.voiced_pairs(est_wav, clean)
        if pairs is None:
            return est_wav.new_zeros(())
        self.pesq.to(est_wav.device)
        return self.pesq(pairs[1], pairs[0]).float().mean()

    def stoi(self, est_wav, clean) -> torch.Tensor:
        """Mean differentiable STOI of ``est_wav`` against ``clean`` (both ``[B, T]``) over the voiced items."""
        pairs = self.voiced_pairs(est_wav, clean)
        if pairs is None:
            return est_wav.new_zeros(())
        return -self.neg_stoi(*pairs).float().mean()

    def forward(self, est_wav, clean, est_mask=None, noisy_spec=None, clean_spec=None, est_spec=None) -> torch.Tensor:
        loss = -self.si_snr_weight * si_snr(est_wav, clean).mean()
        if self.mask_weight:
            loss = loss + self.mask_weight * self.mask_loss(est_mask, noisy_spec, clean_spec)
        if self.spectral_weight:
            loss = loss + self.spectral_weight * compressed_spectrum_loss(
                est_spec, clean_spec, self.spectral_power, self.magnitude_share)
        if self.pesq_weight:
            loss = loss + self.pesq_weight * self.pesq_loss(est_wav, clean)
        if self.stoi_weight:
            loss = loss - self.stoi_weight * self.stoi(est_wav, clean)
        return loss
