"""SpeechBrain Brain that trains a mask-based enhancement model (FRCRN interface).

The model (``modules.model``) maps a noisy waveform ``[B, T]`` to an output with fields
``wav`` [B, T'], ``mask`` [B, 2F, N] and has ``stft(wav [B, T]) -> [B, 2F, N]``.
Hyperparameters used: ``loss`` (an :class:`~audiokit.tasks.losses.FRCRNLoss`),
``epoch_counter``, optional ``lr_annealing`` (a NewBob-style ``scheduler(metric) -> (old, new)``),
optional ``train_logger``, ``train_set`` (its ``set_epoch`` is called each epoch), ``pesq_items`` (PESQ on that many validation items, 0: off),
``sample_rate``, ``output_folder`` (where ``learning_curve.csv`` is written) and ``select_by`` (the validation
figure whose best checkpoints are kept: ``si_snr``, the default, or ``pesq``).
"""
from __future__ import annotations

import csv
import os

import numpy as np
import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from audiokit.tasks.losses import si_snr

CURVE_FIELDS = ["epoch", "lr", "train_loss", "valid_loss", "valid_si_snr", "noisy_si_snr", "valid_pesq"]


def wide_band_pesq(clean: np.ndarray, enhanced: np.ndarray, sample_rate: int) -> float:
    """PESQ (wide band at 16 kHz, narrow band at 8 kHz); NaN when PESQ cannot score it."""
    from pesq import pesq  # only needed in validation
    try:
        return float(pesq(sample_rate, clean, enhanced, "wb" if sample_rate == 16000 else "nb"))
    except Exception:  # pesq raises on silent or too-short items
        return float("nan")


class EnhancementBrain(sb.Brain):
    """Brain for waveform-in/waveform-out enhancement with an SI-SNR + cIRM loss."""

    @property
    def model(self) -> torch.nn.Module:
        """The model itself, unwrapped from DDP/DP."""
        model = self.modules.model
        return getattr(model, "module", model)

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
        for est, ref in list(zip(enhanced, clean))[: max(wanted, 0)]:
            self.valid_pesq.append(wide_band_pesq(ref[:num].cpu().numpy(), est[:num].cpu().numpy(), rate))

    def on_stage_start(self, stage, epoch=None):
        self.valid_si_snr, self.noisy_si_snr, self.valid_pesq = [], [], []
        train_set = getattr(self.hparams, "train_set", None)
        if stage == sb.Stage.TRAIN and epoch is not None and hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)

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
        if stage == sb.Stage.TEST:
            self.test_stats = stats
            return
        lr = self.optimizer.param_groups[0]["lr"]
        annealing = getattr(self.hparams, "lr_annealing", None)
        if annealing is not None:
            _, new_lr = annealing(-stats["si_snr"])  # NewBob expects a value to minimise
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
        logger = getattr(self.hparams, "train_logger", None)
        if logger is not None:
            logger.log_stats(stats_meta={"epoch": epoch, "lr": lr},
                             train_stats={"loss": getattr(self, "train_loss", float("nan"))},
                             valid_stats=stats)
        self._append_learning_curve(epoch, lr, stats)
        if self.checkpointer is not None:
            select_by = getattr(self.hparams, "select_by", "si_snr")  # the validation figure that picks checkpoints
            self.checkpointer.save_and_keep_only(meta={**stats, "epoch": epoch},
                                                 max_keys=[select_by],
                                                 num_to_keep=getattr(self.hparams, "keep_checkpoints", 2))

    def _append_learning_curve(self, epoch, lr, stats):
        """One row per epoch in ``<output_folder>/learning_curve.csv`` (main process only)."""
        folder = getattr(self.hparams, "output_folder", None)
        if folder is None or not if_main_process():
            return
        path = os.path.join(folder, "learning_curve.csv")
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CURVE_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({"epoch": epoch, "lr": lr, "train_loss": getattr(self, "train_loss", ""),
                             "valid_loss": stats["loss"], "valid_si_snr": stats["si_snr"],
                             "noisy_si_snr": stats["noisy_si_snr"], "valid_pesq": stats.get("pesq", "")})
