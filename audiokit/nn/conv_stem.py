"""A small 2-D convolution stack over feature frames, causal in time: ``[B, T, F] -> [B, T, out_features]``.

Each layer convolves the frames as an image (time x feature, e.g. log-mel bands), reading the current and the
``kernel_time - 1`` previous frames and ``kernel_feature`` neighbouring features, then batch norm, GELU and a max
pool by 2 along the feature axis only (the frame rate stays).  Sharing one filter across the feature axis lets a
pattern that moves up or down in frequency (another speaker's formants, pitch) give the same response, which a
per-frame linear projection does not.  The output frame ``t`` is the flattened ``[channels[-1], F >> len(channels)]``
map of frame ``t``.

Causal, so it streams: :meth:`ConvStem.step` keeps each layer's last ``kernel_time - 1`` input frames (zeros at the
start, as the offline left padding); chunks of any length, including none, give the frames of the offline pass.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .state import State, StreamingModule, cat_history


class ConvStem(StreamingModule):
    """Causal conv stack over ``[B, T, features]`` frames (see the module docstring).

    Args:
        features: input features per frame (e.g. 40 mel bands).
        channels: output channels of each layer (one layer per entry; each halves the feature axis).
        kernel_time: frames each filter reads (the current one and ``kernel_time - 1`` before it).
        kernel_feature: features each filter reads (odd; centred, zero padded).
    """

    causal = True

    def __init__(self, features: int, channels: Sequence[int], kernel_time: int = 3, kernel_feature: int = 3):
        super().__init__()
        if not channels:
            raise ValueError("a conv stem needs at least one layer")
        if kernel_feature % 2 != 1 or kernel_time < 1:
            raise ValueError(f"kernel_feature must be odd and kernel_time >= 1, got {kernel_feature}, {kernel_time}")
        if features >> len(channels) < 1:
            raise ValueError(f"{len(channels)} layers halve {features} features to nothing")
        self.kernel_time = kernel_time
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        previous = 1
        for out in channels:
            self.convs.append(nn.Conv2d(previous, out, (kernel_time, kernel_feature), padding=(0, kernel_feature // 2)))
            self.norms.append(nn.BatchNorm2d(out))
            previous = out
        self.out_features = channels[-1] * (features >> len(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x, None)[0]

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """Frames ``x [B, t, features]`` (``t`` may be 0) -> ``([B, t, out_features], state)``."""
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self.out_features), state or {}
        h = x.unsqueeze(1)  # [B, 1, t, features]: time is the image's height
        new_state = {}
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            history = state[f"history{i}"] if state else None  # {}: the stream began with an empty chunk
            h, new_state[f"history{i}"] = cat_history(history, h, self.kernel_time - 1, dim=2)
            h = F.max_pool2d(F.gelu(norm(conv(h))), (1, 2))
        return h.permute(0, 2, 1, 3).flatten(2), new_state
