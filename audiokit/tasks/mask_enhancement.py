"""Training of spectral-mask enhancement models (MossFormer2 48 kHz SE) with the reference
phase-sensitive mask loss.

The model (``modules.model``, e.g. :class:`~audiokit.models.mossformer2.MossFormer2Enhancer`) has
``features(wav [B, T]) -> [B, N, D]``, ``forward(features) -> mask [B, N, F]`` (real, F STFT bins),
``enhance(wav [B, T]) -> [B, T]`` and the STFT settings ``fft_len``, ``hop_length``, ``win_len``,
``window`` (uncentred frames, the same N as the features).
"""
from __future__ import annotations

import speechbrain as sb
import torch

from audiokit.tasks.enhancement import EnhancementBrain

EPS = 1e-8


def phase_sensitive_mask(noisy_spec: torch.Tensor, clean_spec: torch.Tensor, ratio_power: float = 2.0) -> torch.Tensor:
    """Clipped phase-sensitive mask ``clamp((|S|/|Y|)**p * cos(angle(Y) - angle(S)), 0, 1)`` ``[B, F, N]``
    from complex spectra ``[B, F, N]``. ``p = 2`` is what the MossFormer2 SE reference trains with,
    ``p = 1`` the textbook PSM."""
    noisy_abs, clean_abs = noisy_spec.abs(), clean_spec.abs()
    cos = (noisy_spec.real * clean_spec.real + noisy_spec.imag * clean_spec.imag) / (noisy_abs * clean_abs + EPS)
    return ((clean_abs / (noisy_abs + EPS)) ** ratio_power * cos).clamp(0.0, 1.0)


class PSMLoss(torch.nn.Module):
    """Squared mask error weighted by the noisy magnitude (normalised by its per-frame maximum):

        0.5 * sum((mask - psm)^2 * |Y| / max_f |Y|) / (B * N)

    ``forward(mask [B, N, F], noisy_spec [B, F, N], clean_spec [B, F, N]) -> scalar``.
    """

    def __init__(self, ratio_power: float = 2.0):
        super().__init__()
        self.ratio_power = ratio_power

    def forward(self, mask, noisy_spec, clean_spec) -> torch.Tensor:
        frames = min(mask.shape[1], noisy_spec.shape[-1])
        mask, noisy_spec, clean_spec = mask[:, :frames], noisy_spec[..., :frames], clean_spec[..., :frames]
        target = phase_sensitive_mask(noisy_spec, clean_spec, self.ratio_power).transpose(1, 2)
        noisy_abs = noisy_spec.abs()
        weight = (noisy_abs / (noisy_abs.amax(dim=1, keepdim=True) + EPS)).transpose(1, 2)
        return 0.5 * ((mask - target).pow(2) * weight).sum() / (mask.shape[0] * frames)


class MaskEnhancementBrain(EnhancementBrain):
    """Brain for fbank-in/mask-out enhancement: PSM loss in training, SI-SNR of ``enhance`` in validation."""

    def compute_forward(self, batch, stage):
        noisy = batch["noisy"].to(self.device)
        return self.modules.model(self.model.features(noisy))

    def spectrum(self, wav: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``[B, F, N]`` of ``wav`` ``[B, T]`` as the model frames it."""
        model = self.model
        return torch.stft(wav, model.fft_len, model.hop_length, model.win_len, model.window.to(wav.device),
                          center=False, return_complex=True)

    def compute_objectives(self, predictions, batch, stage):
        noisy, clean = batch["noisy"].to(self.device).float(), batch["clean"].to(self.device).float()
        with torch.autocast(device_type=torch.device(self.device).type, enabled=False):
            loss = self.hparams.loss(predictions.float(), self.spectrum(noisy), self.spectrum(clean))
        if stage != sb.Stage.TRAIN:
            with torch.no_grad():
                self._record_validation(self.model.enhance(noisy).float(), noisy, clean)
        return loss
