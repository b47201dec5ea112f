"""SpeechBrain Brain that trains an audio classifier (keyword spotting, spoken digits).

The model (``modules.model``) maps a waveform batch ``[B, T]`` and the items' lengths ``[B]`` (samples) to
class logits ``[B, C]``, e.g. :class:`~audiokit.models.lssl_classifier.LSSLClassifier`. Batches are those
of :func:`~audiokit.tasks.keyword_data.pad_collate`: ``wav`` [B, T], ``label`` [B], ``length`` [B].
Hyperparameters used beyond :class:`~audiokit.tasks.recipe_brain.RecipeBrain`'s: ``label_smoothing``
(optional, default 0), ``feature_augment`` (optional: modules applied in turn to the model's front-end
features ``[B, N, features]`` in training only, e.g. SpeechBrain's ``SpectrogramDrop`` for SpecAugment's time
and frequency masks; the model's ``forward`` takes it as ``feature_augment``), ``mixup_alpha`` (optional,
default 0: off; > 0: mixup of the front-end features in training, each item mixed with another of the batch by a
weight drawn from Beta(alpha, alpha), the loss mixed by the same weight) and ``train_set`` (its
``set_epoch`` is called each epoch). Validation records the
loss and the accuracy (``accuracy``, the default ``select_by``); the learning-rate scheduler minimises
the error rate.
"""
from __future__ import annotations

import speechbrain as sb
import torch

from audiokit.tasks.recipe_brain import RecipeBrain


class ClassificationBrain(RecipeBrain):
    """Brain for waveform-in/label-out classification with cross-entropy."""

    default_select_by = "accuracy"
    higher_is_better = True

    def compute_forward(self, batch, stage):
        training = stage == sb.Stage.TRAIN
        augment = _as_list(getattr(self.hparams, "feature_augment", None)) if training else []
        wav, lengths = batch["wav"].to(self.device), batch["length"].to(self.device)
        alpha = getattr(self.hparams, "mixup_alpha", 0.0) if training else 0.0
        self.mixup = draw_mixup(wav.shape[0], alpha, wav.device) if alpha > 0 else None
        if self.mixup is not None:
            lengths = torch.maximum(lengths, lengths[self.mixup[0]])
            augment.append(lambda x: mix_features(x, *self.mixup))
        if not augment:
            return self.modules.model(wav, lengths)
        return self.modules.model(wav, lengths, feature_augment=lambda x: _apply_all(augment, x))

    def compute_objectives(self, logits, batch, stage):
        labels = batch["label"].to(self.device)
        smoothing = getattr(self.hparams, "label_smoothing", 0.0) if stage == sb.Stage.TRAIN else 0.0
        mixup = getattr(self, "mixup", None) if stage == sb.Stage.TRAIN else None
        if mixup is not None:
            partner, weight = mixup
            ce = torch.nn.functional.cross_entropy(
                logits.float(), labels, label_smoothing=smoothing, reduction="none")
            ce_partner = torch.nn.functional.cross_entropy(
                logits.float(), labels[partner], label_smoothing=smoothing, reduction="none")
            return (weight * ce + (1 - weight) * ce_partner).mean()
        loss = torch.nn.functional.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
        if stage != sb.Stage.TRAIN:
            self.correct += int((logits.argmax(-1) == labels).sum())
            self.seen += labels.numel()
        return loss

    def on_stage_start(self, stage, epoch=None):
        self.correct, self.seen = 0, 0
        super().on_stage_start(stage, epoch)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = {"loss": stage_loss, "accuracy": self.correct / max(self.seen, 1)}
        if stage == sb.Stage.TEST:
            self.test_stats = stats
            return
        self.finish_validation(epoch, stats)

    def annealing_value(self, stats: dict) -> float:
        return 1.0 - stats["accuracy"] + 1e-3  # NewBob minimises a positive value: the error rate


def draw_mixup(batch_size: int, alpha: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A mixup draw for a batch: each item's partner (a permutation of ``range(batch_size)``, [B]) and its own
    weight in the mix, from Beta(alpha, alpha) ([B], in [0, 1])."""
    partner = torch.randperm(batch_size, device=device)
    weight = torch.distributions.Beta(alpha, alpha).sample((batch_size,)).to(device)
    return partner, weight


def mix_features(x: torch.Tensor, partner: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Features ``x`` [B, N, F] mixed with their partners': ``weight * x + (1 - weight) * x[partner]``."""
    weight = weight.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return weight * x + (1 - weight) * x[partner]


def _as_list(modules) -> list:
    """``modules`` as a new list: None is empty, a single module is a list of one."""
    if modules is None:
        return []
    return list(modules) if isinstance(modules, (list, tuple)) else [modules]


def _apply_all(modules: list, x: torch.Tensor) -> torch.Tensor:
    """``x`` through each of ``modules`` in turn; ``x`` itself is left as it is (SpeechBrain's spectrogram masks
    work in place)."""
    x = x.clone()
    for module in modules:
        x = module(x)
    return x
