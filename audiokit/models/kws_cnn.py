"""The plain log-mel CNN that the keyword spotter's card compares against (a reference, not a shipped model).

The issue's reference: "a plain 3-block log-mel CNN, 289 k parameters".  Trained here by the keyword-spotting
recipe itself (same split, augmentation, schedule and Brain), with only the model swapped::

    audiokit train recipes/classification/lssl_speech_commands.yaml --output_folder RUN \\
        --model '!new:audiokit.models.kws_cnn.LogMelCNN' --number_of_epochs 12

::

    wav [B, T] --CausalLogMel--> [B, 1, N, 40] --3 x (2 x (conv 3x3, batch norm, ReLU), max pool 2x2)-->
        [B, 128, N / 8, 5] --mean over time and bands--> dropout --> Linear --> logits [B, num_classes]

Not causal (the 3x3 convolutions read the next frame) and not streamed: it classifies a whole clip.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..audio.features import CausalLogMel


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    layers = []
    for c_in in (channels_in, channels_out):
        layers += [nn.Conv2d(c_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class LogMelCNN(nn.Module):
    """``forward(wav [B, T], lengths [B] or None) -> logits [B, num_classes]`` of whole clips (at least 80 ms).

    Args:
        num_classes: output classes.
        sample_rate: input rate (Hz).
        labels: optional class names.
        channels: output channels of the three blocks (default 32, 64, 128: 288 k parameters).
        n_mels: log-mel bands (10 ms frames, 25 ms windows, as the LSSL classifier's front end).
        dropout: before the linear head.
    """

    def __init__(self, num_classes: int = 12, sample_rate: int = 16000, labels: Optional[Sequence[str]] = None,
                 channels: Sequence[int] = (32, 64, 128), n_mels: int = 40, dropout: float = 0.1):
        super().__init__()
        self.num_classes, self.sample_rate, self.labels = num_classes, sample_rate, labels and list(labels)
        self.config = dict(num_classes=num_classes, sample_rate=sample_rate, labels=self.labels,
                           channels=list(channels), n_mels=n_mels, dropout=dropout)
        self.logmel = CausalLogMel(sample_rate, n_mels)
        widths = [1, *channels]
        self.blocks = nn.Sequential(*(_block(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels[-1], num_classes)

    def forward(self, wav: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits of each clip; ``lengths`` is accepted for the Brain's batches (the padding of a right-padded
        clip is silence, which the mean over time includes)."""
        features = self.logmel(wav).unsqueeze(1)  # [B, 1, N, n_mels]
        return self.head(self.dropout(self.blocks(features).mean((2, 3))))
