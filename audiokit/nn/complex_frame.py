"""Inference-only, one-frame-at-a-time versions of the complex layers.

Streaming a causal model one STFT frame at a time is dominated by per-call
overhead, not arithmetic, so these layers are built once from trained
(eval-mode) layers of :mod:`audiokit.nn.complex` with everything constant
folded: complex block weights, batch norm (into the preceding convolution),
the FSMN "+p" term (into the memory filter's current tap) and the complex
recombinations (into small sign matrices).  Every layer is then a handful of
1-D convolutions along frequency and matrix products, few operators in all
(what an ONNX Runtime or TorchScript frame step pays for).

Layout: one frame of a complex map with ``C`` channels is ``[B, 2C, F]``
(the ``C`` real channels then the ``C`` imaginary channels; frequency last),
one time step of the ``[B, 2C, F, T]`` layout.  Layers with
time context take and return their history explicitly (a tensor), so a
whole model's state is a flat list of tensors.  The copies are frozen: build
new ones after changing the weights.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .complex import (
    ComplexBatchNorm2d,
    ComplexConv2d,
    ComplexConvTranspose2d,
    ComplexFSMN,
    ComplexSqueezeExcite,
    _block_bias,
    _block_weight,
)


def _bn_affine(bn: Optional[ComplexBatchNorm2d], channels: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode complex batch norm as ``y = x * scale + shift`` over ``2C`` channels."""
    if bn is None:
        return torch.ones(channels), torch.zeros(channels)
    return bn.affine()


def dims(x: torch.Tensor) -> Tuple[int, ...]:
    """``x.shape`` as plain ints, so that a traced frame step (one trace per batch size) holds
    its shapes as constants instead of recomputing them at every call."""
    return tuple(int(d) for d in x.shape)


def conv_freq(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride: int = 1,
              padding: int = 0, dilation: int = 1, groups: int = 1) -> torch.Tensor:
    """``F.conv1d`` along frequency, ``[B, C, F] -> [B, C', F']``, run as a 2-D convolution of height 1
    (``weight [C', C / groups, 1, K]``): ONNX Runtime's 2-D convolutions (blocked NCHWc kernels) are
    about twice as fast as its 1-D ones at these sizes."""
    return F.conv2d(x.unsqueeze(2), weight, bias, (1, stride), (0, padding), (1, dilation), groups).squeeze(2)


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
    """Shared part of the frame convolutions: input history of ``context`` frames, then one
    1-D convolution along frequency of the ``[B, taps * Cin, F]`` input (zero padded by
    ``padding`` bins on both sides, ``stride``), optional leaky ReLU.

    Each output position holds ``phases`` output bins (a transposed convolution's polyphase
    outputs, output channels ordered (phase, channel)); the first ``out_bins(F)`` are kept.
    """

    context: int = 0
    in_channels: int = 0
    leaky: bool = False
    padding: int = 0
    stride: int = 1
    phases: int = 1

    def out_bins(self, freq: int) -> int:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, history: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        full = torch.cat([history, x], 1) if self.context > 0 else x
        b, c, f = dims(full)
        y = conv_freq(full, self.weight, self.bias, self.stride, self.padding)
        if self.leaky:  # elementwise: before the polyphase interleave, where it fuses with the convolution
            y = F.leaky_relu(y)
        positions = dims(y)[-1]
        if self.phases > 1:
            y = y.view(b, self.phases, -1, positions).permute(0, 2, 3, 1).reshape(b, -1, positions * self.phases)
        if positions * self.phases != self.out_bins(f):
            y = y[..., :self.out_bins(f)]
        if self.context <= 1:  # the new history is this frame (or nothing)
            return y, x if self.context else history
        return y, full[:, c - self.context * self.in_channels:]

    def initial_state(self, batch: int, freq: int) -> torch.Tensor:
        return self.weight.new_zeros(batch, self.context * self.in_channels, freq)


def _fused_affine(conv_re: nn.Module, conv_im: nn.Module, bn: Optional[ComplexBatchNorm2d],
                  transposed: bool, input_order: Optional[List[int]]):
    """Block weight (inputs reordered by ``input_order``) with the batch norm folded in, and
    the bias, of a complex (transposed) convolution pair."""
    w = _block_weight(conv_re.weight, conv_im.weight, transposed=transposed)
    bias = _block_bias(conv_re.bias, conv_im.bias)
    scale, shift = _bn_affine(bn, w.shape[1] if transposed else w.shape[0])
    if input_order is not None:
        w = w[input_order] if transposed else w[:, input_order]
    w = w * (scale[None, :, None, None] if transposed else scale[:, None, None, None])
    return w, shift if bias is None else bias * scale + shift


class FrameConv(_FrameTimeConv):
    """One output frame of a causal :class:`ComplexConv2d` (+ optional batch norm, leaky ReLU).

    ``forward(x [B, 2Cin, F], history [B, (kt-1)*2Cin, F]) -> (y [B, 2Cout, F'], new history)``.
    """

    def __init__(self, conv: ComplexConv2d, bn: Optional[ComplexBatchNorm2d] = None,
                 leaky: bool = False, input_order: Optional[List[int]] = None):
        super().__init__()
        if conv.time_padding[1] or conv.conv_re.stride[1] != 1:
            raise RuntimeError("only a causal, time-stride-1 ComplexConv2d runs frame by frame")
        with torch.no_grad():
            w, bias = _fused_affine(conv.conv_re, conv.conv_im, bn, False, input_order)
            kt = w.shape[-1]
            # input channels (time tap, channel), oldest tap first
            self.register_buffer("weight", w.permute(0, 3, 1, 2).reshape(w.shape[0], -1, 1, w.shape[2]).contiguous())
            self.register_buffer("bias", bias)
        self.window, self.stride = conv.conv_re.kernel_size[0], conv.conv_re.stride[0]
        self.padding, self.context, self.leaky = conv.freq_padding, kt - 1, leaky
        self.in_channels = w.shape[1]

    def out_bins(self, freq: int) -> int:
        return (freq + 2 * self.padding - self.window) // self.stride + 1


class FrameTransposedConv(_FrameTimeConv):
    """One output frame of a causal :class:`ComplexConvTranspose2d` (+ batch norm, leaky ReLU).

    Polyphase form: output bin ``m * s + r`` (stride ``s``) sums input bins
    ``m - q`` through kernel tap ``r + s * q``, so a plain convolution with kernel
    ``P = ceil(kf / s)`` and ``s`` times the output channels gives ``s`` output bins per position.
    ``forward(x [B, 2Cin, F], history [B, (kt-1)*2Cin, F]) -> (y [B, 2Cout, F'], new history)``.
    """

    def __init__(self, tconv: ComplexConvTranspose2d, bn: Optional[ComplexBatchNorm2d] = None,
                 leaky: bool = False, input_order: Optional[List[int]] = None):
        super().__init__()
        kt = tconv.tconv_re.kernel_size[1]
        if tconv.time_crop != (0, kt - 1) or tconv.tconv_re.stride[1] != 1:
            raise RuntimeError("only a causal, time-stride-1 ComplexConvTranspose2d runs frame by frame")
        kf, s = tconv.tconv_re.kernel_size[0], tconv.tconv_re.stride[0]
        taps = -(-kf // s)
        with torch.no_grad():
            w, bias = _fused_affine(tconv.tconv_re, tconv.tconv_im, bn, True, input_order)
            w = w.flip(-1)  # time taps: history (oldest) first
            w = torch.cat([w, w.new_zeros(*w.shape[:2], taps * s - kf, kt)], 2)  # kernel padded to taps * s
            # window position t (lowest bin first) uses kernel taps r + s * (taps - 1 - t), r = 0..s-1
            poly = w.view(*w.shape[:2], taps, s, kt).flip(2)  # [Cin, Cout, t, r, kt]
            # output channels (r, out channel); input channels (time tap, channel); kernel t
            self.register_buffer("weight", poly.permute(3, 1, 4, 0, 2).reshape(s * w.shape[1], kt * w.shape[0], 1, taps)
                                 .contiguous())
            self.register_buffer("bias", bias.repeat(s))
        self.kernel, self.phases, self.padding = kf, s, taps - 1
        self.context, self.leaky, self.in_channels = kt - 1, leaky, w.shape[0]

    def out_bins(self, freq: int) -> int:
        return (freq - 1) * self.phases + self.kernel


class FrameFSMN(nn.Module):
    """A :class:`ComplexFSMN` on one frame.

    ``axis="freq"``: the memory runs along frequency inside the frame, no
    state (``history`` arguments are ignored): per layer a 1x1 convolution
    (+ReLU), the projection, the memory as a depthwise convolution and the
    complex recombination as one more 1x1 convolution.  ``axis="time"``: one
    step per frame, ``history [B, span - 1, 4D]`` per layer.
    ``forward(x [B, 2C, F], histories) -> (y [B, 2C, F], new histories)``.
    """

    def __init__(self, fsmn: ComplexFSMN):
        super().__init__()
        self.axis, self.num_layers = fsmn.axis, fsmn.num_layers
        lin_w, lin_b, proj, taps = [], [], [], []
        with torch.no_grad():
            for k in range(1, fsmn.num_layers + 1):
                fr, fi = getattr(fsmn, f"fsmn_re_L{k}"), getattr(fsmn, f"fsmn_im_L{k}")
                # both parts at once: (re, im) -> (re through fr and fi, im through fr and fi)
                both = torch.cat([fr.linear.weight, fi.linear.weight]).t()
                lin_w.append(torch.block_diag(both, both))  # [2D, 4H]
                lin_b.append(torch.cat([fr.linear.bias, fi.linear.bias]).repeat(2))
                proj.append(torch.block_diag(*[m.project.weight.t() for m in (fr, fi, fr, fi)]))  # [4H, 4D]
                tap = torch.cat([m.conv1.weight[:, 0, :, 0] for m in (fr, fi, fr, fi)])  # [4D, K]
                tap[:, -1] += 1  # the residual "+p"
                taps.append(tap)
            dim = fr.linear.in_features
            self.dilation = fr.dilation
            self.span = (fr.lorder - 1) * fr.dilation + 1
            eye = torch.eye(dim)  # the residual inputs: (re - im, re + im)
            mix = torch.cat([torch.cat([eye, eye], 1), torch.cat([-eye, eye], 1)])
            combine = complex_combine(dim)
            if self.axis == "time":
                self.register_buffer("lin_w", torch.stack(lin_w))
                self.register_buffer("lin_b", torch.stack(lin_b))
                self.register_buffer("proj", torch.stack(proj))
                self.register_buffer("taps", torch.stack(taps).transpose(1, 2).contiguous())  # [L, K, 4D]
                self.register_buffer("combine", combine)
                self.register_buffer("mix", mix)
            else:  # as 1-D convolutions along frequency
                self.register_buffer("lin_w", torch.stack(lin_w).transpose(1, 2)[..., None, None].contiguous())
                self.register_buffer("lin_b", torch.stack(lin_b))
                self.register_buffer("proj", torch.stack(proj).transpose(1, 2)[..., None, None].contiguous())
                self.register_buffer("taps", torch.stack(taps)[:, :, None, None])  # [L, 4D, 1, 1, K]
                # [2D, 6D, 1, 1]
                self.register_buffer("out_w", torch.cat([mix, combine]).t()[..., None, None].contiguous())
            self.memory_dim = combine.shape[0]

    def _dense(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``x [N, 2D] -> p [N, 4D]``: the four real-FSMN projections of the two parts."""
        return torch.mm(F.relu_(torch.addmm(self.lin_b[k], x, self.lin_w[k])), self.proj[k])

    def forward(self, x: torch.Tensor, histories: List[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        if self.axis == "freq":
            for k in range(self.num_layers):
                p = conv_freq(F.relu(conv_freq(x, self.lin_w[k], self.lin_b[k])), self.proj[k])  # [B, 4D, F]
                memory = conv_freq(F.pad(p, (self.span - 1, 0)), self.taps[k], dilation=self.dilation,
                                  groups=self.memory_dim)
                x = conv_freq(torch.cat([x, memory], 1), self.out_w)
            return x, histories
        b, c2, f = dims(x)
        seq = x.reshape(b, c2 * f)  # (part, channel, bin): the time FSMN's features
        new: List[torch.Tensor] = []
        for k in range(self.num_layers):
            full = torch.cat([histories[k], self._dense(seq, k).unsqueeze(1)], 1)  # [B, span, 4D]
            taps = full[:, ::self.dilation] if self.dilation > 1 else full
            seq = torch.addmm(torch.mm(seq, self.mix), (taps * self.taps[k]).sum(1), self.combine)
            new.append(full[:, 1:])
        return seq.view(b, c2, f), new

    def initial_state(self, batch: int, freq: int) -> List[torch.Tensor]:
        if self.axis == "freq":
            return []
        return [self.taps.new_zeros(batch, self.span - 1, self.memory_dim) for _ in range(self.num_layers)]


class FrameSqueezeExcite(nn.Module):
    """A causal :class:`ComplexSqueezeExcite` on one frame of ``freq_bins`` bins.

    ``forward(x [B, 2C, F], total [B, 2C], inv_frames) -> (gated x, new total)``:
    ``total`` is the running sum over frequency and past frames,
    ``inv_frames`` (0-d) one over the number of frames so far, this one included.
    """

    def __init__(self, se: ComplexSqueezeExcite, freq_bins: int):
        super().__init__()
        if not se.causal:
            raise RuntimeError("a non-causal squeeze-excite pools the whole clip: it cannot stream")
        r1, r2, i1, i2 = se.fc_r[0], se.fc_r[2], se.fc_i[0], se.fc_i[2]
        with torch.no_grad():  # both parts at once, as in FrameFSMN; the mean's 1 / F folded in
            both = torch.cat([r1.weight, i1.weight]).t() / freq_bins
            self.register_buffer("w1", torch.block_diag(both, both))
            self.register_buffer("b1", torch.cat([r1.bias, i1.bias]).repeat(2))
            self.register_buffer("w2", torch.block_diag(r2.weight.t(), i2.weight.t(), r2.weight.t(), i2.weight.t()))
            self.register_buffer("b2", torch.cat([r2.bias, i2.bias]).repeat(2))
            self.register_buffer("combine", complex_combine(r1.in_features))

    def forward(self, x: torch.Tensor, total: torch.Tensor,
                inv_frames: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        total = total + x.sum(-1)
        h = F.relu_(torch.addmm(self.b1, total * inv_frames, self.w1))
        gates = torch.sigmoid_(torch.addmm(self.b2, h, self.w2))
        return x * torch.mm(gates, self.combine).unsqueeze(-1), total

    def initial_state(self, batch: int) -> torch.Tensor:
        return self.b2.new_zeros(batch, self.combine.shape[1])
