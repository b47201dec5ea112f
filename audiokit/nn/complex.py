"""Complex-valued layers on real tensors.

Layout: a complex feature map with ``C`` channels is one real tensor
``[B, 2C, F, T]`` (frequency ``F``, frames ``T``) holding the ``C`` real
channels first and the ``C`` imaginary channels after them.  Each layer keeps
the parameter names of the published complex U-Nets (``conv_re``/``conv_im``,
``bn_re``/``bn_im``, ``fsmn_re_L1``/``fsmn_im_L1``, ``fc_r``/``fc_i``) so their
checkpoints load unchanged, but a complex convolution runs as ONE real
convolution with the block weight ``[[Wr, -Wi], [Wi, Wr]]``.

Time is always the last axis.  Layers that look at past frames only (causal
configuration) implement :meth:`StreamingModule.step`.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .fsmn import FSMN
from .state import State, StreamingModule, cat_history


def split(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[B, 2C, ...] -> (real [B, C, ...], imag [B, C, ...])``."""
    return x.chunk(2, dim=1)


def complex_cat(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate complex maps along channels: reals of all parts, then imaginaries."""
    reals, imags = zip(*(split(p) for p in parts))
    return torch.cat(reals + imags, dim=1)


def complex_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise complex product of two maps in the ``[B, 2C, ...]`` layout."""
    ar, ai = split(a)
    br, bi = split(b)
    return torch.cat([ar * br - ai * bi, ar * bi + ai * br], dim=1)


def _block_weight(w_re: torch.Tensor, w_im: torch.Tensor, transposed: bool) -> torch.Tensor:
    """Real weight of a complex (transposed) convolution on the stacked layout."""
    if transposed:  # weight [in, out, ...]: rows are inputs
        return torch.cat([torch.cat([w_re, w_im], 1), torch.cat([-w_im, w_re], 1)], 0)
    return torch.cat([torch.cat([w_re, -w_im], 1), torch.cat([w_im, w_re], 1)], 0)


def _block_bias(b_re: Optional[torch.Tensor], b_im: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    if b_re is None:
        return None
    return torch.cat([b_re - b_im, b_re + b_im])


class ComplexConv2d(StreamingModule):
    """Complex 2-D convolution over (frequency, time), ``[B, 2Cin, F, T] -> [B, 2Cout, F', T']``.

    Args:
        in_channels, out_channels: complex channel counts.
        kernel_size: ``(kf, kt)``; stride ``(sf, st)`` with ``st == 1`` when streaming.
        freq_padding: zero padding on both ends of the frequency axis.
        time_padding: ``(left, right)`` zero frames; ``right == 0`` is causal.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(1, 1), stride=(1, 1),
                 freq_padding: int = 0, time_padding: Tuple[int, int] = (0, 0), bias: bool = True):
        super().__init__()
        kernel_size = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * 2
        stride = tuple(stride) if isinstance(stride, (tuple, list)) else (stride,) * 2
        self.conv_re = nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=bias)
        self.conv_im = nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=bias)
        self.freq_padding, self.time_padding = freq_padding, tuple(time_padding)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        weight = _block_weight(self.conv_re.weight, self.conv_im.weight, transposed=False)
        bias = _block_bias(self.conv_re.bias, self.conv_im.bias)
        return F.conv2d(x, weight, bias, self.conv_re.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fp = self.freq_padding
        return self._conv(F.pad(x, (*self.time_padding, fp, fp)))

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        if self.time_padding[1] or self.conv_re.stride[1] != 1:
            raise RuntimeError("only a causal, time-stride-1 ComplexConv2d can run step by step")
        context = self.conv_re.kernel_size[1] - 1
        full, history = cat_history(None if state is None else state["history"], x, context)
        fp = self.freq_padding
        return self._conv(F.pad(full, (0, 0, fp, fp))), {"history": history}


class ComplexConvTranspose2d(StreamingModule):
    """Complex transposed 2-D convolution, ``[B, 2Cin, F, T] -> [B, 2Cout, F', T']``.

    The full transposed-convolution output along time (``T + kt - 1`` frames
    for time stride 1) is cropped by ``time_crop = (left, right)`` frames.
    ``right == kt - 1, left == 0`` keeps output frame ``t`` a function of input
    frames ``<= t``: the causal configuration.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(1, 1), stride=(1, 1),
                 time_crop: Tuple[int, int] = (0, 0), bias: bool = True):
        super().__init__()
        self.tconv_re = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, bias=bias)
        self.tconv_im = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, bias=bias)
        self.time_crop = tuple(time_crop)

    def _tconv(self, x: torch.Tensor) -> torch.Tensor:
        weight = _block_weight(self.tconv_re.weight, self.tconv_im.weight, transposed=True)
        bias = _block_bias(self.tconv_re.bias, self.tconv_im.bias)
        return F.conv_transpose2d(x, weight, bias, self.tconv_re.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._tconv(x)
        left, right = self.time_crop
        return y[..., left:y.shape[-1] - right]

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        context = self.tconv_re.kernel_size[1] - 1
        if self.time_crop != (0, context) or self.tconv_re.stride[1] != 1:
            raise RuntimeError("only a causal, time-stride-1 ComplexConvTranspose2d can run step by step")
        full, history = cat_history(None if state is None else state["history"], x, context)
        y = self._tconv(full)
        return y[..., context:y.shape[-1] - context], {"history": history}


class ComplexBatchNorm2d(nn.Module):
    """Separate batch norms for the real and the imaginary channels, ``[B, 2C, F, T]``."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn_re = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
        self.bn_im = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            re, im = split(x)
            return torch.cat([self.bn_re(re), self.bn_im(im)], dim=1)
        params = [torch.cat([getattr(self.bn_re, n), getattr(self.bn_im, n)])
                  for n in ("running_mean", "running_var", "weight", "bias")]
        return F.batch_norm(x, *params, training=False, eps=self.bn_re.eps)


class ComplexFSMN(nn.Module):
    """Stack of complex FSMN layers along one axis of a ``[B, 2C, F, T]`` map.

    ``axis="freq"`` runs the memory along frequency for every frame (features:
    the ``C`` channels), ``axis="time"`` along frames with the ``C*F`` channel
    and frequency values as features.  Each complex layer ``k`` holds two real
    FSMNs ``fsmn_re_Lk`` and ``fsmn_im_Lk`` combined as a complex product.

    Args:
        dim: feature size (``C`` for freq, ``C*F`` for time).
        hidden: hidden width of each FSMN.
        lorder: look-back span in steps along ``axis`` (the memory is causal).
        num_layers: complex layers in the stack.
    """

    def __init__(self, dim: int, hidden: int, lorder: int = 20, num_layers: int = 1,
                 axis: str = "freq"):
        super().__init__()
        if axis not in ("freq", "time"):
            raise ValueError("axis must be 'freq' or 'time'")
        self.axis, self.num_layers = axis, num_layers
        for k in range(1, num_layers + 1):
            for part in ("re", "im"):
                fsmn = FSMN(dim, dim, hidden, lorder)
                fsmn.streams_time = axis == "time"
                self.add_module(f"fsmn_{part}_L{k}", fsmn)

    def _to_sequences(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 2C, F, T] -> [2 * B', S, D]``: reals stacked over imaginaries in the batch."""
        b, c2, f, t = x.shape
        x = x.view(b, 2, c2 // 2, f, t)
        if self.axis == "freq":
            return x.permute(1, 0, 4, 3, 2).reshape(2 * b * t, f, c2 // 2)
        return x.permute(1, 0, 4, 2, 3).reshape(2 * b, t, c2 // 2 * f)

    def _from_sequences(self, y: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        b, c2, f, t = shape
        if self.axis == "freq":
            y = y.view(2, b, t, f, c2 // 2).permute(1, 0, 4, 3, 2)
        else:
            y = y.view(2, b, t, c2 // 2, f).permute(1, 0, 3, 4, 2)
        return y.reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self._to_sequences(x)
        n = seq.shape[0] // 2
        for k in range(1, self.num_layers + 1):
            out_re = getattr(self, f"fsmn_re_L{k}")(seq)
            out_im = getattr(self, f"fsmn_im_L{k}")(seq)
            seq = torch.cat([out_re[:n] - out_im[n:], out_re[n:] + out_im[:n]])
        return self._from_sequences(seq, x.shape)


class ComplexSqueezeExcite(StreamingModule):
    """Complex squeeze-and-excitation gate on ``[B, 2C, F, T]``.

    The map is pooled over frequency and time (``causal=False``: the whole
    clip; ``causal=True``: a running mean over frames ``<= t``), squeezed by
    ``reduction``, and the real and imaginary channels are scaled by the real
    and imaginary parts of the complex gate.  Parameter names follow the
    published SE layer (``fc_r``, ``fc_i``).
    """

    def __init__(self, channels: int, reduction: int = 8, causal: bool = False):
        super().__init__()
        self.causal = causal

        def mlp():
            return nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                 nn.Linear(channels // reduction, channels), nn.Sigmoid())
        self.fc_r, self.fc_i = mlp(), mlp()

    def _excite(self, x: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        pooled = pooled.transpose(1, 2)  # [B, T', 2C]
        pr, pi = pooled.chunk(2, dim=-1)
        gate_re = self.fc_r(pr) - self.fc_i(pi)
        gate_im = self.fc_r(pi) + self.fc_i(pr)
        gate = torch.cat([gate_re, gate_im], dim=-1).transpose(1, 2)  # [B, 2C, T']
        return x * gate.unsqueeze(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        freq_mean = x.mean(dim=2)  # [B, 2C, T]
        if not self.causal:
            return self._excite(x, freq_mean.mean(dim=-1, keepdim=True))
        count = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
        return self._excite(x, freq_mean.cumsum(dim=-1) / count)

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        if not self.causal:
            raise RuntimeError("a non-causal squeeze-excite pools the whole clip: it cannot stream")
        freq_mean = x.mean(dim=2)
        total = freq_mean.new_zeros(freq_mean.shape[:2]) if state is None else state["sum"]
        frames = freq_mean.new_zeros(()) if state is None else state["frames"]
        sums = total.unsqueeze(-1) + freq_mean.cumsum(dim=-1)
        count = frames + torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
        return self._excite(x, sums / count), {"sum": sums[..., -1], "frames": count[-1]}
