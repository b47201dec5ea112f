"""What every audiokit Brain does at the end of a validation pass, written once.

:class:`RecipeBrain` is a SpeechBrain ``Brain`` whose subclasses compute their validation statistics
(a dict of floats) and hand them to :meth:`RecipeBrain.finish_validation`, which anneals the learning
rate, logs, appends a row to ``<output_folder>/learning_curve.csv`` and saves a checkpoint, keeping
the best ones by the recipe's ``select_by`` figure. Hyperparameters read: ``lr_annealing`` (optional,
``scheduler(value to minimise) -> (old, new)``), ``train_logger`` (optional), ``output_folder``,
``select_by``, ``keep_checkpoints`` and ``train_set`` (its ``set_epoch`` is called each epoch).
"""
from __future__ import annotations

import csv
import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process


def append_csv_row(path: str, row: dict) -> None:
    """Append ``row`` to the CSV at ``path``, writing the header (the row's keys) when the file is new."""
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


class RecipeBrain(sb.Brain):
    """Base Brain: see the module docstring. Subclasses set :attr:`default_select_by` and
    :attr:`higher_is_better` (whether larger values of the selection figure are better)."""

    default_select_by = "loss"
    higher_is_better = False

    @property
    def model(self) -> torch.nn.Module:
        """The model itself, unwrapped from DDP/DP."""
        model = self.modules.model
        return getattr(model, "module", model)

    def on_stage_start(self, stage, epoch=None):
        """Each training epoch draws fresh items: the ``train_set``'s ``set_epoch`` is called when it has one."""
        train_set = getattr(self.hparams, "train_set", None)
        if stage == sb.Stage.TRAIN and epoch is not None and hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)

    def annealing_value(self, stats: dict) -> float:
        """What the learning-rate scheduler minimises (default: the validation loss)."""
        return stats["loss"]

    def curve_row(self, epoch: int, lr: float, stats: dict) -> dict:
        """The ``learning_curve.csv`` row of one epoch (default: epoch, lr, train loss and every statistic)."""
        return {"epoch": epoch, "lr": lr, "train_loss": getattr(self, "train_loss", ""),
                **{f"valid_{k}": v for k, v in stats.items()}}

    def finish_validation(self, epoch: int, stats: dict) -> None:
        """Anneal, log, write the curve row and checkpoint (keeping the best by ``select_by``)."""
        lr = self.optimizer.param_groups[0]["lr"]
        annealing = getattr(self.hparams, "lr_annealing", None)
        if annealing is not None:
            _, new_lr = annealing(self.annealing_value(stats))
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
        logger = getattr(self.hparams, "train_logger", None)
        if logger is not None:
            logger.log_stats(stats_meta={"epoch": epoch, "lr": lr},
                             train_stats={"loss": getattr(self, "train_loss", float("nan"))}, valid_stats=stats)
        folder = getattr(self.hparams, "output_folder", None)
        if folder is not None and if_main_process():
            append_csv_row(os.path.join(folder, "learning_curve.csv"), self.curve_row(epoch, lr, stats))
        if self.checkpointer is not None:
            select_by = getattr(self.hparams, "select_by", self.default_select_by)
            keys = {"max_keys" if self.higher_is_better else "min_keys": [select_by]}
            self.checkpointer.save_and_keep_only(meta={**stats, "epoch": epoch, "select_by": select_by,
                                                       "higher_is_better": self.higher_is_better},
                                                 num_to_keep=getattr(self.hparams, "keep_checkpoints", 2), **keys)
