"""FSMN memory blocks (feedforward sequential memory networks).

The FSMN memory block maps a sequence ``x`` of shape ``[B, T, D]`` to::

    p = project(relu(linear(x)))                 # [B, T, D]
    y = x + p + depthwise_conv_T(p)              # memory over look-back/ahead

The depthwise filter spans ``lorder`` frames of the past (the current frame
included) and ``rorder`` frames of the future, optionally dilated.  With
``rorder == 0`` the block is causal and :meth:`FSMN.step` runs it chunk by
chunk.  The filter weight keeps the ``[D, 1, K, 1]`` layout of the published
FSMN implementations so their checkpoints load unchanged.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .state import State, StreamingModule, cat_history


class FSMN(StreamingModule):
    """FSMN memory block, ``[B, T, D] -> [B, T, D]``.

    Args:
        input_dim, output_dim: feature sizes (equal: the block is residual).
        hidden_size: width of the ReLU layer.
        lorder: filter taps over the past, the current frame included (>= 1).
        rorder: taps over the future (0 = causal, steppable).
        dilation: spacing of the taps in frames.
    """

    def __init__(self, input_dim: int, output_dim: int, hidden_size: int, lorder: int,
                 rorder: int = 0, dilation: int = 1):
        super().__init__()
        if input_dim != output_dim:
            raise ValueError("FSMN is residual: input_dim must equal output_dim")
        self.lorder, self.rorder, self.dilation = lorder, rorder, dilation
        self.linear = nn.Linear(input_dim, hidden_size)
        self.project = nn.Linear(hidden_size, output_dim, bias=False)
        self.conv1 = nn.Conv2d(output_dim, output_dim, (lorder + rorder, 1),
                               groups=output_dim, bias=False)

    @property
    def causal(self) -> bool:
        return self.rorder == 0

    @property
    def left_context(self) -> int:
        """Frames of history the memory filter reads."""
        return (self.lorder - 1) * self.dilation

    def _memory(self, p_padded: torch.Tensor) -> torch.Tensor:
        """Depthwise filter over time: ``[B, D, T + context] -> [B, D, T]``."""
        return F.conv1d(p_padded, self.conv1.weight.squeeze(-1), dilation=self.dilation,
                        groups=self.conv1.groups)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(F.relu(self.linear(x))).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._project(x)
        padded = F.pad(p, (self.left_context, self.rorder * self.dilation))
        return x + (p + self._memory(padded)).transpose(1, 2)

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        if not self.causal:
            raise RuntimeError("an FSMN with look-ahead (rorder > 0) cannot run step by step")
        p = self._project(x)
        full, history = cat_history(None if state is None else state["history"], p,
                                    self.left_context)
        return x + (p + self._memory(full)).transpose(1, 2), {"history": history}
