"""MossFormer2 building blocks: gated single-head attention with rotary positions.

The MossFormer block (Zhao et al., "MossFormer2", 2023; after Hua et al.'s
FLASH) mixes a sequence ``[B, T, D]`` with one shared query/key projection:

* token shift: the first half of the features is delayed by one frame;
* ``to_hidden`` (:class:`~audiokit.nn.gated.FFConvM`, ScaleNorm) gives the
  values ``v`` and gates ``u`` (``D * expansion / 2`` each), ``to_qk`` one
  ``query_key_dim`` vector per frame that :class:`OffsetScale` turns into a
  quadratic and a linear query and key;
* quadratic attention ``relu(q k^T / g)^2`` inside groups of ``g`` frames
  plus linear attention ``q (k^T v) / T`` across the whole sequence, both on
  ``v`` and on ``u``, with rotary positions on queries and keys;
* ``out = (att_u * v) * sigmoid(att_v * u)``; ``y = x + to_out(out)``.

:class:`MossFormerLayers` interleaves these blocks with the gated FSMN
blocks of :mod:`audiokit.nn.gated`.  Attribute names reproduce the published
state-dict keys (``layers.N.to_qk.*``, ``layers.N.rotary_pos_emb.freqs``,
``fsmn.N.*``).  With ``causal=True`` the attention of a frame reads only the
frames up to it: the quadratic part within its group, the linear part over
the groups before; it then runs step by step (:meth:`MossFormerAttention.step`).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.gated import FFConvM, GatedFSMNBlock
from ..nn.inference import linear, overwritable
from ..nn.state import ChildSteps, State, StreamingModule, call_offline, cat_history, require_causal


class RotaryEmbedding(nn.Module):
    """Rotary position embedding on the first ``dim`` features, ``[..., T, D] -> [..., T, D]``.

    Features ``2i`` and ``2i + 1`` form a pair rotated by ``pos * freqs[i]``
    (the interleaved layout of rotary-embedding-torch); features past ``dim``
    pass unchanged.  ``freqs`` (``[dim / 2]``) is a saved buffer, as in the
    published checkpoints.
    """

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"rotary dim must be even, got {dim}")
        self.register_buffer("freqs", 1.0 / theta ** (torch.arange(0, dim, 2).float() / dim))

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Rotate ``x`` whose frame ``t`` (axis -2) sits at position ``offset + t``."""
        pos = torch.arange(x.shape[-2], device=x.device, dtype=self.freqs.dtype) + offset
        angles = (pos[:, None] * self.freqs).repeat_interleave(2, dim=-1)
        rot = angles.shape[-1]
        head, tail = x[..., :rot], x[..., rot:]
        even, odd = head.unflatten(-1, (-1, 2)).unbind(-1)
        turned = torch.stack((-odd, even), dim=-1).flatten(-2)
        rotated = head * angles.cos() + turned * angles.sin()
        return torch.cat((rotated, tail), dim=-1).to(x.dtype)


class ScaledSinusoidalEmbedding(nn.Module):
    """Absolute positions ``[T, D]``: ``scale * [sin(t * inv_freq), cos(t * inv_freq)]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, dim, 2).float() / dim))

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        t = torch.arange(length, device=self.inv_freq.device, dtype=self.inv_freq.dtype) + offset
        angles = t[:, None] * self.inv_freq
        return torch.cat((angles.sin(), angles.cos()), dim=-1) * self.scale


class OffsetScale(nn.Module):
    """``[..., D] -> [..., heads, D]``: head ``h`` is ``x * gamma[h] + beta[h]``."""

    def __init__(self, dim: int, heads: int = 1):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(heads, dim))
        self.beta = nn.Parameter(torch.zeros(heads, dim))
        nn.init.normal_(self.gamma, std=0.02)

    def forward(self, x: torch.Tensor):
        return x.unsqueeze(-2) * self.gamma + self.beta


class MossFormerAttention(StreamingModule):
    """Gated single-head attention block (FLASH_ShareA_FFConvM), ``[B, T, D] -> [B, T, D]``.

    Args:
        dim: ``D``.
        group_size: frames per quadratic-attention group (published: 256).
        query_key_dim: width of queries and keys (published: 128).
        expansion_factor: ``to_hidden`` width over ``D`` (published: 4).
        rotary: shared :class:`RotaryEmbedding` (published: 32 of the 128 dims).
        causal: frame ``t`` attends to frames ``<= t`` only: within its group
            quadratically, to earlier groups linearly; steppable.
        dropout: on the attention weights and the FFConvM outputs (training only).
    """

    def __init__(self, dim: int, group_size: int = 256, query_key_dim: int = 128,
                 expansion_factor: float = 4.0, rotary: Optional[RotaryEmbedding] = None,
                 causal: bool = False, dropout: float = 0.1, shift_tokens: bool = True):
        super().__init__()
        hidden = int(dim * expansion_factor)
        self.group_size, self.causal, self.shift_tokens = group_size, causal, shift_tokens
        self.rotary_pos_emb = rotary
        self.dropout = nn.Dropout(dropout)
        self.to_hidden = FFConvM(dim, hidden, "scalenorm", dropout=dropout, causal=causal)
        self.to_qk = FFConvM(dim, query_key_dim, "scalenorm", dropout=dropout, causal=causal)
        self.qk_offset_scale = OffsetScale(query_key_dim, heads=4)
        self.to_out = FFConvM(hidden // 2, dim, "scalenorm", dropout=dropout, causal=causal,
                              overwrite_input=True)  # the gated attention output, used once

    def _project(self, x: torch.Tensor, shifted_half: torch.Tensor, offset: int, call):
        """Hidden ``[v, u]`` ``[B, T, hidden]`` and rotated (quad_q, lin_q, quad_k, lin_k) of ``x``
        whose first feature half is replaced by ``shifted_half`` (the token shift)."""
        h = torch.cat((shifted_half, x[..., shifted_half.shape[-1]:]), dim=-1) if self.shift_tokens else x
        hidden = call("to_hidden", self.to_hidden, h)
        qk = self.qk_offset_scale(call("to_qk", self.to_qk, h)).transpose(1, 2)  # [B, 4, T, Dk]
        if self.rotary_pos_emb is not None:
            qk = self.rotary_pos_emb(qk, offset)  # the four at once
        return hidden, qk.unbind(1)

    @staticmethod
    def _gate(hidden: torch.Tensor, attended: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(att_u * v) * sigmoid(att_v * u)`` from ``hidden = [v, u]`` and its attention ``attended =
        [att_v, att_u]``, ``[..., 2E] -> [..., E]``; when inferring, ``attended`` is overwritten and
        the result written into ``out`` (if given)."""
        v, u = hidden.chunk(2, dim=-1)
        att_v, att_u = attended.chunk(2, dim=-1)
        if overwritable(attended):
            return torch.mul(att_u.mul_(v), att_v.mul_(u).sigmoid_(), out=out)
        return (att_u * v) * torch.sigmoid(att_v * u)

    def _output(self, x: torch.Tensor, gated: torch.Tensor, call) -> torch.Tensor:
        return call("to_out", self.to_out, gated).add_(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal:
            return self.step(x, None)[0]
        half = x[..., :x.shape[-1] // 2]
        hidden, qk = self._project(x, F.pad(half, (0, 0, 1, -1)), 0, call_offline)
        return self._output(x, self.attend_gated(*qk, hidden), call_offline)

    def _quadratic(self, quad_q: torch.Tensor, quad_k: torch.Tensor) -> torch.Tensor:
        """Attention weights ``relu(q k^T / g)^2`` of groups ``[..., g', Dk] -> [..., g', g']``."""
        return self.dropout(F.relu(quad_q @ quad_k.transpose(-1, -2) / self.group_size) ** 2)

    def attend_gated(self, quad_q, lin_q, quad_k, lin_k, hidden):
        """Non-causal attention, gated: quadratic in groups of ``g`` frames (the last one possibly
        shorter) plus linear ``lin_q (lin_k^T hidden) / T``; queries, keys ``[B, T, Dk]``,
        ``hidden = [v, u]`` ``[B, T, 2E]`` -> :meth:`_gate` ``[B, T, E]``.

        Group by group: no ``[B, T, 2E]`` attention output is kept; when inferring, each group's
        gate is written straight into the ``[B, T, E]`` result.
        """
        n, g, e = hidden.shape[1], self.group_size, hidden.shape[-1] // 2
        gated = hidden.new_empty(hidden.shape[0], n, e) if overwritable(hidden) else None
        items = []
        for i, (q, lq, k, lk, h) in enumerate(zip(quad_q, lin_q, quad_k, lin_k, hidden)):
            kv = linear(lk.T, h.T) / n  # [Dk, 2E]
            groups = []
            for part in (slice(start, start + g) for start in range(0, n, g)):
                attended = linear(lq[part], kv.T).addmm_(self._quadratic(q[part], k[part]), h[part])
                groups.append(self._gate(h[part], attended, None if gated is None else gated[i, part]))
            items.append(torch.cat(groups) if gated is None else None)
        return torch.stack(items) if gated is None else gated

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """Causal block on the next frames ``[B, k, D]``; state: token-shift frame, frames seen,
        keys/values of the unfinished group and the linear-attention sums of finished groups."""
        require_causal(self, self.causal)
        state = state or {}
        steps = ChildSteps(state)
        offset = int(state["offset"]) if "offset" in state else 0
        half, steps.state["shift"] = cat_history(state.get("shift"), x[..., :x.shape[-1] // 2], 1, dim=1)
        hidden, qk = self._project(x, half[:, :-1], offset, steps)
        attended, attn_state = self._causal_attend(*qk, hidden, offset, state)
        steps.state.update(attn_state)
        steps.state["offset"] = torch.tensor(offset + x.shape[1])
        return self._output(x, self._gate(hidden, attended), steps), steps.state

    def _causal_attend(self, quad_q, lin_q, quad_k, lin_k, values, offset: int,
                       state: State) -> Tuple[torch.Tensor, State]:
        """Attention of frames ``offset ..`` over frames ``<= t`` (see the class docstring)."""
        g, b, n = self.group_size, values.shape[0], values.shape[1]
        quad_keys = state.get("quad_k", quad_k[:, :0])
        lin_keys = state.get("lin_k", lin_k[:, :0])
        group_values = state.get("values", values[:, :0])
        kv = state.get("kv", values.new_zeros(b, lin_k.shape[-1], values.shape[-1]))
        outs: List[torch.Tensor] = []
        start = 0
        while start < n:
            position = (offset + start) % g
            take = min(g - position, n - start)
            part = slice(start, start + take)
            quad_keys = torch.cat((quad_keys, quad_k[:, part]), 1)
            lin_keys = torch.cat((lin_keys, lin_k[:, part]), 1)
            group_values = torch.cat((group_values, values[:, part]), 1)
            future = torch.ones(take, position + take, dtype=torch.bool, device=values.device).triu(position + 1)
            attn = self._quadratic(quad_q[:, part], quad_keys).masked_fill(future, 0.0)
            outs.append(attn @ group_values + lin_q[:, part] @ kv)
            if position + take == g:  # group finished: its keys join the linear attention
                kv = kv + lin_keys.transpose(1, 2) @ group_values / g
                quad_keys, lin_keys, group_values = quad_keys[:, :0], lin_keys[:, :0], group_values[:, :0]
            start += take
        new_state = {"quad_k": quad_keys, "lin_k": lin_keys, "values": group_values, "kv": kv}
        return torch.cat(outs, 1), new_state


class MossFormerLayers(nn.Module):
    """``depth`` x (:class:`MossFormerAttention` then gated FSMN block), ``[B, T, D] -> [B, T, D]``.

    One :class:`RotaryEmbedding` (``min(32, query_key_dim)`` dims) is shared
    by all attention blocks.  ``dilated_fsmn`` selects the FSMN memory of the
    separation model (True) or of the 48 kHz enhancement model (False).
    """

    def __init__(self, dim: int, depth: int, group_size: int = 256, query_key_dim: int = 128,
                 expansion_factor: float = 4.0, causal: bool = False, dropout: float = 0.1,
                 dilated_fsmn: bool = True):
        super().__init__()
        rotary = RotaryEmbedding(min(32, query_key_dim))
        self.fsmn = nn.ModuleList(GatedFSMNBlock(dim, causal=causal, dilated=dilated_fsmn)
                                  for _ in range(depth))
        self.layers = nn.ModuleList(
            MossFormerAttention(dim, group_size, query_key_dim, expansion_factor, rotary, causal, dropout)
            for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, fsmn in zip(self.layers, self.fsmn):
            x = fsmn(attention(x))
        return x
