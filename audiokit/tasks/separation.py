"""SpeechBrain Brain that trains a speech separation model with permutation-invariant SI-SNR.

The model (``modules.model``) maps a mixture ``[B, T]`` to sources ``[B, S, T]`` (e.g.
:class:`~audiokit.models.mossformer2.MossFormer2Separator`); batches are those of
:class:`~audiokit.tasks.mixtures.SpeakerMixtureDataset` through ``crop_collate``: ``noisy`` (the
mixture) ``[B, T]`` and ``clean`` (the sources) ``[B, S, T]``.
Hyperparameters used beyond :class:`~audiokit.tasks.enhancement.EnhancementBrain`'s: ``loss``
(``speechbrain.nnet.losses.get_si_snr_with_pitwrapper`` or any ``(sources [B, T, S], estimates
[B, T, S]) -> [B]``) and optional ``loss_threshold`` (items whose loss is already below it, in dB
of negative SI-SNR, are left out of the batch mean, as in SpeechBrain's SepFormer recipes).
Validation records the PIT SI-SNR of the estimates (``si_snr``) and the SI-SNR of the mixture
against each source (``noisy_si_snr``); their difference is the SI-SNR improvement.
"""
from __future__ import annotations

import speechbrain as sb
import torch

from audiokit.tasks.enhancement import EnhancementBrain
from audiokit.tasks.losses import si_snr


def mixture_si_snr(mixture: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """Mean over sources of the SI-SNR (dB) of the unprocessed mixture ``[B, T]`` against each
    source ``[B, S, T]``: the baseline of the SI-SNR improvement, ``[B]``."""
    b, s, t = sources.shape
    return si_snr(mixture[:, None, :t].expand(b, s, t).reshape(b * s, t), sources.reshape(b * s, t)).view(b, s).mean(1)


class SeparationBrain(EnhancementBrain):
    """Brain for mixture-in/sources-out separation with a permutation-invariant loss."""

    def compute_objectives(self, predictions, batch, stage):
        mixture, sources = batch["noisy"].to(self.device), batch["clean"].to(self.device)
        num = min(predictions.shape[-1], sources.shape[-1])
        estimates, sources = predictions[..., :num].float(), sources[..., :num].float()
        with torch.autocast(device_type=torch.device(self.device).type, enabled=False):
            losses = self.hparams.loss(sources.transpose(1, 2), estimates.transpose(1, 2))
        if stage != sb.Stage.TRAIN:
            self.valid_si_snr += (-losses).tolist()
            self.noisy_si_snr += mixture_si_snr(mixture.float(), sources).tolist()
            return losses.mean()
        threshold = getattr(self.hparams, "loss_threshold", None)
        if threshold is not None and (losses > threshold).any():
            losses = losses[losses > threshold]
        return losses.mean()
