"""The chunk-by-chunk runtime every model plugs into.

A stream takes chunks of any size and returns the output that is ready;
``flush()`` returns the rest.  Over a whole stream the concatenated output
has exactly as many samples as the input and is aligned with it: output
sample ``i`` is the model's estimate of input sample ``i``, delivered
``latency_samples`` after that input sample arrived (at most).  A model that
emits frames (``output``, an :class:`~audiokit.streaming.outputs.OutputSpec`)
gives one frame per ``step`` input samples instead (the last one completed
with zeros), frames along the second axis: ``[B, n, *shape]``.

Two kinds of stream:

* :class:`CausalStream` for models whose output at time ``t`` depends only on
  input up to ``t`` plus a fixed look-ahead.  The concatenated output equals
  the model's offline output (float rounding aside) whatever the chunk sizes.
  A model plugs in by offering ``hop_length`` (samples per step),
  ``stream_lead`` (zero history samples before the signal),
  ``latency_samples``, ``step`` (a :class:`~audiokit.nn.state.StreamingModule`
  turning ``[B, k * hop]`` into ``[B, k * hop]``) and ``flush(state)`` (the
  output its last state still holds).
  The stream runs ``step`` on whatever is ready, whole hops: on large chunks
  (a file, 10 s blocks) that is the fastest way, its state carried from one
  chunk to the next.
  A model may also offer ``frame_stepper()``: a frozen inference copy with
  ``initial_state(batch) -> list of tensors``, ``stepper(wav [B, hop], state)
  -> (out [B, hop], state)`` and ``flush(state)``; for live audio
  (``frames=True``, the default: chunks of a few milliseconds) in eval mode the
  stream runs that one frame per call on an engine of
  :mod:`audiokit.streaming.engines` (ONNX Runtime when installed, else
  TorchScript), which removes most of the per-frame Python overhead. Both give
  the offline output.
* :class:`WindowedStream` for any model with an offline ``enhance(wav [B, T])
  -> [B, T]``: windows with overlap, cross-faded; its latency is one window.

Both keep memory bounded by the chunk and window sizes, which is also how
long files are processed (:func:`process`).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from ..nn.state import stream_states, streaming
from .crossfade import crossfade
from .engines import frame_engine
from .outputs import OutputSpec

AUDIO_OUTPUT = OutputSpec.audio(1)


def _as_batch(chunk: torch.Tensor) -> torch.Tensor:
    return chunk.unsqueeze(0) if chunk.dim() == 1 else chunk


class Stream:
    """Common bookkeeping: input samples, output steps, 1-D/2-D shapes.

    ``output`` says what the stream emits (:class:`~audiokit.streaming.outputs.OutputSpec`, audio by
    default) and ``step`` how many input samples make one output step (1 for audio, a frame's hop for
    frames). Over a whole stream there are ``ceil(samples_in / step)`` output steps, along the last axis
    for audio (``[B, t]``, ``[B, S, t]``), along the second for frames (``[B, n, *shape]``).
    """

    latency_samples: int = 0

    def __init__(self, channels: int = 1, output: OutputSpec = AUDIO_OUTPUT, step: int = 1):
        self.channels, self.output, self.step = channels, output, step
        self.time_dim = -1 if output.is_audio else 1
        self.samples_in = 0
        self.steps_out = 0
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

    def _time(self, out: torch.Tensor, start: int = 0, stop: Optional[int] = None) -> torch.Tensor:
        """``out`` from output step ``start`` to ``stop`` (along the time axis)."""
        return out[..., start:stop] if self.output.is_audio else out[:, start:stop]

    def _cat(self, parts: list, like: torch.Tensor) -> torch.Tensor:
        """``parts`` joined along the time axis (no output steps, shaped for ``like``'s batch, when empty)."""
        if parts:
            return torch.cat(parts, dim=self.time_dim) if len(parts) != 1 else parts[0]
        return like[..., :0] if self.output.is_audio else like.new_zeros(like.shape[0], 0, *self.output.shape)

    def _emit(self, out: torch.Tensor, final: bool = False) -> torch.Tensor:
        if final:
            out = self._time(out, 0, max(0, math.ceil(self.samples_in / self.step) - self.steps_out))
        self.steps_out += out.shape[self.time_dim]
        return out[0] if self._squeeze else out

    def _nothing(self) -> torch.Tensor:
        """The output of a stream that was never fed."""
        return torch.zeros(0, *self.output.shape)

    def feed(self, chunk: torch.Tensor) -> torch.Tensor:
        """Push ``[T]`` or ``[C, T]`` samples; returns the output ready so far."""
        raise NotImplementedError

    def flush(self) -> torch.Tensor:
        """End of stream: the remaining output."""
        raise NotImplementedError


class CausalStream(Stream):
    """Exact streaming of a causal model (see the module docstring).

    ``latency_samples`` is the model's algorithmic latency; chunks that are
    not multiples of ``hop_length`` add at most ``hop_length - 1`` samples of
    buffering on top. ``output``: what the model's ``step`` emits (audio by default; for frames its
    ``hop_length`` and ``stream_lead`` are whole frames). ``frames``: run the model's frame stepper on a frame
    engine (``backend``), when it has one and is in eval mode, for chunks of a few milliseconds; False runs
    ``step`` on each chunk (about twice as fast for chunks of seconds, and needs no engine).
    """

    def __init__(self, model: nn.Module, channels: int = 1, backend: Optional[str] = None,
                 output: OutputSpec = AUDIO_OUTPUT, frames: bool = True):
        super().__init__(channels, output, output.samples_per_step(getattr(model, "sample_rate", 16000)))
        self.model = model
        self.hop = model.hop_length
        self.latency_samples = model.latency_samples
        self._pending: Optional[torch.Tensor] = None
        self._to_drop = model.stream_lead // self.step
        self._states = None  # block states between calls; the model itself stays offline
        self._open = True
        use_frames = frames and hasattr(model, "frame_stepper") and not model.training
        self._stepper = model.frame_stepper() if use_frames else None
        self._backend = backend
        # built now (exporting or tracing can take seconds the first time), not at the first frame
        self._engine = frame_engine(self._stepper, channels, backend) if self._stepper is not None else None

    @property
    def backend(self) -> str:
        """The frame engine in use (``"onnx"`` or ``"torch"``), ``"model"`` when the model's ``step`` runs on
        the chunks."""
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
        return self._cat([engine(samples[..., start:start + self.hop].contiguous())
                          for start in range(0, samples.shape[-1], self.hop)], samples)

    def _call(self, fn, *args):
        with torch.no_grad(), streaming(self.model, self._states):
            out = fn(*args)
            self._states = stream_states(self.model)
        return out

    def _drop_lead(self, out: torch.Tensor) -> torch.Tensor:
        """``out`` without the output of the ``stream_lead`` zeros still to drop."""
        drop = min(self._to_drop, out.shape[self.time_dim])
        self._to_drop -= drop
        return self._time(out, drop)

    def _run(self, samples: torch.Tensor) -> torch.Tensor:
        if self._stepper is not None:
            return self._drop_lead(self._run_frames(samples))
        return self._drop_lead(self._call(self.model, samples))

    def feed(self, chunk: torch.Tensor) -> torch.Tensor:
        if not self._open:
            raise RuntimeError("stream already flushed")
        chunk = self._accept(chunk)
        buf = chunk if self._pending is None else torch.cat([self._pending, chunk], dim=-1)
        ready = buf.shape[-1] // self.hop * self.hop
        self._pending = buf[..., ready:]
        return self._emit(self._run(buf[..., :ready]) if ready else self._cat([], buf))

    def flush(self) -> torch.Tensor:
        if not self._open:
            raise RuntimeError("stream already flushed")
        self._open = False
        if self._pending is None:
            return self._nothing()
        pending = self._pending
        pad = (-pending.shape[-1]) % self.hop
        parts = []
        if pending.shape[-1]:
            parts.append(self._run(nn.functional.pad(pending, (0, pad))))
        if self._stepper is not None:
            parts.append(self._drop_lead(self._engine_for(pending.shape[0]).flush()))
        elif self._states is not None:  # (None: nothing was ever run, nothing is held)
            with torch.no_grad():
                parts.append(self._drop_lead(self.model.flush(self._states[""])))
        return self._emit(self._cat(parts, pending), final=True)


class WindowedStream(Stream):
    """Windowed overlap-add streaming of an offline model.

    Each window of ``window`` samples is processed whole by ``enhance`` (``[B, T] -> [B, T]``, or
    ``[B, T / step, *shape]`` frames for a frames ``output``); consecutive windows overlap by ``overlap``
    samples whose outputs are cross-faded. Latency: ``window`` samples. Memory: O(window). For frames,
    ``window`` and ``overlap`` are whole frames.
    """

    def __init__(self, enhance: Callable[[torch.Tensor], torch.Tensor], window: int,
                 overlap: int, channels: int = 1, output: OutputSpec = AUDIO_OUTPUT, step: int = 1):
        super().__init__(channels, output, step)
        if not 0 <= overlap < window:
            raise ValueError("need 0 <= overlap < window")
        if window % step or overlap % step:
            raise ValueError(f"window {window} and overlap {overlap} must be whole frames of {step} samples")
        self.enhance, self.window, self.overlap = enhance, window, overlap
        self.latency_samples = window
        self._buffer: Optional[torch.Tensor] = None
        self._carry: Optional[torch.Tensor] = None  # processed overlap awaiting cross-fade

    def _process(self, segment: torch.Tensor, last: bool) -> torch.Tensor:
        with torch.no_grad():
            out = self.enhance(segment)
        length = out.shape[self.time_dim]
        if self._carry is not None:
            n = self._carry.shape[self.time_dim]
            out = self._cat([crossfade(self._carry, self._time(out, 0, n), self.time_dim), self._time(out, n)], out)
        keep = 0 if last else min(self.overlap // self.step, length)
        self._carry = self._time(out, length - keep) if keep else None
        return self._time(out, 0, length - keep)

    def feed(self, chunk: torch.Tensor) -> torch.Tensor:
        chunk = self._accept(chunk)
        buf = chunk if self._buffer is None else torch.cat([self._buffer, chunk], dim=-1)
        outs = []
        while buf.shape[-1] >= self.window:
            outs.append(self._process(buf[..., :self.window], last=False))
            buf = buf[..., self.window - self.overlap:]
        self._buffer = buf
        return self._emit(self._cat(outs, buf))

    def flush(self) -> torch.Tensor:
        if self._buffer is None:
            return self._nothing()
        fresh = self._buffer.shape[-1] - (self.overlap if self._carry is not None else 0)
        out = self._process(self._buffer, last=True) if fresh > 0 or self._carry is None else self._carry
        self._buffer = None
        return self._emit(out, final=True)


def open_stream(model: nn.Module, channels: int = 1, window: Optional[int] = None,
                overlap: Optional[int] = None, output: OutputSpec = AUDIO_OUTPUT,
                offline: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, frames: bool = True) -> Stream:
    """The right stream for ``model``: exact for causal models, windowed otherwise.

    ``window``/``overlap`` (samples) default to 4 s and 0.5 s at the model rate (whole frames for
    frames). ``output``: what the model emits; ``offline``: the whole-window function of a windowed
    stream (default ``model.enhance``); ``frames``: a causal stream's frame engine, for small chunks
    (see :class:`CausalStream`).
    """
    if getattr(model, "causal", False):
        return CausalStream(model, channels, output=output, frames=frames)
    rate = getattr(model, "sample_rate", 16000)
    step = output.samples_per_step(rate)
    window = window or 4 * rate // step * step
    overlap = rate // 2 // step * step if overlap is None else overlap
    return WindowedStream(offline or model.enhance, window, overlap, channels, output, step)


def process(model: nn.Module, wav: torch.Tensor, chunk: int, **stream_args) -> torch.Tensor:
    """Run ``wav`` ``[C, T]`` through a stream in chunks of ``chunk`` samples: ``[C, T]`` (audio) or
    ``[C, N, *shape]`` (frames)."""
    stream = open_stream(model, wav.shape[0], **stream_args)
    outs = [stream.feed(wav[:, i:i + chunk]) for i in range(0, wav.shape[-1], chunk)]
    outs.append(stream.flush())
    return torch.cat(outs, dim=stream.time_dim)
