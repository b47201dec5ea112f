"""SpeechBrain Brain that trains a mask-based enhancement model (FRCRN interface).

The model (``modules.model``) maps a noisy waveform ``[B, T]`` to an output with fields
``wav`` [B, T'], ``mask`` [B, 2F, N] and has ``stft(wav [B, T]) -> [B, 2F, N]``.
Hyperparameters used: ``loss`` (an :class:`~audiokit.tasks.losses.FRCRNLoss`),
``epoch_counter``, optional ``lr_annealing`` (a NewBob-style ``scheduler(metric) -> (old, new)``),
optional ``train_logger``, ``train_set`` (its ``set_epoch`` is called each epoch), ``pesq_items`` (PESQ and STOI
on that many validation items, 0: off; logged with the share of them whose STOI is below the noisy input's),
``sample_rate``, ``output_folder`` (where ``learning_curve.csv`` is written) and ``select_by`` (the validation
figure whose best checkpoints are kept: ``si_snr``, the default, or ``pesq``).
"""
from __future__ import annotations

import numpy as np
import speechbrain as sb
import torch

from audiokit.tasks.losses import si_snr
from audiokit.tasks.recipe_brain import RecipeBrain


def wide_band_pesq(clean: np.ndarray, enhanced: np.ndarray, sample_rate: int) -> float:
    """PESQ (wide band at 16 kHz, narrow band at 8 kHz); NaN when PESQ cannot score it."""
    from pesq import pesq  # only needed in validation
    try:
        return float(pesq(sample_rate, clean, enhanced, "wb" if sample_rate == 16000 else "nb"))
    except Exception:  # pesq raises on silent or too-short items
        return float("nan")


def short_time_intelligibility(clean: np.ndarray, signal: np.ndarray, sample_rate: int) -> float:
    """STOI of ``signal`` against ``clean`` (pystoi, both ``[T]``)."""
    from pystoi import stoi  # only needed in validation
    return float(stoi(clean, signal, sample_rate, extended=False))


class EnhancementBrain(RecipeBrain):
    """Brain for waveform-in/waveform-out enhancement with an SI-SNR + cIRM loss."""

    default_select_by = "si_snr"
    higher_is_better = True

    def compute_forward(self, batch, stage):
        noisy = batch["noisy"].to(self.device)
        return self.modules.model(noisy)

    def compute_objectives(self, predictions, batch, stage):
        noisy, clean = batch["noisy"].to(self.device), batch["clean"].to(self.device)
        loss_fn = self.hparams.loss
        with torch.autocast(device_type=torch.device(self.device).type, enabled=False):
            spectra = {}
            if loss_fn.mask_weight or getattr(loss_fn, "spectral_weight", 0):
                spectra["clean_spec"] = self.model.stft(clean.float())
            if loss_fn.mask_weight:
                spectra.update(est_mask=predictions.mask.float(), noisy_spec=self.model.stft(noisy.float()))
            if getattr(loss_fn, "spectral_weight", 0):
                spectra["est_spec"] = self.model.stft(predictions.wav.float())
            loss = loss_fn(predictions.wav.float(), clean, **spectra)
        if stage != sb.Stage.TRAIN:
            self._record_validation(predictions.wav.float(), noisy, clean)
        return loss

    def _record_validation(self, enhanced, noisy, clean):
        self.valid_si_snr += si_snr(enhanced, clean).tolist()
        self.noisy_si_snr += si_snr(noisy, clean).tolist()
        wanted = getattr(self.hparams, "pesq_items", 0) - len(self.valid_pesq)
        rate = getattr(self.hparams, "sample_rate", 16000)
        num = min(enhanced.shape[-1], clean.shape[-1])
        for est, mix, ref in list(zip(enhanced, noisy, clean))[: max(wanted, 0)]:
            est, mix, ref = (x[:num].cpu().numpy() for x in (est, mix, ref))
            self.valid_pesq.append(wide_band_pesq(ref, est, rate))
            self.valid_stoi.append((short_time_intelligibility(ref, est, rate),
                                    short_time_intelligibility(ref, mix, rate)))

    def on_stage_start(self, stage, epoch=None):
        self.valid_si_snr, self.noisy_si_snr, self.valid_pesq, self.valid_stoi = [], [], [], []
        super().on_stage_start(stage, epoch)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = {
            "loss": stage_loss,
            "si_snr": float(np.mean(self.valid_si_snr)),
            "noisy_si_snr": float(np.mean(self.noisy_si_snr)),
        }
        if self.valid_pesq:
            stats["pesq"] = float(np.nanmean(self.valid_pesq)) if not np.isnan(self.valid_pesq).all() else float("nan")
            enhanced_stoi, noisy_stoi = np.array(self.valid_stoi).T
            stats["stoi"] = float(enhanced_stoi.mean())
            stats["stoi_below_noisy"] = float((enhanced_stoi < noisy_stoi).mean())
        if stage == sb.Stage.TEST:
            self.test_stats = stats
            return
        self.finish_validation(epoch, stats)

    def annealing_value(self, stats: dict) -> float:
        return -stats["si_snr"]  # NewBob minimises

    def curve_row(self, epoch: int, lr: float, stats: dict) -> dict:
        return {"epoch": epoch, "lr": lr, "train_loss": getattr(self, "train_loss", ""),
                "valid_loss": stats["loss"], "valid_si_snr": stats["si_snr"],
                "noisy_si_snr": stats["noisy_si_snr"], "valid_pesq": stats.get("pesq", ""),
                "valid_stoi": stats.get("stoi", ""), "stoi_below_noisy": stats.get("stoi_below_noisy", "")}
