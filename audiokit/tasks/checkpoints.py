"""Checkpoints that survive a kill at any moment.

SpeechBrain's ``Checkpointer`` writes a checkpoint folder's ``CKPT.yaml`` first and its parameter files
after, in place: a run killed while saving leaves a folder that looks complete and is not, and every later
resume fails on it. :class:`SafeCheckpointer` writes each checkpoint under a temporary name (which
SpeechBrain never lists: it does not start with ``CKPT``), syncs it to disk and only then renames it into
place, so a checkpoint folder is complete or absent. Recovery tries the chosen checkpoint and, if it cannot
be read (a torn or garbled folder left by older code, a damaged disk), says so and falls back to the next
one, newest first; leftover temporary folders are removed.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys

from speechbrain.utils.checkpoints import Checkpoint, Checkpointer

logger = logging.getLogger(__name__)
PARTIAL_PREFIX = "partial+"


def sync_folder(path) -> None:
    """fsync every file in ``path`` and the folder itself (POSIX), so a rename after it publishes whole data."""
    for name in os.listdir(path):
        with open(os.path.join(path, name), "rb") as f:
            os.fsync(f.fileno())
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class SafeCheckpointer(Checkpointer):
    """A drop-in ``speechbrain.utils.checkpoints.Checkpointer`` with atomic saves and a fallback on recovery."""

    _publish_as = None  # the final folder of the save in progress

    def _new_checkpoint_dirpath(self):
        self._publish_as = super()._new_checkpoint_dirpath()
        return self.checkpoints_dir / f"{PARTIAL_PREFIX}{self._publish_as.name}"

    def _custom_checkpoint_dirpath(self, name):
        self._publish_as = super()._custom_checkpoint_dirpath(name)
        return self.checkpoints_dir / f"{PARTIAL_PREFIX}{self._publish_as.name}"

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO):  # noqa: B006 (SB's API)
        saved = super().save_checkpoint(meta=meta, end_of_epoch=end_of_epoch, name=name, verbosity=logging.DEBUG)
        if saved is None:  # not the main process
            return None
        final, self._publish_as = self._publish_as, None
        sync_folder(saved.path)
        if final.exists():  # a custom name saved again: replace the old one
            shutil.rmtree(final)
        os.replace(saved.path, final)
        logger.log(verbosity, f"Saved an {'end-of-epoch' if end_of_epoch else 'intra-epoch'} checkpoint in {final}")
        return Checkpoint(final, saved.meta, {k: final / p.name for k, p in saved.paramfiles.items()})

    def remove_partial_saves(self) -> None:
        """Delete temporary folders of saves that a kill interrupted."""
        if self.checkpoints_dir.is_dir():
            for path in self.checkpoints_dir.glob(f"{PARTIAL_PREFIX}*"):
                shutil.rmtree(path, ignore_errors=True)

    def list_checkpoints(self):
        """Every checkpoint whose ``CKPT.yaml`` reads (one that does not is reported and left out)."""
        checkpoints = []
        for path in self._list_checkpoint_dirs():
            try:
                checkpoints += self._construct_checkpoint_objects([path])
            except Exception as exc:  # yaml errors, unreadable files
                report_skipped(path, f"its {path.name}/CKPT.yaml is unreadable ({type(exc).__name__})")
        return checkpoints

    def recover_if_possible(self, importance_key=None, max_key=None, min_key=None, ckpt_predicate=None):
        """Load the chosen checkpoint (see SpeechBrain); when it cannot be loaded, report it and try the next
        one by the same order, until one loads or none is left."""
        self.remove_partial_saves()
        refused = set()
        while True:
            chosen = self.find_checkpoint(importance_key, max_key, min_key,
                                          lambda c: c.path not in refused and (ckpt_predicate or bool)(c))
            if chosen is None:
                logger.info("Would load a checkpoint here, but none found yet.")
                return None
            try:
                self.load_checkpoint(chosen)
                return chosen
            except Exception as exc:  # a missing or garbled parameter file, whatever its loader raises
                report_skipped(chosen.path, f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
                refused.add(chosen.path)


def report_skipped(path, reason: str) -> None:
    """Say on stderr (and in the log) which checkpoint is skipped and why."""
    message = f"audiokit train: skipping the incomplete checkpoint {path}: {reason}"
    logger.warning(message)
    print(message, file=sys.stderr)
