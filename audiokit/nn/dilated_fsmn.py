"""FSMN whose memory is a dilated, densely connected depthwise conv net.

:class:`DilatedDenseNet` (``[B, C, T] -> [B, C, T]``) stacks ``depth``
layers; layer ``i`` reads the concatenation ``[out_{i-1}, ..., out_0, x]``
(``C * (i + 1)`` channels, ``C`` groups) with a ``2 * lorder - 1`` tap
filter dilated by ``2 ** i``, then a norm and a per-channel PReLU.

* Non-causal (the MossFormer2 layout): the filter is centred (symmetric zero
  padding) and the norm is ``InstanceNorm1d`` over the whole utterance.
* Causal: the same filter reads only the past (left padding of the whole
  span) and the norm is :class:`~audiokit.nn.norms.CumulativeInstanceNorm`;
  it runs step by step.

Parameter names and shapes follow the published implementation
(``conv{i}.weight [C, i+1, K, 1]``, ``norm{i}.weight/bias [C]``,
``prelu{i}.weight [C]``; :class:`DilatedFSMN` adds ``linear.*``,
``project.weight`` and ``conv.*``), so checkpoint sub-dicts load unchanged.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .inference import depthwise_conv, linear
from .norms import CumulativeInstanceNorm
from .state import ChildSteps, State, StreamingComposite, StreamingModule, call_offline, cat_history, require_causal


class DilatedDenseNet(StreamingModule):
    """Dense dilated depthwise conv stack, ``[B, C, T] -> [B, C, T]``.

    Args:
        channels: ``C``.
        lorder: half filter length; the filter has ``2 * lorder - 1`` taps.
        depth: number of layers (dilation ``2 ** i`` for layer ``i``).
        causal: look back only (steppable); see the module docstring.
    """

    def __init__(self, channels: int, lorder: int, depth: int = 2, causal: bool = False):
        super().__init__()
        self.channels, self.depth, self.causal = channels, depth, causal
        taps = 2 * lorder - 1
        #: frames of context layer ``i`` reads (all on the left when causal)
        self.spans = [(taps - 1) * 2 ** i for i in range(depth)]
        for i in range(depth):
            setattr(self, f"conv{i + 1}", nn.Conv2d(channels * (i + 1), channels, (taps, 1),
                                                   dilation=(2 ** i, 1), groups=channels, bias=False))
            norm = CumulativeInstanceNorm(channels) if causal else nn.InstanceNorm1d(channels, affine=True)
            setattr(self, f"norm{i + 1}", norm)
            setattr(self, f"prelu{i + 1}", nn.PReLU(channels))

    def _layers(self, x: torch.Tensor, pad: Callable[[int, torch.Tensor], torch.Tensor],
                norm: Callable[[str, nn.Module, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        skip = x
        for i in range(self.depth):
            # the grouped conv (group c reads channels c(i+1) .. c(i+1)+i) as a depthwise conv of every
            # input channel, summed per group: the same products, several times faster on CPU
            conv = getattr(self, f"conv{i + 1}")
            weight = conv.weight.reshape(-1, 1, conv.kernel_size[0])  # [C(i+1), 1, K], standard strides
            out = depthwise_conv(pad(i, skip), weight, dilation=2 ** i)
            out = _sum_groups(out, i + 1)
            out = norm(f"norm{i + 1}", getattr(self, f"norm{i + 1}"), out)
            out = getattr(self, f"prelu{i + 1}")(out)
            if i + 1 < self.depth:  # channel concatenation in the [B, T, C] memory layout
                skip = torch.cat([out.transpose(1, 2), skip.transpose(1, 2)], dim=-1).transpose(1, 2)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal:
            return self.step(x, None)[0]
        return self._layers(x, lambda i, s: _pad_frames(s, self.spans[i] // 2), call_offline)

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        require_causal(self, self.causal)
        state = state or {}
        steps = ChildSteps(state)

        def pad(i: int, s: torch.Tensor) -> torch.Tensor:
            full, steps.state[f"pad{i + 1}"] = cat_history(state.get(f"pad{i + 1}"), s, self.spans[i])
            return full

        return self._layers(x, pad, steps), steps.state


def _pad_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``frames`` zero frames on both sides of ``[B, C, T]``, in ``[B, T, C]`` memory (channels-last:
    a dilated depthwise conv is fast on that, slow when it pads channels-last input itself)."""
    return F.pad(x.transpose(1, 2), (0, 0, frames, frames)).transpose(1, 2)


def _sum_groups(x: torch.Tensor, size: int) -> torch.Tensor:
    """Sums of ``size`` adjacent channels, ``[B, C * size, T] -> [B, C, T]``, added in channel order."""
    total = x[:, 0::size]
    for j in range(1, size):
        total = total + x[:, j::size]
    return total


class DilatedFSMN(StreamingComposite):
    """FSMN with a :class:`DilatedDenseNet` memory, ``[B, T, D_in] -> [B, T, D_out]``::

        y = x + dense(project(relu(linear(x))))

    (MossFormer2's ``UniDeepFsmn_dilated``.)  Residual: ``input_dim == output_dim``.
    Steppable when ``causal``.
    """

    def __init__(self, input_dim: int, output_dim: int, hidden_size: int, lorder: int,
                 depth: int = 2, causal: bool = False):
        super().__init__()
        if input_dim != output_dim:
            raise ValueError("DilatedFSMN is residual: input_dim must equal output_dim")
        self.causal = causal
        self.linear = nn.Linear(input_dim, hidden_size)
        self.project = nn.Linear(hidden_size, output_dim, bias=False)
        self.conv = DilatedDenseNet(output_dim, lorder, depth, causal)

    def _run(self, x: torch.Tensor, call) -> torch.Tensor:
        p = linear(F.relu(linear(x, self.linear.weight, self.linear.bias)), self.project.weight).transpose(1, 2)
        return x + call("conv", self.conv, p).transpose(1, 2)
