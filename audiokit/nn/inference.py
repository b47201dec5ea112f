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
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def overwritable(t: torch.Tensor) -> bool:
    """True when no autograd graph records ``t`` (inference), so that it may be overwritten in place."""
    return not t.requires_grad


_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (_ONEDNN and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() >= 2
            and x.dtype == weight.dtype == torch.float32 and not torch.jit.is_tracing()
            and not torch.jit.is_scripting() and not torch.onnx.is_in_onnx_export()
            and not torch.compiler.is_compiling())


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
