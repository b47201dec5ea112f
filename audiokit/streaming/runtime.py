"""The chunk-by-chunk runtime every model plugs into.

A stream takes chunks of any size and returns the output samples that are
ready; ``flush()`` returns the rest.  Over a whole stream the concatenated
output has exactly as many samples as the input and is aligned with it:
output sample ``i`` is the model's estimate of input sample ``i``, delivered
``latency_samples`` after that input sample arrived (at most).

Two kinds of stream:

* :class:`CausalStream` for models whose output at time ``t`` depends only on
  input up to ``t`` plus a fixed look-ahead.  The concatenated output equals
  the model's offline output (float rounding aside) whatever the chunk sizes.
  A model plugs in by offering ``hop_length`` (samples per step),
  ``stream_lead`` (zero history samples before the signal),
  ``latency_samples``, ``step`` (a :class:`~audiokit.nn.state.StreamingModule`
  turning ``[B, k * hop]`` into ``[B, k * hop]``) and ``flush(state)`` (the
  output its last state still holds).
  A model may also offer ``frame_stepper()``: a frozen inference copy with
  ``initial_state(batch) -> list of tensors``, ``stepper(wav [B, hop], state)
  -> (out [B, hop], state)`` and ``flush(state)``; in eval mode the stream
  then runs that one frame per call on an engine of
  :mod:`audiokit.streaming.engines` (ONNX Runtime when installed, else
  TorchScript), which removes most of the per-frame Python overhead.
* :class:`WindowedStream` for any model with an offline ``enhance(wav [B, T])
  -> [B, T]``: windows with overlap, cross-faded; its latency is one window.

Both keep memory bounded by the chunk and window sizes, which is also how
long files are processed (:func:`process`).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..nn.state import stream_states, streaming
from .crossfade import crossfade
from .engines import frame_engine


def _as_batch(chunk: torch.Tensor) -> torch.Tensor:
    return chunk.unsqueeze(0) if chunk.dim() == 1 else chunk


class Stream:
    """Common bookkeeping: input/output sample counts and 1-D/2-D shapes."""

    latency_samples: int = 0

    def __init__(self, channels: int = 1):
        self.channels = channels
        self.samples_in = 0
        self.samples_out = 0
        self._squeeze: Optional[bool] = None

    def _accept(self, chunk: torch.Tensor) -> torch.Tensor:
        if self._squeeze is None:
            self._squeeze = chunk.dim() == 1
        chunk = _as_batch(chunk)
        if self.samples_in == 0:
            self.channels = chunk.shape[0]  # the first chunk decides
        elif chunk.shape[0] != self.channels:
            raise ValueError(f"stream of {self.channels} channels fed a chunk of {chunk.shape[0]}")
        self.samples_in += chunk.shape[-1]
        return chunk

    def _emit(self, out: torch.Tensor, final: bool = False) -> torch.Tensor:
        if final:
            out = out[..., :max(0, self.samples_in - self.samples_out)]
        self.samples_out += out.shape[-1]
        return out[0] if self._squeeze else out

    def feed(self, chunk: torch.Tensor) -> torch.Tensor:
        """Push ``[T]`` or ``[C, T]`` samples; returns the output samples ready so far."""
        raise NotImplementedError

    def flush(self) -> torch.Tensor:
        """End of stream: the remaining output samples."""
        raise NotImplementedError


class CausalStream(Stream):
    """Exact streaming of a causal model (see the module docstring).

    ``latency_samples`` is the model's algorithmic latency; chunks that are
    not multiples of ``hop_length`` add at most ``hop_length - 1`` samples of
    buffering on top.
    """

    def __init__(self, model: nn.Module, channels: int = 1, backend: Optional[str] = None):
        super().__init__(channels)
        self.model = model
        self.hop = model.hop_length
        self.latency_samples = model.latency_samples
        self._pending: Optional[torch.Tensor] = None
        self._to_drop = model.stream_lead
        self._states = None  # block states between calls; the model itself stays offline
        self._open = True
        use_frames = hasattr(model, "frame_stepper") and not model.training
        self._stepper = model.frame_stepper() if use_frames else None
        self._backend = backend
        # built now (exporting or tracing can take seconds the first time), not at the first frame
        self._engine = frame_engine(self._stepper, channels, backend) if self._stepper is not None else None

    @property
    def backend(self) -> str:
        """The frame engine in use (``"onnx"`` or ``"torch"``), ``"model"`` without a frame stepper."""
        if self._stepper is None:
            return "model"
        return self._engine.name

    def _engine_for(self, batch: int):
        """The frame engine, rebuilt if the first chunk has another channel count than announced."""
        if batch != self._engine.batch:
            self._engine = frame_engine(self._stepper, batch, self._backend)
        return self._engine

    def _run_frames(self, samples: torch.Tensor) -> torch.Tensor:
        engine = self._engine_for(samples.shape[0])
        outs = [engine(samples[..., start:start + self.hop].contiguous())
                for start in range(0, samples.shape[-1], self.hop)]
        return torch.cat(outs, dim=-1) if len(outs) != 1 else outs[0]

    def _call(self, fn, *args):
        with torch.no_grad(), streaming(self.model, self._states):
            out = fn(*args)
            self._states = stream_states(self.model)
        return out

    def _run(self, samples: torch.Tensor) -> torch.Tensor:
        if self._stepper is not None:
            out = self._run_frames(samples)
        else:
            out = self._call(self.model, samples)
        drop = min(self._to_drop, out.shape[-1])
        self._to_drop -= drop
        return out[..., drop:]

    def feed(self, chunk: torch.Tensor) -> torch.Tensor:
        if not self._open:
            raise RuntimeError("stream already flushed")
        chunk = self._accept(chunk)
        buf = chunk if self._pending is None else torch.cat([self._pending, chunk], dim=-1)
        ready = buf.shape[-1] // self.hop * self.hop
        self._pending = buf[..., ready:]
        out = self._run(buf[..., :ready]) if ready else buf[..., :0]
        return self._emit(out)

    def flush(self) -> torch.Tensor:
        if not self._open:
            raise RuntimeError("stream already flushed")
        self._open = False
        if self._pending is None:
            return torch.zeros(0)
        pending = self._pending
        pad = (-pending.shape[-1]) % self.hop
        parts = []
        if pending.shape[-1]:
            parts.append(self._run(nn.functional.pad(pending, (0, pad))))
        if self._stepper is not None:
            tail = self._engine_for(pending.shape[0]).flush()
        elif self._states is not None:  # (None: nothing was ever run, nothing is held)
            with torch.no_grad():
                tail = self.model.flush(self._states[""])
        else:
            tail = pending[..., :0]
        drop = min(self._to_drop, tail.shape[-1])
        parts.append(tail[..., drop:])
        return self._emit(torch.cat(parts, dim=-1), final=True)


class WindowedStream(Stream):
    """Windowed overlap-add streaming of an offline model.

    Each window of ``window`` samples is processed whole by ``enhance``
    (``[B, T] -> [B, T]``); consecutive windows overlap by ``overlap`` samples
    which are cross-faded.  Latency: ``window`` samples.  Memory: O(window).
    """

    def __init__(self, enhance: Callable[[torch.Tensor], torch.Tensor], window: int,
                 overlap: int, channels: int = 1):
        super().__init__(channels)
        if not 0 <= overlap < window:
            raise ValueError("need 0 <= overlap < window")
        self.enhance, self.window, self.overlap = enhance, window, overlap
        self.latency_samples = window
        self._buffer: Optional[torch.Tensor] = None
        self._carry: Optional[torch.Tensor] = None  # processed overlap awaiting cross-fade

    def _process(self, segment: torch.Tensor, last: bool) -> torch.Tensor:
        with torch.no_grad():
            out = self.enhance(segment)
        if self._carry is not None:
            n = self._carry.shape[-1]
            out = torch.cat([crossfade(self._carry, out[..., :n]), out[..., n:]], dim=-1)
        keep = 0 if last else min(self.overlap, out.shape[-1])
        self._carry = out[..., out.shape[-1] - keep:] if keep else None
        return out[..., :out.shape[-1] - keep]

    def feed(self, chunk: torch.Tensor) -> torch.Tensor:
        chunk = self._accept(chunk)
        buf = chunk if self._buffer is None else torch.cat([self._buffer, chunk], dim=-1)
        outs = []
        while buf.shape[-1] >= self.window:
            outs.append(self._process(buf[..., :self.window], last=False))
            buf = buf[..., self.window - self.overlap:]
        self._buffer = buf
        return self._emit(torch.cat(outs, dim=-1) if outs else buf[..., :0])

    def flush(self) -> torch.Tensor:
        if self._buffer is None:
            return torch.zeros(0)
        fresh = self._buffer.shape[-1] - (self.overlap if self._carry is not None else 0)
        out = self._process(self._buffer, last=True) if fresh > 0 or self._carry is None else self._carry
        self._buffer = None
        return self._emit(out, final=True)


def open_stream(model: nn.Module, channels: int = 1, window: Optional[int] = None,
                overlap: Optional[int] = None) -> Stream:
    """The right stream for ``model``: exact for causal models, windowed otherwise.

    ``window``/``overlap`` (samples) default to 4 s and 0.5 s at the model rate.
    """
    if getattr(model, "causal", False):
        return CausalStream(model, channels)
    rate = getattr(model, "sample_rate", 16000)
    window = window or 4 * rate
    overlap = rate // 2 if overlap is None else overlap
    return WindowedStream(model.enhance, window, overlap, channels)


def process(model: nn.Module, wav: torch.Tensor, chunk: int, **stream_args) -> torch.Tensor:
    """Run ``wav`` ``[C, T]`` through a stream in chunks of ``chunk`` samples: ``[C, T]``."""
    stream = open_stream(model, wav.shape[0], **stream_args)
    outs = [stream.feed(wav[:, i:i + chunk]) for i in range(0, wav.shape[-1], chunk)]
    outs.append(stream.flush())
    return torch.cat(outs, dim=-1)
