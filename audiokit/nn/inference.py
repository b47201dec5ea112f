"""Inference fast paths: overwriting intermediates, linear maps through oneDNN on the CPU.

:func:`overwritable` says when an op may write into its input (no autograd
graph records it).

``F.linear`` on a CPU multiplies with MKL's sgemm.  oneDNN's matmul (the
``mkldnn::_linear_pointwise`` kernel that ``torch.compile`` emits for CPU
linear layers) gives the same products 10-15 % faster on the AVX-512 CPUs we
run on (measured for the MossFormer2 sizes, 1 thread); its sums are ordered
differently, so results differ from ``F.linear`` by float rounding only.

:func:`linear` and :func:`linear_silu` take that path only where nothing needs it differentiable
or traceable: gradients off, float32 CPU tensors, not tracing, exporting or
compiling.  Everywhere else it is ``F.linear``.

:func:`depthwise_conv` is the other way round: its inference form (a height-1 2-D convolution,
fast on channels-last input) has a backward pass 3-5x slower than a contiguous ``conv1d``
(dilated: 5x slower than the polyphase form below), so training takes the latter.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def overwritable(t: torch.Tensor) -> bool:
    """True when no autograd graph records ``t`` (inference), so that it may be overwritten in place."""
    return not t.requires_grad


_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _exporting() -> bool:
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_compiling())


def _onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (_ONEDNN and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() >= 2
            and x.dtype == weight.dtype == torch.float32 and not _exporting())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x @ weight.T + bias``: ``[..., I]``, ``[O, I]``, ``[O]`` -> ``[..., O]`` (see the module docstring)."""
    if _onednn_applies(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [None], "")
    return F.linear(x, weight, bias)


def linear_silu(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``silu(linear(x, weight, bias))``, one fused oneDNN op when :func:`linear` would use oneDNN."""
    if _onednn_applies(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "swish", [None], "")
    return F.silu(F.linear(x, weight, bias))


def pointwise(conv: torch.nn.Conv1d, frames: torch.Tensor) -> torch.Tensor:
    """A 1x1 ``conv`` (published ``Conv1d`` parameters) applied to frames: ``[..., C_in] -> [..., C_out]``
    through :func:`linear`."""
    return linear(frames, conv.weight.squeeze(-1), conv.bias)


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, padding: int = 0, dilation: int = 1) -> torch.Tensor:
    """Depthwise convolution over time, ``[B, C, T]`` with ``weight [C, 1, K]`` and ``padding`` zero
    frames on both sides -> ``[B, C, T + 2 * padding - dilation * (K - 1)]``.

    Without gradients (or when traced/exported) a height-1 2-D convolution, which keeps a
    ``[B, T, C]``-memory input channels-last; with gradients a contiguous ``conv1d``, dilated ones
    as ``dilation`` interleaved undilated convolutions (see the module docstring).
    """
    if not torch.is_grad_enabled() or _exporting():
        return F.conv2d(x.unsqueeze(2), weight.unsqueeze(2), None, 1, (0, padding), (1, dilation),
                        weight.shape[0]).squeeze(2)
    x = F.pad(x.contiguous(), (padding, padding))
    if dilation == 1:
        return F.conv1d(x, weight, groups=weight.shape[0])
    b, c, t = x.shape
    out_len = t - dilation * (weight.shape[-1] - 1)
    phase_len = -(-t // dilation)
    phases = F.pad(x, (0, phase_len * dilation - t)).view(b, c, phase_len, dilation)
    phases = phases.permute(0, 3, 1, 2).reshape(b * dilation, c, phase_len)
    out = F.conv1d(phases, weight, groups=c)  # [B * D, C, T / D - K + 1]
    return out.view(b, dilation, c, -1).permute(0, 2, 3, 1).reshape(b, c, -1)[..., :out_len]
