"""What every audiokit Brain does at the end of a validation pass, written once.

:class:`RecipeBrain` is a SpeechBrain ``Brain`` whose subclasses compute their validation statistics
(a dict of floats) and hand them to :meth:`RecipeBrain.finish_validation`, which anneals the learning
rate, logs, appends a row to ``<output_folder>/learning_curve.csv`` and saves a checkpoint, keeping
the best ones by the recipe's ``select_by`` figure. Hyperparameters read: ``lr_annealing`` (optional,
``scheduler(value to minimise) -> (old, new)``), ``train_logger`` (optional), ``output_folder``,
``select_by``, ``keep_checkpoints`` and ``train_set`` (its ``set_epoch`` is called each epoch).

A wall-clock limit (recipe key or ``--max_minutes``, see :attr:`RecipeBrain.stop_at`) uses SpeechBrain's own
intra-epoch checkpoint: at the first training step past the limit the Brain saves the checkpoint that
``ckpt_interval_minutes`` would save (model, optimizer, epoch counter, the Brain's step and the data loader's
position) and raises :class:`TimeLimitReached`; a run that reaches the limit during validation stops right after
that epoch's own checkpoint. Running the same command again resumes mid-epoch.
"""
from __future__ import annotations

import csv
import logging
import os
import time

import speechbrain as sb
import torch
from speechbrain.utils.distributed import ddp_broadcast, if_main_process

logger = logging.getLogger(__name__)


def append_csv_row(path: str, row: dict) -> None:
    """Append ``row`` to the CSV at ``path``, writing the header (the row's keys) when the file is new.
    When the row has columns the file lacks (a run resumed by a newer version that logs more), the file is
    rewritten first with the wider header, its earlier rows left blank in the new columns."""
    header = None
    if os.path.exists(path):
        with open(path, newline="") as f:
            header = next(csv.reader(f), None)
    if header is not None and [k for k in row if k not in header]:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        header = header + [k for k in row if k not in header]
        with open(path + ".tmp", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(path + ".tmp", path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header or list(row), restval="")
        if header is None:
            writer.writeheader()
        writer.writerow(row)


class TimeLimitReached(Exception):
    """Training stopped on its wall-clock limit, after saving the checkpoint it resumes from."""

    def __init__(self, minutes: float, epoch: int | None, step: int, checkpoint):
        self.minutes, self.epoch, self.step, self.checkpoint = minutes, epoch, step, checkpoint
        where = f"in epoch {epoch} after step {step}" if step else f"after epoch {epoch}"
        super().__init__(f"stopped on the time limit ({minutes:g} min) {where}; "
                         f"checkpoint {checkpoint or '(none: no checkpointer)'}")


class RecipeBrain(sb.Brain):
    """Base Brain: see the module docstring. Subclasses set :attr:`default_select_by` and
    :attr:`higher_is_better` (whether larger values of the selection figure are better)."""

    default_select_by = "loss"
    higher_is_better = False
    #: ``time.monotonic()`` after which training stops with a checkpoint (None: no limit). Set from the
    #: recipe's ``max_minutes`` when fitting starts unless set before (``audiokit train`` counts from its start).
    stop_at: float | None = None
    _time_up = False
    _current_epoch: int | None = None

    @property
    def max_minutes(self) -> float | None:
        return getattr(self.hparams, "max_minutes", None)

    def on_fit_start(self):
        if self.stop_at is None and self.max_minutes:
            self.stop_at = time.monotonic() + 60.0 * float(self.max_minutes)
        super().on_fit_start()

    def time_is_up(self) -> bool:
        """Whether the wall-clock limit has passed (decided on the main process, the same on every DDP rank)."""
        if self.stop_at is None:
            return False
        return ddp_broadcast(time.monotonic() >= self.stop_at, src=0)

    def _should_save_intra_epoch_ckpt(self, last_ckpt_time, steps_since_ckpt):
        """SpeechBrain's intra-epoch save decision, also taken when the time limit has passed."""
        self._time_up = self.time_is_up()
        return self._time_up or super()._should_save_intra_epoch_ckpt(last_ckpt_time, steps_since_ckpt)

    def _save_intra_epoch_ckpt(self):
        """SpeechBrain's intra-epoch checkpoint; then, past the time limit, stop (:class:`TimeLimitReached`)."""
        if self.checkpointer is not None:
            super()._save_intra_epoch_ckpt()
        if self._time_up:
            self._stop_on_time_limit(self.step)

    def _stop_on_time_limit(self, step: int):
        newest = self.checkpointer.find_checkpoint() if self.checkpointer is not None else None
        stop = TimeLimitReached(float(self.max_minutes or 0), self._current_epoch, step,
                                newest.path if newest is not None else None)
        logger.debug(str(stop))
        raise stop

    @property
    def model(self) -> torch.nn.Module:
        """The model itself, unwrapped from DDP/DP."""
        model = self.modules.model
        return getattr(model, "module", model)

    def on_stage_start(self, stage, epoch=None):
        """Each training epoch draws fresh items: the ``train_set``'s ``set_epoch`` is called when it has one."""
        if epoch is not None:
            self._current_epoch = epoch
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
        counter = getattr(self.hparams, "epoch_counter", None)
        last_epoch = counter is not None and epoch >= getattr(counter, "limit", float("inf"))
        if not last_epoch and self.time_is_up():  # the limit passed in validation: stop at this epoch's checkpoint
            self._stop_on_time_limit(0)
