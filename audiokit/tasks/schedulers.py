"""Learning-rate schedules for recipes."""
from __future__ import annotations

from speechbrain.nnet.schedulers import NewBobScheduler


class DecibelNewBobScheduler(NewBobScheduler):
    """NewBob annealing driven by a loss in dB (``-SI-SNR``, what the Brains pass).

    NewBob measures relative improvement, ``(previous - new) / previous``, which has the wrong sign
    once the metric is negative (any positive SI-SNR), so plain NewBob would anneal on every
    improvement. The dB value is turned into the power ratio ``10 ** (dB / 10)`` (positive, lower
    is better) first: a 0.1 dB gain is a 2.3 % relative improvement.
    """

    def __call__(self, metric_db: float):
        return super().__call__(10.0 ** (float(metric_db) / 10.0))
