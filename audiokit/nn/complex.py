"""Complex-valued layers on real tensors.

Layout: a complex feature map with ``C`` channels is one real tensor
``[B, 2C, F, T]`` (frequency ``F``, frames ``T``) holding the ``C`` real
channels first and the ``C`` imaginary channels after them.  Each layer keeps
the parameter names of the published complex U-Nets (``conv_re``/``conv_im``,
``bn_re``/``bn_im``, ``fsmn_re_L1``/``fsmn_im_L1``, ``fc_r``/``fc_i``) so their
checkpoints load unchanged.  A complex (transposed) convolution runs as ONE
set of three real convolutions with Gauss's three-product trick
(:func:`gauss_weights`) instead of four.

Time is always the last axis.  Layers that look at past frames only (causal
configuration) implement :meth:`StreamingModule.step`.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

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
    """Real weight of a complex (transposed) convolution on the stacked layout (frame layers)."""
    if transposed:  # weight [in, out, ...]: rows are inputs
        return torch.cat([torch.cat([w_re, w_im], 1), torch.cat([-w_im, w_re], 1)], 0)
    return torch.cat([torch.cat([w_re, -w_im], 1), torch.cat([w_im, w_re], 1)], 0)


def _block_bias(b_re: Optional[torch.Tensor], b_im: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    if b_re is None:
        return None
    return torch.cat([b_re - b_im, b_re + b_im])


def gauss_weights(w_re: torch.Tensor, w_im: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights ``(Wr, Wi - Wr, Wr + Wi)`` of Gauss's three-product complex convolution.

    Applied to the inputs ``(xr + xi, xr, xi)`` (:func:`gauss_inputs`) they
    give ``k1, k2, k3`` with ``real = k1 - k3`` and ``imag = k1 + k2``
    (:func:`gauss_combine`): three real products instead of four.
    """
    return w_re, w_im - w_re, w_re + w_im


def gauss_inputs(parts: Union[torch.Tensor, Sequence[torch.Tensor]]) -> Tuple[torch.Tensor, ...]:
    """``(xr + xi, xr, xi)``, each ``[B, C, ...]`` contiguous, of a map or of the :func:`complex_cat` of maps."""
    parts = [parts] if isinstance(parts, torch.Tensor) else list(parts)
    halves = [split(p) for p in parts]
    if len(parts) == 1:
        re, im = halves[0]
    else:
        re, im = torch.cat([h[0] for h in halves], dim=1), torch.cat([h[1] for h in halves], dim=1)
    return re + im, re.contiguous(), im.contiguous()


def gauss_combine(k1: torch.Tensor, k2: torch.Tensor, k3: torch.Tensor) -> torch.Tensor:
    """Gauss products (each ``[B, C, ...]``) -> complex map ``[B, 2C, ...]`` (a fresh tensor)."""
    if torch.is_grad_enabled() and k1.requires_grad:
        return torch.cat([k1 - k3, k1 + k2], dim=1)
    c = k1.shape[1]
    y = k1.new_empty(k1.shape[0], 2 * c, *k1.shape[2:])
    torch.sub(k1, k3, out=y[:, :c])
    torch.add(k1, k2, out=y[:, c:])
    return y


def channel_affine(y: torch.Tensor, scale: Optional[torch.Tensor], shift: Optional[torch.Tensor]) -> torch.Tensor:
    """``y * scale + shift`` per channel (dim 1); in place on ``y`` when autograd is not recording."""
    extra = (1,) * (y.dim() - 2)
    scale = None if scale is None else scale.view(-1, *extra)
    shift = None if shift is None else shift.view(-1, *extra)
    if torch.is_grad_enabled() and y.requires_grad:
        y = y if scale is None else y * scale
        return y if shift is None else y + shift
    if scale is not None and shift is not None:
        return torch.addcmul(shift, y, scale, out=y)
    if scale is not None:
        return y.mul_(scale)
    return y if shift is None else y.add_(shift)


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

    def complex_bias(self) -> Optional[torch.Tensor]:
        """``[2Cout]`` bias of the complex output (real then imaginary channels)."""
        return _block_bias(self.conv_re.bias, self.conv_im.bias)

    def _unbiased(self, x: torch.Tensor, time_padding: Tuple[int, int]) -> torch.Tensor:
        left, right = time_padding
        inputs = gauss_inputs(x)
        if left != right:
            inputs, left = [F.pad(i, (left, right)) for i in inputs], 0
        padding = (self.freq_padding, left)
        return gauss_combine(*(F.conv2d(i, w, None, self.conv_re.stride, padding)
                               for i, w in zip(inputs, gauss_weights(self.conv_re.weight, self.conv_im.weight))))

    def unbiased(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution without its bias, a fresh tensor (callers may modify it in place)."""
        return self._unbiased(x, self.time_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_affine(self.unbiased(x), None, self.complex_bias())

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        if self.time_padding[1] or self.conv_re.stride[1] != 1:
            raise RuntimeError("only a causal, time-stride-1 ComplexConv2d can run step by step")
        context = self.conv_re.kernel_size[1] - 1
        full, history = cat_history(None if state is None else state["history"], x, context)
        return channel_affine(self._unbiased(full, (0, 0)), None, self.complex_bias()), {"history": history}


class ComplexConvTranspose2d(StreamingModule):
    """Complex transposed 2-D convolution, ``[B, 2Cin, F, T] -> [B, 2Cout, F', T']``.

    The full transposed-convolution output along time (``T + kt - 1`` frames
    for time stride 1) is cropped by ``time_crop = (left, right)`` frames.
    ``right == kt - 1, left == 0`` keeps output frame ``t`` a function of input
    frames ``<= t``: the causal configuration.  The input may also be a list
    of maps, taken as their :func:`complex_cat` (without building it).

    With at most :attr:`FOLD_MAX_OUT` output channels the products run as
    matrix products folded with ``F.fold`` (the convolution libraries are slow
    on very few output channels).
    """

    FOLD_MAX_OUT = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(1, 1), stride=(1, 1),
                 time_crop: Tuple[int, int] = (0, 0), bias: bool = True):
        super().__init__()
        self.tconv_re = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, bias=bias)
        self.tconv_im = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, bias=bias)
        self.time_crop = tuple(time_crop)

    def complex_bias(self) -> Optional[torch.Tensor]:
        """``[2Cout]`` bias of the complex output (real then imaginary channels)."""
        return _block_bias(self.tconv_re.bias, self.tconv_im.bias)

    def _folded(self, inputs, weights) -> torch.Tensor:
        b, ci, fi, t = inputs[0].shape
        kf, kt = self.tconv_re.kernel_size
        cols = [torch.matmul(w.reshape(ci, -1).t(), i.reshape(b, ci, fi * t)) for i, w in zip(inputs, weights)]
        cols = gauss_combine(*cols)  # [B, 2Cout*kf*kt, F*T]: the combination commutes with the fold
        out_size = ((fi - 1) * self.tconv_re.stride[0] + kf, (t - 1) * self.tconv_re.stride[1] + kt)
        return F.fold(cols, out_size, (kf, kt), stride=self.tconv_re.stride)

    def _unbiased(self, x, crop: Tuple[int, int]) -> torch.Tensor:
        inputs = gauss_inputs(x)
        weights = gauss_weights(self.tconv_re.weight, self.tconv_im.weight)
        if self.tconv_re.out_channels <= self.FOLD_MAX_OUT:
            y = self._folded(inputs, weights)
            return y[..., crop[0]:y.shape[-1] - crop[1]]
        products = [F.conv_transpose2d(i, w, None, self.tconv_re.stride) for i, w in zip(inputs, weights)]
        return gauss_combine(*(k[..., crop[0]:k.shape[-1] - crop[1]] for k in products))  # contiguous

    def unbiased(self, x) -> torch.Tensor:
        """The transposed convolution without its bias, a fresh tensor (callers may modify it in place)."""
        return self._unbiased(x, self.time_crop)

    def forward(self, x) -> torch.Tensor:
        return channel_affine(self.unbiased(x), None, self.complex_bias())

    def step(self, x, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        context = self.tconv_re.kernel_size[1] - 1
        if self.time_crop != (0, context) or self.tconv_re.stride[1] != 1:
            raise RuntimeError("only a causal, time-stride-1 ComplexConvTranspose2d can run step by step")
        x = x if isinstance(x, torch.Tensor) else complex_cat(x)
        full, history = cat_history(None if state is None else state["history"], x, context)
        y = channel_affine(self._unbiased(full, (context, context)), None, self.complex_bias())
        return y, {"history": history}


class ComplexBatchNorm2d(nn.Module):
    """Separate batch norms for the real and the imaginary channels, ``[B, 2C, F, T]``."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn_re = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
        self.bn_im = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)

    def affine(self, bias: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode norm of ``x + bias`` as ``x * scale + shift``: ``(scale, shift)``, ``[2C]`` each."""
        stats = {n: torch.cat([getattr(self.bn_re, n), getattr(self.bn_im, n)])
                 for n in ("running_mean", "running_var", "weight", "bias")}
        scale = stats["weight"] / torch.sqrt(stats["running_var"] + self.bn_re.eps)
        mean = stats["running_mean"] if bias is None else stats["running_mean"] - bias
        return scale, stats["bias"] - mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            re, im = split(x)
            return torch.cat([self.bn_re(re), self.bn_im(im)], dim=1)
        params = [torch.cat([getattr(self.bn_re, n), getattr(self.bn_im, n)])
                  for n in ("running_mean", "running_var", "weight", "bias")]
        return F.batch_norm(x, *params, training=False, eps=self.bn_re.eps)


_FSMN_BLOCK_COLUMNS = 1024  # positions per block of the frequency FSMN's matrix products


def _memory_accumulate(out: torch.Tensor, p: torch.Tensor, taps: torch.Tensor, block: int = 16) -> None:
    """``out [B, 2, C, F, T] += `` the complex FSMN memories of ``p [B, part, fsmn, C, F, T]`` (no autograd).

    ``taps [2 (re, im FSMN), C, K]`` filter along ``F`` (oldest tap first).
    Output part 0 (real) gets ``m_re(p[:, 0, 0]) - m_im(p[:, 1, 1])``, part 1
    (imaginary) ``m_re(p[:, 1, 0]) + m_im(p[:, 0, 1])``.  Run as shifted
    multiply-adds on blocks of ``block`` channels so each block stays in cache.
    """
    f, k = out.shape[-2], taps.shape[-1]
    w = taps.flip(-1)[..., None, None]  # [2, C, K, 1, 1]: lag 0 first
    for c0 in range(0, out.shape[2], block):
        cs = slice(c0, c0 + block)
        o, src = out[:, :, cs], p[:, :, :, cs]
        w_re, w_im = w[0, cs], w[1, cs]
        for lag in range(min(k, f)):
            rows = f - lag
            o[:, :, :, lag:].addcmul_(src[:, :, 0, :, :rows], w_re[:, lag])
            o[:, 0, :, lag:].addcmul_(src[:, 1, 1, :, :rows], w_im[:, lag], value=-1)
            o[:, 1, :, lag:].addcmul_(src[:, 0, 1, :, :rows], w_im[:, lag])


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
        if self.axis == "freq":
            for k in range(1, self.num_layers + 1):
                x = self._freq_layer(x, getattr(self, f"fsmn_re_L{k}"), getattr(self, f"fsmn_im_L{k}"))
            return x
        seq = self._to_sequences(x)
        n = seq.shape[0] // 2
        for k in range(1, self.num_layers + 1):
            out_re = getattr(self, f"fsmn_re_L{k}")(seq)
            out_im = getattr(self, f"fsmn_im_L{k}")(seq)
            seq = torch.cat([out_re[:n] - out_im[n:], out_re[n:] + out_im[:n]])
        return self._from_sequences(seq, x.shape)

    @staticmethod
    def _freq_layer(x: torch.Tensor, fsmn_re: FSMN, fsmn_im: FSMN) -> torch.Tensor:
        """One complex layer along frequency, computed in the ``[B, 2C, F, T]`` layout (no permutes).

        With ``p_re``, ``p_im`` the two FSMNs' projections and ``m`` their
        memory filters with the "+p" folded into the current tap::

            real = xr - xi + m_re(p_re(xr)) - m_im(p_im(xi))
            imag = xr + xi + m_re(p_re(xi)) + m_im(p_im(xr))

        Both FSMNs' first layers run as one matrix product, both projections
        as one batched product.
        """
        b, c2, f, t = x.shape
        c = c2 // 2
        w1 = torch.cat([fsmn_re.linear.weight, fsmn_im.linear.weight])  # [2H, C]
        b1 = torch.cat([fsmn_re.linear.bias, fsmn_im.linear.bias]).view(-1, 1)
        proj = torch.stack([fsmn_re.project.weight, fsmn_im.project.weight])  # [2, C, H]
        seqs = x.reshape(2 * b, c, f * t)
        if torch.is_grad_enabled() and (x.requires_grad or w1.requires_grad):
            h = F.relu(torch.matmul(w1, seqs) + b1)
            p = torch.matmul(proj, h.view(b, 2, 2, -1, f * t)).view(b, 2, 2, c, f, t)  # [B, part, fsmn, C, F, T]
        else:  # plain matrix products on column blocks, so that the hidden layer stays in cache
            p = x.new_empty(b, 2, 2, c, f, t)
            flat, hidden = p.view(2 * b, 2, c, f * t), w1.shape[0] // 2
            for i in range(2 * b):
                for start in range(0, f * t, _FSMN_BLOCK_COLUMNS):
                    cols = slice(start, start + _FSMN_BLOCK_COLUMNS)
                    h = torch.mm(w1, seqs[i, :, cols]).add_(b1).relu_()
                    for j in range(2):
                        flat[i, j, :, cols] = torch.mm(proj[j], h[j * hidden:(j + 1) * hidden])
        taps = torch.stack([m.conv1.weight[:, 0, :, 0] for m in (fsmn_re, fsmn_im)])  # [2, C, K], oldest first
        taps = taps + F.one_hot(torch.tensor(taps.shape[-1] - 1), taps.shape[-1]).to(taps)  # the "+p"
        xv = x.view(b, 2, c, f, t)
        if torch.is_grad_enabled() and (p.requires_grad or x.requires_grad):
            q = F.conv2d(F.pad(p.reshape(2 * b, c2, f, t), (0, 0, taps.shape[-1] - 1, 0)),
                         taps.reshape(c2, 1, -1, 1), groups=c2).view(b, 2, 2, c, f, t)
            # unbind, not indexing: its backward stacks the gradients once instead of zero-filling
            # a whole-size gradient for every selected part (a quarter of a training step's time)
            xr, xi = xv.unbind(1)
            q_rr, q_ri, q_ir, q_ii = q.view(b, 4, c, f, t).unbind(1)
            real = xr - xi + q_rr - q_ii
            imag = xr + xi + q_ir + q_ri
            return torch.cat([real, imag], dim=1)
        out = x.new_empty(b, 2, c, f, t)
        torch.sub(xv[:, 0], xv[:, 1], out=out[:, 0])
        torch.add(xv[:, 0], xv[:, 1], out=out[:, 1])
        _memory_accumulate(out, p, taps)
        return out.view(b, c2, f, t)


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
