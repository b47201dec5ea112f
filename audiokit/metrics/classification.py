"""Accuracy of a clip classifier on a labelled dataset (held-out speakers, another sample rate).

The model maps ``(wav [B, T], lengths [B])`` to logits ``[B, C]`` (e.g.
:class:`~audiokit.models.lssl_classifier.LSSLClassifier`); the dataset yields
:mod:`audiokit.tasks.keyword_data` items (``wav``, ``label``, ``length``).
"""
from __future__ import annotations

import numpy as np
import torch

from audiokit.audio.resample import resample


@torch.no_grad()
def classification_scores(model: torch.nn.Module, dataset, batch_size: int = 64, rate: int | None = None) -> dict:
    """``{"accuracy", "per_class" {label: accuracy}, "confusion" [C, C] (rows: truth), "items"}`` of ``model``
    on ``dataset``. With ``rate`` (Hz), the clips are resampled from the dataset's rate to ``rate`` and the
    model runs there (its ``set_rate``, zero-shot), and is set back afterwards."""
    trained_rate = model.sample_rate
    if rate is not None:
        model.set_rate(rate)
    labels = list(getattr(dataset, "labels", None) or range(model.num_classes))
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    try:
        model.eval()
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            if rate is not None and rate != dataset.sample_rate:
                items = [{**item, "wav": resample(item["wav"], dataset.sample_rate, rate),
                          "length": -(-item["length"] * rate // dataset.sample_rate)} for item in items]
            wav = torch.nn.utils.rnn.pad_sequence([item["wav"] for item in items], batch_first=True)
            predicted = model(wav, torch.tensor([item["length"] for item in items])).argmax(-1)
            np.add.at(confusion, ([item["label"] for item in items], predicted.numpy()), 1)
    finally:
        if rate is not None:
            model.set_rate(trained_rate)
    totals = confusion.sum(1)
    return {"accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
            "per_class": {str(label): float(confusion[i, i] / totals[i]) if totals[i] else float("nan")
                          for i, label in enumerate(labels)},
            "confusion": confusion.tolist(), "items": int(confusion.sum())}
