"""Causal pooling over time, offline and step by step, on ``[B, T, C]`` frames.

* :class:`CausalAvgPool` averages each run of ``stride`` frames into one frame, which is
  complete once its last input frame has arrived (a trailing partial run gives no frame).
* :class:`RunningMean` replaces frame ``t`` by the mean of frames ``0..t``, or of the last ``window``
  frames (float64 sums, so long streams do not drift).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .state import State, StreamingModule


class CausalAvgPool(StreamingModule):
    """Mean of each run of ``stride`` frames, ``[B, T, C] -> [B, T // stride, C]``.

    Output frame ``j`` is the mean of input frames ``j * stride .. (j + 1) * stride - 1``.
    :meth:`step` holds the frames of a run not yet complete (fewer than ``stride``).
    """

    def __init__(self, stride: int):
        super().__init__()
        if stride < 1:
            raise ValueError(f"stride must be at least 1, got {stride}")
        self.stride = stride

    def extra_repr(self) -> str:
        return f"stride={self.stride}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        complete = x.shape[1] // self.stride * self.stride
        return x[:, :complete].unflatten(1, (-1, self.stride)).mean(2)

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        if state is not None:
            x = torch.cat([state["pending"], x], dim=1)
        complete = x.shape[1] // self.stride * self.stride
        return self.forward(x), {"pending": x[:, complete:]}


class RunningMean(StreamingModule):
    """Mean over time up to each frame, ``[B, T, C] -> [B, T, C]``: ``y[t] = mean(x[max(0, t - window + 1)..t])``,
    over all frames so far when ``window`` is None, else over the last ``window`` frames (a sliding mean, so a
    long stream reports what it heard recently).

    The state holds the running sum ``[B, 1, C]`` and the frame count (float64), or with a window the last
    ``window`` frames (float64, so long streams do not drift).
    """

    def __init__(self, window: Optional[int] = None):
        super().__init__()
        if window is not None and window < 1:
            raise ValueError(f"window must be at least 1 frame, got {window}")
        self.window = window

    def extra_repr(self) -> str:
        return f"window={self.window}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x, None)[0]

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        if x.shape[1] == 0:  # nothing new: the state stays
            return x, state or {}
        if self.window is not None:
            return self._sliding(x, state)
        total = x.double().cumsum(1)
        count = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=torch.float64)[:, None]
        if state:  # an empty state (a stream that began with an empty chunk) is no state
            total, count = total + state["sum"], count + state["count"]
        return (total / count).to(x.dtype), {"sum": total[:, -1:], "count": count[-1]}

    def _sliding(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        history = state["history"] if state else x.new_zeros(x.shape[0], 0, x.shape[2], dtype=torch.float64)
        frames = torch.cat([history, x.double()], dim=1)
        sums = torch.nn.functional.pad(frames.cumsum(1), (0, 0, 1, 0))  # sums[:, k]: the first k frames
        end = torch.arange(history.shape[1] + 1, frames.shape[1] + 1, device=x.device)
        start = (end - self.window).clamp(min=0)
        mean = (sums[:, end] - sums[:, start]) / (end - start).to(torch.float64)[:, None]
        return mean.to(x.dtype), {"history": frames[:, -self.window:]}
