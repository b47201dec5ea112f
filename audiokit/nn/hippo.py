"""HiPPO state matrices (Gu et al., "HiPPO: Recurrent memory with optimal polynomial projections", 2020).

A continuous-time system ``x'(t) = A x(t) + B u(t)`` with these ``A`` and ``B``
keeps in its state ``x`` (``N`` numbers) the coefficients of the projection of
the input history ``u`` onto ``N`` scaled Legendre polynomials:

* ``legs`` (scaled Legendre): the whole history, weighted uniformly.  The
  time-invariant form used by the Linear State-Space Layer::

      A[n, k] = -sqrt(2n + 1) sqrt(2k + 1)   if n > k
      A[n, n] = -(n + 1)
      A[n, k] = 0                            if n < k
      B[n]    = sqrt(2n + 1)

* ``legt`` (translated Legendre): a sliding window of length 1 time unit, in
  the orthonormal basis (the Legendre Memory Unit's matrices rescaled by
  ``sqrt(2n + 1)``)::

      A[n, k] = -sqrt(2n + 1) sqrt(2k + 1) (-1)^(n - k)   if n >= k
      A[n, k] = -sqrt(2n + 1) sqrt(2k + 1)                if n < k
      B[n]    = sqrt(2n + 1) (-1)^n

For both, a constant input ``u = 1`` has the fixed point ``x = e_0`` (``A e_0 = -B``).
"""
from __future__ import annotations

from typing import Tuple

import torch

MEASURES = ("legs", "legt")


def hippo_matrices(measure: str, state_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(A [N, N], B [N])`` of ``measure`` (``"legs"`` or ``"legt"``) for ``N = state_size``, float64."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    if state_size < 1:
        raise ValueError(f"state_size must be at least 1, got {state_size}")
    n = torch.arange(state_size, dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    outer = root[:, None] * root[None, :]
    row, col = n[:, None], n[None, :]
    if measure == "legs":
        return torch.where(row > col, -outer, torch.zeros_like(outer)) - torch.diag(n + 1), root
    parity = 1 - 2 * ((row - col) % 2)  # (-1)^(n - k)
    a = -outer * torch.where(row >= col, parity, torch.ones_like(outer))
    return a, root * (1 - 2 * (n % 2))
