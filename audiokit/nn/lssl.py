"""The Linear State-Space Layer (Gu et al., "Combining Recurrent, Convolutional, and Continuous-time
Models with Linear State-Space Layers", NeurIPS 2021).

Each of the ``H`` channels runs its own discretised continuous-time system over time::

    x'(t) = A x(t) + B u(t),   y(t) = C x(t) + D u(t)      (state x: N numbers)

with ``A``, ``B`` from a HiPPO measure (:mod:`audiokit.nn.hippo`), a learnt step size ``dt`` per
channel (time units per sample) and the bilinear discretisation::

    dA = (I - dt/2 A)^-1 (I + dt/2 A),   dB = (I - dt/2 A)^-1 dt B
    s[k] = dA s[k-1] + dB u[k],          y[k] = C s[k] + D u[k]

Training runs the recurrence as a causal convolution with the kernel ``K[l] = C dA^l dB`` (FFT);
streaming runs it chunk by chunk from an explicit state.  HiPPO-LegS's ``A`` is diagonalisable in
principle but its eigenvectors are far too ill-conditioned for that, so the kernel is built from
matrix powers in float64: ``dA^i dB`` for ``i`` below a block size ``b ~ sqrt(L)`` and
``C dA^(jb)`` for the blocks, each by repeated squaring; ``K[jb + i]`` is their product.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Tuple

import torch
from torch import nn

from .hippo import hippo_matrices
from .state import State, StreamingModule

#: effective step sizes (time units per sample) are clamped to this range: finite for any log_dt
DT_LIMITS = (1e-6, 10.0)
#: longest sub-chunk :meth:`LSSL.step` processes at once (longer chunks are split); a power of two
STEP_BLOCK = 256
#: chunk lengths whose dA^t :meth:`LSSL.step` keeps
KEPT_POWERS = 4


def discretize(a: torch.Tensor, b: torch.Tensor, dt: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bilinear discretisation of ``(A [N, N], B [N])`` with step sizes ``dt [H]``: ``dA [H, N, N]``, ``dB [H, N]``."""
    half = (dt / 2)[:, None, None]
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    rhs = torch.cat([eye + half * a, 2 * half * b[:, None]], dim=-1)  # [H, N, N + 1]
    solved = torch.linalg.solve(eye - half * a, rhs)
    return solved[..., :-1], solved[..., -1]


def krylov(matrix: torch.Tensor, vector: torch.Tensor, length: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Columns ``matrix^i vector`` for ``i < length``, by doubling: ``([..., N, length], matrix^m)``
    where ``m`` (>= ``length``) is the power of two the doubling reached.

    ``matrix`` ``[..., N, N]``, ``vector`` ``[..., N]``.
    """
    columns, power = vector.unsqueeze(-1), matrix
    while columns.shape[-1] < length:
        columns = torch.cat([columns, power @ columns], dim=-1)
        power = power @ power
    return columns[..., :length], power


def ssm_kernel(d_a: torch.Tensor, d_b: torch.Tensor, c: torch.Tensor, length: int) -> torch.Tensor:
    """Convolution kernel ``K[h, l] = C[h] dA[h]^l dB[h]`` for ``l < length``: ``[H, length]``.

    ``d_a`` ``[H, N, N]``, ``d_b`` and ``c`` ``[H, N]``.  Blocks of ``b`` (a power of two near
    ``sqrt(length)``) lags: ``K[jb + i] = (C dA^(jb)) (dA^i dB)``; about ``4 log2(length)`` batched
    ``N x N`` products and ``O(H N sqrt(length))`` memory besides the kernel itself.
    """
    block = 1 << math.ceil(math.log2(math.sqrt(length))) if length > 1 else 1
    within, block_power = krylov(d_a, d_b, block)  # dA^i dB, i < block; dA^block
    across, _ = krylov(block_power.mT, c, -(-length // block))  # (C dA^(jb))^T
    return (across.mT @ within).flatten(1)[:, :length]


def causal_convolve(u: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``y[b, t, h] = sum_{l <= t} kernel[h, l] u[b, t - l, h]`` by FFT: ``u [B, T, H]``, ``kernel [H, >= T]``."""
    length = u.shape[1]
    n = 1 << (2 * length - 1).bit_length()  # >= 2 T: no circular wrap-around
    spectrum = torch.fft.rfft(u.transpose(1, 2), n=n) * torch.fft.rfft(kernel[:, :length], n=n)
    return torch.fft.irfft(spectrum, n=n)[..., :length].transpose(1, 2)


class LSSL(StreamingModule):
    """Linear State-Space Layer, ``[B, T, H] -> [B, T, H]`` (no activation, no mixing of channels).

    Args:
        channels: ``H``, independent systems (one input and one output each).
        state_size: ``N``, the order of the HiPPO memory.
        measure: ``"legs"`` or ``"legt"`` (:func:`~audiokit.nn.hippo.hippo_matrices`).
        dt_min, dt_max: range of the initial step sizes (time units per sample), drawn
            log-uniformly per channel; the memory spans about ``1 / dt`` samples.
        trainable_A: learn ``A`` and ``B`` (shared by the channels) instead of keeping them fixed.

    Parameters: ``log_dt [H]``, ``C [H, N]``, ``D [H]`` (and ``A [N, N]``, ``B [N]`` when trained).
    ``forward`` recomputes the kernel on each call (gradients reach ``log_dt``, ``C``, ``A``);
    :meth:`step` streams with a state ``{"state": [B, H, N]}`` and equals ``forward`` to float rounding.
    :meth:`set_rate` runs the layer at another sample rate.
    """

    def __init__(self, channels: int, state_size: int = 64, measure: str = "legs", dt_min: float = 1e-3,
                 dt_max: float = 1e-1, trainable_A: bool = False):
        super().__init__()
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        a, b = hippo_matrices(measure, state_size)
        if trainable_A:
            self.A, self.B = nn.Parameter(a.float()), nn.Parameter(b.float())
        else:
            self.register_buffer("A", a.float())
            self.register_buffer("B", b.float())
        self.measure = measure
        self.C = nn.Parameter(torch.randn(channels, state_size))
        self.D = nn.Parameter(torch.randn(channels))
        log_min, log_max = math.log(dt_min), math.log(dt_max)
        self.log_dt = nn.Parameter(torch.rand(channels) * (log_max - log_min) + log_min)
        #: sample rate relative to the one the layer was trained at (see :meth:`set_rate`)
        self.rate = 1.0
        self._step_cache: dict = {}

    def extra_repr(self) -> str:
        return (f"channels={self.C.shape[0]}, state_size={self.C.shape[1]}, measure={self.measure!r}, "
                f"trainable_A={isinstance(self.A, nn.Parameter)}, rate={self.rate:g}")

    def set_rate(self, rate: float) -> None:
        """Run at ``rate`` times the training sample rate: ``dt`` is divided by ``rate`` (0.5: 16 kHz -> 8 kHz
        doubles ``dt``), so each sample stands for the same span of continuous time as in training."""
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = float(rate)

    def step_sizes(self) -> torch.Tensor:
        """The effective ``dt [H]`` (float64, time units per sample) at the current rate,
        clamped to :data:`DT_LIMITS`."""
        log_dt = self.log_dt.double() - math.log(self.rate)
        return torch.exp(log_dt.clamp(math.log(DT_LIMITS[0]), math.log(DT_LIMITS[1])))

    def discrete_system(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``dA [H, N, N]`` and ``dB [H, N]`` at the current rate, float64."""
        return discretize(self.A.double(), self.B.double(), self.step_sizes())

    def kernel(self, length: int) -> torch.Tensor:
        """The convolution kernel ``K [H, length]`` (float64)."""
        d_a, d_b = self.discrete_system()
        return ssm_kernel(d_a, d_b, self.C.double(), length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, H] -> y [B, T, H]``, starting from a zero state."""
        kernel = self.kernel(x.shape[1]).to(x.dtype)
        return causal_convolve(x, kernel) + x * self.D

    def _chunk_system(self) -> dict:
        """What :meth:`step` needs for chunks of up to :data:`STEP_BLOCK` samples, in the layer's dtype and laid
        out to multiply row vectors (states ``[H, B, N]``), the fast way round for small batches::

            kernel   [H, S]        K[l]                  (S = STEP_BLOCK)
            inputs   [H, S, N]     (dA^i dB)^T           (input i samples before a chunk's end -> state)
            readout  [H, N, S]     (C dA^(i+1))^T        (state before a chunk -> output i)
            squares  [K, H, N, N]  (dA^(2^k))^T, 2^k <= S
            powers   {t: (dA^t)^T}         (the last few chunk lengths, from the squares)
        """
        d_a, d_b = self.discrete_system()
        c = self.C.double()
        squares = [d_a]
        while len(squares) < STEP_BLOCK.bit_length():
            squares.append(squares[-1] @ squares[-1])
        inputs, _ = krylov(d_a, d_b, STEP_BLOCK)
        readout, _ = krylov(d_a.mT, (d_a.mT @ c[..., None])[..., 0], STEP_BLOCK)
        kernel = (c[:, None] @ inputs)[:, 0]
        dtype = self.C.dtype
        return {"kernel": kernel.to(dtype), "inputs": inputs.mT.contiguous().to(dtype), "readout": readout.to(dtype),
                "squares": torch.stack(squares).mT.contiguous().to(dtype), "powers": {}}

    @staticmethod
    def _power(system: dict, t: int) -> torch.Tensor:
        """``(dA^t)^T [H, N, N]`` for ``1 <= t <= STEP_BLOCK``: the product of the squares of ``t``'s binary digits,
        kept for the last :data:`KEPT_POWERS` lengths (a stream's chunks mostly have one length)."""
        powers = system["powers"]
        if t not in powers:
            digits = [system["squares"][k] for k in range(t.bit_length()) if t >> k & 1]
            if len(powers) >= KEPT_POWERS:
                powers.pop(next(iter(powers)))
            powers[t] = functools.reduce(torch.matmul, digits)
        return powers[t]

    def _cached_chunk_system(self) -> dict:
        """:meth:`_chunk_system`, kept while gradients are off and no parameter, buffer, device, dtype or the
        rate changes."""
        if torch.is_grad_enabled():
            return self._chunk_system()
        key = (self.rate, self.C.device, self.C.dtype,
               *((id(t), t._version) for t in (*self.parameters(), *self.buffers())))
        if self._step_cache.get("key") != key:
            self._step_cache = {"key": key, "system": self._chunk_system()}
        return self._step_cache["system"]

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """Stream ``x [B, t, H]`` (any ``t``) from ``state`` (``None``: zeros): ``(y [B, t, H], state)``.

        ``state["state"]`` is ``s [B, H, N]`` after the last sample.  A chunk of ``t`` samples costs
        about ``H (2N + N^2 / t)`` products per sample plus a length-``t`` FFT convolution; the
        chunk's matrices are built once (gradients off) and kept while the layer is unchanged.
        """
        system = self._cached_chunk_system()
        if state is None:
            s = x.new_zeros(self.C.shape[0], x.shape[0], self.C.shape[1])  # [H, B, N]
        else:
            s = state["state"].transpose(0, 1).contiguous()
        outputs = []
        for start in range(0, x.shape[1], STEP_BLOCK):
            u = x[:, start:start + STEP_BLOCK]
            t = u.shape[1]
            from_state = (s @ system["readout"][..., :t]).permute(1, 2, 0)  # [B, t, H]
            outputs.append(causal_convolve(u, system["kernel"]) + u * self.D + from_state)
            from_inputs = u.flip(1).permute(2, 0, 1).contiguous() @ system["inputs"][:, :t]  # [H, B, N]
            s = torch.baddbmm(from_inputs, s, self._power(system, t))  # dA^t s + inputs
        y = torch.cat(outputs, dim=1) if outputs else x
        return y, {"state": s.transpose(0, 1)}
