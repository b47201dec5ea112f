"""Gated units: a position-wise gated linear unit, and the gated conv units and gated dilated FSMN block of MossFormer2.

All blocks map ``[B, T, D]`` sequences.  :class:`GatedLinearUnit` works on each frame alone.
The others take ``causal``: when True every
time filter reads only the past (left zero padding) and the block runs step
by step (:meth:`step`, or the :func:`~audiokit.nn.state.streaming` context);
when False the layout is MossFormer2's (centred filters) and ``step`` raises.
Norms here work per frame, so they are causal in both layouts.  Attribute
names reproduce the published state-dict keys (``sequential.1.conv.weight``,
``mdl.0.*``, ``mdl.1.*``, ``mdl.3.*``, ``conv1.0.*``, ``norm1.*``,
``gated_fsmn.to_u.*``, ...).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .dilated_fsmn import DilatedFSMN
from .fsmn import FSMN
from .inference import depthwise_conv, linear, linear_silu, overwritable, pointwise
from .norms import ScaleNorm
from .state import State, StreamingComposite, StreamingModule, call_offline, cat_history, require_causal

NORMS = {"layernorm": nn.LayerNorm, "scalenorm": ScaleNorm}


class GatedLinearUnit(nn.Module):
    """Position-wise gated linear unit (Dauphin et al. 2017), ``[B, T, D_in] -> [B, T, D_out]``::

        y = (W_v x + b_v) * sigmoid(W_g x + b_g)

    Both maps are one ``Linear(D_in, 2 D_out)`` (values, then gates).  Each frame on its own,
    so it is causal and needs no state for streaming.
    """

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.linear = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(linear(x, self.linear.weight, self.linear.bias), dim=-1)


class Transpose(nn.Module):
    """Swaps time and channels: ``[B, T, C] <-> [B, C, T]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class DepthwiseConv1d(StreamingModule):
    """Depthwise conv over time without bias, ``[B, C, T] -> [B, C, T]``.

    ``kernel_size`` must be odd.  Non-causal: centred ("same") padding.
    Causal: ``kernel_size - 1`` frames of left padding; steppable.
    Offline, an input that is a transposed ``[B, T, C]`` tensor (as in
    :class:`ConvModule`) is convolved in that channels-last layout, without a
    copy, and so is the output (several times faster on CPU).
    """

    def __init__(self, channels: int, kernel_size: int, causal: bool = False):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.causal = causal
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=False)

    @property
    def left_context(self) -> int:
        """Frames before ``t`` that output frame ``t`` reads (the rest of ``kernel_size - 1`` come after)."""
        context = self.conv.kernel_size[0] - 1
        return context if self.causal else context // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.conv.kernel_size[0] - 1
        return self.convolve(x, self.left_context, context - self.left_context)

    def convolve(self, x: torch.Tensor, left: int, right: int) -> torch.Tensor:
        """The filter over ``x`` ``[B, C, T']`` with ``left`` and ``right`` zero frames around it:
        ``[B, C, T' + left + right - kernel_size + 1]``."""
        # symmetric padding (the frames of the larger side that are not wanted are dropped)
        padding = max(left, right)
        out = depthwise_conv(x, self.conv.weight, padding)
        return out[..., padding - left:out.shape[-1] - (padding - right)]

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        require_causal(self, self.causal)
        full, history = cat_history(None if state is None else state["history"], x,
                                    self.conv.kernel_size[0] - 1)
        return self.conv(full), {"history": history}


class ConvModule(StreamingComposite):
    """Residual depthwise conv over time, ``[B, T, D] -> [B, T, D]``:
    ``y = x + dwconv(x)`` (MossFormer2's ConvModule, kernel 17)."""

    def __init__(self, channels: int, kernel_size: int = 17, causal: bool = False):
        super().__init__()
        self.causal = causal
        self.sequential = nn.Sequential(Transpose(), DepthwiseConv1d(channels, kernel_size, causal))

    def _run(self, x: torch.Tensor, call) -> torch.Tensor:
        to_channels_first, conv = self.sequential
        return call("conv", conv, to_channels_first(x)).transpose(1, 2).add_(x)  # in place: no new [B, T, D]

    def add_to_(self, x: torch.Tensor, block: int = 256) -> torch.Tensor:
        """Offline ``x + dwconv(x)`` written over ``x`` ``[B, T, D]``, ``block`` frames at a time.

        Block ``k``'s filter output is added once block ``k + 1``'s filter has read the frames
        before it, so at most two block outputs exist at once (no second ``[B, T, D]`` tensor).
        """
        conv = self.sequential[1]
        left = conv.left_context
        right = conv.conv.kernel_size[0] - 1 - left
        if block < max(left, right):
            raise ValueError(f"block must cover the filter's context ({max(left, right)} frames), got {block}")
        length, pending = x.shape[1], []
        for start in range(0, length, block):
            end = min(length, start + block)
            first, last = max(0, start - left), min(length, end + right)
            out = conv.convolve(x[:, first:last].transpose(1, 2), left - (start - first), right - (last - end))
            pending.append((start, end, out.transpose(1, 2)))
            if len(pending) == 2:
                done_start, done_end, done = pending.pop(0)
                x[:, done_start:done_end] += done
        for done_start, done_end, done in pending:
            x[:, done_start:done_end] += done
        return x


class FFConvM(StreamingComposite):
    """Norm, Linear, SiLU, :class:`ConvModule`, Dropout: ``[B, T, D_in] -> [B, T, D_out]``.

    Args:
        norm: ``"layernorm"`` (``mdl.0.weight/bias``) or ``"scalenorm"`` (``mdl.0.g``).
        overwrite_input: the ScaleNorm normalises the input itself when inferring (for callers
            that hand over a tensor they no longer need).
    """

    def __init__(self, dim_in: int, dim_out: int, norm: str = "layernorm", kernel_size: int = 17,
                 dropout: float = 0.1, causal: bool = False, overwrite_input: bool = False):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
        if overwrite_input and norm != "scalenorm":
            raise ValueError("overwrite_input needs norm='scalenorm'")
        self.causal = causal
        first = ScaleNorm(dim_in, inplace=True) if overwrite_input else NORMS[norm](dim_in)
        self.mdl = nn.Sequential(first, nn.Linear(dim_in, dim_out), nn.SiLU(),
                                 ConvModule(dim_out, kernel_size, causal), nn.Dropout(dropout))

    def _run(self, x: torch.Tensor, call) -> torch.Tensor:
        norm, dense, _, conv, dropout = self.mdl  # linear and SiLU in one op when inferring
        h = linear_silu(norm(x), dense.weight, dense.bias)
        if call is call_offline and overwritable(h):  # h is this block's own: the conv sums into it
            return dropout(conv.add_to_(h))
        return dropout(call("conv", conv, h))


class GatedDilatedFSMN(StreamingComposite):
    """Gated FSMN, ``[B, T, D] -> [B, T, D]``: ``y = to_v(x) * fsmn(to_u(x)) + x``
    with two :class:`FFConvM` (LayerNorm) gates and a :class:`DilatedFSMN`.

    As in MossFormer2, ``in_channels == out_channels == hidden_size``.
    ``dilated=False`` uses a plain :class:`~audiokit.nn.fsmn.FSMN` memory with
    the same ``2 * lorder - 1`` taps instead (MossFormer2 48 kHz enhancement).
    """

    def __init__(self, in_channels: int, out_channels: int, lorder: int, hidden_size: int,
                 causal: bool = False, dilated: bool = True):
        super().__init__()
        self.causal = causal
        self.to_u = FFConvM(in_channels, hidden_size, "layernorm", causal=causal)
        self.to_v = FFConvM(in_channels, hidden_size, "layernorm", causal=causal)
        if dilated:
            self.fsmn = DilatedFSMN(in_channels, out_channels, hidden_size, lorder, causal=causal)
        else:
            past, future = (2 * lorder - 1, 0) if causal else (lorder, lorder - 1)
            self.fsmn = FSMN(in_channels, out_channels, hidden_size, past, future)

    def _run(self, x: torch.Tensor, call) -> torch.Tensor:
        u = call("fsmn", self.fsmn, call("to_u", self.to_u, x))
        return call("to_v", self.to_v, x) * u + x


class GatedFSMNBlock(StreamingComposite):
    """MossFormer2's gated dilated FSMN block, ``[B, T, dim] -> [B, T, dim]``::

        h = norm1(prelu(conv1(x)))      # 1x1 conv to inner_channels, LayerNorm over channels
        y = x + conv2(norm2(gated_fsmn(h)))

    The 1x1 convs (``Conv1d`` parameters, as published) run as linear layers on the frames.

    ``dilated`` selects the gated FSMN's memory (see :class:`GatedDilatedFSMN`).
    """

    def __init__(self, dim: int, inner_channels: int = 256, lorder: int = 20, causal: bool = False,
                 dilated: bool = True):
        super().__init__()
        self.causal = causal
        self.conv1 = nn.Sequential(nn.Conv1d(dim, inner_channels, 1), nn.PReLU())
        self.norm1 = nn.LayerNorm(inner_channels)
        self.gated_fsmn = GatedDilatedFSMN(inner_channels, inner_channels, lorder, inner_channels,
                                           causal, dilated)
        self.norm2 = nn.LayerNorm(inner_channels)
        self.conv2 = nn.Conv1d(inner_channels, dim, 1)

    def _run(self, x: torch.Tensor, call) -> torch.Tensor:
        conv1, prelu = self.conv1
        h = self.norm1(prelu(pointwise(conv1, x)))
        h = call("gated_fsmn", self.gated_fsmn, h)
        return x + pointwise(self.conv2, self.norm2(h))
