"""Inference-only, one-frame-at-a-time versions of the complex layers.

Streaming a causal model one STFT frame at a time is dominated by per-call
overhead, not arithmetic, so these layers are built once from trained
(eval-mode) layers of :mod:`audiokit.nn.complex` with everything constant
folded: complex block weights, batch norm (into the preceding convolution),
the FSMN "+p" term (into the memory filter's current tap) and the complex
recombinations (into small sign matrices).  Every layer is then a handful of
matrix products.

Layout: one frame of a complex map with ``C`` channels is ``[B, F, 2C]``
(frequency rows; the ``C`` real channels then the ``C`` imaginary channels),
the transpose of one time step of the ``[B, 2C, F, T]`` layout.  Layers with
time context take and return their history explicitly (a tensor), so a
whole model's state is a flat list of tensors.  The copies are frozen: build
new ones after changing the weights.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .complex import (ComplexBatchNorm2d, ComplexConv2d, ComplexConvTranspose2d, ComplexFSMN,
                      ComplexSqueezeExcite, _block_bias, _block_weight)


def _bn_affine(bn: Optional[ComplexBatchNorm2d], channels: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode complex batch norm as ``y = x * scale + shift`` over ``2C`` channels."""
    if bn is None:
        return torch.ones(channels), torch.zeros(channels)
    return bn.affine()


def dims(x: torch.Tensor) -> Tuple[int, ...]:
    """``x.shape`` as plain ints, so that a traced frame step (one trace per batch size) holds
    its shapes as constants instead of recomputing them at every call."""
    return tuple(int(d) for d in x.shape)


def complex_combine(channels: int) -> torch.Tensor:
    """``[4C, 2C]`` map from the four products ``(re*r, re*i, im*r, im*i)`` to ``(re*r - im*i, im*r + re*i)``."""
    eye = torch.eye(channels)
    zero = torch.zeros(channels, channels)
    return torch.cat([torch.cat([eye, zero], 1), torch.cat([zero, eye], 1),
                      torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)


def channel_order(parts: Sequence[int]) -> List[int]:
    """Channel index in a :func:`complex_cat` of maps with ``parts`` complex channels, for
    each channel of the plain concatenation ``[a_re, a_im, b_re, b_im, ...]``."""
    total = sum(parts)
    order, start = [], 0
    for c in parts:
        order += list(range(start, start + c)) + list(range(total + start, total + start + c))
        start += c
    return order


class _FrameTimeConv(nn.Module):
    """Shared tail of the frame convolutions: optional leaky ReLU, input history of ``context`` frames."""

    context: int = 0
    in_channels: int = 0
    leaky: bool = False

    def _with_history(self, x: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return torch.cat([history, x], -1) if self.context > 0 else x

    def _finish(self, y: torch.Tensor, full: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.leaky:
            y = F.leaky_relu_(y)
        return y, full[..., dims(full)[-1] - self.context * self.in_channels:]

    def initial_state(self, batch: int, freq: int) -> torch.Tensor:
        return self.weight.new_zeros(batch, freq, self.context * self.in_channels)


def _fused_affine(conv_re: nn.Module, conv_im: nn.Module, bn: Optional[ComplexBatchNorm2d],
                  transposed: bool, input_order: Optional[List[int]]):
    """Block weight (inputs reordered by ``input_order``), bias and batch-norm ``(scale, shift)``
    of a complex (transposed) convolution pair."""
    w = _block_weight(conv_re.weight, conv_im.weight, transposed=transposed)
    bias = _block_bias(conv_re.bias, conv_im.bias)
    scale, shift = _bn_affine(bn, w.shape[1] if transposed else w.shape[0])
    if input_order is not None:
        w = w[input_order] if transposed else w[:, input_order]
    return w, bias, scale, shift


class FrameConv(_FrameTimeConv):
    """One output frame of a causal :class:`ComplexConv2d` (+ optional batch norm, leaky ReLU).

    ``forward(x [B, F, 2Cin], history [B, F, (kt-1)*2Cin]) -> (y [B, F', 2Cout], new history)``.
    """

    def __init__(self, conv: ComplexConv2d, bn: Optional[ComplexBatchNorm2d] = None,
                 leaky: bool = False, input_order: Optional[List[int]] = None):
        super().__init__()
        if conv.time_padding[1] or conv.conv_re.stride[1] != 1:
            raise RuntimeError("only a causal, time-stride-1 ComplexConv2d runs frame by frame")
        with torch.no_grad():
            w, bias, scale, shift = _fused_affine(conv.conv_re, conv.conv_im, bn, False, input_order)
            w = w * scale[:, None, None, None]
            kt = w.shape[-1]
            # rows ordered (time tap, input channel, frequency tap): the unfolded input layout
            self.register_buffer("weight", w.permute(3, 1, 2, 0).reshape(-1, w.shape[0]).contiguous())
            self.register_buffer("bias", shift if bias is None else bias * scale + shift)
        self.kf, self.sf = conv.conv_re.kernel_size[0], conv.conv_re.stride[0]
        self.freq_padding, self.context, self.leaky = conv.freq_padding, kt - 1, leaky
        self.in_channels = w.shape[1]

    def forward(self, x: torch.Tensor, history: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        full = self._with_history(x, history)
        padded = F.pad(full, (0, 0, self.freq_padding, self.freq_padding)) if self.freq_padding > 0 else full
        b = dims(full)[0]
        cols = padded.unfold(1, self.kf, self.sf)  # [B, F', taps*Cin, kf]
        fo = dims(cols)[1]
        y = torch.addmm(self.bias, cols.reshape(b * fo, -1), self.weight).view(b, fo, -1)
        return self._finish(y, full)


class FrameTransposedConv(_FrameTimeConv):
    """One output frame of a causal :class:`ComplexConvTranspose2d` (+ batch norm, leaky ReLU).

    ``forward(x [B, F, 2Cin], history [B, F, (kt-1)*2Cin]) -> (y [B, F', 2Cout], new history)``.
    """

    def __init__(self, tconv: ComplexConvTranspose2d, bn: Optional[ComplexBatchNorm2d] = None,
                 leaky: bool = False, input_order: Optional[List[int]] = None):
        super().__init__()
        kt = tconv.tconv_re.kernel_size[1]
        if tconv.time_crop != (0, kt - 1) or tconv.tconv_re.stride[1] != 1:
            raise RuntimeError("only a causal, time-stride-1 ComplexConvTranspose2d runs frame by frame")
        with torch.no_grad():
            w, bias, scale, shift = _fused_affine(tconv.tconv_re, tconv.tconv_im, bn, True, input_order)
            w = (w * scale[None, :, None, None]).flip(-1)  # history (oldest) first
            # rows (time tap, input channel); columns (output channel, frequency tap) as F.fold reads them
            self.register_buffer("weight", w.permute(3, 0, 1, 2).reshape(kt * w.shape[0], -1).contiguous())
            self.register_buffer("bias", (shift if bias is None else bias * scale + shift).view(1, -1, 1))
        self.kf, self.sf = tconv.tconv_re.kernel_size[0], tconv.tconv_re.stride[0]
        self.context, self.leaky, self.in_channels = kt - 1, leaky, w.shape[0]

    def forward(self, x: torch.Tensor, history: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        full = self._with_history(x, history)
        b, fi = dims(full)[:2]
        cols = torch.mm(full.reshape(b * fi, -1), self.weight).view(b, fi, -1).transpose(1, 2)  # [B, Cout*kf, F_in]
        fo = (fi - 1) * self.sf + self.kf
        y = F.fold(cols, (1, fo), (1, self.kf), stride=(1, self.sf)).view(b, -1, fo)
        y = (y + self.bias).transpose(1, 2)
        return self._finish(y, full)


class FrameFSMN(nn.Module):
    """A :class:`ComplexFSMN` on one frame.

    ``axis="freq"``: the memory runs along frequency inside the frame, no
    state (``history`` arguments are ignored).  ``axis="time"``: one step per
    frame, ``history [B, span - 1, 4D]`` per layer.
    ``forward(x [B, F, 2C], histories) -> (y [B, F, 2C], new histories)``.
    """

    def __init__(self, fsmn: ComplexFSMN):
        super().__init__()
        self.axis, self.num_layers = fsmn.axis, fsmn.num_layers
        lin_w, lin_b, proj, taps = [], [], [], []
        with torch.no_grad():
            for k in range(1, fsmn.num_layers + 1):
                fr, fi = getattr(fsmn, f"fsmn_re_L{k}"), getattr(fsmn, f"fsmn_im_L{k}")
                lin_w.append(torch.cat([fr.linear.weight, fi.linear.weight]).t().contiguous())
                lin_b.append(torch.cat([fr.linear.bias, fi.linear.bias]))
                proj.append(torch.block_diag(*[m.project.weight.t() for m in (fr, fi, fr, fi)]))
                tap = torch.cat([m.conv1.weight[:, 0, :, 0] for m in (fr, fi, fr, fi)])  # [4D, K]
                tap[:, -1] += 1  # the residual "+p"
                taps.append(tap.t().contiguous())  # [K, 4D]
            dim = fr.linear.in_features
            self.dilation = fr.dilation
            self.span = (fr.lorder - 1) * fr.dilation + 1
            self.register_buffer("lin_w", torch.stack(lin_w))
            self.register_buffer("lin_b", torch.stack(lin_b))
            self.register_buffer("proj", torch.stack(proj))
            self.register_buffer("taps", torch.stack(taps))
            self.register_buffer("combine", complex_combine(dim))
            eye = torch.eye(dim)  # the residual inputs: (re - im, re + im)
            self.register_buffer("mix", torch.cat([torch.cat([eye, eye], 1), torch.cat([-eye, eye], 1)]))

    def _dense(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``x [N, 2D] -> p [N, 4D]``: the four real-FSMN projections of the two parts."""
        n = dims(x)[0]
        h = F.relu_(torch.addmm(self.lin_b[k], x.reshape(2 * n, -1), self.lin_w[k]))
        return torch.mm(h.view(n, -1), self.proj[k])

    def _mix(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Complex recombination ``[N, 2D], [N, 4D] -> [N, 2D]``."""
        return torch.addmm(torch.mm(x, self.mix), memory, self.combine)

    def forward(self, x: torch.Tensor, histories: List[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        b, f, c2 = dims(x)
        if self.axis == "freq":
            rows = x.reshape(b * f, c2)
            for k in range(self.num_layers):
                p = F.pad(self._dense(rows, k).view(b, f, -1), (0, 0, self.span - 1, 0))
                window = p.unfold(1, self.span, 1)[..., ::self.dilation].transpose(2, 3)  # [B, F, K, 4D]
                rows = self._mix(rows, (window * self.taps[k]).sum(2).view(b * f, -1))
            return rows.view(b, f, c2), histories
        seq = x.view(b, f, 2, c2 // 2).permute(0, 2, 3, 1).reshape(b, c2 * f)
        new: List[torch.Tensor] = []
        for k in range(self.num_layers):
            full = torch.cat([histories[k], self._dense(seq, k).unsqueeze(1)], 1)  # [B, span, 4D]
            seq = self._mix(seq, (full[:, ::self.dilation] * self.taps[k]).sum(1))
            new.append(full[:, 1:])
        return seq.view(b, 2, c2 // 2, f).permute(0, 3, 1, 2).reshape(b, f, c2), new

    def initial_state(self, batch: int, freq: int) -> List[torch.Tensor]:
        if self.axis == "freq":
            return []
        dim = self.combine.shape[0]
        return [self.taps.new_zeros(batch, self.span - 1, dim) for _ in range(self.num_layers)]


class FrameSqueezeExcite(nn.Module):
    """A causal :class:`ComplexSqueezeExcite` on one frame.

    ``forward(x [B, F, 2C], total [B, 2C], inv_frames) -> (gated x, new total)``:
    ``total`` is the running sum over frequency and past frames,
    ``inv_frames`` (0-d) one over the number of frames so far, this one included.
    """

    def __init__(self, se: ComplexSqueezeExcite):
        super().__init__()
        if not se.causal:
            raise RuntimeError("a non-causal squeeze-excite pools the whole clip: it cannot stream")
        r1, r2, i1, i2 = se.fc_r[0], se.fc_r[2], se.fc_i[0], se.fc_i[2]
        with torch.no_grad():
            self.register_buffer("w1", torch.cat([r1.weight, i1.weight]).t().contiguous())
            self.register_buffer("b1", torch.cat([r1.bias, i1.bias]))
            self.register_buffer("w2", torch.block_diag(r2.weight.t(), i2.weight.t()))
            self.register_buffer("b2", torch.cat([r2.bias, i2.bias]))
            self.register_buffer("combine", complex_combine(r1.in_features))

    def forward(self, x: torch.Tensor, total: torch.Tensor, inv_frames: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, f, c2 = dims(x)
        total = total + x.sum(1)
        mean = total.view(2 * b, c2 // 2) * (inv_frames / f)
        h = F.relu_(torch.addmm(self.b1, mean, self.w1))
        gates = torch.sigmoid_(torch.addmm(self.b2, h, self.w2)).view(b, 2 * c2)
        return x * torch.matmul(gates, self.combine).unsqueeze(1), total

    def initial_state(self, batch: int) -> torch.Tensor:
        return self.b2.new_zeros(batch, self.combine.shape[1])
