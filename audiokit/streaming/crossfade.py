"""The one cross-fade of windowed streams (overlap-add enhancement, separation, frame outputs)."""
from __future__ import annotations

import torch


def crossfade(tail: torch.Tensor, head: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``tail`` fading out into ``head`` (same shape) over their whole length along ``dim`` (samples or
    frames): raised-cosine weights ``w_in[k] = sin^2(pi/2 (k + 0.5) / n)`` and ``1 - w_in``, which sum to 1,
    so two equal signals pass unchanged."""
    n = tail.shape[dim]
    fade_in = torch.sin(0.5 * torch.pi * (torch.arange(n, device=tail.device) + 0.5) / n) ** 2
    fade_in = fade_in.to(tail.dtype).reshape(n, *[1] * (tail.dim() - 1 - dim % tail.dim()))
    return tail + (head - tail) * fade_in
